"""Plots draw what the analysis computed: the tests read the drawn artists, not pixels."""

from __future__ import annotations

import os

os.environ["MPLBACKEND"] = "Agg"  # before pyplot is imported anywhere in this process

import itertools
import math
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

import perflab
from perflab import plots
from perflab.labels import run_labels
from perflab.plots import PALETTE, color
from perflab.stages import stage_rank


@pytest.fixture(scope="module")
def results(tmp_path_factory, run_synthetic):
    """Three batch sizes of a synthetic study with copies, jitter and a warmup pattern."""
    return perflab.open(run_synthetic(tmp_path_factory.mktemp("plots") / "study", study="plots"))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _same_color(a, b) -> bool:
    return np.allclose(mcolors.to_rgba(a)[:3], mcolors.to_rgba(b)[:3])


def _tick_run_ids(ax, labels: dict[str, str]) -> dict[float, str]:
    """y position -> run id, from the y tick labels the plot wrote."""
    by_label = {v.replace("$", r"\$"): k for k, v in labels.items()}
    return {
        t: by_label[lab.get_text()]
        for t, lab in zip(ax.get_yticks(), ax.get_yticklabels(), strict=True)
    }


# ---------------------------------------------------------------------------- palette


def test_colours_come_from_the_one_palette():
    for kind, table in PALETTE.items():
        for name, value in table.items():
            assert color(name, kind) == value
    assert set(PALETTE) == {"stage", "backend", "precision"}
    assert {"preprocess", "h2d", "compute", "d2h", "postprocess", "gap", "enqueue"} <= set(
        PALETTE["stage"]
    )


def test_unknown_names_get_stable_fallback_colours():
    a = color("my-new-backend", "backend")
    assert a == color("my-new-backend", "backend")
    assert a in plots.FALLBACK_COLORS
    names = [f"resnet18 · b · {p}" for p in ("fp32", "int8", "fp16", "bf16")]
    distinct = plots.distinct_colors(names)
    assert len(set(distinct.values())) == len(names)


def test_series_styles_use_backend_colour_and_precision_marker():
    keys = pd.DataFrame(
        {"group": ["x", "y"], "backend": ["ort-cpu", "ort-cpu"], "precision": ["fp32", "int8"]}
    )
    styles = plots.series_styles(keys)
    assert styles["x"]["color"] == styles["y"]["color"] == PALETTE["backend"]["ort-cpu"]
    assert styles["x"]["marker"] != styles["y"]["marker"]


# ---------------------------------------------------------------------------- stage breakdown


def test_stacked_bar_widths_are_the_breakdown_medians(results):
    breakdown = results.breakdown()
    ax = plots.stage_breakdown(breakdown, runs=results.runs)
    labels = run_labels(results.runs, breakdown["run_id"])
    y_to_run = _tick_run_ids(ax, labels)
    expected = breakdown[breakdown["kind"].isin(["stage", "gap"])].set_index(["run_id", "stage"])
    seen = 0
    for patch in ax.patches:
        gid = patch.get_gid() or ""
        if not gid.startswith("host:"):
            continue
        stage = gid.split(":", 1)[1]
        run_id = y_to_run[round(patch.get_y() + patch.get_height() / 2)]
        assert patch.get_width() == pytest.approx(expected.loc[(run_id, stage), "p50_ms"])
        assert _same_color(patch.get_facecolor(), color(stage))
        seen += 1
    assert seen == len(expected)
    # The segments of a bar start where the previous one ended, in pipeline order.
    for run_id in breakdown["run_id"].unique():
        segs = sorted(
            (
                p
                for p in ax.patches
                if (p.get_gid() or "").startswith("host:")
                and y_to_run[round(p.get_y() + p.get_height() / 2)] == run_id
            ),
            key=lambda p: p.get_x(),
        )
        for a, b in itertools.pairwise(segs):
            assert b.get_x() == pytest.approx(a.get_x() + a.get_width())
        order = [p.get_gid().split(":")[1] for p in segs]
        assert order == sorted(order, key=stage_rank)


def test_e2e_tick_marks_the_e2e_median(results):
    breakdown = results.breakdown()
    ax = plots.stage_breakdown(breakdown, runs=results.runs)
    e2e = sorted(breakdown.loc[breakdown["stage"] == "e2e", "p50_ms"])
    ticks = sorted(line.get_xdata()[0] for line in ax.lines if line.get_gid() == "e2e")
    assert ticks == pytest.approx(e2e)


