"""trtexec's JSON exports: --exportTimes, --exportProfile, --exportLayerInfo and the
performance summary (--exportOutput is not read)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from perflab import run_row, store
from perflab.errors import ImportFormatError
from perflab.importers import ImportedRun, frame
from perflab.importers.trtexec.logs import (
    BACKEND,
    DEFAULT_WARMUP_MS,
    PROVIDER,
    ParsedLog,
    _duration,
    _enabled,
    _int_or_none,
    _reported_rows,
)
from perflab.stages import DEVICE_STAGES

# --- JSON exports ---------------------------------------------------------------------------

# Keys of one --exportTimes record, by trtexec generation: value key, start key, stage.
_TIME_STAGES_NEW = (
    ("h2dMs", "startH2dMs", "h2d"),
    ("computeMs", "startComputeMs", "compute"),
    ("d2hMs", "startD2hMs", "d2h"),
    ("enqMs", "startEnqMs", "enqueue"),
    ("latencyMs", "startH2dMs", "latency"),
)
_TIME_STAGES_OLD = (
    ("inMs", "startInMs", "h2d"),
    ("computeMs", "startComputeMs", "compute"),
    ("outMs", "startOutMs", "d2h"),
    ("latencyMs", "startInMs", "latency"),
    ("endToEndMs", "startInMs", "end_to_end"),
)


def _json_kind(data: object) -> str | None:
    if isinstance(data, list):
        if not data:
            return None
        first = data[0]
        if isinstance(first, dict) and set(first) == {"count"}:
            return "profile"
        if isinstance(first, dict) and ("computeMs" in first or "latencyMs" in first):
            return "times"
        return None
    if isinstance(data, dict):
        if "Layers" in data:
            return "layer_info"
        if "performance_summary" in data:
            return "summary"
    return None


def _float(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ImportFormatError(f"{what}: expected a number, got {value!r}")
    return float(value)


def parse_times(
    records: list, warmup_ms: float = DEFAULT_WARMUP_MS, *, items: int = 1
) -> pd.DataFrame:
    """--exportTimes records -> samples rows (without run_id), one per query and stage."""
    if not records or not all(isinstance(r, dict) for r in records):
        raise ImportFormatError("--exportTimes JSON must be a list of per-query objects")
    old = "startInMs" in records[0] and "startH2dMs" not in records[0]
    layout = _TIME_STAGES_OLD if old else _TIME_STAGES_NEW
    columns: dict[str, list] = {
        k: [] for k in ("iteration", "phase", "stage", "start_ns", "host_ns")
    }
    compute_start_key = "startComputeMs"
    for i, rec in enumerate(records):
        if compute_start_key not in rec:
            raise ImportFormatError(f"--exportTimes record {i} has no {compute_start_key}")
        phase = "warmup" if _float(rec[compute_start_key], f"record {i}") < warmup_ms else "measure"
        for value_key, start_key, stage in layout:
            if value_key == "enqMs" and value_key not in rec:
                if "startEnqMs" not in rec or "endEnqMs" not in rec:
                    continue
                value = _float(rec["endEnqMs"], f"record {i} endEnqMs") - _float(
                    rec["startEnqMs"], f"record {i} startEnqMs"
                )
            elif value_key not in rec:
                continue
            else:
                value = _float(rec[value_key], f"record {i} {value_key}")
            start = rec.get(start_key)
            columns["iteration"].append(i)
            columns["phase"].append(phase)
            columns["stage"].append(stage)
            columns["start_ns"].append(
                None if start is None else round(_float(start, f"record {i} {start_key}") * 1e6)
            )
            columns["host_ns"].append(round(value * 1e6))
    df = pd.DataFrame(columns)
    # trtexec times h2d / compute / d2h with CUDA events: they are device durations, stored in both
    # columns so device-aware analysis sees them; enqueue and e2e are host times.
    on_device = df["stage"].isin(DEVICE_STAGES)
    df["device_ns"] = df["host_ns"].astype("Int64").where(on_device)
    df["items"] = items
    return df


def parse_profile(data: list) -> pd.DataFrame:
    """--exportProfile JSON -> layers rows (without run_id)."""
    count = data[0].get("count")
    rows = []
    for i, rec in enumerate(data[1:], start=1):
        if not isinstance(rec, dict) or "name" not in rec:
            raise ImportFormatError(f"--exportProfile entry {i} has no layer name")
        rows.append(
            {
                "layer": str(rec["name"]),
                "provider": PROVIDER,
                "count": None if count is None else int(count),
                "total_ms": _float(rec.get("timeMs"), f"profile entry {i} timeMs"),
                "median_ms": None
                if rec.get("medianMs") is None
                else _float(rec["medianMs"], "medianMs"),
            }
        )
    return pd.DataFrame(rows)


def _layer_precision(layer: dict) -> str | None:
    if isinstance(layer.get("Precision"), str):
        return layer["Precision"].lower()
    outputs = layer.get("Outputs") or []
    if outputs and isinstance(outputs[0], dict):
        # The same format vocabulary the native TensorRT backend reads from its engine inspector.
        from perflab.precisions import tensor_precision

        return tensor_precision(str(outputs[0].get("Format/Datatype", "")))
    return None


def parse_layer_info(data: dict) -> pd.DataFrame:
    """--exportLayerInfo JSON -> layers rows (without run_id); names only unless built detailed."""
    layers = data.get("Layers")
    if not isinstance(layers, list):
        raise ImportFormatError("--exportLayerInfo JSON has no list under 'Layers'")
    rows = []
    for i, layer in enumerate(layers):
        if isinstance(layer, str):
            rows.append({"layer": layer, "provider": PROVIDER})
        elif isinstance(layer, dict) and "Name" in layer:
            rows.append(
                {
                    "layer": str(layer["Name"]),
                    "op_type": layer.get("LayerType"),
                    "provider": PROVIDER,
                    "precision": _layer_precision(layer),
                }
            )
        else:
            raise ImportFormatError(f"--exportLayerInfo layer {i} is neither a name nor an object")
    return pd.DataFrame(rows)


_SUMMARY_STAGES = {
    "Latency": "latency",
    "Enqueue Time": "enqueue",
    "H2D Latency": "h2d",
    "GPU Compute Time": "compute",
    "D2H Latency": "d2h",
    "End-to-End Host Latency": "end_to_end",
}


def parse_summary_json(data: dict) -> tuple[dict[tuple[str, str], float], dict, list[str]]:
    """A trt-engine-explorer `*.profile.metadata.json` -> (reported, facts, notes).

    Its lists hold the values in trtexec's print order: min, max, mean, median, then the
    percentiles (90, 95, 99 since TRT 8.6; 99 alone before).
    """
    summary = data.get("performance_summary") or {}
    reported: dict[tuple[str, str], float] = {}
    notes: list[str] = []
    for key, stage in _SUMMARY_STAGES.items():
        values = summary.get(key)
        if values is None:
            continue
        if not isinstance(values, list) or len(values) < 4:
            raise ImportFormatError(f"summary JSON: {key!r} should be a list of statistics")
        names = ["min", "max", "mean", "median"]
        if len(values) == 7:
            names += ["p90", "p95", "p99"]
        elif len(values) == 5:
            names += ["p99"]
            notes.append(f"{key}: fifth value taken as p99 (trtexec's default before 8.6)")
        elif len(values) != 4:
            notes.append(f"{key}: {len(values) - 4} percentile value(s) of unknown level left out")
        for name, value in zip(names, values):
            reported[(stage, name)] = _float(value, f"summary {key}")
    for key, stage, stat in (
        ("Throughput", "host_walltime", "throughput_qps"),
        ("Total Host Walltime", "host_walltime", "walltime_s"),
        ("Total GPU Compute Time", "compute", "total_s"),
    ):
        if summary.get(key) is not None:
            reported[(stage, stat)] = _float(summary[key], f"summary {key}")
    opts = data.get("inference_options") or {}
    dev = data.get("device_information") or {}
    duration_s, warmup_ms = _duration(opts.get("Duration"))
    facts = {
        "device_name": dev.get("Selected Device"),
        "data_transfers_included": _enabled(opts.get("Data transfers")),
        "cuda_graph": _enabled(opts.get("CUDA Graph")),
        "spin_wait": _enabled(opts.get("Spin-wait")),
        "threads": _enabled(opts.get("Multithreading")),
        "streams": _int_or_none(opts.get("Streams") or opts.get("Inference Streams")),
        "iterations": _int_or_none(opts.get("Iterations")),
        "duration_s": duration_s,
        "warmup_ms": warmup_ms,
        "separate_profile_run": _enabled(opts.get("Separate profiling")),
        "batch": _int_or_none(opts.get("Batch")),
        "printed_options": {"Inference Options": opts, "Device Information": dev},
    }
    if facts["data_transfers_included"] is not None:
        facts["no_data_transfers"] = not facts["data_transfers_included"]
    return reported, facts, notes


@dataclass
class _Exports:
    times: list[tuple[Path, list]] = field(default_factory=list)
    profile: list[tuple[Path, list]] = field(default_factory=list)
    layer_info: list[tuple[Path, dict]] = field(default_factory=list)
    summary: list[tuple[Path, dict]] = field(default_factory=list)

    def any(self) -> bool:
        return bool(self.times or self.profile or self.layer_info or self.summary)


def _merge_layers(profile: pd.DataFrame | None, info: pd.DataFrame | None) -> pd.DataFrame | None:
    if profile is None:
        return info
    if info is None:
        return profile
    info_by_name = info.drop_duplicates("layer").set_index("layer")
    merged = profile.copy()
    merged["op_type"] = merged["layer"].map(info_by_name["op_type"]) if "op_type" in info else None
    merged["precision"] = (
        merged["layer"].map(info_by_name["precision"]) if "precision" in info else None
    )
    extra = info[~info["layer"].isin(set(profile["layer"]))]
    return pd.concat([merged, extra], ignore_index=True) if len(extra) else merged


def _exports_run(
    exports: _Exports, log: ParsedLog | None, log_run: ImportedRun | None
) -> ImportedRun:
    """Build (or complete the log's) run from the JSON exports given together."""
    for kind in ("times", "profile", "layer_info", "summary"):
        items = getattr(exports, kind)
        if len(items) > 1:
            names = ", ".join(str(p) for p, _ in items)
            raise ImportFormatError(
                f"several {kind.replace('_', ' ')} exports given together ({names}); "
                "import the files of each run separately"
            )
    summary_reported: dict[tuple[str, str], float] = {}
    summary_facts: dict = {}
    notes: list[str] = []
    if exports.summary:
        summary_reported, summary_facts, notes = parse_summary_json(exports.summary[0][1])

    if log_run is not None:
        run = log_run
        meta = json.loads(run.row["meta"])
        run_notes = json.loads(run.row["notes"]) if run.row.get("notes") else []
    else:
        run_id = store.new_run_id()
        run = ImportedRun(row=run_row.new(run_id, BACKEND), tables={})
        meta, run_notes = {}, []
    run_id = run.run_id
    batch = int(run.row.get("batch_size") or summary_facts.get("batch") or 1)

    warmup_ms = meta.get("warmup_ms") or summary_facts.get("warmup_ms") or DEFAULT_WARMUP_MS
    if exports.times:
        path, records = exports.times[0]
        samples = parse_times(records, float(warmup_ms), items=batch)
        samples.insert(0, "run_id", run_id)
        run.tables["samples"] = frame("samples", samples)
        n_warm = int(samples.loc[samples["phase"] == "warmup", "iteration"].nunique())
        n_meas = int(samples.loc[samples["phase"] == "measure", "iteration"].nunique())
        meta.update(
            {
                "export_times": str(path),
                "export_times_queries": len(records),
                "export_times_warmup_queries": n_warm,
                "export_times_warmup_rule": f"startComputeMs < {warmup_ms:g} ms (trtexec's own rule)",
            }
        )
        if n_warm:
            run_notes.append(
                f"--exportTimes holds {n_warm} warmup queries (older trtexec exported them); "
                "they are phase 'warmup'"
            )
        run_notes.append(
            "h2d/compute/d2h samples are trtexec's CUDA-event durations (in host_ns and device_ns)"
        )
        if log_run is None:
            run.row["n_warmup"] = n_warm
            run.row["n_measure"] = n_meas
    layers = None
    if exports.profile:
        path, data = exports.profile[0]
        layers = parse_profile(data)
        meta["export_profile"] = str(path)
    info = None
    if exports.layer_info:
        path, data = exports.layer_info[0]
        info = parse_layer_info(data)
        meta["export_layer_info"] = str(path)
        meta["bindings"] = data.get("Bindings")
    merged = _merge_layers(layers, info)
    if merged is not None and len(merged):
        merged = merged.copy()
        merged.insert(0, "run_id", run_id)
        existing = run.tables.get("layers")
        if existing is not None and len(existing):
            run_notes.append(
                "layers from the log's profile table and from the JSON export both kept"
            )
            merged = pd.concat([existing, frame("layers", merged)], ignore_index=True)
        run.tables["layers"] = frame("layers", merged)
    if exports.summary:
        path, _ = exports.summary[0]
        meta["summary_json"] = str(path)
        rep = run.tables.get("reported")
        have = set()
        if rep is not None and len(rep):
            have = set(zip(rep["stage"], rep["statistic"]))
        extra = {k: v for k, v in summary_reported.items() if k not in have}
        rows = _reported_rows(run_id, extra)
        if rows:
            run.tables["reported"] = frame(
                "reported",
                pd.concat([rep, pd.DataFrame(rows)]) if rep is not None and len(rep) else rows,
            )
        for key in (
            "data_transfers_included",
            "no_data_transfers",
            "cuda_graph",
            "spin_wait",
            "threads",
            "streams",
            "iterations",
            "duration_s",
            "warmup_ms",
            "separate_profile_run",
        ):
            if meta.get(key) is None and summary_facts.get(key) is not None:
                meta[key] = summary_facts[key]
        meta.setdefault("printed_options", summary_facts["printed_options"])
        if meta.get("throughput_qps") is None:
            meta["throughput_qps"] = summary_reported.get(("host_walltime", "throughput_qps"))
        if meta.get("walltime_s") is None:
            meta["walltime_s"] = summary_reported.get(("host_walltime", "walltime_s"))
        if not run.row.get("device_name"):
            run.row["device_name"] = summary_facts.get("device_name")
        if run.row.get("measure_wall_s") is None:
            run.row["measure_wall_s"] = meta.get("walltime_s")
    run_notes.extend(notes)
    if log_run is None:
        names = [
            p
            for items in (exports.times, exports.profile, exports.layer_info, exports.summary)
            for p, _ in items
        ]
        stem = _common_stem([p.name for p in names])
        run.row.update(
            {
                "label": f"trtexec {stem}" if stem else "trtexec exports",
                "model": stem or None,
                "batch_size": batch,
                "precision": None,
                "measure_wall_s": meta.get("walltime_s"),
            }
        )
        if not exports.times and not exports.profile and not exports.summary:
            run_notes.append("layer information only: no timings")
        run_notes.append("precision unknown: JSON exports do not record the build flags")
    run.row["meta"] = store.json_text(meta)
    run.row["notes"] = store.json_text(run_notes)
    return run


def _common_stem(names: list[str]) -> str:
    """`m.onnx.engine.timing.json`, `m.onnx.engine.profile.json` -> `m.onnx.engine`."""
    stems = []
    for n in names:
        for suffix in (
            ".timing.json",
            ".profile.metadata.json",
            ".profile.json",
            ".graph.json",
            ".json",
        ):
            if n.endswith(suffix):
                n = n[: -len(suffix)]
                break
        stems.append(n)
    if not stems:
        return ""
    prefix = stems[0]
    for s in stems[1:]:
        while not s.startswith(prefix):
            prefix = prefix[:-1]
    return prefix.rstrip("._-")
