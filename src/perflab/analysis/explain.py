"""Why does X differ from Y: runs matched across tools by configuration, and the gap between two
measurements as a waterfall whose parts add up to the difference.

A side of a comparison is one run's timed region: a perflab run's `e2e` (or one stage), an
imported run's reported region (trtexec's `compute`, `latency`, ...), or an engine's own timer
(`model_run`). Each side covers some of perflab's stages (perflab.tool_stages) and knows the
median of some of them; the waterfall goes from A's total to B's total through

- one bar per pipeline stage: B's median minus A's where both timed it, B's alone (or minus A's)
  where only one side's region includes the stage;
- per side, its total minus the sum of its stage medians: for a perflab e2e that is the harness
  gap (measured here); for any other region it is what the side's own numbers cannot split,
  an "unexplained" bar, never hidden.

So the parts add up to b_ms - a_ms exactly, by construction; the facts that change what the
numbers mean (another device, another environment, warmup left in) are listed beside them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

import pandas as pd

from perflab import tool_stages
from perflab.analysis.compare import IMPORTED_BACKENDS
from perflab.stages import DEVICE_STAGES, ITERATION_STAGES

MATCH_COLUMNS: tuple[str, ...] = ("model", "batch_size", "precision")
WATERFALL_COLUMNS: tuple[str, ...] = ("name", "ms", "source", "kind")


@dataclass(frozen=True)
class Side:
    """One measurement of a comparison: its label, region, total, the stages its region covers,
    the medians it knows per stage, and where its numbers come from."""

    run_id: str
    label: str
    region: str
    total_ms: float
    covers: tuple[str, ...]
    stage_ms: Mapping[str, float]
    source: str
    residual_name: str  # what its total minus its stages is called
    facts: Mapping[str, object] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.label} {self.region}"


def model_key(model: object) -> str:
    """A model's name for matching across tools: the file stem of a path (`mnist-8` for
    `../models/mnist-8.onnx`), or a built-in model's name."""
    text = "" if model is None or (isinstance(model, float) and math.isnan(model)) else str(model)
    return PurePath(text).stem.lower() if text else ""


def is_imported(runs: pd.DataFrame) -> pd.Series:
    """True for runs imported from another tool's summary."""
    return runs["backend"].astype(str).isin(IMPORTED_BACKENDS)


def matches(runs: pd.DataFrame) -> pd.DataFrame:
    """Each imported ok run beside the perflab ok runs of the same configuration: same model (by
    name or content hash), batch size and precision; same_device says whether the device matches
    too (rows sorted so that the same device comes first).

        runs: | run_id | backend | model         | model_sha256 | batch_size | precision |
        ->    | imported | measured | same_device |
              | t1       | r1       | False       |
    """
    cols = ["imported", "measured", "same_device"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    ok = runs[runs["status"].astype(str) == "ok"]
    imp, own = ok[is_imported(ok)], ok[~is_imported(ok)]
    rows = []
    for i in imp.itertuples(index=False):
        for m in own.itertuples(index=False):
            same_model = model_key(i.model) == model_key(m.model) or (
                isinstance(i.model_sha256, str) and i.model_sha256 == m.model_sha256
            )
            if not same_model or i.batch_size != m.batch_size or i.precision != m.precision:
                continue
            same_device = str(i.device_name) == str(m.device_name)
            rows.append((str(i.run_id), str(m.run_id), same_device))
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["imported", "same_device"], ascending=[True, False], kind="stable")


def reported_medians(reported: pd.DataFrame) -> pd.DataFrame:
    """The reported median of each run and region: | run_id | stage | value_ms |."""
    if reported is None or reported.empty:
        return pd.DataFrame(columns=["run_id", "stage", "value_ms"])
    keep = reported["statistic"].astype(str) == "median"
    out = reported.loc[keep, ["run_id", "stage", "value_ms"]]
    return out.assign(run_id=out["run_id"].astype(str), stage=out["stage"].astype(str))


