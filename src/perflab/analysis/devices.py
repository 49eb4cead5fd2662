"""Across devices: which column tells devices apart, measured speedups between them, what the
rooflines predict for the same pairs or for devices never measured (DataFrame in, DataFrame out;
`Results` gathers the comparisons and projections these functions reduce).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from perflab.analysis.overview import label_map
from perflab.labels import varying_settings
from perflab.stages import E2E, ITERATION_STAGES

# Projection targets for a study measured on one device: one GPU per generation the design names,
# from a GTX 10-series part to H100.
DEFAULT_TARGETS: tuple[str, ...] = ("GTX 1070", "RTX 3070", "A100 SXM4 80GB", "H100 SXM")
SPEEDUP_STAGES: tuple[str, ...] = (*ITERATION_STAGES, E2E)
MEASURED_SPEEDUP_COLUMNS = [
    "pair", "a", "b", "config", "stage", "speedup", "ci_low", "ci_high", "verdict", "kind",
]  # fmt: skip
PREDICTED_SPEEDUP_COLUMNS = ["pair", "stage", "speedup", "basis", "kind"]
PROJECTION_COLUMNS = [
    "label", "to_device", "stage", "measured_ms", "predicted_ms", "speedup", "basis", "kind",
]  # fmt: skip


def device_column(runs: pd.DataFrame) -> str | None:
    """The runs column that tells the devices of ok runs apart (device_name, else host), or None
    when they all ran on one device."""
    ok = runs[runs["status"].astype(str) == "ok"] if len(runs) else runs
    for col in ("device_name", "host"):
        if col in ok.columns and ok[col].dropna().astype(str).nunique() > 1:
            return col
    return None


def device_names(runs: pd.DataFrame) -> str:
    """The distinct device names of the ok runs, comma-separated ("unknown device" if none)."""
    ok = runs[runs["status"].astype(str) == "ok"] if len(runs) else runs
    names = sorted(ok["device_name"].dropna().astype(str).unique()) if len(ok) else []
    return ", ".join(names) or "unknown device"


def comparison_axes(runs: pd.DataFrame) -> list[str]:
    """The settings worth a comparison: the device column when several devices ran, else every
    setting of the experiment file (backend, precision, options.threads, seed, ...) that takes
    more than one value among ok runs; batch size has the batching section of its own."""
    by = device_column(runs)
    if by:
        return [by]
    ok = runs[runs["status"].astype(str) == "ok"] if len(runs) else runs
    return [c for c in varying_settings(ok) if c != "batch_size"]


def geomean(values: Any) -> float:

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.exp(np.log(v).mean())) if len(v) else float("nan")


def measured_speedups(compared: pd.DataFrame) -> pd.DataFrame:
    """compare() rows (any stages) as speedups: how much faster each level B is than the
    baseline A (speedup = 1 / ratio, CI inverted likewise), kind "measured"."""
    if compared.empty:
        return pd.DataFrame(columns=MEASURED_SPEEDUP_COLUMNS)
    c = compared
    return pd.DataFrame(
        {
            "pair": (c["b"].astype(str) + " vs " + c["a"].astype(str)).to_numpy(),
            "a": c["a"].astype(str).to_numpy(),
            "b": c["b"].astype(str).to_numpy(),
            "config": c["config"].astype(str).to_numpy(),
            "stage": c["stage"].astype(str).to_numpy(),
            "speedup": (1.0 / c["ratio"].astype(float)).to_numpy(),
            "ci_low": (1.0 / c["ci_high"].astype(float)).to_numpy(),
            "ci_high": (1.0 / c["ci_low"].astype(float)).to_numpy(),
            "verdict": c["verdict"].astype(str).to_numpy(),
            "kind": "measured",
        }
    )


def predicted_speedups(pair: str, projected: pd.DataFrame) -> pd.DataFrame:
    """One pair's projection (the baseline's runs projected onto the other device) reduced to one
    predicted speedup per stage (geometric mean over runs) and what it rests on."""
    rows = []
    for stage, g in projected.groupby("stage", sort=False):
        # e2e bases differ per run only by the gap they add; the stages' bases are shared.
        known = g["predicted_ms"].notna().any() if "predicted_ms" in g else True
        basis = (
            "sum of the predicted stages and the measured harness gap"
            if stage == "e2e" and known
            else "; ".join(dict.fromkeys(g["basis"].astype(str)))
        )
        rows.append(
            {"pair": pair, "stage": stage, "speedup": geomean(g["speedup"]), "basis": basis}
        )
    return pd.DataFrame(rows, columns=PREDICTED_SPEEDUP_COLUMNS[:-1]).assign(kind="predicted")


def labelled_projections(projected: list[pd.DataFrame], runs: pd.DataFrame) -> pd.DataFrame:
    """project() frames of several targets as one, each row with its run's label."""
    if not projected:
        return pd.DataFrame(columns=PROJECTION_COLUMNS)
    labels = label_map(runs)
    out = pd.concat(projected, ignore_index=True)
    return out.assign(label=out["run_id"].astype(str).map(labels))