def test_device_times_stack_beside_the_host_bar(results):
    breakdown = results.breakdown()
    summary = results.summary(ci=None)
    run_id = summary["run_id"].iloc[0]
    device = {"h2d": 0.04, "compute": 0.25, "d2h": 0.03}
    for stage, ms in device.items():
        summary.loc[
            (summary["run_id"] == run_id) & (summary["stage"] == stage), "device_p50_ms"
        ] = ms
    ax = plots.stage_breakdown(breakdown, runs=results.runs, summary=summary)
    bars = {
        p.get_gid().split(":")[1]: p
        for p in ax.patches
        if (p.get_gid() or "").startswith("device:")
    }
    assert {s: p.get_width() for s, p in bars.items()} == pytest.approx(device)
    assert all(p.get_hatch() for p in bars.values())
    host_y = {p.get_y() for p in ax.patches if (p.get_gid() or "").startswith("host:")}
    assert not host_y & {p.get_y() for p in bars.values()}  # beside, not on top


# ---------------------------------------------------------------------------- distributions


@pytest.mark.parametrize("kind", ["violin", "ecdf"])
def test_percentile_marks_equal_the_summary(results, kind):
    summary = results.summary(ci=None)
    e2e = summary[summary["stage"] == "e2e"].set_index("run_id")
    ax = plots.latency_distribution(results.samples, runs=results.runs, kind=kind)
    for q in (50, 90, 99):
        marks = sorted(line.get_xdata()[0] for line in ax.lines if line.get_gid() == f"p{q}")
        assert marks == pytest.approx(sorted(e2e[f"p{q}_ms"]))


# ---------------------------------------------------------------------------- warmup


def test_warmup_changepoint_lines_at_detected_iterations(results):
    warm = results.warmup()
    for run_id in warm["run_id"]:
        row = warm.set_index("run_id").loc[run_id]
        ax = plots.warmup_series(results.samples, run_id=run_id, warmup=warm)
        lines = sorted(line.get_xdata()[0] for line in ax.lines if line.get_gid() == "changepoint")
        assert lines == list(row["changepoints"])
        plt.close(ax.figure)


def test_warmup_segments_and_steady_band(results):
    run_id = results.runs["run_id"].iloc[0]
    row = {
        "changepoints": [4, 8],
        "segment_p50_ms": [2.0, 1.5, 0.9],
        "steady_iteration": 8,
        "classification": "warmup",
    }
    ax = plots.warmup_series(results.samples, run_id=run_id, warmup=row)
    assert [line.get_xdata()[0] for line in ax.lines if line.get_gid() == "changepoint"] == [4, 8]
    levels = sorted(c.get_segments()[0][0][1] for c in ax.collections if c.get_gid() == "segment")
    assert levels == pytest.approx([0.9, 1.5, 2.0])
    band = [c for c in ax.collections if c.get_gid() == "steady"]
    assert len(band) == 1
    xs = band[0].get_paths()[0].vertices[:, 0]
    assert xs.min() == pytest.approx(8)


# ---------------------------------------------------------------------------- batching


def test_batching_fit_line_has_the_fitted_slope(results):
    curve = results.batching_curve()
    fit = results.batching(stage="e2e")
    ax = plots.batching(curve, fit=fit, stage="e2e")
    fitted = [line for line in ax.lines if line.get_gid() == "fit"]
    assert len(fitted) == len(fit)
    for line, row in zip(fitted, fit.itertuples(index=False), strict=True):
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        assert (y[-1] - y[0]) / (x[-1] - x[0]) == pytest.approx(row.b_ms_per_item)
        assert y[0] - row.b_ms_per_item * x[0] == pytest.approx(row.a_ms)
    points = next(line for line in ax.lines if line.get_gid() == "p50")
    e2e = curve[curve["stage"] == "e2e"].sort_values("batch_size")
    assert list(points.get_ydata()) == pytest.approx(list(e2e["p50_ms"]))


def test_batching_knee_and_throughput(results):
    curve = results.batching_curve()
    fit = results.batching(stage="e2e").assign(knee_batch=2.0)
    ax = plots.batching(curve, fit=fit, metric="throughput")
    assert [line.get_xdata()[0] for line in ax.lines if line.get_gid() == "knee"] == [2.0]
    e2e = curve[curve["stage"] == "e2e"].sort_values("batch_size")
    points = next(line for line in ax.lines if line.get_gid() == "throughput")
    assert list(points.get_ydata()) == pytest.approx(list(e2e["throughput_items_s"]))
    row = fit.iloc[0]
    line = next(line for line in ax.lines if line.get_gid() == "fit")
    x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    assert y == pytest.approx(1000 * x / (row.a_ms + row.b_ms_per_item * x))


