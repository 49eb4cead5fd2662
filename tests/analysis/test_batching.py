"""batching() fits, knee and best batch; batching_curve() rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from perflab.analysis.batching import batching, batching_curve, is_bimodal, knee
from perflab.errors import PerflabError

BATCHES = [1, 2, 4, 8, 16, 32]
STAGES_MS = {"preprocess": 0.2, "compute": 1.0, "postprocess": 0.1}


@pytest.fixture
def sweep(make_samples, concat_samples, make_runs):
    """compute = 1 ms + per_item ms x batch over BATCHES, for fp32 (0.5) and fp16 (0.25)."""
    frames, ids, sizes, precisions = [], [], [], []
    for precision, per_item in (("fp32", 0.5), ("fp16", 0.25)):
        for i, b in enumerate(BATCHES):
            run_id = f"{precision}-b{b}"
            frames.append(
                make_samples(
                    run_id,
                    n_measure=300,
                    batch=b,
                    stages_ms=STAGES_MS,
                    compute_ms_per_item=per_item,
                    gpu=False,
                    jitter=0.01,
                    seed=i,
                )
            )
            ids.append(run_id)
            sizes.append(b)
            precisions.append(precision)
    return concat_samples(*frames), make_runs(ids, batch_size=sizes, precision=precisions)


def test_linear_fit_recovers_a_and_b_within_3_percent(sweep):
    samples, runs = sweep
    out = batching(samples, runs, stage="compute")
    fp32 = out[out["precision"] == "fp32"].iloc[0]
    assert fp32["a_ms"] == pytest.approx(1.0, rel=0.03)
    assert fp32["b_ms_per_item"] == pytest.approx(0.5, rel=0.03)
    assert fp32["r2"] > 0.999 and fp32["n_batches"] == 6
    fp16 = out[out["precision"] == "fp16"].iloc[0]
    assert fp16["b_ms_per_item"] == pytest.approx(0.25, rel=0.03)


def test_groups_split_by_config_and_have_readable_labels(sweep):
    samples, runs = sweep
    out = batching(samples, runs)
    assert out["group"].nunique() == 2
    assert all("fp32" in g or "fp16" in g for g in out["group"])
    assert set(out["stage"]) == {"preprocess", "compute", "postprocess", "e2e"}
    assert "batch_size" not in out.columns


def test_knee_where_doubling_gains_fall_under_10_percent(sweep):
    samples, runs = sweep
    # Throughput b / (1 + 0.5 b) gains 1 / (1 + b) per doubling from b: 11% at 8, 5.9% at 16.
    out = batching(samples, runs, stage="compute")
    assert out.set_index("precision").loc["fp32", "knee_batch"] == 16


def test_knee_function_edge_cases():
    assert knee(np.array([1, 2, 4]), np.array([100, 105, 108])) == 1
    assert math.isnan(knee(np.array([1, 2, 4]), np.array([100, 190, 360])))
    assert math.isnan(knee(np.array([4]), np.array([100])))
    # Non-power-of-two steps are rescaled to one doubling: 1 -> 4 with +21% is 10% per doubling.
    assert knee(np.array([1, 4, 16]), np.array([100, 120, 130])) == 1


def test_best_batch_under_a_p99_target(sweep):
    samples, runs = sweep
    out = batching(samples, runs, stage="e2e", p99_target_ms=6.0).set_index("precision")
    # e2e is about 1.3 + 0.5 b (fp32): 8 items give ~5.4 ms, 16 items ~9.4 ms.
    assert out.loc["fp32", "best_batch_under_p99_ms"] == 8
    assert out.loc["fp16", "best_batch_under_p99_ms"] == 16
    assert out.loc["fp32", "p99_target_ms"] == 6.0
    none = batching(samples, runs, stage="e2e", p99_target_ms=0.1)
    assert none["best_batch_under_p99_ms"].isna().all()
    assert batching(samples, runs, stage="e2e")["best_batch_under_p99_ms"].isna().all()


def test_curve_rows(sweep):
    samples, runs = sweep
    curve = batching_curve(samples, runs)
    fp32 = curve[curve["precision"] == "fp32"].set_index("batch_size")
    assert list(fp32.index) == BATCHES
    assert (fp32["stage"] == "e2e").all()
    np.testing.assert_allclose(fp32["per_item_ms"], fp32["p50_ms"] / fp32.index)
    np.testing.assert_allclose(fp32["throughput_items_s"], 1000 * fp32.index / fp32["p50_ms"])
    assert (fp32["p99_ms"] >= fp32["p50_ms"]).all()
    assert np.isnan(fp32.loc[1, "gain_per_doubling_pct"])
    assert fp32.loc[2, "gain_per_doubling_pct"] == pytest.approx(
        100 * (fp32.loc[2, "throughput_items_s"] / fp32.loc[1, "throughput_items_s"] - 1)
    )


def test_repeated_batch_sizes_are_pooled_by_median(make_samples, concat_samples, make_runs):
    frames = [
        make_samples(
            f"r{i}",
            n_measure=100,
            batch=b,
            gpu=False,
            seed=i,
            stages_ms=STAGES_MS,
            compute_ms_per_item=0.5,
        )
        for i, b in enumerate([1, 1, 4, 8])
    ]
    runs = make_runs(
        ["r0", "r1", "r2", "r3"], batch_size=[1, 1, 4, 8], study=["day1", "day2", "day1", "day1"]
    )
    curve = batching_curve(concat_samples(*frames), runs).set_index("batch_size")
    assert curve.loc[1, "n_runs"] == 2 and curve.loc[4, "n_runs"] == 1
    fit = batching(concat_samples(*frames), runs, stage="compute").iloc[0]
    assert fit["n_batches"] == 3 and fit["b_ms_per_item"] == pytest.approx(0.5, rel=0.03)
    assert fit["fit_note"] == "" and not fit["bimodal"]


def test_single_batch_size_has_no_fit(make_samples, make_runs):
    out = batching(make_samples("r", n_measure=50), make_runs(["r"]), stage="e2e")
    assert out["n_batches"].tolist() == [1] and out["a_ms"].isna().all()
    assert out["fit_note"].iloc[0].startswith("1 batch size: no fit")


def test_two_batch_sizes_are_points_not_a_line(make_samples, concat_samples, make_runs):
    # Through two points any line fits with r2 = 1 (and a knee from one step is a guess).
    frames = [
        make_samples(f"r{b}", n_measure=50, batch=b, gpu=False, seed=b, compute_ms_per_item=0.5)
        for b in (1, 8)
    ]
    out = batching(concat_samples(*frames), make_runs(["r1", "r8"], batch_size=[1, 8]))
    row = out.set_index("stage").loc["e2e"]
    assert row["n_batches"] == 2
    assert np.isnan(row["a_ms"]) and np.isnan(row["b_ms_per_item"]) and np.isnan(row["r2"])
    assert np.isnan(row["knee_batch"])
    assert "2 batch sizes: no fit" in row["fit_note"]


def test_negative_intercept_and_bimodal_stage_are_flagged(make_samples, concat_samples, make_runs):
    # Per-item cost that falls away at small batches: the fitted intercept is negative.
    frames = [
        make_samples(f"r{b}", n_measure=60, batch=b, gpu=False, seed=b, stages_ms={"compute": ms})
        for b, ms in ((1, 0.1), (2, 0.2), (4, 8.0), (8, 16.0))
    ]
    samples = concat_samples(*frames)
    # One run's compute in two clusters, a third of its iterations 3x slower.
    slow = (samples["run_id"] == "r2") & (samples["stage"] == "compute")
    slow &= samples["iteration"] % 3 == 0
    samples.loc[slow, "host_ns"] *= 3
    runs = make_runs(["r1", "r2", "r4", "r8"], batch_size=[1, 2, 4, 8])
    row = batching(samples, runs, stage="compute").iloc[0]
    assert row["a_ms"] < 0 and "negative intercept" in row["fit_note"]
    assert row["bimodal"] and "bimodal" in row["fit_note"]


def test_is_bimodal():
    rng = np.random.default_rng(0)
    one = np.sort(rng.lognormal(0, 0.3, 500))
    two = np.sort(np.concatenate([rng.normal(1, 0.01, 300), rng.normal(3, 0.05, 200)]))
    assert not is_bimodal(one) and is_bimodal(two)
    assert not is_bimodal(np.sort(np.r_[np.ones(99), 10.0]))  # one outlier is not a mode


def test_needs_runs(make_samples):
    with pytest.raises(PerflabError, match="runs"):
        batching(make_samples(n_measure=10), None)
    with pytest.raises(PerflabError, match="batch_size"):
        batching(make_samples(n_measure=10), pd.DataFrame({"run_id": ["r0"]}))
