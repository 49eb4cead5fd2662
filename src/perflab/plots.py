"""Axes-level plots of perflab results: tidy frames in, keyword-only options, the Axes out.

Every function takes the frames that `perflab.open(...)` and its analysis accessors return, draws
on `ax` (a new figure when None) and returns the Axes, like seaborn's axes-level functions. Colours
for stages, backends and precisions come from one place, `PALETTE`, through `color()`, so a stage
has the same colour in every figure of every report. Predicted values are always drawn hollow or
hatched and labelled "predicted", never like measurements.

Strings from the data become tick labels and legends; matplotlib would read a pair of "$" in them
as mathtext (and fail on malformed math), so they pass through `_text` first.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from perflab.errors import PerflabError
from perflab.labels import natural_key, run_labels
from perflab.stages import stage_rank
from perflab.store import LAYER_OP_PREFIX

# The one place colours are defined. Stages: host work in blues, copies in warm colours, compute in
# green, the harness gap in grey. Backends and precisions get their own fixed colours.
PALETTE: dict[str, dict[str, str]] = {
    "stage": {
        "preprocess": "#4e79a7",
        "h2d": "#f28e2b",
        "compute": "#59a14f",
        "d2h": "#e15759",
        "postprocess": "#76b7b2",
        "gap": "#bab0ac",
        "enqueue": "#edc948",
        "e2e": "#4d4d4d",
    },
    "backend": {
        "ort-cpu": "#4e79a7",
        "ort-cuda": "#59a14f",
        "ort-trt": "#8cd17d",
        "trt": "#76b900",
        "trtexec": "#2f6b00",
        "openvino": "#8e44ad",
        "torch-cpu": "#ee4c2c",
        "torch-cuda": "#b8321c",
        "synthetic": "#9c755f",
    },
    "precision": {
        "fp32": "#4e79a7",
        "fp16": "#f28e2b",
        "bf16": "#edc948",
        "int8": "#e15759",
        "best": "#59a14f",
    },
}
# Names not in PALETTE get one of these, chosen by a hash of the name, so an unknown backend or a
# config label has the same colour in every figure and every report.
FALLBACK_COLORS: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
)
# How predicted values look wherever they are drawn.
PREDICTED_HATCH = "//"
PREDICTED_ALPHA = 0.45
# Series that differ by precision inside one backend's colour are told apart by marker and line.
PRECISION_MARKERS: dict[str, str] = {
    "fp32": "o",
    "fp16": "s",
    "bf16": "D",
    "int8": "^",
    "best": "v",
}
PRECISION_LINESTYLES: dict[str, Any] = {
    "fp32": "-",
    "fp16": "--",
    "bf16": "-.",
    "int8": ":",
    "best": (0, (5, 1)),
}
PERCENTILE_STYLE: dict[int, dict[str, Any]] = {
    50: {"marker": "o", "linestyle": "-"},
    90: {"marker": "s", "linestyle": "--"},
    99: {"marker": "^", "linestyle": ":"},
}
SAME_BAND_COLOR = "#d9d9d9"


def color(name: Any, kind: str = "stage") -> str:
    """The colour of a stage, backend or precision (`kind`); any other name or kind gets a stable
    colour derived from the name."""
    table = PALETTE.get(kind, {})
    key = str(name)
    if key in table:
        return table[key]
    # A cryptographic digest, not crc32: crc32 is linear, so names that differ the same way
    # ("... fp32" / "... int8") would share their low bits and so their colour.
    digest = int.from_bytes(hashlib.blake2s(key.encode(), digest_size=4).digest(), "big")
    return FALLBACK_COLORS[digest % len(FALLBACK_COLORS)]


def colors(names: Iterable[Any], kind: str = "stage") -> dict[str, str]:
    """`color` for several names, as a mapping (seaborn's `palette=` takes it)."""
    return {str(n): color(n, kind) for n in names}


def series_styles(keys: pd.DataFrame, *, name: str = "group") -> dict[str, dict[str, Any]]:
    """Colour, marker and line style per series (rows of `keys`, one per series `name`).

    When backend and precision tell the series apart, the colour is the backend's and the marker
    and line style the precision's, so a figure reads like every other one. Otherwise the series
    get distinct colours in name order (hashing could give two of them the same colour).
    """
    k = keys.drop_duplicates(name)
    names = sorted(k[name].astype(str), key=natural_key)
    if {"backend", "precision"} <= set(k.columns) and not k.duplicated(
        ["backend", "precision"]
    ).any():
        rows = dict(
            zip(
                k[name].astype(str),
                zip(k["backend"].astype(str), k["precision"].astype(str), strict=True),
                strict=True,
            )
        )
        return {
            n: {
                "color": color(rows[n][0], "backend"),
                "marker": PRECISION_MARKERS.get(rows[n][1], "o"),
                "linestyle": PRECISION_LINESTYLES.get(rows[n][1], "-"),
            }
            for n in names
        }
    return {
        n: {"color": FALLBACK_COLORS[i % len(FALLBACK_COLORS)], "marker": "o", "linestyle": "-"}
        for i, n in enumerate(names)
    }


def distinct_colors(names: Iterable[Any], kind: str = "device") -> dict[str, str]:
    """Colours for the names of one figure: PALETTE's where it has them, the others distinct
    from each other (in sorted order), so no two series of a figure share a colour."""
    ordered = sorted(dict.fromkeys(str(n) for n in names), key=natural_key)
    table = PALETTE.get(kind, {})
    taken = {table[n] for n in ordered if n in table}
    spare = [c for c in FALLBACK_COLORS if c not in taken]
    out, k = {}, 0
    for n in ordered:
        if n in table:
            out[n] = table[n]
        else:
            out[n] = spare[k % len(spare)] if spare else color(n, kind)
            k += 1
    return out


def set_theme() -> None:
    """The look of perflab figures: seaborn's whitegrid, compact fonts, PNG-friendly size."""
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)
    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "figure.figsize": (9, 4.5),
            "axes.titlesize": "medium",
            "legend.fontsize": "small",
        }
    )


# --------------------------------------------------------------------------------------------
# Small shared pieces


def _text(value: Any) -> str:
    return str(value).replace("$", r"\$")


