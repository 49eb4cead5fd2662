"""batching() fits, knee and best batch; batching_curve() rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from perflab.analysis.batching import batching, batching_curve, knee
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
        for i, b in enumerate([1, 1, 4])
    ]
    runs = make_runs(["r0", "r1", "r2"], batch_size=[1, 1, 4], study=["day1", "day2", "day1"])
    curve = batching_curve(concat_samples(*frames), runs).set_index("batch_size")
    assert curve.loc[1, "n_runs"] == 2 and curve.loc[4, "n_runs"] == 1
    fit = batching(concat_samples(*frames), runs, stage="compute").iloc[0]
    assert fit["n_batches"] == 2 and fit["b_ms_per_item"] == pytest.approx(0.5, rel=0.03)


def test_single_batch_size_has_no_fit(make_samples, make_runs):
    out = batching(make_samples("r", n_measure=50), make_runs(["r"]), stage="e2e")
    assert out["n_batches"].tolist() == [1] and out["a_ms"].isna().all()


def test_needs_runs(make_samples):
    with pytest.raises(PerflabError, match="runs"):
        batching(make_samples(n_measure=10), None)
    with pytest.raises(PerflabError, match="batch_size"):
        batching(make_samples(n_measure=10), pd.DataFrame({"run_id": ["r0"]}))