def imported_headline(runs: pd.DataFrame, reported: pd.DataFrame) -> pd.DataFrame:
    """Headline rows of the imported runs: their widest reported per-query region (trtexec's
    Latency, else GPU Compute Time), marked with what it covers, in summary_table()'s columns.

        -> | label | batch_size | region | n | p50 ms | p90 ms | p99 ms | mean ms | items/s |
    """
    cols = ["label", "batch_size", "region", "n", "p50 ms", "p90 ms", "p99 ms", "mean ms"]
    cols.append("items/s")
    ok = runs[(runs["status"].astype(str) == "ok") & is_imported(runs)] if len(runs) else runs
    if ok.empty or reported is None or reported.empty:
        return pd.DataFrame(columns=cols)
    rep = reported.assign(run_id=reported["run_id"].astype(str))
    rows = []
    for r in ok.itertuples(index=False):
        mine = rep[rep["run_id"] == str(r.run_id)]
        for region in ("latency", "compute", "end_to_end"):
            rows_here = mine[mine["stage"] == region]
            stats = dict(zip(rows_here["statistic"], rows_here["value_ms"], strict=True))
            if "median" not in stats:
                continue
            covered = " + ".join(tool_stages.covers(region))
            rows.append(
                {
                    "label": f"{r.label} (imported)",
                    "batch_size": r.batch_size,
                    "region": f"{r.backend} {region} = {covered}",
                    "n": r.n_measure,
                    "p50 ms": stats["median"],
                    "p90 ms": stats.get("p90", math.nan),
                    "p99 ms": stats.get("p99", math.nan),
                    "mean ms": stats.get("mean", math.nan),
                    "items/s": 1e3 * float(r.batch_size) / stats["median"],
                }
            )
            break
    return pd.DataFrame(rows, columns=cols)


def imported_speedups(
    runs: pd.DataFrame, reported: pd.DataFrame, *, by: str, threshold: float = 0.01
) -> pd.DataFrame:
    """Speedups between imported runs that differ only in `by` (two trtexec logs of one model
    from two GPUs), from their reported medians per region, in measured_speedups()' columns.
    There are no samples, so no CI: the verdict says `same` within the threshold band, else
    faster/slower, and the rows are comparable (the same tool timed the same region).

        -> | pair | a | b | config | stage | speedup | ci_low | ci_high | verdict | kind |
    """
    from perflab.analysis.devices import MEASURED_SPEEDUP_COLUMNS

    empty = pd.DataFrame(columns=MEASURED_SPEEDUP_COLUMNS)
    if runs.empty or by not in runs.columns:
        return empty
    ok = runs[(runs["status"].astype(str) == "ok") & is_imported(runs)]
    medians = reported_medians(reported)
    if ok.empty or medians.empty:
        return empty
    ok = ok.assign(_model=ok["model"].map(model_key))
    keys = ["backend", "_model", "batch_size", "precision"]
    rows = []
    for _, g in ok.groupby(keys, dropna=False, sort=False):
        levels = list(dict.fromkeys(g[by].astype(str)))
        if len(levels) < 2:
            continue
        first = g[g[by].astype(str) == levels[0]].iloc[0]
        config = f"{first['_model']} {first['precision']} b{first['batch_size']}"
        base = medians[medians["run_id"] == str(first["run_id"])].set_index("stage")["value_ms"]
        for level in levels[1:]:
            other = g[g[by].astype(str) == level].iloc[0]
            vals = medians[medians["run_id"] == str(other["run_id"])].set_index("stage")
            for stage in (*DEVICE_STAGES, "latency"):
                if stage not in base.index or stage not in vals.index:
                    continue
                speedup = float(base[stage]) / float(vals.loc[stage, "value_ms"])
                if abs(speedup - 1.0) <= threshold:
                    verdict = "same"
                else:
                    verdict = "faster" if speedup > 1 else "slower"
                rows.append(
                    {
                        "pair": f"{level} vs {levels[0]}",
                        "a": levels[0],
                        "b": level,
                        "config": config,
                        "stage": stage,
                        "speedup": speedup,
                        "ci_low": math.nan,
                        "ci_high": math.nan,
                        "verdict": verdict,
                        "kind": "measured",
                    }
                )
    return pd.DataFrame(rows, columns=MEASURED_SPEEDUP_COLUMNS) if rows else empty