def _ax(ax: Axes | None, size: tuple[float, float] | None = None) -> Axes:
    if ax is not None:
        return ax
    _, new = plt.subplots(figsize=size)
    return new


def show() -> None:
    """Display the figures drawn so far now (in Jupyter, before what the cell shows next)."""
    plt.show()


def _plain_log_ticks(axis: Any) -> None:
    """Log-axis labels as plain numbers (0.5, 20, 1e+03), without minor-tick labels."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _empty(ax: Axes, message: str) -> Axes:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#666666")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def _run_attr(runs: pd.DataFrame | None, column: str) -> dict[str, str]:
    if runs is None or column not in runs.columns:
        return {}
    return dict(zip(runs["run_id"].astype(str), runs[column].astype(str), strict=True))


def _measured(
    samples: pd.DataFrame, *, stage: str | None = None, phase: str | None = "measure"
) -> pd.DataFrame:
    data = samples
    if phase is not None and "phase" in data.columns:
        data = data[data["phase"].astype(str) == phase]
    if stage is not None:
        data = data[data["stage"].astype(str) == stage]
    return data


# --------------------------------------------------------------------------------------------
# Latency distributions


def latency_distribution(
    samples: pd.DataFrame,
    *,
    runs: pd.DataFrame | None = None,
    stage: str = "e2e",
    kind: str = "violin",
    clock: str = "host",
    percentiles: Sequence[int] = (50, 90, 99),
    hue: str | None = "backend",
    log: bool | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Per-config distribution of one stage's measured latencies, p50/p90/p99 marked.

    `samples` as stored (run_id, phase, stage, host_ns, device_ns); `runs` gives labels and the
    `hue` column (backend, precision, ...; None colours each config on its own). `kind` is
    "violin" (one horizontal violin per config, percentile ticks across it) or "ecdf" (one
    cumulative curve per config, percentile markers on it). `clock` "device" uses device_ns.
    `log` sets a log time axis (default: when the configs' medians differ by more than 20x).
    Percentiles use linear interpolation, as `summary()` does, so the marks equal its p50/p90/p99.
    """
    if kind not in ("violin", "ecdf"):
        raise ValueError(f"kind must be 'violin' or 'ecdf', got {kind!r}")
    column = {"host": "host_ns", "device": "device_ns"}.get(clock)
    if column is None:
        raise ValueError(f"clock must be 'host' or 'device', got {clock!r}")
    data = _measured(samples, stage=stage)
    data = data[data[column].notna()] if column in data.columns else data.iloc[0:0]
    groups = {
        str(k): g[column].to_numpy(dtype=float) / 1e6
        for k, g in data.groupby(data["run_id"].astype(str), observed=True)
        if len(g)
    }
    n_groups = max(len(groups), 1)
    ax = _ax(ax, (9, 1.0 + 0.45 * n_groups) if kind == "violin" else (9, 4.5))
    if not groups:
        return _empty(ax, f"no measured {stage} samples ({clock} clock)")
    labels = run_labels(runs, groups)
    hues = _run_attr(runs, hue) if hue else {}
    order = sorted(groups, key=lambda r: natural_key(labels[r]))
    values = [groups[r] for r in order]
    fill = [color(hues.get(r, labels[r]), hue or "config") for r in order]
    pct = {r: np.percentile(groups[r], list(percentiles)) for r in order}
    medians = [p[0] for p in pct.values() if len(p)]
    if log is None:
        positive = [m for m in medians if m > 0]
        log = bool(positive) and max(positive) / min(positive) > 20
    if kind == "violin":
        positions = np.arange(len(order))
        parts = ax.violinplot(
            values, positions, orientation="horizontal", widths=0.8, showextrema=False
        )
        for body, c in zip(parts["bodies"], fill, strict=True):
            body.set_facecolor(c)
            body.set_edgecolor(c)
            body.set_alpha(0.55)
        for y, r in zip(positions, order, strict=True):
            for q, x in zip(percentiles, pct[r], strict=True):
                style = PERCENTILE_STYLE.get(q, {"linestyle": "-"})
                ax.plot(
                    [x, x],
                    [y - 0.38, y + 0.38],
                    color="#222222",
                    lw=1.4,
                    linestyle=style["linestyle"],
                    gid=f"p{q}",
                )
        ax.set_yticks(positions, [_text(labels[r]) for r in order])
        ax.set_ylim(-0.6, len(order) - 0.4)
        ax.invert_yaxis()
        ax.set_xlabel(f"{stage} latency, ms ({clock})")
        handles = [
            Line2D(
                [],
                [],
                color="#222222",
                linestyle=PERCENTILE_STYLE.get(q, {}).get("linestyle", "-"),
                label=f"p{q}",
            )
            for q in percentiles
        ]
    else:
        for r, c in zip(order, fill, strict=True):
            ax.ecdf(groups[r], color=c, label=_text(labels[r]), lw=1.5)
            for q, x in zip(percentiles, pct[r], strict=True):
                style = PERCENTILE_STYLE.get(q, {"marker": "o"})
                ax.plot(
                    [x], [q / 100], marker=style["marker"], color=c, ms=6, ls="none", gid=f"p{q}"
                )
        ax.set_ylabel("fraction of iterations")
        ax.set_xlabel(f"{stage} latency, ms ({clock})")
        handles = [
            Line2D([], [], color=c, lw=1.5, label=_text(labels[r]))
            for r, c in zip(order, fill, strict=True)
        ]
        handles += [
            Line2D(
                [],
                [],
                color="#222222",
                ls="none",
                marker=PERCENTILE_STYLE.get(q, {}).get("marker", "o"),
                label=f"p{q}",
            )
            for q in percentiles
        ]
    if log:
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
    ax.legend(handles=handles, loc="best", frameon=True)
    ax.set_title(f"{stage} latency distribution per config (measured phase)")
    return ax


# --------------------------------------------------------------------------------------------
# Timeline of a few iterations


