"""How latency and throughput scale with batch size: linear fits, the knee, the best batch size."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from perflab.analysis.stats import (
    config_columns,
    key_frame,
    ok_run_ids,
    summarize,
)
from perflab.errors import PerflabError
from perflab.labels import readable_labels
from perflab.stages import stage_rank

# The knee: the batch size after which one more doubling buys less than this throughput gain.
KNEE_GAIN = 0.10
# A line through two points always fits (r2 = 1), whatever latency does between and beyond
# them, and a knee from one step is a guess: neither is given from fewer batch sizes.
MIN_FIT_BATCHES = 3
# Bimodal: somewhere between its 10th and 90th percentile a run's sorted values jump by this
# factor from one to the next (two clusters of iterations, such as a contended CPU's).
BIMODAL_GAP = 1.3
BIMODAL_TAIL = 0.10

CURVE_COLUMNS: tuple[str, ...] = (
    "group",
    "stage",
    "batch_size",
    "n_runs",
    "p50_ms",
    "p99_ms",
    "per_item_ms",
    "throughput_items_s",
    "gain_per_doubling_pct",
)
FIT_COLUMNS: tuple[str, ...] = (
    "group",
    "stage",
    "a_ms",
    "b_ms_per_item",
    "r2",
    "n_batches",
    "knee_batch",
    "best_batch_under_p99_ms",
    "p99_target_ms",
    "bimodal",
    "fit_note",
)


def _per_run(
    samples: pd.DataFrame | None, runs: pd.DataFrame, stages, summary: pd.DataFrame | None
) -> tuple[pd.DataFrame, list[str]]:
    """summarize() rows of ok runs with batch_size, the group key columns and a group label.
    `summary`, when given, is a summarize() result of these runs already computed (of at least
    these stages), used instead of the samples."""
    if runs is None:
        raise PerflabError("batching needs the runs frame (batch_size and the config columns)")
    if "batch_size" not in runs.columns:
        raise PerflabError(f"runs frame lacks column 'batch_size'; it has {list(runs.columns)}")
    ok = ok_run_ids(runs)
    info = runs[runs["run_id"].astype(str).isin(ok)].copy()
    info["run_id"] = info["run_id"].astype(str)
    info = info.drop_duplicates("run_id")
    key_cols = config_columns(info, exclude=("batch_size",))
    keys = key_frame(info, key_cols)
    distinct = keys.drop_duplicates()
    labels = readable_labels(distinct)
    if labels.duplicated().any():  # two keys may print alike; keep them apart
        labels = labels + " #" + pd.Series(range(len(labels)), index=labels.index).astype(str)
    label_of = dict(zip(map(tuple, distinct.to_numpy()), labels))
    info["group"] = [label_of[tuple(k)] for k in keys.to_numpy()]
    for c in key_cols:
        info[c] = keys[c]
    if summary is None:
        summ = summarize(samples, runs, stages=stages, ci=None)
    else:
        summ = summary if stages is None else summary[summary["stage"].isin(stages)]
    merged = summ.merge(info[["run_id", "group", "batch_size", *key_cols]], on="run_id")
    merged = merged[merged["batch_size"].notna()]
    merged["batch_size"] = merged["batch_size"].astype(np.int64)
    return merged, key_cols


def is_bimodal(sorted_x: np.ndarray) -> bool:
    """Whether the sorted values split into two clusters: a jump by BIMODAL_GAP or more between
    neighbours with at least BIMODAL_TAIL of the values on each side.

    >>> is_bimodal(np.array([1.0, 1.01, 1.02, 1.03, 3.0, 3.1, 3.2, 3.3]))
    True
    """
    n = len(sorted_x)
    k = max(1, math.ceil(BIMODAL_TAIL * n))
    if n < 2 * k or n < 4:
        return False
    x = np.asarray(sorted_x, dtype=np.float64)
    lo, hi = x[k - 1 : n - k], x[k : n - k + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return bool(np.any(hi > BIMODAL_GAP * lo) & np.all(lo > 0))


def fit_note(n_batches: int, a: float, b: float, bimodal: bool) -> str:
    """Why a fit is missing or should not be trusted ("" when nothing is wrong with it)."""
    notes = []
    if n_batches < MIN_FIT_BATCHES:
        notes.append(
            f"{n_batches} batch size{'s' if n_batches != 1 else ''}: no fit (a line through "
            f"{n_batches} points always fits; measure {MIN_FIT_BATCHES} or more)"
        )
    if a < 0:
        notes.append(f"negative intercept a = {a:.3g} ms: the line does not hold at small batches")
    if b < 0:
        notes.append(f"negative slope b = {b:.3g} ms/item: latency falls with batch size (noise?)")
    if bimodal:
        notes.append("bimodal stage: two clusters of iterations, medians jump between them")
    return "; ".join(notes)


def _stages(stage: str | Iterable[str] | None) -> list[str] | None:
    if stage is None:
        return None
    return [stage] if isinstance(stage, str) else list(stage)


def batching_curve(
    samples: pd.DataFrame | None,
    runs: pd.DataFrame,
    *,
    stage: str | Iterable[str] = "e2e",
    summary: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Latency and throughput per batch size, per config group.

    A group is every config that differs only by batch_size (same model, backend, precision,
    pipeline, mode, options, device_name, device, host); `group` is a readable label of it, and
    the key columns follow it. Input: samples and runs (or `summary`, a summarize() result of
    the runs, in place of the samples).

    Output, one row per group, stage and batch size::

        group              stage batch_size n_runs p50_ms p99_ms per_item_ms throughput_items_s
        m · synthetic ·... e2e   1          1      1.52   1.60   1.520       658
        m · synthetic ·... e2e   2          1      2.02   2.11   1.010       990
        ...
                           gain_per_doubling_pct
                           NaN
                           50.4

    p50_ms / p99_ms: of the run (the median of the runs' values when a batch size was run more
    than once); per_item_ms = p50_ms / batch_size; throughput_items_s = 1000 x batch_size /
    p50_ms; gain_per_doubling_pct: the throughput gain from the previous batch size, rescaled to
    one doubling ((T_b / T_prev) ^ (1 / log2(b / prev)) - 1), in %.
    """
    merged, key_cols = _per_run(samples, runs, _stages(stage), summary)
    cols = ["group", *key_cols, *CURVE_COLUMNS[1:]]
    if merged.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    agg = (
        merged.groupby(["group", "stage", "batch_size"], sort=False)
        .agg(
            n_runs=("run_id", "size"),
            p50_ms=("p50_ms", "median"),
            p99_ms=("p99_ms", "median"),
            **{c: (c, "first") for c in key_cols},
        )
        .reset_index()
    )
    agg["per_item_ms"] = agg["p50_ms"] / agg["batch_size"]
    agg["throughput_items_s"] = 1000.0 * agg["batch_size"] / agg["p50_ms"]
    agg["_rank"] = agg["stage"].map(lambda s: stage_rank(s)[0])
    agg = agg.sort_values(["group", "_rank", "stage", "batch_size"]).drop(columns="_rank")
    prev_b = agg.groupby(["group", "stage"])["batch_size"].shift()
    prev_t = agg.groupby(["group", "stage"])["throughput_items_s"].shift()
    agg["gain_per_doubling_pct"] = 100.0 * (
        (agg["throughput_items_s"] / prev_t) ** (1.0 / np.log2(agg["batch_size"] / prev_b)) - 1.0
    )
    return agg[cols].reset_index(drop=True)