# ---------------------------------------------------------------------------- forest


def test_forest_points_are_ratios_and_bars_the_cis(results):
    compared = results.compare(by="batch_size")
    assert len(compared) == 2
    ax = plots.forest(compared)
    points, lows, highs = [], [], []
    for container in ax.containers:
        if not isinstance(container, ErrorbarContainer):
            continue
        data_line, _, bar_cols = container.lines
        points += list(data_line.get_xdata())
        for seg in bar_cols[0].get_segments():
            lows.append(seg[:, 0].min())
            highs.append(seg[:, 0].max())
    assert sorted(points) == pytest.approx(sorted(compared["ratio"]))
    assert sorted(lows) == pytest.approx(sorted(compared["ci_low"]))
    assert sorted(highs) == pytest.approx(sorted(compared["ci_high"]))
    (band,) = [p for p in ax.patches if p.get_gid() == "same-band"]
    t = float(compared["threshold"].iloc[0])
    x0, x1 = band.get_patch_transform().transform([[0, 0], [1, 1]])[:, 0]
    assert (x0, x1) == pytest.approx((1 - t, 1 + t))


def test_forest_colours_by_verdict():
    frame = pd.DataFrame(
        {
            "a": ["x", "x"],
            "b": ["y", "z"],
            "config": ["c", "c"],
            "stage": ["e2e", "e2e"],
            "ratio": [0.5, 1.001],
            "ci_low": [0.45, 0.99],
            "ci_high": [0.55, 1.01],
            "verdict": ["faster", "same"],
            "threshold": [0.01, 0.01],
        }
    )
    ax = plots.forest(frame)
    gids = {
        c.lines[0].get_gid(): c.lines[0].get_color()
        for c in ax.containers
        if isinstance(c, ErrorbarContainer)
    }
    assert _same_color(gids["ratio:faster"], plots.VERDICT_COLORS["faster"])
    assert _same_color(gids["ratio:same"], plots.VERDICT_COLORS["same"])


# ---------------------------------------------------------------------------- roofline


def _roof_rows(run_ids, achieved, intensity, peak, bandwidth, device):
    return pd.DataFrame(
        {
            "run_id": run_ids,
            "stage": "compute",
            "achieved_tflops": achieved,
            "intensity_flops_per_byte": intensity,
            "peak_tflops": peak,
            "bandwidth_gbs": bandwidth,
            "device_peak_name": device,
        }
    )


def test_roofline_points_roofs_and_predicted_markers():
    measured = _roof_rows(["r1", "r2"], [2.0, 3.0], [10.0, 40.0], 6.463, 256.0, "GTX 1070")
    predicted = _roof_rows(["r1", "r2"], [9.0, 20.0], [10.0, 40.0], 35.58, 936.0, "RTX 3090")
    runs = pd.DataFrame({"run_id": ["r1", "r2"], "precision": ["fp32", "fp16"]})
    ax = plots.roofline(measured, predicted=predicted, runs=runs)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    got = sorted(
        (line.get_xdata()[0], line.get_ydata()[0])
        for line in ax.lines
        if line.get_gid() == "measured"
    )
    assert got == [(10.0, 2.0), (40.0, 3.0)]
    hollow = [line for line in ax.lines if line.get_gid() == "predicted"]
    assert sorted(line.get_ydata()[0] for line in hollow) == [9.0, 20.0]
    assert all(line.get_markerfacecolor() == "none" for line in hollow)
    assert any("predicted" in t.get_text() for t in ax.get_legend().get_texts())
    roof = next(line for line in ax.lines if line.get_gid() == "roof")
    x, y = np.asarray(roof.get_xdata()), np.asarray(roof.get_ydata())
    assert y == pytest.approx(np.minimum(6.463, 256.0 * x / 1000))
    assert all(
        line.get_linestyle() == "--" for line in ax.lines if line.get_gid() == "roof-predicted"
    )


def test_roofline_without_flops_says_so(results):
    ax = plots.roofline(results.roofline())
    assert any("no roofline" in t.get_text() for t in ax.texts)


# ---------------------------------------------------------------------------- timeline


