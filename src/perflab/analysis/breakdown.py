"""Where the time of one iteration goes: each stage's share of e2e, the harness gap, Amdahl bounds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from perflab.analysis.overview import natural_sort
from perflab.analysis.stats import harness_gap, summarize
from perflab.labels import RUN_INFO_COLUMNS, run_labels
from perflab.stages import NESTED_STAGES, stage_rank

# A breakdown also names the device, since one is often read per device.
RUN_COLUMNS: tuple[str, ...] = (*RUN_INFO_COLUMNS, "device_name")

BREAKDOWN_COLUMNS: tuple[str, ...] = (
    "run_id",
    "stage",
    "kind",
    "p50_ms",
    "mean_ms",
    "share",
    "share_mean",
    "speedup_if_free",
    "bottleneck",
)


def breakdown(
    samples: pd.DataFrame, runs: pd.DataFrame | None = None, *, phase: str | None = "measure"
) -> pd.DataFrame:
    """Each stage's share of the end-to-end time, per run, with the harness gap as its own row.

    Input: samples (run_id, iteration, phase, stage, host_ns, ...); runs optional (adds the
    config columns label, model, backend, precision, batch_size, device_name and keeps ok runs).

    Output, one row per run and stage (stages in pipeline order, then gap, e2e, nested ones)::

        run_id stage       kind   p50_ms mean_ms share share_mean speedup_if_free bottleneck
        r1     preprocess  stage  0.50   0.50    0.160 0.160      1.19            False
        r1     h2d         stage  0.20   0.20    0.064 0.064      1.07            False
        r1     compute     stage  2.00   2.00    0.641 0.641      2.79            True
        r1     d2h         stage  0.10   0.10    0.032 0.032      1.03            False
        r1     postprocess stage  0.30   0.30    0.096 0.096      1.11            False
        r1     gap         gap    0.02   0.02    0.006 0.006      1.01            False
        r1     e2e         total  3.12   3.12    1.000 1.000      NaN             False
        r1     enqueue     nested 0.10   0.10    0.032 0.032      NaN             False

    - kind: `stage` (the stages that tile an iteration), `gap` (e2e minus their sum: the
      harness's own time, never hidden), `total` (e2e), `nested` (timed inside another stage,
      enqueue inside compute: not additive, so no Amdahl figure).
    - share = p50_ms / e2e p50_ms (median-based). Medians do not add up, so median shares of the
      stage and gap rows sum to about 1, not exactly; share_mean = mean_ms / e2e mean_ms is
      additive (means are linear) and sums to 1 over the stage and gap rows: use it for stacked bars.
    - gap p50_ms is the median of the per-iteration gaps (see stats.harness_gap).
    - speedup_if_free (Amdahl): e2e / (e2e - stage), medians, the end-to-end speedup if the stage
      took no time at all; an upper bound on what optimizing that stage alone can give.
    - bottleneck: True on the `stage` row with the largest median share of its run.
    """
    summ = summarize(samples, runs, phase=phase, ci=None)
    gap = harness_gap(samples, runs, phase=phase)
    cols = [c for c in RUN_COLUMNS if runs is not None and c in runs.columns]
    if summ.empty:
        return pd.DataFrame(
            {c: pd.Series(dtype=object) for c in ["run_id", *cols, *BREAKDOWN_COLUMNS[1:]]}
        )
    rows = summ[["run_id", "stage", "p50_ms", "mean_ms"]].copy()
    if not gap.empty:
        gap_rows = (
            gap[["run_id", "gap_p50_ms", "gap_mean_ms"]]
            .rename(columns={"gap_p50_ms": "p50_ms", "gap_mean_ms": "mean_ms"})
            .assign(stage="gap")
        )
        rows = pd.concat([rows, gap_rows[rows.columns]], ignore_index=True)
    stage = rows["stage"].astype(str)
    rows["kind"] = np.select(
        [stage == "e2e", stage == "gap", stage.isin(NESTED_STAGES)],
        ["total", "gap", "nested"],
        default="stage",
    )

    e2e = summ.loc[summ["stage"] == "e2e", ["run_id", "p50_ms", "mean_ms"]].set_index("run_id")
    e2e_p50 = rows["run_id"].map(e2e["p50_ms"]).astype(float)
    e2e_mean = rows["run_id"].map(e2e["mean_ms"]).astype(float)
    rows["share"] = rows["p50_ms"] / e2e_p50
    rows["share_mean"] = rows["mean_ms"] / e2e_mean
    additive = rows["kind"].isin(["stage", "gap"])
    with np.errstate(divide="ignore", invalid="ignore"):
        speedup = e2e_p50 / (e2e_p50 - rows["p50_ms"])
    rows["speedup_if_free"] = speedup.where(additive & (speedup > 0))

    candidates = rows[(rows["kind"] == "stage") & rows["share"].notna()]
    top = candidates.groupby("run_id", sort=False)["share"].idxmax()
    rows["bottleneck"] = False
    rows.loc[top.to_numpy(), "bottleneck"] = True

    kind_rank = rows["kind"].map({"stage": 0, "gap": 1, "total": 2, "nested": 3})
    rows["_order"] = kind_rank * 100 + rows["stage"].map(lambda s: stage_rank(s)[0])
    rows = rows.sort_values(["run_id", "_order", "stage"], kind="stable").drop(columns="_order")
    rows = rows[list(BREAKDOWN_COLUMNS)].reset_index(drop=True)
    if cols:
        info = runs.assign(run_id=runs["run_id"].astype(str)).drop_duplicates("run_id")
        rows = rows.merge(info[["run_id", *cols]], on="run_id", how="left")
        rows = rows[["run_id", *cols, *BREAKDOWN_COLUMNS[1:]]]
    return rows


def stage_table(
    breakdown: pd.DataFrame, *, value: str = "p50_ms", e2e: bool = True
) -> pd.DataFrame:
    """Stages as columns (pipeline order, gap and e2e last), one row per run, of `value`
    (p50_ms, share, speedup_if_free, ...); `e2e=False` leaves the e2e column out."""
    if breakdown.empty:
        return pd.DataFrame(columns=["label"])
    d = breakdown.assign(
        run_id=breakdown["run_id"].astype(str), stage=breakdown["stage"].astype(str)
    )
    if not e2e:
        d = d[d["stage"] != "e2e"]
    wide = d.pivot_table(index="run_id", columns="stage", values=value, aggfunc="first")
    stages = sorted(wide.columns, key=lambda s: (s == "e2e", s == "gap", stage_rank(s)))
    labels = run_labels(d.drop_duplicates("run_id") if "label" in d.columns else None, wide.index)
    out = wide[stages].reset_index()
    out.insert(0, "label", out["run_id"].map(labels))
    out.columns.name = None
    return natural_sort(out.drop(columns="run_id"), ["label"])


def pick_run(breakdown: pd.DataFrame, *, stage: str = "gap", value: str = "share") -> str | None:
    """The run with the largest `value` of `stage` in a breakdown (default: the largest harness
    gap share, the run whose timeline has most to explain); None when there is none."""
    rows = breakdown[breakdown["stage"].astype(str) == stage] if len(breakdown) else breakdown
    rows = rows[rows[value].notna()] if len(rows) else rows
    if rows.empty:
        return None if breakdown.empty else str(breakdown["run_id"].iloc[0])
    return str(rows.loc[rows[value].astype(float).idxmax(), "run_id"])
