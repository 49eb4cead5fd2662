"""Repetitions: the two-stage bootstrap, the between-run spread, and verdicts on known truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

import perflab
from experiments import experiment
from perflab import runner, spec
from perflab.analysis.repeats import (
    MIN_ITERATIONS_MEDIAN_CI,
    hierarchical_medians,
    interval,
    min_iterations_for_median_ci,
    t_factor,
)
from perflab.analysis.stats import order_stat_ci_ranks
from perflab.timing import VirtualClock, use_clock


def run(tmp_path, **data):
    study = spec.parse({**experiment("rep", warmup=0, iterations=100), **data})
    with use_clock(VirtualClock()):
        result = runner.run_study(study, tmp_path, isolate=False)
    assert all(r["status"] == "ok" for r in result.rows)
    return perflab.open(tmp_path)


def test_minimum_iterations_for_a_median_ci_is_the_binomial_rule():
    assert min_iterations_for_median_ci(0.95) == MIN_ITERATIONS_MEDIAN_CI == 6
    lo, hi = order_stat_ci_ranks(np.array([5, 6]), 0.5, 0.95)
    assert lo[0] < 0 and (lo[1] >= 0 and hi[1] <= 5)  # no bound from 5 values, one from 6


def test_hierarchical_bootstrap_matches_two_stage_resampling():
    rng = np.random.default_rng(5)
    runs = [np.sort(rng.gamma(4.0, 1.0, n) * f) for n, f in ((41, 1.0), (60, 1.1), (35, 0.95))]
    fast = hierarchical_medians(runs, 20000, np.random.default_rng(1))
    slow_rng = np.random.default_rng(2)
    slow = np.empty(20000)
    for b in range(len(slow)):
        picked = slow_rng.integers(0, 3, 3)
        slow[b] = np.mean([np.median(slow_rng.choice(runs[j], len(runs[j]))) for j in picked])
    np.testing.assert_allclose(
        np.quantile(fast, [0.05, 0.25, 0.5, 0.75, 0.95]),
        np.quantile(slow, [0.05, 0.25, 0.5, 0.75, 0.95]),
        rtol=0.01,
    )


def test_interval_is_percentile_for_one_run_and_t_for_several():
    draws = np.random.default_rng(0).lognormal(0.0, 0.01, 100000)
    assert interval(draws, 1.0, 1, 0.95) == pytest.approx(
        tuple(np.quantile(draws, [0.025, 0.975])), rel=1e-12
    )
    lo, hi = interval(draws, 1.0, 5, 0.95)
    # t(4) = 2.776, times sqrt(5/4): 3.104 standard errors of 1% each side.
    assert t_factor(5, 0.95) == pytest.approx(3.1035, abs=1e-3)
    assert np.log(hi) == pytest.approx(0.031035, rel=0.02) and np.log(lo) == pytest.approx(
        -0.031035, rel=0.02
    )


def test_between_run_spread_is_the_spread_of_the_run_offsets(tmp_path):
    # No per-iteration jitter: each run's e2e is its drawn offset x the configured time, so the
    # between-run CV is the CV of the offsets the backend drew (stored in meta), to rounding.
    res = run(
        tmp_path,
        options={
            "compute_ms": 2.0,
            "preprocess_ms": 0.0,
            "postprocess_ms": 0.0,
            "run_jitter": 0.05,
        },
        repeat=6,
    )
    offsets = np.array([json.loads(m)["synthetic_run_offset"] for m in res.runs["meta"]])
    assert len(set(offsets)) == 6  # every repetition draws its own
    rep = res.repeats().iloc[0]
    assert rep["n_runs"] == 6 and rep["n"] == 600 and rep["min_run_n"] == 100
    assert rep["between_cv_pct"] == pytest.approx(
        100 * np.std(offsets, ddof=1) / offsets.mean(), rel=1e-3
    )
    assert rep["median_ms"] == pytest.approx(2.0 * offsets.mean(), rel=1e-3)
    assert rep["within_cv_pct"] < 0.01
    assert rep["ci_low_ms"] < rep["median_ms"] < rep["ci_high_ms"]


def test_verdicts_on_known_truth(tmp_path):
    # 5% slower with 1% run jitter and 1% iteration jitter: found with 5 repetitions; with one
    # repetition the same data is only indicative; identical configs are `same`.
    opts = {"compute_ms": 2.0, "jitter": 0.01, "run_jitter": 0.01}
    sweep = [
        {"seed": [1, 2]},
        {"seed": [3], "options.compute_ms": [2.1]},
    ]
    res = run(tmp_path / "r5", options=opts, sweep=sweep, repeat=5)
    seed = res.runs["label"].str.extract(r"seed=(\d)", expand=False)
    runs = res.runs.assign(arm=seed.map({"1": "A1", "2": "A2", "3": "B"}))
    from perflab.analysis.compare import compare

    out = compare(res.samples, runs, by="arm", baseline="A1", match=[]).set_index("b")
    assert out.loc["B", "verdict"] == "slower" and out.loc["A2", "verdict"] == "same"
    assert out.loc["B", "ratio"] == pytest.approx(1.05, abs=0.02)
    assert out.loc["B", "n_runs_a"] == out.loc["B", "n_runs_b"] == 5
    first = runs[runs["repetition"] == 0]
    one = compare(res.samples, first, by="arm", baseline="A1", match=[])
    assert (one["verdict"] == "indicative").all()


def test_repetitions_are_interleaved_and_numbered(tmp_path):
    res = run(tmp_path, options={"compute_ms": 0.1}, sweep={"seed": [1, 2]}, repeat=3)
    runs = res.runs.sort_values("created_at")
    assert runs["repetition"].tolist() == [0, 0, 1, 1, 2, 2]
    assert runs["label"].tolist()[:2] == runs["label"].tolist()[2:4]
    assert runs["order_seed"].isna().all() and runs["spec_id"].nunique() == 2