def test_timeline_bars_are_stage_samples(results):
    run_id = results.runs["run_id"].iloc[0]
    samples = results.samples
    ax = plots.timeline(samples, run_id=run_id, iterations=[20, 21])
    mine = samples[(samples["run_id"] == run_id) & samples["iteration"].isin([20, 21])]
    t0 = mine["start_ns"].min()
    compute = mine[mine["stage"] == "compute"].sort_values("start_ns")
    bars = sorted((p for p in ax.patches if p.get_gid() == "compute"), key=lambda p: p.get_x())
    assert [p.get_width() for p in bars] == pytest.approx(list(compute["host_ns"] / 1e6))
    assert [p.get_x() for p in bars] == pytest.approx(list((compute["start_ns"] - t0) / 1e6))
    assert all(_same_color(p.get_facecolor(), color("compute")) for p in bars)


def test_timeline_kernel_lane_aligned_by_trace_ranges(results):
    run_id = results.runs["run_id"].iloc[0]
    samples = results.samples
    mine = samples[(samples["run_id"] == run_id) & (samples["iteration"] == 20)]
    compute = mine[mine["stage"] == "compute"].iloc[0]
    offset = 10_000_000_000  # the trace's clock starts elsewhere
    ranges = pd.DataFrame(
        {
            "run_id": [run_id],
            "iteration": [20],
            "stage": ["compute"],
            "start_ns": [compute["start_ns"] + offset],
        }
    )
    kernels = pd.DataFrame(
        {
            "run_id": [run_id],
            "name": ["gemm"],
            "start_ns": [compute["start_ns"] + offset + 1000],
            "end_ns": [compute["start_ns"] + offset + 51000],
        }
    )
    ax = plots.timeline(
        samples, run_id=run_id, iterations=[20], trace_kernels=kernels, trace_ranges=ranges
    )
    t0 = mine["start_ns"].min()
    bar = next(p for p in ax.patches if p.get_gid() == "kernel")
    assert bar.get_x() == pytest.approx((compute["start_ns"] + 1000 - t0) / 1e6)
    assert bar.get_width() == pytest.approx(0.05)
    assert any("kernels (trace)" in t.get_text() for t in ax.get_yticklabels())


# ---------------------------------------------------------------------------- robustness


def test_empty_inputs_draw_a_message_instead_of_raising():
    empty = pd.DataFrame(
        columns=[
            "run_id",
            "stage",
            "phase",
            "iteration",
            "start_ns",
            "host_ns",
            "device_ns",
            "kind",
            "p50_ms",
            "group",
            "batch_size",
            "speedup",
            "pair",
        ]
    )
    for draw in (
        lambda: plots.stage_breakdown(empty),
        lambda: plots.latency_distribution(empty),
        lambda: plots.warmup_series(empty, run_id="x"),
        lambda: plots.batching(empty),
        lambda: plots.forest(empty),
        lambda: plots.roofline(empty),
        lambda: plots.timeline(empty, run_id="x"),
        lambda: plots.speedups(empty),
        lambda: plots.layer_profile(empty.assign(layer=[], total_ms=[])),
    ):
        ax = draw()
        assert ax.texts, draw


def test_dollar_signs_in_data_are_not_mathtext(results):
    runs = results.runs.assign(label="cost $x$ of $")
    breakdown = results.breakdown().drop(columns="label")
    ax = plots.stage_breakdown(breakdown, runs=runs)
    ax.figure.canvas.draw()  # malformed mathtext would raise here
    assert all(r"\$" in t.get_text() for t in ax.get_yticklabels())


def test_speedups_mark_predicted_bars():
    data = pd.DataFrame(
        {
            "pair": ["B vs A"] * 4,
            "stage": ["compute", "compute", "e2e", "e2e"],
            "kind": ["measured", "predicted", "measured", "predicted"],
            "speedup": [2.0, 2.5, 1.5, 1.8],
            "ci_low": [1.9, math.nan, 1.4, math.nan],
            "ci_high": [2.1, math.nan, 1.6, math.nan],
        }
    )
    ax = plots.speedups(data)
    predicted = [p for p in ax.patches if p.get_gid() == "predicted"]
    measured = [p for p in ax.patches if p.get_gid() == "measured"]
    assert sorted(p.get_height() for p in predicted) == [1.8, 2.5]
    assert sorted(p.get_height() for p in measured) == [1.5, 2.0]
    assert all(p.get_hatch() for p in predicted) and not any(p.get_hatch() for p in measured)
    assert any("predicted" in t.get_text() for t in ax.get_legend().get_texts())


def test_import_perflab_leaves_plotting_and_jupyter_out():
    code = (
        "import sys, perflab, perflab.report, perflab.display, perflab.cli; "
        "print(','.join(m for m in ('matplotlib', 'seaborn', 'nbclient', 'nbconvert', "
        "'papermill', 'IPython') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(perflab.__file__).parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == ""
