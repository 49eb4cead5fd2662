"""summarize(), the order-statistic CIs, harness_gap() and warnings() against known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perflab.analysis import stats
from perflab.analysis.stats import (
    MIN_SAMPLES_P90,
    MIN_SAMPLES_P99,
    SUMMARY_COLUMNS,
    harness_gap,
    min_samples_for_bound,
    order_stat_ci_ranks,
    summarize,
    warnings,
)
from perflab.errors import PerflabError


def _reference(samples: pd.DataFrame) -> pd.DataFrame:
    m = samples[samples["phase"] == "measure"].astype({"run_id": str, "stage": str})
    g = m.groupby(["run_id", "stage"])["host_ns"]
    ref = g.quantile([0.5, 0.9, 0.95, 0.99]).unstack() / 1e6
    ref.columns = ["p50_ms", "p90_ms", "p95_ms", "p99_ms"]
    ref["mean_ms"] = g.mean() / 1e6
    ref["std_ms"] = g.std() / 1e6
    ref["min_ms"] = g.min() / 1e6
    ref["max_ms"] = g.max() / 1e6
    ref["n"] = g.size()
    return ref


@pytest.mark.parametrize("lengths", [(300, 300, 300), (120, 301, 57)])
def test_percentiles_and_moments_match_pandas(make_samples, concat_samples, lengths):
    # Equal lengths take the 2-D sort path, unequal ones the group-by-group path.
    frames = [
        make_samples(f"r{i}", n_warmup=5, n_measure=n, seed=i, jitter=0.03)
        for i, n in enumerate(lengths)
    ]
    samples = concat_samples(*frames)
    got = summarize(samples).set_index(["run_id", "stage"])
    ref = _reference(samples)
    assert list(summarize(samples).columns) == list(SUMMARY_COLUMNS)
    assert len(got) == len(ref)
    for col in ref.columns:
        np.testing.assert_allclose(
            got.loc[ref.index, col].to_numpy(dtype=float),
            ref[col].to_numpy(dtype=float),
            rtol=1e-9,
            err_msg=col,
        )
    np.testing.assert_allclose(got["cv_pct"], 100 * got["std_ms"] / got["mean_ms"])


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.integers(0, 10**9), min_size=1, max_size=40), min_size=1, max_size=6))
def test_quantiles_equal_numpy_for_any_groups(groups):
    rows = [(f"r{i}", v) for i, values in enumerate(groups) for v in values]
    samples = pd.DataFrame(
        {
            "run_id": [r for r, _ in rows],
            "stage": "e2e",
            "phase": "measure",
            "host_ns": [v for _, v in rows],
            "items": 1,
            "iteration": 0,
        }
    )
    out = summarize(samples).set_index("run_id")
    for i, values in enumerate(groups):
        row = out.loc[f"r{i}"]
        for q in (0.5, 0.9, 0.99):
            assert row[f"p{round(q * 100)}_ms"] == pytest.approx(
                np.quantile(values, q) / 1e6, rel=1e-12, abs=1e-12
            )
        assert row["n"] == len(values)


def test_stage_order_and_run_order(make_samples, concat_samples):
    samples = concat_samples(
        make_samples("b", n_measure=50, enqueue_ms=0.1), make_samples("a", n_measure=50, seed=1)
    )
    out = summarize(samples)
    assert out["run_id"].tolist()[:7] == ["a"] * 6 + ["b"]
    # The one display order (perflab.stages): the iteration's stages, the nested one, e2e last.
    stages = ["preprocess", "h2d", "compute", "d2h", "postprocess", "enqueue", "e2e"]
    assert out[out["run_id"] == "b"]["stage"].tolist() == stages


def test_min_sample_constants_follow_from_the_binomial():
    assert min_samples_for_bound(0.99) == MIN_SAMPLES_P99 == 662
    assert min_samples_for_bound(0.90) == MIN_SAMPLES_P90 == 64
    # The maximum alone would be a 99% bound from 459 samples: the constants skip one sample.
    assert min_samples_for_bound(0.99, skip=0) == 459


def test_order_statistic_ci_covers_the_true_median():
    rng = np.random.default_rng(7)
    n, trials = 151, 400
    lo, hi = order_stat_ci_ranks(np.array([n]), 0.5, 0.95)
    x = np.sort(rng.exponential(1.0, size=(trials, n)), axis=1)
    true = np.log(2.0)
    covered = (x[:, lo[0]] <= true) & (true <= x[:, hi[0]])
    assert covered.mean() >= 0.93  # exact coverage is >= 95%; 400 trials leave some slack


def test_p99_ci_bounds_exist_only_with_enough_samples(make_samples, concat_samples):
    samples = concat_samples(
        make_samples("small", n_measure=200), make_samples("large", n_measure=2000, seed=1)
    )
    out = summarize(samples).set_index(["run_id", "stage"])
    assert np.isnan(out.loc[("small", "e2e"), "p99_ci_high_ms"])
    large = out.loc[("large", "e2e")]
    assert large["p99_ci_low_ms"] <= large["p99_ms"] <= large["p99_ci_high_ms"]
    assert large["p50_ci_low_ms"] <= large["p50_ms"] <= large["p50_ci_high_ms"]


def test_bootstrap_ci_agrees_with_binomial_ci(make_samples):
    samples = make_samples("r", n_measure=1500, jitter=0.02, seed=3)
    binom = summarize(samples, stages="e2e").iloc[0]
    boot = summarize(samples, stages="e2e", ci_method="bootstrap", n_boot=300, seed=1).iloc[0]
    width = binom["p50_ci_high_ms"] - binom["p50_ci_low_ms"]
    assert abs(boot["p50_ci_low_ms"] - binom["p50_ci_low_ms"]) < width
    assert abs(boot["p50_ci_high_ms"] - binom["p50_ci_high_ms"]) < width
    again = summarize(samples, stages="e2e", ci_method="bootstrap", n_boot=300, seed=1).iloc[0]
    assert again["p50_ci_low_ms"] == boot["p50_ci_low_ms"]  # seeded


def test_ci_none_skips_intervals(make_samples):
    out = summarize(make_samples(n_measure=100), ci=None)
    assert out["p50_ci_low_ms"].isna().all() and out["p99_ci_high_ms"].isna().all()


def test_throughput_on_e2e_and_compute_rows(make_samples):
    samples = make_samples("r", n_measure=401, batch=4, jitter=0.01)
    runs = pd.DataFrame({"run_id": ["r"], "status": ["ok"], "measure_wall_s": [2.0]})
    out = summarize(samples, runs).set_index("stage")
    m = samples[(samples["phase"] == "measure")]
    for stage in ("e2e", "compute"):
        d = m[m["stage"] == stage]
        expected = np.median(d["items"] / (d["host_ns"] / 1e9))
        assert out.loc[stage, "throughput_items_s"] == pytest.approx(expected, rel=1e-12)
    assert out.loc[["preprocess", "h2d", "d2h", "postprocess"], "throughput_items_s"].isna().all()
    assert out.loc["e2e", "wall_throughput_items_s"] == pytest.approx(401 * 4 / 2.0)
    assert out.drop(index="e2e")["wall_throughput_items_s"].isna().all()


def test_throughput_with_varying_items(make_samples):
    samples = make_samples("r", n_measure=100, batch=8)
    samples.loc[samples["iteration"] == 99, "items"] = 3  # a short last batch
    out = summarize(samples, stages="e2e").iloc[0]
    e2e = samples[samples["stage"] == "e2e"]
    assert out["throughput_items_s"] == pytest.approx(
        np.median(e2e["items"] / (e2e["host_ns"] / 1e9)), rel=1e-12
    )


def test_device_columns(make_samples, concat_samples):
    samples = concat_samples(
        make_samples("gpu", n_measure=100, device=True),
        make_samples("cpu", n_measure=100, gpu=False, seed=2),
    )
    out = summarize(samples).set_index(["run_id", "stage"])
    comp = out.loc[("gpu", "compute")]
    dev = samples[(samples["run_id"] == "gpu") & (samples["stage"] == "compute")]["device_ns"]
    assert comp["device_n"] == 100
    assert comp["device_p50_ms"] == pytest.approx(np.median(dev) / 1e6)
    assert comp["device_mean_ms"] == pytest.approx(np.mean(dev) / 1e6)
    assert out.loc[("gpu", "e2e"), "device_n"] == 0
    assert out.loc["cpu", "device_p50_ms"].isna().all()


def test_filters_phase_stages_and_non_ok_runs(make_samples, concat_samples):
    samples = concat_samples(
        make_samples("ok1", n_warmup=10, n_measure=50),
        make_samples("bad", n_measure=50, seed=1),
        make_samples("orphan", n_measure=50, seed=2),
    )
    runs = pd.DataFrame({"run_id": ["ok1", "bad"], "status": ["ok", "failed"]})
    out = summarize(samples, runs, stages=["e2e"])
    assert out["run_id"].tolist() == ["ok1"] and out["n"].tolist() == [50]
    warm = summarize(samples, phase="warmup", stages="e2e")
    assert warm["run_id"].tolist() == ["ok1"] and warm["n"].tolist() == [10]
    assert summarize(samples, phase=None, stages="e2e").set_index("run_id").loc["ok1", "n"] == 60


def test_plain_string_columns_work_too(make_samples):
    samples = make_samples(n_measure=50).astype({"run_id": str, "stage": str, "phase": str})
    assert len(summarize(samples)) == 6


def test_empty_and_bad_input(make_samples):
    samples = make_samples(n_measure=10)
    empty = summarize(samples, stages="nope")
    assert empty.empty and list(empty.columns) == list(SUMMARY_COLUMNS)
    with pytest.raises(PerflabError, match="ci_method"):
        summarize(samples, ci_method="magic")
    with pytest.raises(PerflabError, match="host_ns"):
        summarize(samples.drop(columns="host_ns"))


def test_harness_gap_is_e2e_minus_stages(make_samples, concat_samples):
    samples = concat_samples(
        make_samples("a", n_measure=300, gap_ms=0.05, enqueue_ms=0.5),
        make_samples("b", n_measure=300, gap_ms=0.2, gpu=False, seed=1),
    )
    gap = harness_gap(samples).set_index("run_id")
    assert gap.loc["a", "gap_p50_ms"] == pytest.approx(0.05, rel=0.02)  # enqueue not subtracted
    assert gap.loc["b", "gap_p50_ms"] == pytest.approx(0.2, rel=0.02)
    assert gap.loc["a", "gap_pct"] == pytest.approx(
        100 * gap.loc["a", "gap_p50_ms"] / gap.loc["a", "e2e_p50_ms"]
    )
    assert (gap["n"] == 300).all()


def test_warnings_name_their_numbers(make_samples, concat_samples):
    samples = concat_samples(
        make_samples("noisy", n_measure=700, jitter=0.08),
        make_samples("short", n_measure=40, seed=1),
        make_samples("launch", n_measure=700, enqueue_ms=1.9, seed=2),
        make_samples(
            "copy",
            n_measure=700,
            seed=3,
            stages_ms={
                "preprocess": 0.1,
                "h2d": 2.5,
                "compute": 2.0,
                "d2h": 0.1,
                "postprocess": 0.1,
            },
        ),
        make_samples("quiet", n_measure=700, jitter=0.001, seed=4),
    )
    runs = pd.DataFrame(
        {
            "run_id": ["noisy", "short", "launch", "copy", "quiet"],
            "status": "ok",
            "precision": "fp16",
            "precision_effective": "fp16",
            "precision_mismatch": [False, False, False, False, True],
        }
    )
    telemetry = pd.DataFrame({"run_id": ["launch"] * 4, "throttled": [True, False, False, False]})
    w = warnings(samples, runs, telemetry)
    got = set(zip(w["run_id"], w["warning"]))
    assert ("noisy", "high_cv") in got
    assert ("short", "few_samples_p99") in got and ("short", "few_samples_p90") in got
    assert ("noisy", "few_samples_p99") not in got
    assert ("launch", "enqueue_bound") in got
    assert ("copy", "transfer_bound") in got
    assert ("launch", "throttled") in got
    assert ("quiet", "precision_mismatch") in got
    assert not any(r == "quiet" and k != "precision_mismatch" for r, k in got)
    row = w[(w["run_id"] == "short") & (w["warning"] == "few_samples_p99")].iloc[0]
    assert (row["value"], row["threshold"]) == (40, 662)
    thr = w[w["warning"] == "throttled"].iloc[0]
    assert thr["value"] == pytest.approx(25.0)
    assert all("\n" not in m for m in w["message"])


def test_warnings_empty_frame_has_columns(make_samples):
    w = warnings(make_samples(n_measure=700, jitter=0.001))
    assert w.empty and list(w.columns) == list(stats.WARNING_COLUMNS)


def test_quantile_disc_reads_the_rank_rank_fraction_names():
    """The rule the summary's order-statistic CIs rest on: DuckDB's discrete quantile at
    rank_fraction(k, n) is the value at 0-based rank k, for every k of many n."""
    import duckdb

    rng = np.random.default_rng(3)
    con = duckdb.connect()
    for n in [*range(1, 80), 661, 662, 1000, 33_333, 100_003]:
        x = rng.permutation(n).astype(np.int64) * 7 + 11  # distinct values: a rank has one
        ks = np.arange(n) if n < 80 else np.unique(rng.integers(0, n, size=40))
        ks = np.unique(np.concatenate([ks, [0, n - 1]]))
        fractions = ", ".join(repr(stats.rank_fraction(int(k), n)) for k in ks)
        con.register("x", pd.DataFrame({"v": x}))
        got = con.execute(f"SELECT quantile_disc(v, [{fractions}]) FROM x").fetchall()[0][0]
        assert got == np.sort(x)[ks].tolist(), n


def test_order_statistic_cis_and_percentiles_are_read_at_exact_ranks():
    """Groups of many sizes in one frame (two stages of one run with different n too): every CI
    bound is the sorted group's value at the binomial rank, to the last bit, and every percentile
    the linear interpolation that the other analyses use (SortedGroups.quantile; DuckDB's
    arithmetic may round the last bit differently)."""
    rng = np.random.default_rng(5)
    frames, groups = [], {}
    for i, n in enumerate([5, 40, 367, 368, 661, 662, 1000, 1000, 2501]):
        for stage, k in (("compute", n), ("e2e", n + i % 2)):
            x = rng.integers(10**5, 10**7, size=k)
            groups[(f"r{i}", stage)] = x
            frames.append(pd.DataFrame({"run_id": f"r{i}", "stage": stage, "host_ns": x}))
    out = summarize(pd.concat(frames, ignore_index=True), phase=None, ci=0.95)
    out = out.set_index(["run_id", "stage"])
    for key, x in groups.items():
        row, v, n = out.loc[key], np.sort(x), len(x)
        sg = stats.sort_groups(np.zeros(n, dtype=np.int64), x)
        for q in (0.5, 0.9, 0.95, 0.99):
            assert row[f"p{round(q * 100)}_ms"] == pytest.approx(
                sg.quantile(q)[0] / 1e6, rel=4e-16, abs=0
            ), (key, q)
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            lo, hi = order_stat_ci_ranks(np.array([n]), q, 0.95)
            want_lo = v[lo[0]] / 1e6 if lo[0] >= 0 else np.nan
            want_hi = v[hi[0]] / 1e6 if hi[0] < n else np.nan
            np.testing.assert_equal(row[f"{name}_ci_low_ms"], want_lo, err_msg=str((key, q)))
            np.testing.assert_equal(row[f"{name}_ci_high_ms"], want_hi, err_msg=str((key, q)))
        assert row["mean_ms"] == (int(x.sum()) / n) / 1e6  # exact sums, rounded once
        assert row["min_ms"] == v[0] / 1e6 and row["max_ms"] == v[-1] / 1e6


def test_binomial_ppf_is_scipy_stats_binom_ppf():
    """Away from exact ties (a CDF equal to p in exact arithmetic, which only p = q = 0.5 with
    odd n gives here, and which scipy resolves either way), the bisection is scipy's ppf."""
    from scipy.stats import binom

    n = np.concatenate([np.arange(1, 1500), [2_000, 9_999, 33_333, 100_003, 10**6]])
    for q in (0.5, 0.9, 0.95, 0.99):
        for p in (0.005, 0.025, 0.05, 0.3, 0.7, 0.95, 0.975, 0.995):
            np.testing.assert_array_equal(
                stats.binomial_ppf(p, n, q), binom.ppf(p, n, q).astype(np.int64), err_msg=(q, p)
            )


def test_binomial_ppf_at_an_exact_tie():
    # P(Binomial(7, 0.5) <= 3) is exactly 0.5: 3 is the smallest k that reaches it.
    assert stats.binomial_ppf(0.5, np.array([7, 35]), 0.5).tolist() == [3, 17]


def test_samples_of_seconds_sum_exactly_past_the_64_bit_square():
    """Squares of samples over about 3 s overflow 64 bits: the sums are then taken as 128-bit
    integers, and the moments stay exact."""
    x = np.array([4_000_000_000, 4_000_000_003, 5_000_000_001, 9_000_000_007], dtype=np.int64)
    samples = pd.DataFrame({"run_id": "r", "stage": "e2e", "host_ns": x})
    row = summarize(samples, phase=None, ci=None).iloc[0]
    a, b, k = int(x.sum()), sum(int(v) * int(v) for v in x), len(x)
    assert row["mean_ms"] == (a / k) / 1e6
    assert row["std_ms"] == np.sqrt((k * b - a * a) / (k * (k - 1))) / 1e6