def timeline(
    samples: pd.DataFrame,
    *,
    run_id: Any,
    iterations: Sequence[int] | None = None,
    n: int = 3,
    trace_kernels: pd.DataFrame | None = None,
    trace_ranges: pd.DataFrame | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Stages of a few iterations of one run as bars on a time axis (from samples' start_ns and
    host_ns), e2e as the outline above them, and trace kernels as a second lane when given.

    Default iterations: the first `n` measured ones. Kernel times are moved onto the run's clock
    with the trace's perflab ranges when `trace_ranges` has them (the median offset between a
    range and the stage sample of the same iteration); without them the first kernel is aligned
    with the start of the first compute stage shown, and the lane's label says so.
    """
    run_id = str(run_id)
    data = samples[samples["run_id"].astype(str) == run_id]
    ax = _ax(ax, (10, 3.2 if trace_kernels is None else 4.0))
    if data.empty:
        return _empty(ax, f"no samples for run {run_id}")
    if iterations is None:
        measured = _measured(data)
        pool = measured if not measured.empty else data
        iterations = sorted(pool["iteration"].unique())[:n]
    data = data[data["iteration"].isin(list(iterations))]
    if data.empty:
        return _empty(ax, "none of the requested iterations has samples")
    t0 = float(data["start_ns"].min())
    lanes = ["iteration (e2e)", "stages"]
    e2e = data[data["stage"].astype(str) == "e2e"]
    ax.barh(
        [0] * len(e2e),
        e2e["host_ns"].to_numpy(float) / 1e6,
        left=(e2e["start_ns"].to_numpy(float) - t0) / 1e6,
        height=0.5,
        facecolor="none",
        edgecolor=color("e2e"),
        lw=1.2,
        label="e2e",
    )
    for it, start in zip(e2e["iteration"], e2e["start_ns"], strict=True):
        ax.text((start - t0) / 1e6, 0, f" it {it}", va="center", ha="left", fontsize=8)
    parts = data[~data["stage"].astype(str).isin(["e2e"])]
    stages = sorted(parts["stage"].astype(str).unique(), key=stage_rank)
    for stage in stages:
        rows = parts[parts["stage"].astype(str) == stage]
        y = 1.25 if stage == "enqueue" else 1.0  # enqueue lies inside compute: drawn below it
        ax.barh(
            [y] * len(rows),
            rows["host_ns"].to_numpy(float) / 1e6,
            left=(rows["start_ns"].to_numpy(float) - t0) / 1e6,
            height=0.2 if stage == "enqueue" else 0.5,
            color=color(stage),
            label=stage,
            gid=stage,
        )
    if trace_kernels is not None and len(trace_kernels):
        kernels, how = _kernels_on_run_clock(trace_kernels, trace_ranges, data, run_id)
        span_end = float((data["start_ns"] + data["host_ns"]).max())
        kernels = kernels[(kernels["start_ns"] <= span_end) & (kernels["end_ns"] >= t0)]
        lanes.append(f"kernels ({how})")
        ax.barh(
            [2] * len(kernels),
            (kernels["end_ns"].to_numpy(float) - kernels["start_ns"].to_numpy(float)) / 1e6,
            left=(kernels["start_ns"].to_numpy(float) - t0) / 1e6,
            height=0.5,
            color="#555555",
            label="kernel",
            gid="kernel",
        )
    ax.set_yticks(range(len(lanes)), [_text(s) for s in lanes])
    ax.set_ylim(len(lanes) - 0.4, -0.6)
    ax.set_xlabel("time from the first iteration shown, ms (host clock)")
    handles = [Patch(facecolor=color(s), label=s) for s in stages]
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.25),
        ncol=min(len(handles), 7),
        frameon=False,
    )
    ax.set_title(_text(f"timeline of iterations {', '.join(str(i) for i in iterations)}"))
    return ax


def _kernels_on_run_clock(
    kernels: pd.DataFrame, ranges: pd.DataFrame | None, samples: pd.DataFrame, run_id: str
) -> tuple[pd.DataFrame, str]:
    k = kernels
    if "run_id" in k.columns and (k["run_id"].astype(str) == run_id).any():
        k = k[k["run_id"].astype(str) == run_id]
    k = k.sort_values("start_ns")
    if ranges is not None and len(ranges) and {"iteration", "stage"} <= set(ranges.columns):
        r = ranges.dropna(subset=["iteration", "stage"])
        if "run_id" in r.columns and (r["run_id"].astype(str) == run_id).any():
            r = r[r["run_id"].astype(str) == run_id]
        joined = r.assign(
            iteration=r["iteration"].astype("int64"), stage=r["stage"].astype(str)
        ).merge(
            samples.assign(
                stage=samples["stage"].astype(str), iteration=samples["iteration"].astype("int64")
            ),
            on=["iteration", "stage"],
            suffixes=("_trace", ""),
        )
        if len(joined):
            offset = float(np.median(joined["start_ns_trace"] - joined["start_ns"]))
            return k.assign(start_ns=k["start_ns"] - offset, end_ns=k["end_ns"] - offset), "trace"
    compute = samples[samples["stage"].astype(str) == "compute"]
    anchor = float(compute["start_ns"].min()) if len(compute) else float(samples["start_ns"].min())
    offset = float(k["start_ns"].min()) - anchor if len(k) else 0.0
    return (
        k.assign(start_ns=k["start_ns"] - offset, end_ns=k["end_ns"] - offset),
        "aligned to first compute",
    )


def grid(
    n: int, *, ncols: int = 3, size: tuple[float, float] = (4.2, 2.8), sharex: bool = False
) -> tuple[Any, list[Axes]]:
    """A figure of `n` panels in rows of `ncols` (unused panels hidden), for small multiples."""
    n = max(int(n), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(size[0] * ncols, size[1] * nrows),
        squeeze=False,
        sharex=sharex,
        layout="constrained",
    )
    flat = list(axes.ravel())
    for extra in flat[n:]:
        extra.set_visible(False)
    return fig, flat[:n]


# --------------------------------------------------------------------------------------------
# Stage breakdown


def stage_breakdown(
    breakdown: pd.DataFrame,
    *,
    runs: pd.DataFrame | None = None,
    summary: pd.DataFrame | None = None,
    value: str = "p50_ms",
    ax: Axes | None = None,
) -> Axes:
    """Stacked stage times per config, one horizontal bar each, harness gap included.

    `breakdown` is `Results.breakdown()` (run_id, stage, kind, p50_ms, mean_ms, ...): the bar of a
    config stacks its `stage` and `gap` rows' `value` (p50_ms by default; "mean_ms" stacks means,
    which add up exactly to the e2e mean) in pipeline order; a black tick marks the e2e value.
    Where `summary` (`Results.summary()`) has device-clock medians (device_p50_ms) for a config,
    a second, hatched bar beside the host bar stacks them: host and device time side by side.
    Labels come from `runs` (or the breakdown's own `label` column).
    """
    if value not in ("p50_ms", "mean_ms"):
        raise ValueError(f"value must be 'p50_ms' or 'mean_ms', got {value!r}")
    data = breakdown
    if data is None or data.empty:
        return _empty(_ax(ax), "no measured stages to break down")
    data = data.assign(run_id=data["run_id"].astype(str), stage=data["stage"].astype(str))
    parts = (
        data[data["kind"].astype(str).isin(["stage", "gap"])]
        if "kind" in data.columns
        else data[data["stage"] != "e2e"]
    )
    totals = data[data["stage"] == "e2e"].set_index("run_id")[value]
    label_source = runs
    if label_source is None and "label" in data.columns:
        label_source = data.drop_duplicates("run_id")
    labels = run_labels(label_source, data["run_id"])
    order = sorted(labels, key=lambda r: natural_key(labels[r]))
    device = _device_medians(summary, order, value)
    has_device = bool(device)
    ax = _ax(ax, (9, 1.2 + (0.55 if has_device else 0.4) * len(order)))
    stages = sorted(parts["stage"].unique(), key=stage_rank)
    height = 0.38 if has_device else 0.7
    host_y = {r: i - (0.2 if r in device else 0.0) for i, r in enumerate(order)}
    left = dict.fromkeys(order, 0.0)
    for stage in stages:
        rows = parts[parts["stage"] == stage].set_index("run_id")[value]
        ids = [r for r in order if r in rows.index and pd.notna(rows[r])]
        if not ids:
            continue
        widths = [float(rows[r]) for r in ids]
        ax.barh(
            [host_y[r] for r in ids],
            widths,
            left=[left[r] for r in ids],
            height=height,
            color=color(stage),
            label=stage,
            gid=f"host:{stage}",
        )
        for r, w in zip(ids, widths, strict=True):
            left[r] += w
    for r in order:
        if r in totals.index and pd.notna(totals[r]):
            ax.plot(
                [totals[r]] * 2,
                [host_y[r] - height / 2, host_y[r] + height / 2],
                color="black",
                lw=2,
                gid="e2e",
            )
    for r, medians in device.items():
        y, start = order.index(r) + 0.2, 0.0
        for stage in sorted(medians, key=stage_rank):
            ax.barh(
                [y],
                [medians[stage]],
                left=[start],
                height=height,
                color=color(stage),
                hatch="xx",
                edgecolor="white",
                lw=0,
                gid=f"device:{stage}",
            )
            start += medians[stage]
    ax.set_yticks(range(len(order)), [_text(labels[r]) for r in order])
    ax.set_ylim(len(order) - 0.5, -0.5)
    what = "median" if value == "p50_ms" else "mean"
    ax.set_xlabel(f"{what} time per iteration, ms")
    handles = [Patch(facecolor=color(s), label=s) for s in stages]
    handles.append(Line2D([], [], color="black", lw=2, label=f"e2e {what}"))
    if has_device:
        handles.append(
            Patch(facecolor="#cccccc", hatch="xx", edgecolor="white", label="device clock (events)")
        )
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(f"where the time goes: {what} per stage (measured phase)")
    return ax


def _device_medians(
    summary: pd.DataFrame | None, order: list[str], value: str
) -> dict[str, dict[str, float]]:
    column = "device_p50_ms" if value == "p50_ms" else "device_mean_ms"
    if summary is None or summary.empty or column not in summary.columns:
        return {}
    s = summary[summary[column].notna()]
    s = s[~s["stage"].astype(str).isin(["e2e", "enqueue"])]
    out: dict[str, dict[str, float]] = {}
    for r, g in s.groupby(s["run_id"].astype(str)):
        if r in order:
            out[r] = dict(zip(g["stage"].astype(str), g[column].astype(float), strict=True))
    return out


# --------------------------------------------------------------------------------------------
# Warmup


def warmup_series(
    samples: pd.DataFrame,
    *,
    run_id: Any,
    warmup: pd.DataFrame | Mapping[str, Any] | None = None,
    stage: str = "e2e",
    label: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """One run's per-iteration time of `stage`, warmup iterations included, with the detected
    changepoints (vertical lines), each segment's median, and the steady-state band.

    `warmup` is the run's row of `Results.warmup()` (or the whole frame): changepoints,
    segment_p50_ms, steady_iteration, steady_p50_ms, classification. The band spans the 5th to
    95th percentile of the iterations from steady_iteration on. The warmup phase is shaded.
    """
    run_id = str(run_id)
    data = samples[
        (samples["run_id"].astype(str) == run_id) & (samples["stage"].astype(str) == stage)
    ].sort_values("iteration")
    ax = _ax(ax, (9, 3.5))
    if data.empty:
        return _empty(ax, f"no {stage} samples for this run")
    it = data["iteration"].to_numpy()
    ms = data["host_ns"].to_numpy(float) / 1e6
    phase = (
        data["phase"].astype(str).to_numpy()
        if "phase" in data.columns
        else np.full(len(data), "measure")
    )
    is_warm = phase == "warmup"
    if is_warm.any():
        ax.axvspan(
            it[is_warm].min() - 0.5,
            it[is_warm].max() + 0.5,
            color="#f0f0f0",
            zorder=0,
            label="warmup phase",
        )
    ax.plot(
        it,
        ms,
        ".",
        ms=3,
        color=color(stage),
        alpha=0.8,
        label=f"{stage} per iteration",
        gid="series",
    )
    row = _warmup_row(warmup, run_id)
    if row is not None:
        cps = [int(c) for c in (row.get("changepoints") or [])]
        for k, cp in enumerate(cps):
            ax.axvline(
                cp,
                color="#b00020",
                lw=1,
                ls="--",
                gid="changepoint",
                label="changepoint" if k == 0 else None,
            )
        seg = [float(v) for v in (row.get("segment_p50_ms") or [])]
        edges = [int(it.min()), *cps, int(it.max()) + 1]
        if len(seg) == len(edges) - 1:
            for k, m in enumerate(seg):
                ax.hlines(
                    m,
                    edges[k],
                    edges[k + 1] - 1,
                    color="#333333",
                    lw=1.5,
                    gid="segment",
                    label="segment median" if k == 0 else None,
                )
        steady = row.get("steady_iteration")
        if steady is not None and not pd.isna(steady):
            tail = ms[it >= int(steady)]
            if len(tail):
                lo, hi = np.percentile(tail, [10, 90])
                ax.fill_between(
                    [int(steady), int(it.max())],
                    lo,
                    hi,
                    color=color("compute"),
                    alpha=0.25,
                    lw=0,
                    label="steady state (p10-p90)",
                    gid="steady",
                )
        title = f"{row.get('classification', '')}"
        if steady is not None and not pd.isna(steady):
            title += f", steady from iteration {int(steady)}"
        levels = seg
    else:
        title, levels = stage, []
    if label:
        title = f"{label}: {title}"
    ax.set_title(_text(title), fontsize="small")
    ax.set_xlabel("iteration (warmup included)")
    ax.set_ylabel(f"{stage}, ms")
    # Spikes (a preempted iteration, the cold first one) would flatten the levels that matter:
    # the axis stops above the typical values and the spikes sit on its edge as open triangles.
    top = max([float(np.percentile(ms, 90)), *levels]) * 1.6
    above = ms > top
    if above.any():
        ax.set_ylim(0, top)
        ax.plot(
            it[above],
            np.full(above.sum(), top * 0.97),
            "^",
            mfc="none",
            mec="#666666",
            ms=4,
            ls="none",
            gid="clipped",
            label=f"{int(above.sum())} above the axis",
        )
    else:
        ax.set_ylim(bottom=0)
    return ax


def _warmup_row(
    warmup: pd.DataFrame | Mapping[str, Any] | None, run_id: str
) -> dict[str, Any] | None:
    if warmup is None:
        return None
    if isinstance(warmup, pd.DataFrame):
        hit = warmup[warmup["run_id"].astype(str) == run_id]
        return None if hit.empty else hit.iloc[0].to_dict()
    if isinstance(warmup, pd.Series):
        return warmup.to_dict()
    return dict(warmup)


# --------------------------------------------------------------------------------------------
# Roofline


def roofline(
    data: pd.DataFrame,
    *,
    predicted: pd.DataFrame | None = None,
    runs: pd.DataFrame | None = None,
    stage: str = "compute",
    ax: Axes | None = None,
) -> Axes:
    """Measured points on their devices' rooflines, log-log: arithmetic intensity (FLOP/byte)
    against achieved TFLOP/s, each device's roof min(peak, bandwidth x intensity) drawn as lines.

    `data` is `Results.roofline()` (run_id, stage, intensity_flops_per_byte, achieved_tflops,
    peak_tflops, bandwidth_gbs, device_peak_name, ...). `predicted` has the same columns for
    predicted stage times (a projection to another device): those points are hollow diamonds
    labelled "predicted", joined to their measured point by a dotted arrow, and their roofs are
    dashed. Point colours follow the run's precision (from `runs`).
    """
    ax = _ax(ax, (8, 5))
    measured = _roof_points(data, stage)
    pred = _roof_points(predicted, stage) if predicted is not None else measured.iloc[0:0]
    if measured.empty and pred.empty:
        return _empty(ax, "no roofline: model FLOPs or device peaks are unknown for these runs")
    both = pd.concat([measured, pred])
    xmin = max(float(both["intensity_flops_per_byte"].min()) / 10, 1e-2)
    xmax = max(float(both["intensity_flops_per_byte"].max()) * 10, xmin * 100)
    x = np.logspace(math.log10(xmin), math.log10(xmax), 200)
    precisions = _run_attr(runs, "precision")
    device_colors = distinct_colors(both["device_peak_name"], "device")
    handles: list[Any] = []
    for frame, dashed in ((measured, False), (pred, True)):
        # One roof per device and precision: the peak rate depends on the precision.
        frame = frame.assign(roof_precision=frame["run_id"].astype(str).map(precisions).fillna(""))
        roofs = frame.drop_duplicates(["device_peak_name", "peak_tflops", "bandwidth_gbs"])
        for r in roofs.itertuples(index=False):
            peak, bw = float(r.peak_tflops), float(r.bandwidth_gbs)
            y = np.full_like(x, peak) if math.isnan(bw) else np.minimum(peak, bw * x / 1000)
            name = _text(f"{r.device_peak_name} {r.roof_precision}".strip())
            (line,) = ax.plot(
                x,
                y,
                color=device_colors[str(r.device_peak_name)],
                lw=1.6,
                ls="--" if dashed else "-",
                gid="roof-predicted" if dashed else "roof",
                label=f"{name} roof" + (" (predicted target)" if dashed else ""),
            )
            if r.roof_precision:
                ax.text(
                    x[-1],
                    y[-1],
                    f" {_text(r.roof_precision)}",
                    fontsize=7,
                    va="center",
                    color=line.get_color(),
                )
            handles.append(line)
    # A point takes its device's colour (the colour of its roof) and its precision's marker.
    for r in measured.itertuples(index=False):
        p = precisions.get(str(r.run_id), "")
        ax.plot(
            r.intensity_flops_per_byte,
            r.achieved_tflops,
            PRECISION_MARKERS.get(p, "o"),
            color=device_colors[str(r.device_peak_name)],
            ms=7,
            gid="measured",
        )
    origin = measured.set_index(measured["run_id"].astype(str))
    for r in pred.itertuples(index=False):
        p = precisions.get(str(r.run_id), "")
        c = device_colors[str(r.device_peak_name)]
        ax.plot(
            r.intensity_flops_per_byte,
            r.achieved_tflops,
            PRECISION_MARKERS.get(p, "D"),
            mfc="none",
            mec=c,
            mew=1.6,
            ms=9,
            gid="predicted",
        )
        if str(r.run_id) in origin.index:
            src = origin.loc[[str(r.run_id)]].iloc[0]
            ax.annotate(
                "",
                (r.intensity_flops_per_byte, r.achieved_tflops),
                (src.intensity_flops_per_byte, src.achieved_tflops),
                arrowprops={"arrowstyle": "->", "ls": ":", "color": c, "lw": 1},
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax.xaxis)
    _plain_log_ticks(ax.yaxis)
    ax.set_xlabel("arithmetic intensity, FLOP/byte")
    ax.set_ylabel("achieved TFLOP/s")
    for p in sorted({precisions.get(str(r), "") for r in both["run_id"]}):
        handles.append(
            Line2D(
                [],
                [],
                marker=PRECISION_MARKERS.get(p, "o"),
                ls="none",
                color="#444444",
                label=_text(f"measured {p}".strip()),
            )
        )
    if not pred.empty:
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="none",
                mfc="none",
                mec="#444444",
                label="predicted (hollow; not measured)",
            )
        )
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(f"roofline of the {stage} stage")
    return ax


def _roof_points(data: pd.DataFrame | None, stage: str) -> pd.DataFrame:
    cols = [
        "run_id",
        "stage",
        "intensity_flops_per_byte",
        "achieved_tflops",
        "peak_tflops",
        "bandwidth_gbs",
        "device_peak_name",
    ]
    if data is None or data.empty or not set(cols) <= set(data.columns):
        return pd.DataFrame(columns=cols)
    d = data[data["stage"].astype(str) == stage]
    x = pd.to_numeric(d["intensity_flops_per_byte"], errors="coerce")
    y = pd.to_numeric(d["achieved_tflops"], errors="coerce")
    peak = pd.to_numeric(d["peak_tflops"], errors="coerce")
    keep = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y) & (peak > 0)
    d = d[keep]
    return d.assign(bandwidth_gbs=pd.to_numeric(d["bandwidth_gbs"], errors="coerce"))[cols]


# --------------------------------------------------------------------------------------------
# Speedups between devices, measured and predicted


def speedups(
    data: pd.DataFrame,
    *,
    group: str = "pair",
    ax: Axes | None = None,
) -> Axes:
    """Speedup per stage, measured beside predicted: bars per stage, one per `group` value
    (a device pair or a target device) and kind; predicted bars hatched and pale, measured ones
    solid with their CI as error bars; a line at 1 (no change).

    `data` columns: stage, speedup, kind ("measured" | "predicted"), `group`, and optionally
    ci_low / ci_high (bounds of a measured speedup).
    """
    ax = _ax(ax, (9, 4.5))
    if data is None or data.empty:
        return _empty(ax, "no speedups to show")
    d = data[np.isfinite(pd.to_numeric(data["speedup"], errors="coerce"))]
    if d.empty:
        return _empty(ax, "no finite speedups to show")
    stages = sorted(d["stage"].astype(str).unique(), key=stage_rank)
    keys = list(dict.fromkeys(zip(d[group].astype(str), d["kind"].astype(str), strict=True)))
    keys.sort(key=lambda k: (k[0], k[1] != "measured"))
    width = 0.8 / max(len(keys), 1)
    group_colors = distinct_colors((g for g, _ in keys), "device")
    for j, (g, kind) in enumerate(keys):
        rows = d[(d[group].astype(str) == g) & (d["kind"].astype(str) == kind)]
        rows = rows.set_index(rows["stage"].astype(str))
        xs = [i - 0.4 + width * (j + 0.5) for i, s in enumerate(stages) if s in rows.index]
        ys = [float(rows.loc[s, "speedup"]) for s in stages if s in rows.index]
        c = group_colors[g]
        predicted = kind == "predicted"
        ax.bar(
            xs,
            ys,
            width=width * 0.95,
            color=c,
            alpha=PREDICTED_ALPHA if predicted else 0.9,
            hatch=PREDICTED_HATCH if predicted else None,
            edgecolor=c,
            label=_text(f"{g} ({kind})"),
            gid=kind,
        )
        if not predicted and {"ci_low", "ci_high"} <= set(rows.columns):
            lo = [float(rows.loc[s, "ci_low"]) for s in stages if s in rows.index]
            hi = [float(rows.loc[s, "ci_high"]) for s in stages if s in rows.index]
            err = np.array(
                [
                    [max(y - a, 0) for y, a in zip(ys, lo, strict=True)],
                    [max(b - y, 0) for y, b in zip(ys, hi, strict=True)],
                ]
            )
            ok = np.isfinite(err).all(axis=0)
            if ok.any():
                ax.errorbar(
                    np.array(xs)[ok],
                    np.array(ys)[ok],
                    yerr=err[:, ok],
                    fmt="none",
                    ecolor="#222222",
                    capsize=3,
                    lw=1,
                )
    ax.axhline(1.0, color="#444444", lw=1, ls="--")
    ax.set_xticks(range(len(stages)), stages)
    ax.set_ylabel("speedup (x, higher is faster)")
    values = d["speedup"].astype(float)
    if values.max() / max(values[values > 0].min(), 1e-12) > 30:
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title("speedup per stage: measured (solid) and predicted by the roofline (hatched)")
    return ax


# --------------------------------------------------------------------------------------------
# Batching


def batching(
    curve: pd.DataFrame,
    *,
    fit: pd.DataFrame | None = None,
    stage: str = "e2e",
    metric: str = "latency",
    ax: Axes | None = None,
) -> Axes:
    """Latency (or throughput) against batch size per config group, with the fitted line and
    the knee.

    `curve` is `Results.batching_curve()` (group, stage, batch_size, p50_ms, p99_ms,
    throughput_items_s); `fit` is `Results.batching()` (group, stage, a_ms, b_ms_per_item,
    knee_batch). metric="latency": p50 points, p99 as open markers, the fit a + b x batch as a
    line. metric="throughput": items/s points and the throughput the fit implies,
    1000 x batch / (a + b x batch). The knee (where a doubling of the batch gains less than 10%
    throughput) is a dotted vertical line in the group's colour. A group without a fit (fewer
    than three batch sizes) shows its points only; the fit's `fit_note` (no fit, a negative
    intercept or slope, a bimodal stage) is printed under the group's legend entry.
    """
    if metric not in ("latency", "throughput"):
        raise ValueError(f"metric must be 'latency' or 'throughput', got {metric!r}")
    ax = _ax(ax, (7, 4.2))
    data = curve[curve["stage"].astype(str) == stage] if curve is not None and len(curve) else None
    if data is None or data.empty:
        return _empty(ax, f"no {stage} measurements to plot against batch size")
    fits = (
        fit[fit["stage"].astype(str) == stage].set_index("group")
        if fit is not None and len(fit)
        else None
    )
    styles = series_styles(data.assign(group=data["group"].astype(str)))
    caveats: dict[str, str] = {}
    for group in styles:
        g = data[data["group"].astype(str) == group].sort_values("batch_size")
        st = styles[group]
        c = st["color"]
        x = g["batch_size"].to_numpy(float)
        y = g["p50_ms" if metric == "latency" else "throughput_items_s"].to_numpy(float)
        ax.plot(
            x,
            y,
            st["marker"],
            color=c,
            label=_text(group),
            gid="p50" if metric == "latency" else "throughput",
        )
        if metric == "latency" and "p99_ms" in g.columns:
            ax.plot(
                x,
                g["p99_ms"].to_numpy(float),
                st["marker"],
                mfc="none",
                mec=c,
                ms=4,
                alpha=0.7,
                gid="p99",
            )
        if fits is None or group not in fits.index:
            continue
        f = fits.loc[group]
        f = f.iloc[0] if isinstance(f, pd.DataFrame) else f
        a, b = float(f["a_ms"]), float(f["b_ms_per_item"])
        if str(f.get("fit_note") or ""):
            caveats[group] = str(f["fit_note"])
        if np.isfinite(a) and np.isfinite(b):
            if metric == "latency":
                xs = np.array([x.min(), x.max()])
                ax.plot(xs, a + b * xs, color=c, ls=st["linestyle"], lw=1.2, alpha=0.85, gid="fit")
            elif a > 0 and b > 0:
                # The implied throughput only means something for a positive fixed cost and
                # per-item cost; a negative intercept is a poor fit, not infinite throughput.
                xs = np.linspace(x.min(), x.max(), 50)
                ax.plot(
                    xs,
                    1000.0 * xs / (a + b * xs),
                    color=c,
                    ls=st["linestyle"],
                    lw=1.2,
                    alpha=0.85,
                    gid="fit",
                )
        kb = float(f.get("knee_batch", np.nan))
        if np.isfinite(kb):
            ax.axvline(kb, color=c, ls=":", lw=1.5, gid="knee")
    sizes = sorted(data["batch_size"].astype(int).unique())
    if len(sizes) <= 12:
        ax.set_xticks(sizes)
    ax.set_xlabel("batch size, items")
    ax.set_ylabel(f"{stage} p50, ms" if metric == "latency" else f"{stage} throughput, items/s")
    ax.set_ylim(bottom=0)
    handles = [
        Line2D(
            [],
            [],
            color=st["color"],
            marker=st["marker"],
            ls=st["linestyle"],
            # The caveat goes where the reader looks for the line: no fit, or one not to trust.
            label=_text(g) + (f"\n  {_text(caveats[g])}" if g in caveats else ""),
        )
        for g, st in styles.items()
    ]
    handles += [
        Line2D([], [], color="#444444", lw=1.2, label="fit a + b x batch"),
        Line2D([], [], color="#444444", ls=":", lw=1.5, label="knee"),
    ]
    if metric == "latency":
        handles.append(
            Line2D([], [], marker="o", mfc="none", mec="#444444", ls="none", label="p99 (open)")
        )
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(f"{stage} {metric} against batch size")
    return ax


# --------------------------------------------------------------------------------------------
# Comparisons


VERDICT_COLORS: dict[str, str] = {
    "faster": "#2e7d32",
    "slower": "#c62828",
    "same": "#555555",
    "not comparable": "#9e9e9e",
    "no data": "#bdbdbd",
}


def forest(
    compare: pd.DataFrame,
    *,
    ax: Axes | None = None,
) -> Axes:
    """Ratios B/A with their confidence intervals, one row per comparison (a forest plot).

    `compare` is `Results.compare(...)` (a, b, config, stage, ratio, ci_low, ci_high, verdict,
    threshold). Left of 1 means B takes less time. The grey band is the practical-equivalence
    band [1 - threshold, 1 + threshold]: a CI inside it, or one that spans 1, is "same". Points
    are coloured by verdict, which is also written at the right.
    """
    ax = _ax(ax, (9, 1.2 + 0.38 * max(len(compare) if compare is not None else 1, 1)))
    if compare is None or compare.empty:
        return _empty(ax, "nothing to compare")
    d = compare.reset_index(drop=True)
    ratio = d["ratio"].astype(float).to_numpy()
    lo = d["ci_low"].astype(float).to_numpy()
    hi = d["ci_high"].astype(float).to_numpy()
    y = np.arange(len(d))
    verdicts = d["verdict"].astype(str).tolist() if "verdict" in d.columns else [""] * len(d)
    threshold = (
        float(d["threshold"].dropna().iloc[0])
        if "threshold" in d.columns and d["threshold"].notna().any()
        else 0.0
    )
    if threshold > 0:
        ax.axvspan(
            1 - threshold,
            1 + threshold,
            color=SAME_BAND_COLOR,
            alpha=0.6,
            lw=0,
            gid="same-band",
            label=f"same (±{threshold:.0%})",
        )
    ax.axvline(1.0, color="#444444", lw=1)
    finite = np.isfinite(ratio)
    err = np.array(
        [np.where(np.isfinite(lo), ratio - lo, 0), np.where(np.isfinite(hi), hi - ratio, 0)]
    )
    for v in dict.fromkeys(verdicts):
        pick = finite & (np.array(verdicts) == v)
        if not pick.any():
            continue
        ax.errorbar(
            ratio[pick],
            y[pick],
            xerr=np.clip(err[:, pick], 0, None),
            fmt="o",
            color=VERDICT_COLORS.get(v, "#333333"),
            ecolor=VERDICT_COLORS.get(v, "#333333"),
            capsize=3,
            ms=6,
            lw=1.4,
            label=v,
            gid=f"ratio:{v}",
        )
    labels = []
    for r in d.itertuples(index=False):
        parts = [f"{getattr(r, 'b', '')} vs {getattr(r, 'a', '')}"]
        config = getattr(r, "config", "")
        if config and str(config) != "all":
            parts.append(str(config))
        if getattr(r, "stage", "e2e") != "e2e":
            parts.append(str(r.stage))
        labels.append(_text(" · ".join(parts)))
    ax.set_yticks(y, labels)
    ax.set_ylim(len(d) - 0.5, -0.5)
    values = np.concatenate([ratio[finite], lo[np.isfinite(lo)], hi[np.isfinite(hi)], [1.0]])
    if values.min() > 0 and values.max() / values.min() > 4:
        _log_ratio_axis(ax, values)
    trans = ax.get_yaxis_transform()
    for yi, v in zip(y, verdicts, strict=True):
        ax.text(
            1.01,
            yi,
            v,
            transform=trans,
            va="center",
            fontsize=8,
            color=VERDICT_COLORS.get(v, "#333333"),
        )
    ax.set_xlabel("time ratio B / A (median; < 1: B is faster)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.12, 1.0), frameon=False)
    ax.set_title("comparisons with 95% confidence intervals")
    return ax


def _log_ratio_axis(ax: Axes, values: np.ndarray) -> None:
    """A log axis for ratios with plain labels at 1-2-5 steps (no 2x10^-1 clutter)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, StrMethodFormatter

    ax.set_xscale("log")
    lo, hi = float(values.min()), float(values.max())
    steps = [m * 10.0**e for e in range(-4, 5) for m in (1, 2, 5)]
    ticks = [t for t in steps if lo / 1.5 <= t <= hi * 1.5] or [1.0]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


