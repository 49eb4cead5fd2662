"""Traces and imported profiles beside perflab's own measurements: what the tables hold, NVTX
ranges joined to samples iteration by iteration, the kernels with most time, what other tools
reported, the precisions layers ran in (DataFrame in, DataFrame out; `Results` wraps each one).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from perflab import tool_stages
from perflab.analysis.overview import label_map, natural_sort
from perflab.errors import PerflabError

TRACE_TABLES: tuple[str, ...] = (
    "trace_ranges",
    "trace_kernels",
    "trace_memcpy",
    "layers",
    "reported",
)
TRACE_VS_HARNESS_COLUMNS = [
    "label", "stage", "harness p50 ms", "range p50 ms", "GPU p50 ms", "GPU ops p50",
]  # fmt: skip


def trace_inventory(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Rows per trace or imported-profile table (zero where absent), from {name: table}."""
    return pd.DataFrame(
        {"table": list(TRACE_TABLES), "rows": [len(tables.get(t, ())) for t in TRACE_TABLES]}
    )


def reported_vs_measured(
    reported: pd.DataFrame,
    summary: pd.DataFrame,
    runs: pd.DataFrame,
    matched: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """What another tool printed (`reported`) beside perflab's own statistic of the stages the
    tool's region covers (perflab.tool_stages): for an engine's own timer, of the same run; for
    an imported run, of the perflab run of its configuration (`matched`: explain.matches(),
    the same device first). A region spanning several stages is set beside the sum of their
    medians (or means); statistics that do not add (min, max, percentiles) stay empty there.

        reported: | run_id | stage   | statistic | value_ms |
        ->        | label | region | covers | statistic | reported ms | perflab run |
                  | perflab ms | difference ms | same device | what the region includes |
    """
    cols = [
        "label", "region", "covers", "statistic", "reported ms", "perflab run", "perflab ms",
        "difference ms", "same device", "what the region includes",
    ]  # fmt: skip
    if reported.empty:
        return pd.DataFrame(columns=cols)
    labels = label_map(runs)
    partner: dict[str, tuple[str, object]] = {}
    if matched is not None:
        for m in matched.itertuples(index=False):
            partner.setdefault(str(m.imported), (str(m.measured), bool(m.same_device)))
    stats_of = {}
    if len(summary):
        for r in summary.itertuples(index=False):
            stats_of[(str(r.run_id), str(r.stage))] = r
    column = {"median": "p50_ms", "mean": "mean_ms", "min": "min_ms", "max": "max_ms"}
    column |= {f"p{q}": f"p{q}_ms" for q in (90, 95, 99)}
    additive = {"median": "p50_ms", "mean": "mean_ms"}
    rows = []
    for r in reported.itertuples(index=False):
        run, region, statistic = str(r.run_id), str(r.stage), str(r.statistic)
        covered = tool_stages.covers(region)
        own = any((run, s) in stats_of for s in covered)
        other, same_device = (run, True) if own else partner.get(run, (None, None))
        value = math.nan
        if other is not None and statistic in column:
            found = [stats_of.get((other, s)) for s in covered]
            present = [f for f in found if f is not None]
            if len(covered) == 1 and present:
                value = float(getattr(present[0], column[statistic]))
            elif present and statistic in additive:
                value = float(sum(getattr(f, additive[statistic]) for f in present))
        rows.append(
            {
                "label": labels.get(run, run),
                "region": region,
                "covers": " + ".join(covered),
                "statistic": statistic,
                "reported ms": r.value_ms,
                "perflab run": labels.get(other, other) if other is not None else None,
                "perflab ms": value,
                "difference ms": value - float(r.value_ms) if math.isfinite(value) else math.nan,
                "same device": same_device,
                "what the region includes": tool_stages.definition(region),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def correlate(
    trace_ranges: pd.DataFrame, samples: pd.DataFrame, *, runs: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Set perflab-domain stage ranges beside perflab's own samples, per (iteration, stage).

    Input: `trace_ranges` (store table) and `samples` (store table); `runs` (with run_id, label)
    pairs `perflab_run` labels with run ids. A range belongs to the run it is filed under when
    that run has samples (a trace imported with `--run-id`), else to the run whose label is its
    `perflab_run`; without `runs`, a trace of one perflab run pairs with samples of one run.

    Output, one row per matched (run, iteration, stage):

    | run_id | perflab_run | iteration | stage | phase | host_ms | device_ms | trace_host_ms | gpu_ms | n_gpu_ops | gap_ms |

    host_ms / device_ms come from the samples, trace_host_ms is the NVTX range's duration, gpu_ms
    the projected GPU span (0 for a stage that launched no GPU work), n_gpu_ops the kernels,
    copies and memsets attributed to the range, and gap_ms = host_ms - gpu_ms (time the host
    spent outside the GPU work of that stage).
    """
    cols = [
        "run_id",
        "perflab_run",
        "iteration",
        "stage",
        "phase",
        "host_ms",
        "device_ms",
        "trace_host_ms",
        "gpu_ms",
        "n_gpu_ops",
        "gap_ms",
    ]
    tr = trace_ranges[trace_ranges["stage"].notna() & trace_ranges["iteration"].notna()].copy()
    if tr.empty or samples.empty:
        return pd.DataFrame(columns=cols)
    tr["iteration"] = tr["iteration"].astype(np.int64)
    tr["trace_host_ms"] = tr["duration_ns"].astype("Float64") / 1e6
    tr["gpu_ms"] = tr["gpu_duration_ns"].astype("Float64") / 1e6
    tr.loc[tr["n_gpu_ops"].fillna(-1) == 0, "gpu_ms"] = 0.0
    tr["perflab_run"] = tr["perflab_run"].astype(object)
    tr["stage"] = tr["stage"].astype(str)
    tr["run_id"] = _paired_run_ids(tr, samples, runs)
    agg = (
        tr[tr["run_id"].notna()]
        .groupby(["run_id", "iteration", "stage"])
        .agg(
            perflab_run=("perflab_run", "first"),
            trace_host_ms=("trace_host_ms", "sum"),
            gpu_ms=("gpu_ms", lambda s: s.sum(min_count=1)),
            n_gpu_ops=("n_gpu_ops", lambda s: s.sum(min_count=1)),
        )
        .reset_index()
    )
    sm = samples.copy()
    sm["run_id"] = sm["run_id"].astype(str)
    sm["stage"] = sm["stage"].astype(str)
    sm["phase"] = sm["phase"].astype(str)
    sm["iteration"] = sm["iteration"].astype(np.int64)
    sm = (
        sm.groupby(["run_id", "iteration", "stage"])
        .agg(
            phase=("phase", "first"),
            host_ns=("host_ns", "sum"),
            device_ns=("device_ns", lambda s: s.sum(min_count=1)),
        )
        .reset_index()
    )
    sm["host_ms"] = sm["host_ns"] / 1e6
    sm["device_ms"] = sm["device_ns"].astype("Float64") / 1e6
    merged = sm.merge(agg, on=["run_id", "iteration", "stage"], how="inner")
    merged["gap_ms"] = merged["host_ms"] - merged["gpu_ms"]
    return merged[cols].sort_values(["run_id", "iteration", "stage"]).reset_index(drop=True)


def _paired_run_ids(
    ranges: pd.DataFrame, samples: pd.DataFrame, runs: pd.DataFrame | None
) -> pd.Series:
    """The perflab run each trace range belongs to (see `correlate`); None where none."""
    sampled = set(samples["run_id"].astype(str))
    own = None
    if "run_id" in ranges.columns:
        filed = ranges["run_id"].astype(str)
        own = filed.where(filed.isin(sampled))
    if runs is not None:
        by_label = dict(zip(runs["label"].astype(str), runs["run_id"].astype(str), strict=False))
        via_label = ranges["perflab_run"].map(
            lambda v: by_label.get(str(v)) if pd.notna(v) else None
        )
    else:
        labels = set(ranges["perflab_run"].dropna().astype(str))
        if len(sampled) == 1 and len(labels) <= 1:
            via_label = pd.Series(next(iter(sampled)), index=ranges.index, dtype=object)
        elif own is not None and own.notna().all():
            via_label = pd.Series(None, index=ranges.index, dtype=object)
        else:
            raise PerflabError(
                f"the trace holds perflab runs {sorted(labels)} and the samples runs "
                f"{sorted(sampled)}: pass runs=<runs table> so labels can be paired with run ids"
            )
    return own.astype(object).fillna(via_label) if own is not None else via_label


def trace_vs_harness(correlated: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """A `correlate` frame reduced per run and stage to medians over the measured iterations:
    the harness's host time, the NVTX range's time, its GPU span and GPU operation count."""
    d = correlated[correlated["phase"].astype(str) == "measure"] if len(correlated) else correlated
    if d.empty:
        return pd.DataFrame(columns=TRACE_VS_HARNESS_COLUMNS)
    values = ["host_ms", "trace_host_ms", "gpu_ms", "n_gpu_ops"]
    d = d[["run_id", "stage", *values]].astype({v: float for v in values})
    g = d.groupby([d["run_id"].astype(str), d["stage"].astype(str)])
    out = pd.DataFrame(
        {
            "harness p50 ms": g["host_ms"].median(),
            "range p50 ms": g["trace_host_ms"].median(),
            "GPU p50 ms": g["gpu_ms"].median(),
            "GPU ops p50": g["n_gpu_ops"].median(),
        }
    ).reset_index()
    out.columns = ["run_id", "stage", *out.columns[2:]]
    labels = label_map(runs) if len(runs) else {}
    out["label"] = out["run_id"].map(labels).fillna(out["run_id"])
    from perflab.stages import stage_rank

    out = out.sort_values(
        ["label", "stage"], key=lambda s: s.map(stage_rank) if s.name == "stage" else s
    )
    return out[TRACE_VS_HARNESS_COLUMNS].reset_index(drop=True)


def top_kernels(kernels: pd.DataFrame, *, top: int = 15) -> pd.DataFrame:
    """The kernels with the most total time in the traces: count, total and share."""
    k = kernels
    if k.empty:
        return pd.DataFrame(columns=["kernel", "count", "total ms", "share"])
    g = k.groupby(k["name"].astype(str))["duration_ns"].agg(["count", "sum"])
    g = g.sort_values("sum", ascending=False)
    total = float(g["sum"].sum()) or float("nan")
    out = pd.DataFrame(
        {
            "kernel": g.index,
            "count": g["count"].to_numpy(),
            "total ms": g["sum"].to_numpy() / 1e6,
            "share": g["sum"].to_numpy() / total,
        }
    )
    return out.head(top).reset_index(drop=True)


def layer_precisions(layers: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per profiled run: how many layers ran in each precision on each provider (engines report
    this even without layer times; an int8 run with many fp32 layers did not run as int8)."""
    if layers.empty:
        return pd.DataFrame(columns=["label"])
    labels = label_map(runs)
    key = (
        layers["provider"].astype(object).fillna("?").astype(str)
        + " "
        + layers["precision"].astype(object).fillna("?").astype(str)
    )
    wide = pd.crosstab(layers["run_id"].astype(str), key)
    wide.columns.name = None
    out = wide.reset_index()
    out.insert(0, "label", out["run_id"].map(labels).fillna(out["run_id"]))
    return natural_sort(out.drop(columns="run_id"), ["label"])


def timed_layer_runs(layers: pd.DataFrame) -> list[str]:
    """Runs whose layer profile has times (some engines report placement and precision only)."""
    if layers.empty:
        return []
    timed = layers[layers["total_ms"].notna()]
    return sorted(timed["run_id"].astype(str).unique())


def run_ids_in(frame: pd.DataFrame) -> list[str]:
    """The run ids that have rows in a table, sorted."""
    if frame.empty or "run_id" not in frame.columns:
        return []
    return sorted(frame["run_id"].astype(str).unique())
