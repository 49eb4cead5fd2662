"""Run settings and run labels: how a run is named, and by which settings runs can be told apart.

A setting is anything the experiment file gives a run, under the name the file uses: `backend`,
`seed`, `warmup`, and one setting per entry of the two option mappings, `options.threads` or
`pipeline_options.image_size`. `with_settings` adds them to a runs frame as columns, so that every
analysis that groups or compares runs accepts any of them; `run_labels` names every setting that
differs between the runs shown together, so two runs are never told apart only by a counter;
`readable_labels` names groups of matched configs in comparisons and batching fits.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from perflab.errors import PerflabError

# Settings stored in a `runs` column of their own: name in the experiment file -> column.
SETTING_COLUMNS: dict[str, str] = {
    "model": "model",
    "pipeline": "pipeline",
    "backend": "backend",
    "precision": "precision",
    "batch_size": "batch_size",
    "mode": "mode",
    "inflight": "inflight",
    "seed": "seed",
    "input_shapes": "input_shapes",
    "timeout_s": "timeout_s",
    "warmup": "warmup_policy",
    "measure": "measure_policy",
}
# Settings stored as a JSON object in one column; each entry is the setting `column.NAME`.
MAPPING_SETTINGS: tuple[str, ...] = ("options", "pipeline_options")
# Settings a config's own label always shows (model, backend, precision, batch size, mode).
LABELLED: tuple[str, ...] = ("model", "backend", "precision", "batch_size", "mode", "inflight")
# Columns of a run shown beside its statistics, so an analysis's table reads without a join.
RUN_INFO_COLUMNS: tuple[str, ...] = ("label", "model", "backend", "precision", "batch_size")


def natural_key(text: Any) -> list[Any]:
    """Sort key that orders "b4" before "b16"."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(text))]


def _mapping(text: Any) -> dict[str, Any]:
    """The JSON mapping of a settings column's text (read only: parsed once per distinct text,
    since hundreds of runs share a few, and every setting of every run is looked up)."""
    if not isinstance(text, str) or not text:
        return {}
    return _parsed(text)


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def setting_names(runs: pd.DataFrame) -> list[str]:
    """Every setting these runs carry: the stored columns, then each option any run was given."""
    names = [name for name, col in SETTING_COLUMNS.items() if col in runs.columns]
    for group in MAPPING_SETTINGS:
        if group in runs.columns:
            keys = dict.fromkeys(k for text in runs[group] for k in _mapping(text))
            names += [f"{group}.{k}" for k in sorted(keys)]
    return names


def with_settings(runs: pd.DataFrame, names: Iterable[str]) -> pd.DataFrame:
    """`runs` plus a column for each of `names` that is a setting without a column of its own
    (`options.threads` from the JSON of `options`, `warmup` from `warmup_policy`; None where a run
    was not given it). A name that is neither a runs column nor a setting is an error."""
    names = list(dict.fromkeys(names))
    known = set(runs.columns) | set(setting_names(runs))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise PerflabError(
            f"unknown setting(s) {unknown}; these runs have: "
            f"{', '.join(dict.fromkeys([*setting_names(runs), *runs.columns]))}"
        )
    added = {}
    for name in names:
        if name in runs.columns:
            continue
        if name in SETTING_COLUMNS:
            added[name] = runs[SETTING_COLUMNS[name]]
        else:
            group, key = name.split(".", 1)
            added[name] = pd.Series(
                [_mapping(text).get(key) for text in runs[group]], index=runs.index, dtype=object
            )
    return runs.assign(**added) if added else runs


def varying_settings(runs: pd.DataFrame, names: Sequence[str] | None = None) -> list[str]:
    """The settings (of `names`, default all) that take more than one value among `runs`."""
    names = setting_names(runs) if names is None else list(names)
    if runs.empty or not names:
        return []
    table = with_settings(runs, names)
    return [n for n in names if len({_label_value(n, v) for v in table[n].tolist()}) > 1]


def _label_value(name: str, value: Any) -> str:
    """A setting's value as labels and comparison levels show it ("" when not given); JSON
    settings as the experiment file's mapping reads."""
    if name in ("warmup", "measure", "input_shapes"):
        value = _mapping(value) or None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def run_labels(runs: pd.DataFrame | None, run_ids: Iterable[Any]) -> dict[str, str]:
    """A short, unique label per run: the runs table's `label`, plus `name=value` for each other
    setting that differs between these runs (swept or not), plus the device or host where
    several appear, plus a counter only for true repeats of one config."""
    ids = [str(r) for r in dict.fromkeys(run_ids)]
    if runs is None or runs.empty or "run_id" not in runs.columns:
        return {r: r for r in ids}
    table = runs.assign(run_id=runs["run_id"].astype(str)).drop_duplicates("run_id")
    table = table.set_index("run_id").reindex(ids)
    base = (
        table["label"] if "label" in table.columns else pd.Series(index=table.index, dtype=object)
    )
    base = base.astype(object).where(base.notna(), pd.Series(ids, index=table.index)).astype(str)
    shown = table[table.index.notna()]
    differing = [n for n in varying_settings(shown) if n not in LABELLED]
    if differing:
        settings = with_settings(table, differing)
        values = {name: settings[name].tolist() for name in differing}
        parts = []
        for i, label in enumerate(base.tolist()):
            extra = []
            for name in differing:
                short = name.split(".", 1)[1] if "." in name else name
                value = _label_value(name, values[name][i])
                # A swept setting is in the stored label already.
                if value and f" {short}=" not in f" {label}":
                    extra.append(f"{short}={value}")
            parts.append(" ".join([label, *extra]))
        base = pd.Series(parts, index=table.index)
    for col in ("device_name", "host"):
        if col in table.columns and table[col].dropna().astype(str).nunique() > 1:
            base = base + " @ " + table[col].astype(object).fillna("?").astype(str)
            break
    labels: dict[str, str] = {}
    seen: dict[str, int] = {}
    for run_id, label in zip(ids, base.tolist(), strict=True):
        seen[label] = seen.get(label, 0) + 1
        labels[run_id] = label if seen[label] == 1 else f"{label} #{seen[label]}"
    return labels


def readable_labels(
    keys: pd.DataFrame, always: Sequence[str] = ("model", "backend", "precision")
) -> pd.Series:
    """Short labels for distinct config keys (a frame of string columns, one row per key, as
    `analysis.stats.key_frame` makes them): the `always` columns, plus any column that varies."""
    varying = [c for c in keys.columns if c not in always and keys[c].nunique() > 1]
    shown = [c for c in always if c in keys.columns] + varying
    if not shown:
        return pd.Series("all", index=keys.index)
    parts = [keys[c] if c in always else c + "=" + keys[c] for c in shown]
    label = parts[0].astype(str)
    for p in parts[1:]:
        label = label + " · " + p.astype(str)
    return label
