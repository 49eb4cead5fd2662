"""What ran and how it ended: run lists, status counts, failures, environments, headline
statistics and warnings as tables (DataFrame in, DataFrame out; `Results` wraps each one).

Every frame here is meant to be read by a person: runs are named by their label and sorted in
natural order (b2 before b16), numbers stay numbers, text cells are plain strings (the display
layer escapes them).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from perflab.labels import natural_key, run_labels

RUN_LIST_COLUMNS: tuple[str, ...] = (
    "label",
    "status",
    "backend",
    "precision",
    "precision_effective",
    "batch_size",
    "device_name",
    "n_warmup",
    "n_measure",
    "stop_reason",
    "repetition",
    "load_ms",
    "build_ms",
    "first_ms",
)


SUMMARY_TABLE_COLUMNS: dict[str, str] = {
    "n": "n",
    "p50_ms": "p50 ms",
    "p90_ms": "p90 ms",
    "p99_ms": "p99 ms",
    "mean_ms": "mean ms",
    "cv_pct": "CV %",
    "throughput_items_s": "items/s",
}


ENV_ROWS: tuple[str, ...] = (
    "host",
    "cpu_model",
    "cpu_cores",
    "cpu_threads",
    "memory_gib",
    "os",
    "python",
    "gpu_name",
    "gpu_compute_capability",
    "cuda_driver",
    "cuda_runtime",
)


def label_map(runs: pd.DataFrame) -> dict[str, str]:
    """run_id -> the label the figures use for that run."""
    return run_labels(runs, runs["run_id"].astype(str))


def natural_sort(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Rows sorted by `columns` in natural order ("b2" before "b16")."""
    key = frame[columns].astype(str).agg(" \x00 ".join, axis=1).map(natural_key)
    order = sorted(range(len(frame)), key=lambda i: key.iloc[i])
    return frame.iloc[order].reset_index(drop=True)


def format_value(value: Any, digits: int) -> str:
    """A value as a table shows it: `digits` significant digits, thousands separators past
    that, "yes"/"no" for booleans, "" for missing values, lists joined by commas."""
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v, digits) for v in value)
    if value is None or (
        not isinstance(value, str) and pd.api.types.is_scalar(value) and pd.isna(value)
    ):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        value = float(value)
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"
    return str(value)