def waterfall(a: Side, b: Side) -> pd.DataFrame:
    """From A's total to B's total: a `start` row, one part per stage and per residual, an `end`
    row. The parts' ms add up to b.total_ms - a.total_ms exactly.

        -> | name                           | ms     | source                          | kind   |
           | trtexec b4 compute             | 0.044  | reported by trtexec             | start  |
           | preprocess (only in B)         | 0.002  | measured here                   | stage  |
           | compute: B - A                 | 0.290  | B measured here; A reported ... | stage  |
           | harness gap (B: e2e - stages)  | 0.009  | measured here                   | gap    |
           | mnist-8 ort-cpu b4 e2e         | 0.349  | measured here                   | end    |
    """
    rows = [{"name": a.name, "ms": a.total_ms, "source": a.source, "kind": "start"}]
    for stage in ITERATION_STAGES:
        in_a = stage in a.covers and stage in a.stage_ms
        in_b = stage in b.covers and stage in b.stage_ms
        if in_a and in_b:
            ms = b.stage_ms[stage] - a.stage_ms[stage]
            source = f"B {b.source}; A {a.source}"
            rows.append({"name": f"{stage}: B - A", "ms": ms, "source": source, "kind": "stage"})
        elif in_b:
            name, ms, source = f"{stage} (only in B)", b.stage_ms[stage], b.source
            rows.append({"name": name, "ms": ms, "source": source, "kind": "stage"})
        elif in_a:
            name, ms, source = f"{stage} (only in A)", -a.stage_ms[stage], a.source
            rows.append({"name": name, "ms": ms, "source": source, "kind": "stage"})
    for side, sign, tag in ((a, -1.0, "A"), (b, 1.0, "B")):
        known = sum(side.stage_ms[s] for s in side.covers if s in side.stage_ms)
        residual = side.total_ms - known
        if abs(residual) <= 1e-12 * max(abs(side.total_ms), 1.0):
            continue
        kind = "gap" if side.residual_name.startswith("harness gap") else "unexplained"
        rows.append(
            {
                "name": f"{side.residual_name} ({tag})",
                "ms": sign * residual,
                "source": side.source if kind == "gap" else f"{side.source}: not split",
                "kind": kind,
            }
        )
    rows.append({"name": b.name, "ms": b.total_ms, "source": b.source, "kind": "end"})
    return pd.DataFrame(rows, columns=list(WATERFALL_COLUMNS))


def waterfall_facts(a: Side, b: Side, env_diff: Sequence[str] = ()) -> list[str]:
    """What changes the meaning of the difference besides the stages: another device, another
    environment (the fingerprint keys that differ), another clock, warmup left in."""
    notes = []
    for key in ("device_name", "backend", "precision_effective"):
        va, vb = a.facts.get(key), b.facts.get(key)
        if va is not None and vb is not None and str(va) != str(vb) and str(va) != "nan":
            notes.append(f"{key}: A {va}, B {vb}")
    if env_diff:
        shown = ", ".join(env_diff[:8]) + (" ..." if len(env_diff) > 8 else "")
        notes.append(f"environment differs in {len(env_diff)} key(s): {shown}")
    for side, tag in ((a, "A"), (b, "B")):
        if side.facts.get("warmup_enough") == "no":
            notes.append(f"{tag}: warmup left in (its measured phase had not reached steady state)")
        first = side.facts.get("first_ms")
        if side.region == "e2e" and isinstance(first, float) and side.total_ms > 0:
            notes.append(
                f"{tag}: first iteration {first:.4g} ms ({first / side.total_ms:.1f}x its "
                "median), left out of the medians"
            )
        definition = tool_stages.definition(side.region)
        if definition and side.region not in ITERATION_STAGES:
            notes.append(f"{tag} {side.region}: {definition}")
    return notes
