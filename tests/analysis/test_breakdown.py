"""breakdown(): stage shares of e2e, the harness gap row, Amdahl speedups, the bottleneck."""

from __future__ import annotations

import pandas as pd
import pytest

from perflab.analysis.breakdown import BREAKDOWN_COLUMNS, breakdown

STAGES_MS = {"preprocess": 1.5, "h2d": 0.4, "compute": 5.0, "d2h": 0.3, "postprocess": 0.8}
GAP_MS = 0.05


def test_shares_match_configured_shares_within_one_point(make_samples):
    samples = make_samples("r", n_measure=500, stages_ms=STAGES_MS, gap_ms=GAP_MS, jitter=0.01)
    out = breakdown(samples).set_index("stage")
    total = sum(STAGES_MS.values()) + GAP_MS
    for stage, ms in {**STAGES_MS, "gap": GAP_MS}.items():
        assert out.loc[stage, "share"] == pytest.approx(ms / total, abs=0.01), stage
        assert out.loc[stage, "share_mean"] == pytest.approx(ms / total, abs=0.01), stage


def test_mean_shares_add_up_and_median_shares_nearly(make_samples):
    out = breakdown(make_samples("r", n_measure=300, jitter=0.03))
    parts = out[out["kind"].isin(["stage", "gap"])]
    assert parts["share_mean"].sum() == pytest.approx(1.0, abs=1e-9)
    assert parts["share"].sum() == pytest.approx(1.0, abs=0.01)
    assert out.set_index("stage").loc["e2e", "share"] == 1.0


def test_rows_kinds_and_order(make_samples):
    out = breakdown(make_samples("r", n_measure=100, enqueue_ms=0.2))
    assert list(out.columns) == list(BREAKDOWN_COLUMNS)
    assert out["stage"].tolist() == [
        "preprocess",
        "h2d",
        "compute",
        "d2h",
        "postprocess",
        "gap",
        "e2e",
        "enqueue",
    ]
    assert out["kind"].tolist() == ["stage"] * 5 + ["gap", "total", "nested"]


def test_bottleneck_and_amdahl(make_samples):
    out = breakdown(
        make_samples("r", n_measure=300, stages_ms=STAGES_MS, enqueue_ms=0.2)
    ).set_index("stage")
    assert out["bottleneck"].sum() == 1 and out.loc["compute", "bottleneck"]
    e2e = out.loc["e2e", "p50_ms"]
    for stage in ("preprocess", "compute", "gap"):
        assert out.loc[stage, "speedup_if_free"] == pytest.approx(
            e2e / (e2e - out.loc[stage, "p50_ms"])
        )
    assert pd.isna(out.loc["e2e", "speedup_if_free"])
    assert pd.isna(out.loc["enqueue", "speedup_if_free"])


def test_preprocess_bound_cpu_run(make_samples):
    samples = make_samples(
        "cpu",
        n_measure=200,
        gpu=False,
        stages_ms={"preprocess": 6.0, "compute": 2.0, "postprocess": 0.5},
    )
    out = breakdown(samples).set_index("stage")
    assert "h2d" not in out.index
    assert out.loc["preprocess", "bottleneck"]


def test_runs_add_config_and_keep_ok_runs(make_samples, concat_samples, make_runs):
    samples = concat_samples(
        make_samples("a", n_measure=50), make_samples("b", n_measure=50, seed=1)
    )
    runs = make_runs(["a", "b"], status=["ok", "failed"], backend=["ort-cpu", "trt"])
    out = breakdown(samples, runs)
    assert set(out["run_id"]) == {"a"}
    assert (out["backend"] == "ort-cpu").all()
    assert list(out.columns[:7]) == [
        "run_id",
        "label",
        "model",
        "backend",
        "precision",
        "batch_size",
        "device_name",
    ]


def test_empty(make_samples):
    out = breakdown(make_samples(n_measure=10).iloc[0:0])
    assert out.empty