def as_roofline_medians(projected: pd.DataFrame) -> pd.DataFrame:
    """A projection's predicted stage times as the medians `roofline()` places on a device."""
    out = projected[["run_id", "stage", "predicted_ms"]].rename(columns={"predicted_ms": "p50_ms"})
    return out[out["p50_ms"].notna()]


def speedup_chart_data(measured: pd.DataFrame, predicted: pd.DataFrame) -> pd.DataFrame:
    """Measured speedups reduced to one value per pair and stage (the geometric mean over the
    matched configs; with one config its CI is kept) beside the predicted ones, for
    `plots.speedups`."""
    rows = []
    for (pair, stage), g in measured.groupby(["pair", "stage"], sort=False):
        one = len(g) == 1
        rows.append(
            {
                "pair": pair,
                "stage": stage,
                "kind": "measured",
                "speedup": geomean(g["speedup"]),
                "ci_low": float(g["ci_low"].iloc[0]) if one else float("nan"),
                "ci_high": float(g["ci_high"].iloc[0]) if one else float("nan"),
            }
        )
    for r in predicted.itertuples(index=False):
        rows.append(
            {
                "pair": r.pair,
                "stage": r.stage,
                "kind": "predicted",
                "speedup": r.speedup,
                "ci_low": float("nan"),
                "ci_high": float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["pair", "stage", "kind", "speedup", "ci_low", "ci_high"])


def speedup_table(chart: pd.DataFrame, predicted: pd.DataFrame) -> pd.DataFrame:
    """`speedup_chart_data` as a table: per pair and stage, the measured speedup (with its CI
    where there is one), the predicted one and what the prediction rests on."""
    from perflab.stages import stage_rank

    if chart.empty:
        return pd.DataFrame(columns=["pair", "stage", "measured", "predicted", "basis"])
    m = chart[chart["kind"] == "measured"].set_index(["pair", "stage"])
    p = chart[chart["kind"] == "predicted"].set_index(["pair", "stage"])
    basis = predicted.set_index(["pair", "stage"])["basis"] if len(predicted) else {}
    rows = []
    for key in dict.fromkeys([*m.index, *p.index]):
        rows.append(
            {
                "pair": key[0],
                "stage": key[1],
                "measured": m["speedup"].get(key, float("nan")),
                "CI low": m["ci_low"].get(key, float("nan")),
                "CI high": m["ci_high"].get(key, float("nan")),
                "predicted": p["speedup"].get(key, float("nan")),
                "basis": basis.get(key, "") if len(predicted) else "",
            }
        )
    out = pd.DataFrame(rows)
    out["_rank"] = out["stage"].map(lambda s: stage_rank(s)[0])
    return out.sort_values(["pair", "_rank"]).drop(columns="_rank").reset_index(drop=True)


def projection_chart_data(proj: pd.DataFrame) -> pd.DataFrame:
    """Predicted speedups per target and stage (geometric mean over runs), for `plots.speedups`."""
    if proj.empty:
        return pd.DataFrame(columns=["pair", "stage", "kind", "speedup"])
    rows = [
        {"pair": t, "stage": s, "kind": "predicted", "speedup": geomean(g["speedup"])}
        for (t, s), g in proj.groupby(["to_device", "stage"], sort=False)
    ]
    return pd.DataFrame(rows)


def projection_table(proj: pd.DataFrame, *, stage: str = "e2e") -> pd.DataFrame:
    """Measured and predicted time of one stage per run and target, wide by target."""
    d = proj[proj["stage"].astype(str) == stage]
    if d.empty:
        return pd.DataFrame(columns=["label", "measured ms"])
    wide = d.pivot_table(
        index="label", columns="to_device", values="predicted_ms", aggfunc="first", dropna=False
    )
    wide.columns = [f"{c} (predicted ms)" for c in wide.columns]
    measured = d.groupby("label")["measured_ms"].first().rename("measured ms")
    out = wide.join(measured, how="outer")
    out = out[["measured ms", *wide.columns]]
    out.index.name = "label"
    return out.reset_index()


def projected_anything(proj: pd.DataFrame) -> bool:
    """Whether a projection predicted the compute or e2e time of any run (host stages are
    always "predicted" unchanged, which alone says nothing)."""
    if proj.empty:
        return False
    key = proj["stage"].astype(str).isin(["compute", "e2e"])
    return bool(proj.loc[key, "predicted_ms"].notna().any())


def projection_problems(proj: pd.DataFrame) -> str:
    """Why stages could not be projected (the distinct "unknown: ..." bases), as one line."""
    if proj.empty or "basis" not in proj.columns:
        return ""
    bases = proj.loc[proj["predicted_ms"].isna(), "basis"].astype(str)
    return "; ".join(sorted({b.removeprefix("unknown: ") for b in bases}))