# --------------------------------------------------------------------------------------------
# Imported profiles


def layer_profile(
    layers: pd.DataFrame,
    *,
    run_id: Any = None,
    top: int = 15,
    level: str = "layer",
    label: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """The `top` layers (level="layer") or operator types (level="op", the `op:<OpType>` rows)
    by total time of one run's profile, as horizontal bars coloured by op_type, with the share
    of that level's total written beside each bar. The two levels are never mixed: each one
    alone sums to the profile's time, so mixed they would halve every share."""
    if level not in ("layer", "op"):
        raise PerflabError(f"unknown level {level!r}; valid: layer, op")
    d = layers
    if run_id is not None and "run_id" in d.columns:
        d = d[d["run_id"].astype(str) == str(run_id)]
    if d is not None and "layer" in d.columns:
        is_op = d["layer"].astype(str).str.startswith(LAYER_OP_PREFIX)
        d = d[is_op] if level == "op" else d[~is_op]
    if d is not None and "total_ms" in d.columns:
        d = d[pd.to_numeric(d["total_ms"], errors="coerce").notna()]
    ax = _ax(ax, (9, 1.2 + 0.3 * min(top, max(len(d), 1))))
    if d is None or d.empty:
        return _empty(ax, "no layer times in this profile")
    total = float(d["total_ms"].sum())
    d = d.sort_values("total_ms", ascending=False).head(top)
    ops = (
        d["op_type"].astype(object).fillna("?").astype(str)
        if "op_type" in d.columns
        else pd.Series("?", index=d.index)
    )
    y = np.arange(len(d))
    ax.barh(y, d["total_ms"].to_numpy(float), color=[color(o, "op_type") for o in ops], gid="layer")
    for yi, v in zip(y, d["total_ms"].to_numpy(float), strict=True):
        if total > 0:
            ax.text(v, yi, f" {v / total:.0%}", va="center", fontsize=8)
    names = [n if len(n) <= 48 else n[:22] + "…" + n[-22:] for n in d["layer"].astype(str)]
    ax.set_yticks(y, [_text(n) for n in names])
    ax.set_ylim(len(d) - 0.5, -0.5)
    ax.set_xlabel("total time in the profile, ms")
    handles = [Patch(facecolor=color(o, "op_type"), label=_text(o)) for o in dict.fromkeys(ops)]
    ax.legend(handles=handles, loc="lower right", frameon=True, fontsize="x-small")
    noun = "operator types" if level == "op" else "layers"
    ax.set_title(_text(f"top {len(d)} {noun}" + (f": {label}" if label else "")))
    return ax


def waterfall(parts: pd.DataFrame, *, title: str | None = None, ax: Axes | None = None) -> Axes:
    """A difference between two measurements (Results.explain()) as a waterfall: A's total as
    a bar from zero, each part as a floating bar from the running sum (up for time added, down
    for time saved; grey for the harness gap, hatched for what cannot be split), B's total as a
    bar from zero. Each part's label names where its number comes from."""
    ax = _ax(ax, (9, 1.4 + 0.45 * max(len(parts), 1)))
    if parts.empty:
        return _empty(ax, "nothing to explain")
    y = np.arange(len(parts))
    running = 0.0
    for yi, r in zip(y, parts.itertuples(index=False), strict=True):
        ms = float(r.ms)
        if r.kind in ("start", "end"):
            left, width, face, hatch = 0.0, ms, "#4c566a", None
            running = ms
        else:
            left, width = (running, ms) if ms >= 0 else (running + ms, -ms)
            running += ms
            face = {"gap": color("gap"), "unexplained": "#ffffff"}.get(r.kind)
            face = face or ("#bf616a" if ms >= 0 else "#a3be8c")
            hatch = "//" if r.kind == "unexplained" else None
        ax.barh(yi, width, left=left, color=face, edgecolor="#333333", hatch=hatch, gid=r.kind)
        text = f" {ms:+.4g} ms" if r.kind not in ("start", "end") else f" {ms:.4g} ms"
        ax.text(left + width, yi, text, va="center", fontsize=8)
    ax.set_yticks(y, [_text(f"{r.name}  [{r.source}]") for r in parts.itertuples(index=False)])
    ax.set_ylim(len(parts) - 0.5, -0.5)
    ax.set_xlabel("ms (median)")
    if title:
        ax.set_title(_text(title))
    return ax
