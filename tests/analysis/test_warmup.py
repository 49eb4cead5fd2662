"""warmup(): changepoint segmentation and the flat / warmup / slowdown / no steady state classes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perflab.analysis.warmup import WARMUP_COLUMNS, classify_series, hampel, warmup
from perflab.errors import PerflabError


@pytest.mark.parametrize("n", [200, 1000, 2000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decaying_extra_over_30_iterations_is_warmup(make_samples, n, seed):
    samples = make_samples(
        "r",
        n_warmup=10,
        n_measure=n - 10,
        warmup_iterations=30,
        warmup_extra_ms=2.0,
        jitter=0.01,
        seed=seed,
    )
    row = warmup(samples).iloc[0]
    assert row["classification"] == "warmup"
    assert 24 <= row["steady_iteration"] <= 36
    assert row["recommended_warmup"] >= row["steady_iteration"]
    assert row["n_changepoints"] >= 1
    assert row["changepoints"][-1] == row["steady_iteration"]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_flat_runs_are_flat(make_samples, seed):
    row = warmup(make_samples("r", n_measure=1000, jitter=0.01, seed=seed)).iloc[0]
    assert row["classification"] == "flat"
    assert row["steady_iteration"] == 0 and row["n_changepoints"] == 0
    assert row["steady_ms_to_reach"] == 0


def test_slowdown(make_samples):
    samples = make_samples("r", n_measure=800, step_at=300, step_ms=0.3, jitter=0.01)
    row = warmup(samples).iloc[0]
    assert row["classification"] == "slowdown"
    assert abs(row["steady_iteration"] - 300) <= 3
    assert pd.isna(row["recommended_warmup"])  # more warmup does not cure a slowdown


def test_change_near_the_end_is_no_steady_state(make_samples):
    samples = make_samples("r", n_measure=1000, step_at=950, step_ms=0.5, jitter=0.01)
    row = warmup(samples).iloc[0]
    assert row["classification"] == "no steady state"
    assert pd.isna(row["steady_iteration"]) and np.isnan(row["steady_p50_ms"])


def test_isolated_spikes_are_counted_not_segmented(make_samples):
    row = warmup(make_samples("r", n_measure=1000, spikes=8, jitter=0.01)).iloc[0]
    assert row["classification"] == "flat"
    assert row["n_outliers"] >= 8


def test_cold_start_and_steady_numbers(make_samples, make_runs):
    samples = make_samples("r", n_measure=400, warmup_iterations=30, warmup_extra_ms=3.0)
    runs = make_runs(["r"], first_ms=[9.0])
    row = warmup(samples, runs=runs).iloc[0]
    e2e = samples[samples["stage"] == "e2e"].sort_values("iteration")["host_ns"].to_numpy() / 1e6
    steady = int(row["steady_iteration"])
    assert row["first_ms"] == pytest.approx(e2e[0])
    assert row["steady_p50_ms"] == pytest.approx(np.median(e2e[steady:]))
    assert row["steady_ms_to_reach"] == pytest.approx(e2e[:steady].sum())
    assert row["cold_start_ratio"] == pytest.approx(e2e[0] / row["steady_p50_ms"])
    assert row["runs_cold_start_ratio"] == pytest.approx(9.0 / row["steady_p50_ms"])


def test_long_series_is_binned_and_still_found(make_samples):
    samples = make_samples(
        "r", n_measure=6000, warmup_iterations=60, warmup_extra_ms=2.0, jitter=0.01, gpu=False
    )
    row = warmup(samples).iloc[0]
    assert row["classification"] == "warmup"
    assert abs(row["steady_iteration"] - 60) <= 9  # blocks of 3 iterations, plus the ramp's tail


def test_rbf_model(make_samples):
    samples = make_samples("r", n_measure=600, warmup_iterations=30, warmup_extra_ms=2.0)
    row = warmup(samples, model="rbf").iloc[0]
    assert row["classification"] == "warmup" and 24 <= row["steady_iteration"] <= 36


def test_several_runs_and_stage_choice(make_samples, concat_samples):
    samples = concat_samples(
        make_samples("w", n_measure=300, warmup_iterations=30, warmup_extra_ms=2.0),
        make_samples("f", n_measure=300, seed=5),
    )
    out = warmup(samples, stage="compute")
    assert list(out.columns) == list(WARMUP_COLUMNS)
    assert dict(zip(out["run_id"], out["classification"])) == {"f": "flat", "w": "warmup"}


def test_short_series_has_no_steady_state():
    out = classify_series(np.arange(10), np.full(10, 1.0))
    assert out["classification"] == "no steady state"


def test_hampel_keeps_level_shifts_and_removes_spikes():
    x = np.r_[np.full(50, 10.0), np.full(50, 12.0)] + np.random.default_rng(0).normal(0, 0.05, 100)
    x[20] = 30.0
    clean, n = hampel(x)
    assert n == 1 and clean[20] < 11
    assert np.allclose(clean[np.r_[0:20, 21:100]], x[np.r_[0:20, 21:100]])


def test_bad_model():
    with pytest.raises(PerflabError, match="rbf"):
        warmup(
            pd.DataFrame({"run_id": [], "iteration": [], "stage": [], "host_ns": []}),
            model="normal",
        )