def run_list(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: what ran, how it ended, and its setup costs."""
    if runs.empty:
        return pd.DataFrame(columns=list(RUN_LIST_COLUMNS))
    labels = label_map(runs)
    out = runs.assign(label=runs["run_id"].astype(str).map(labels))
    cols = [c for c in RUN_LIST_COLUMNS if c in out.columns]
    return natural_sort(out[cols], ["status", "label"])


def status_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs per status, ok first."""
    order = ("ok", "failed", "timeout", "unsupported", "skipped")
    counts = runs["status"].astype(str).value_counts() if len(runs) else pd.Series(dtype=int)
    rows = [(s, int(counts[s])) for s in order if s in counts.index]
    rows += [(s, int(n)) for s, n in counts.items() if s not in order]
    return pd.DataFrame(rows, columns=["status", "runs"])


def failures(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that are not ok, with the first line of their error (full text in `error`)."""
    bad = runs[runs["status"].astype(str) != "ok"] if len(runs) else runs
    if bad.empty:
        return pd.DataFrame(columns=["label", "status", "reason", "error"])
    labels = label_map(runs)
    error = bad["error"].astype(object).where(bad["error"].notna(), "").astype(str)
    first = error.map(lambda e: (e.strip().splitlines() or [""])[0][:200])
    return pd.DataFrame(
        {
            "label": bad["run_id"].astype(str).map(labels).to_numpy(),
            "status": bad["status"].astype(str).to_numpy(),
            "reason": first.to_numpy(),
            "error": error.to_numpy(),
        }
    ).pipe(natural_sort, ["status", "label"])


def env_table(env: pd.DataFrame) -> pd.DataFrame:
    """The environment fingerprints side by side (one column per environment), with the package
    versions and the variables recorded; a `differs` column marks rows that are not all equal."""

    if env.empty:
        return pd.DataFrame(columns=["key"])
    columns: dict[str, dict[str, str]] = {}
    for r in env.to_dict("records"):
        values = {k: format_value(r.get(k), 6) for k in ENV_ROWS if k in r}
        try:
            fp = json.loads(r.get("fingerprint") or "{}")
        except ValueError:
            fp = {}
        for name, version in sorted((fp.get("packages") or {}).items()):
            values[f"package {name}"] = str(version)
        if fp.get("ort_providers"):
            values["ORT providers"] = ", ".join(map(str, fp["ort_providers"]))
        for name, value in sorted((fp.get("env_vars") or {}).items()):
            values[f"${name}"] = str(value)
        head = f"{r.get('host') or '?'} ({str(r.get('env_id') or '')[:8]})"
        columns[head] = values
    keys = list(dict.fromkeys(k for v in columns.values() for k in v))
    out = pd.DataFrame(
        {"key": keys, **{h: [v.get(k, "") for k in keys] for h, v in columns.items()}}
    )
    out = out[(out[list(columns)] != "").any(axis=1)].reset_index(drop=True)
    if len(columns) > 1:
        out["differs"] = out[list(columns)].nunique(axis=1).gt(1).map({True: "yes", False: ""})
    return out


def summary_table(
    summary: pd.DataFrame, *, stage: str = "e2e", runs: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per run for one stage: label, batch size and the headline statistics, and a
    `caveat` naming what makes the row's numbers weak: fewer iterations than a median CI needs,
    or a busy host (needs `runs`)."""
    from perflab.analysis.repeats import MIN_ITERATIONS_MEDIAN_CI

    rows = summary[summary["stage"].astype(str) == stage] if len(summary) else summary
    if rows.empty:
        return pd.DataFrame(columns=["label", *SUMMARY_TABLE_COLUMNS.values(), "caveat"])
    lead = [c for c in ("label", "batch_size") if c in rows.columns]
    cols = [c for c in SUMMARY_TABLE_COLUMNS if c in rows.columns]
    caveats = [
        [f"n = {n} < {MIN_ITERATIONS_MEDIAN_CI}: too few iterations for a CI"]
        if n < MIN_ITERATIONS_MEDIAN_CI
        else []
        for n in rows["n"]
    ]
    if runs is not None and "host_busy" in runs.columns:
        busy = set(
            runs.loc[runs["host_busy"].astype("boolean").fillna(False), "run_id"].astype(str)
        )
        for c, run_id in zip(caveats, rows["run_id"].astype(str)):
            if run_id in busy:
                c.append("busy host")
    out = rows[lead + cols].rename(columns=SUMMARY_TABLE_COLUMNS)
    out["caveat"] = ["; ".join(c) for c in caveats]
    return natural_sort(out, lead) if lead else out.reset_index(drop=True)


BUSY_HOST_COLUMNS: tuple[str, ...] = (
    "host_load_before",
    "host_load_during",
    "host_load_after",
    "host_steal_pct",
)


def busy_hosts(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs measured on a busy host (runs.host_busy), with the load averages and steal time."""
    cols = ["label", "repetition", *BUSY_HOST_COLUMNS]
    if runs.empty or "host_busy" not in runs.columns:
        return pd.DataFrame(columns=cols)
    busy = runs[runs["host_busy"].astype("boolean").fillna(False).astype(bool)]
    labels = label_map(runs)
    out = busy.assign(label=busy["run_id"].astype(str).map(labels))
    return natural_sort(out[[c for c in cols if c in out.columns]], ["label"])


def warnings_table(warnings: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Warnings, one row per run: for each kind of warning the stages and values that triggered
    it (high_cv "e2e 13.2, compute 15.3" in %, few_samples_p99 the sample count, ...)."""
    if warnings.empty:
        return pd.DataFrame(columns=["label"])
    labels = label_map(runs)
    cells: dict[str, dict[str, list[str]]] = {}
    for r in warnings.itertuples(index=False):
        value = format_value(r.value, 3)
        text = str(r.stage) if r.warning.startswith("few_samples") else f"{r.stage} {value}".strip()
        if r.warning.startswith("few_samples"):
            text = f"{value} < {format_value(r.threshold, 4)}"
        cells.setdefault(str(r.run_id), {}).setdefault(r.warning, []).append(text)
    kinds = list(dict.fromkeys(warnings["warning"].astype(str)))
    rows = [
        {"label": labels.get(run, run), **{k: ", ".join(v.get(k, [])) for k in kinds}}
        for run, v in cells.items()
    ]
    return natural_sort(pd.DataFrame(rows, columns=["label", *kinds]), ["label"])


def warning_kinds(warnings: pd.DataFrame) -> pd.DataFrame:
    """One row per kind of warning: how many runs it concerns and one of its messages."""
    if warnings.empty:
        return pd.DataFrame(columns=["warning", "runs", "example"])
    g = warnings.groupby("warning", sort=False)
    return pd.DataFrame(
        {
            "warning": list(g.groups),
            "runs": g["run_id"].nunique().to_numpy(),
            "example": g["message"].first().to_numpy(),
        }
    )