def bimodal_runs(
    samples: pd.DataFrame, runs: pd.DataFrame | None = None, *, stages=None
) -> pd.DataFrame:
    """Per run and stage of the measured samples: whether its values are bimodal (is_bimodal).

    Each run decides its own rows, so the samples may come a chunk of whole runs at a time.
    Output columns: run_id, stage, bimodal."""
    from perflab.analysis.stats import integral_ns, select_rows, sort_groups

    rows = select_rows(samples, runs, phase="measure", stages=stages)
    out = {"run_id": [], "stage": [], "bimodal": []}
    if len(rows):
        n_stage = max(len(rows.stages), 1)
        sg = sort_groups(rows.gcode, integral_ns(rows.column("host_ns")))
        for g, st, c in zip(sg.gid, sg.starts, sg.counts):
            out["run_id"].append(str(rows.runs[g // n_stage]))
            out["stage"].append(str(rows.stages[g % n_stage]))
            out["bimodal"].append(is_bimodal(sg.values[st : st + c]))
    return pd.DataFrame(out)


def knee(batch_sizes: np.ndarray, throughput: np.ndarray, gain: float = KNEE_GAIN) -> float:
    """Smallest batch size after which every further step gains < `gain` per doubling.

    NaN when fewer than two batch sizes, or when the last step still gains `gain` or more (the
    knee lies beyond the batch sizes measured).
    """
    b = np.asarray(batch_sizes, dtype=float)
    t = np.asarray(throughput, dtype=float)
    if len(b) < 2:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (t[1:] / t[:-1]) ** (1.0 / np.log2(b[1:] / b[:-1])) - 1.0
    for i in range(len(g)):
        if np.all(g[i:] < gain):
            return float(b[i])
    return math.nan


def batching(
    samples: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    stage: str | Iterable[str] | None = None,
    p99_target_ms: float | None = None,
    knee_gain: float = KNEE_GAIN,
    summary: pd.DataFrame | None = None,
    bimodal: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per config group and stage: fit latency_ms = a + b x batch_size, the knee, the best batch.

    Groups as in batching_curve(). Input: samples and runs (or `summary`, a summarize() result of
    the runs, and `bimodal`, a bimodal_runs() result, in place of the samples). `stage`: one
    stage, a list, or None for every stage.

    Output, one row per group and stage::

        group              stage   a_ms  b_ms_per_item r2     n_batches knee_batch
        m · synthetic ·... compute 1.00  0.500         0.9999 6         16
        m · synthetic ·... e2e     1.12  0.500         0.9999 6         16
                           best_batch_under_p99_ms p99_target_ms
                           8                       6.0
                           8                       6.0

    - a_ms, b_ms_per_item, r2: ordinary least squares on the per-run medians (each run one point),
      so a is the fixed cost per iteration and b the cost per item; NaN with fewer than three
      batch sizes (MIN_FIT_BATCHES: through two points any line fits, r2 = 1).
    - knee_batch: the smallest batch size after which every further step of the stage's
      throughput (batch / p50) gains less than `knee_gain` (10%) per doubling; NaN when the
      measured sizes do not reach it, or are fewer than three.
    - bimodal: some run of the group has this stage's iterations in two clusters (is_bimodal).
    - fit_note: why there is no fit or why it should not be trusted (too few batch sizes, a
      negative intercept or slope, a bimodal stage); "" when there is nothing to say.
    - best_batch_under_p99_ms: among the group's batch sizes whose e2e p99 is below
      `p99_target_ms`, the one with the highest e2e throughput (NaN without a target, or when
      none meets it). The same on every stage row of the group.
    """
    stages = _stages(stage)
    wanted = None if stages is None else sorted(set(stages) | {"e2e"})
    merged, key_cols = _per_run(samples, runs, wanted, summary)
    cols = ["group", *key_cols, *FIT_COLUMNS[1:]]
    if merged.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})

    best: dict[str, float] = {}
    e2e = merged[merged["stage"] == "e2e"]
    for group, g in e2e.groupby("group", sort=False):
        per_batch = g.groupby("batch_size").agg(p50=("p50_ms", "median"), p99=("p99_ms", "median"))
        ok = per_batch[per_batch["p99"] < p99_target_ms] if p99_target_ms is not None else []
        if len(ok):
            tput = ok.index.to_numpy(dtype=float) / ok["p50"].to_numpy()
            best[group] = float(ok.index[int(np.argmax(tput))])

    rows = []
    shown = merged if stages is None else merged[merged["stage"].isin(stages)]
    if bimodal is None:
        bimodal = (
            bimodal_runs(samples, runs, stages=[str(x) for x in shown["stage"].unique()])
            if samples is not None
            else pd.DataFrame({"run_id": [], "stage": [], "bimodal": []})
        )
    flagged = bimodal[bimodal["bimodal"].astype(bool)]
    bimodal_pairs = set(zip(flagged["run_id"].astype(str), flagged["stage"].astype(str)))
    for (group, stg), g in shown.groupby(["group", "stage"], sort=False):
        x = g["batch_size"].to_numpy(dtype=float)
        y = g["p50_ms"].to_numpy(dtype=float)
        a = b = r2 = math.nan
        n_batches = int(np.unique(x).size)
        is_bi = any((str(r), str(stg)) in bimodal_pairs for r in g["run_id"])
        if n_batches >= MIN_FIT_BATCHES:
            b, a = np.polyfit(x, y, 1)
            ss_res = float(np.sum((y - (a + b * x)) ** 2))
            ss_tot = float(np.sum((y - y.mean()) ** 2))
            r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
        per_batch = g.groupby("batch_size")["p50_ms"].median()
        tput = per_batch.index.to_numpy(dtype=float) / per_batch.to_numpy()
        rows.append(
            {
                "group": group,
                **{c: g[c].iloc[0] for c in key_cols},
                "stage": stg,
                "a_ms": float(a),
                "b_ms_per_item": float(b),
                "r2": r2,
                "n_batches": n_batches,
                "knee_batch": knee(per_batch.index.to_numpy(), tput, knee_gain)
                if n_batches >= MIN_FIT_BATCHES
                else math.nan,
                "best_batch_under_p99_ms": best.get(group, math.nan),
                "p99_target_ms": math.nan if p99_target_ms is None else float(p99_target_ms),
                "bimodal": is_bi,
                "fit_note": fit_note(n_batches, float(a), float(b), is_bi),
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    order = out["stage"].map(lambda s: stage_rank(s)[0])
    out = out.assign(_rank=order).sort_values(["group", "_rank", "stage"], kind="stable")
    return out.drop(columns="_rank").reset_index(drop=True)


def batch_groups(curve: pd.DataFrame, *, stage: str = "e2e") -> list[str]:
    """Config groups measured at two or more batch sizes (the ones a fit says something about)."""
    d = curve[curve["stage"].astype(str) == stage] if len(curve) else curve
    if d.empty:
        return []
    n = d.groupby(d["group"].astype(str))["batch_size"].nunique()
    return sorted(n[n >= 2].index)
