"""Import ONNX Runtime session profiles (`SessionOptions.enable_profiling`) as perflab runs.

The profile is a JSON array of Chrome-trace events (`ts`/`dur` in microseconds). ORT versions
differ: Node events may lack `provider`, or `args` altogether; some versions write
`<node>_fence_before` / `_fence_after` events, which are synchronisation, not kernel time, and are
left out of the per-node numbers (their total is kept in the facts).

Mapping into the store:

- `layers`: one row per node (`layer` = node name) and one row per op type and provider with
  `layer` = `"op:<OpType>"` (the `op:` prefix keeps the two kinds apart in one table). count =
  executions profiled, total_ms = summed kernel time, median_ms = median time of one execution.
  precision is the element type of the node's first output where the profile records it.
- `samples`: one row per `model_run` event: stage `compute`, phase `measure`, host_ns = its
  duration, start_ns = its start from the profiler's start.
- `reported`: `model_loading_uri` -> stage `load`, `session_initialization` -> stage `build`
  (graph optimisation and kernel creation, the ORT counterpart of an engine build), statistic
  `value` (one measurement each). The same numbers fill `runs.load_ms` / `runs.build_ms`.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from perflab import store
from perflab.errors import ImportFormatError
from perflab.importers import (
    ImportedRun,
    base_row,
    commit,
    frame,
    read_bytes,
    refuse_non_finite,
)

_KERNEL_SUFFIX = "_kernel_time"
_FENCE_RE = re.compile(r"_fence_(?:before|after)$")

# ORT element type names (as in input/output_type_shape) -> perflab precision names.
_ELEMENT_PRECISION = {
    "float": "fp32",
    "float32": "fp32",
    "double": "fp64",
    "float16": "fp16",
    "bfloat16": "bf16",
    "int8": "int8",
    "uint8": "int8",
    "float8e4m3fn": "fp8",
    "float8e5m2": "fp8",
}

# Execution providers -> perflab backend names; the first match in this order wins, because a
# TensorRT session also runs CUDA and CPU nodes, and a CUDA session runs some CPU nodes.
_PROVIDER_BACKENDS = (
    ("TensorrtExecutionProvider", "ort-trt"),
    ("NvTensorRTRTXExecutionProvider", "ort-trt"),
    ("CUDAExecutionProvider", "ort-cuda"),
)


@dataclass(frozen=True)
class ProfileTables:
    """What one ORT profile holds, as tidy frames and a few session-level numbers.

    `nodes` and `op_types` have the `layers` columns (layer, op_type, provider, precision,
    count, total_ms, median_ms) without run_id; `layers` is both together.
    """

    nodes: pd.DataFrame
    op_types: pd.DataFrame
    model_load_ms: float | None
    session_init_ms: float | None
    model_run_ms: list[float]
    model_run_start_us: list[float]
    providers: tuple[str, ...]
    facts: dict = field(default_factory=dict)

    @property
    def layers(self) -> pd.DataFrame:
        return pd.concat([self.nodes, self.op_types], ignore_index=True)

    @property
    def backend(self) -> str:
        return backend_for(self.providers)


def backend_for(providers: Iterable[str]) -> str:
    """perflab backend name for the providers a profile shows (CPU when none are recorded)."""
    names = set(providers)
    for provider, backend in _PROVIDER_BACKENDS:
        if provider in names:
            return backend
    others = sorted(n for n in names if n != "CPUExecutionProvider")
    if others:
        return "ort-" + others[0].replace("ExecutionProvider", "").lower()
    return "ort-cpu"


def _load_events(path_or_events: str | Path | Iterable[Mapping]) -> tuple[list[Mapping], str]:
    if isinstance(path_or_events, (str, Path)):
        path = Path(path_or_events)
        data = read_bytes(path, "ONNX Runtime profile")
        try:
            events = json.loads(
                data.decode("utf-8", errors="replace"), parse_constant=refuse_non_finite
            )
        except json.JSONDecodeError as exc:
            raise ImportFormatError(
                f"{path}: not valid JSON or cut short (line {exc.lineno}: {exc.msg})"
            ) from None
        source = str(path)
    else:
        events = list(path_or_events)
        source = "<events>"
    if isinstance(events, dict) and isinstance(events.get("traceEvents"), list):
        events = events["traceEvents"]
    if not isinstance(events, list):
        raise ImportFormatError(
            f"{source} is not an ONNX Runtime profile (expected a JSON array of events)"
        )
    events = [e for e in events if isinstance(e, Mapping)]
    if not any(e.get("cat") in ("Session", "Node") for e in events):
        raise ImportFormatError(
            f"{source} is not an ONNX Runtime profile: no events with cat 'Session' or 'Node'"
        )
    return events, source


def _us(event: Mapping, key: str, source: str) -> float:
    value = event.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            return float(value)  # some writers put numbers as strings
        except (TypeError, ValueError):
            raise ImportFormatError(
                f"{source}: event {event.get('name')!r} has no numeric {key!r}"
            ) from None
    return float(value)


def _precision(args: Mapping) -> str | None:
    outputs = args.get("output_type_shape")
    if isinstance(outputs, list) and outputs and isinstance(outputs[0], Mapping) and outputs[0]:
        elem = next(iter(outputs[0]))
        return _ELEMENT_PRECISION.get(str(elem).lower(), str(elem).lower())
    return None


def _aggregate(groups: Mapping[tuple, list[float]], layer_of) -> pd.DataFrame:
    rows = []
    for key, durations in groups.items():
        rows.append(
            {
                **layer_of(key),
                "count": len(durations),
                "total_ms": sum(durations),
                "median_ms": statistics.median(durations),
            }
        )
    cols = ["layer", "op_type", "provider", "precision", "count", "total_ms", "median_ms"]
    return pd.DataFrame(rows, columns=cols)


def parse_ort_profile(path_or_events: str | Path | Iterable[Mapping]) -> ProfileTables:
    """Parse an ORT profile (a path, or the already-loaded event list) into ProfileTables.

    Raises ImportFormatError for files that are not ORT profiles. Usable on its own, e.g. by a
    backend that profiles an extra pass and wants per-node times without writing a run.
    """
    events, source = _load_events(path_or_events)
    node_durations: dict[str, list[float]] = defaultdict(list)
    node_info: dict[str, dict] = {}
    op_durations: dict[tuple, list[float]] = defaultdict(list)
    model_load = session_init = None
    runs: list[tuple[float, float]] = []
    fence_ms = 0.0
    n_fence = 0
    other_names: dict[str, int] = defaultdict(int)
    providers: set[str] = set()
    pids = set()
    for e in events:
        cat = e.get("cat")
        name = str(e.get("name", ""))
        if cat == "Session":
            if name == "model_loading_uri" or name == "model_loading_array":
                model_load = _us(e, "dur", source) / 1000.0
            elif name == "session_initialization":
                session_init = _us(e, "dur", source) / 1000.0
            elif name == "model_run":
                runs.append((_us(e, "ts", source), _us(e, "dur", source) / 1000.0))
            else:
                other_names[name] += 1
            pids.add(e.get("pid"))
            continue
        if cat != "Node":
            other_names[f"{cat}:{name}"] += 1
            continue
        if _FENCE_RE.search(name):
            fence_ms += _us(e, "dur", source) / 1000.0
            n_fence += 1
            continue
        if not name.endswith(_KERNEL_SUFFIX):
            other_names[f"Node:{name}"] += 1
            continue
        node = name[: -len(_KERNEL_SUFFIX)]
        dur_ms = _us(e, "dur", source) / 1000.0
        args = e.get("args") if isinstance(e.get("args"), Mapping) else {}
        op_type = args.get("op_name")
        provider = args.get("provider")
        if provider:
            providers.add(str(provider))
        info = node_info.setdefault(
            node, {"op_type": op_type, "provider": provider, "precision": None}
        )
        info["op_type"] = info["op_type"] or op_type
        info["provider"] = info["provider"] or provider
        info["precision"] = info["precision"] or _precision(args)
        node_durations[node].append(dur_ms)
        if op_type:
            op_durations[(op_type, provider)].append(dur_ms)
    if not runs and not node_durations and model_load is None and session_init is None:
        raise ImportFormatError(f"{source} holds no ORT session or node timing events")

    nodes = _aggregate(node_durations, lambda node: {"layer": node, **node_info[node]})

    def op_layer(key: tuple) -> dict:
        op_type, provider = key
        precisions = {
            node_info[n]["precision"]
            for n in node_durations
            if node_info[n]["op_type"] == op_type and node_info[n]["provider"] == provider
        } - {None}
        precision = precisions.pop() if len(precisions) == 1 else ("mixed" if precisions else None)
        return {
            "layer": f"{store.LAYER_OP_PREFIX}{op_type}",
            "op_type": op_type,
            "provider": provider,
            "precision": precision,
        }

    op_types = _aggregate(op_durations, op_layer)
    runs.sort()
    facts = {
        "n_events": len(events),
        "n_nodes": len(node_durations),
        "n_node_events": int(sum(len(v) for v in node_durations.values())),
        "nodes_without_op_type": sorted(n for n, i in node_info.items() if not i["op_type"]),
        "nodes_without_provider": int(sum(1 for i in node_info.values() if not i["provider"])),
        "fence_events": n_fence,
        "fence_ms": fence_ms,
        "other_events": dict(other_names),
        "pids": sorted(p for p in pids if p is not None),
        "node_kernel_ms_total": float(sum(sum(v) for v in node_durations.values())),
    }
    return ProfileTables(
        nodes=nodes,
        op_types=op_types,
        model_load_ms=model_load,
        session_init_ms=session_init,
        model_run_ms=[d for _, d in runs],
        model_run_start_us=[t for t, _ in runs],
        providers=tuple(sorted(providers)),
        facts=facts,
    )


def _wall_s(tables: ProfileTables) -> float | None:
    """From the first model_run's start to the last one's end."""
    if not tables.model_run_ms:
        return None
    end_us = tables.model_run_start_us[-1] + tables.model_run_ms[-1] * 1000.0
    return (end_us - tables.model_run_start_us[0]) / 1e6


def read_ort_profile_run(
    path: str | Path,
    *,
    model: str | None = None,
    backend: str | None = None,
    study: str | None = None,
    batch_size: int | None = None,
) -> ImportedRun:
    """Parse one profile into a run (rows and tables) without writing anything."""
    tables = parse_ort_profile(path)
    run_id = store.new_run_id()
    notes = []
    if not tables.providers:
        notes.append("the profile records no execution provider (older ORT); CPU assumed")
    if tables.facts["fence_events"]:
        notes.append(f"{tables.facts['fence_events']} fence events left out of kernel times")
    be = backend or tables.backend
    layers = tables.layers.copy()
    layers.insert(0, "run_id", run_id)
    samples = pd.DataFrame(
        {
            "run_id": run_id,
            "iteration": range(len(tables.model_run_ms)),
            "phase": "measure",
            "stage": "compute",
            "start_ns": [round(t * 1000) for t in tables.model_run_start_us],
            "host_ns": [round(ms * 1e6) for ms in tables.model_run_ms],
            "device_ns": None,
            "items": batch_size,
        }
    )
    reported = [
        {"run_id": run_id, "stage": stage, "statistic": "value", "value_ms": value}
        for stage, value in (("load", tables.model_load_ms), ("build", tables.session_init_ms))
        if value is not None
    ]
    meta = {
        "source": str(path),
        "profiler": "onnxruntime",
        "providers": list(tables.providers),
        "model_load_ms": tables.model_load_ms,
        "session_init_ms": tables.session_init_ms,
        "model_run_ms": tables.model_run_ms,
        "reported_mapping": {"model_loading_uri": "load", "session_initialization": "build"},
        "layers_convention": "per node: layer = node name; per op type: layer = 'op:<OpType>'",
        **tables.facts,
    }
    device = "cpu" if be == "ort-cpu" else None
    row = base_row(
        run_id,
        be,
        study=study,
        label=f"{be} {Path(model).name if model else Path(path).stem}",
        model=model,
        device=device,
        batch_size=batch_size,
        n_warmup=0,
        n_measure=len(tables.model_run_ms),
        load_ms=tables.model_load_ms,
        build_ms=tables.session_init_ms,
        first_ms=tables.model_run_ms[0] if tables.model_run_ms else None,
        measure_wall_s=_wall_s(tables),
        notes=notes,
        meta=meta,
    )
    return ImportedRun(
        row=row,
        tables={
            "layers": frame("layers", layers),
            "samples": frame("samples", samples),
            "reported": frame("reported", reported),
        },
    )


def import_ort_profile(
    path: str | Path,
    out: str | Path,
    *,
    model: str | None = None,
    backend: str | None = None,
    study: str | None = None,
    batch_size: int | None = None,
) -> str:
    """Import one ORT profile file into `out` as a run; returns its run id.

    The backend is inferred from the providers in the profile (CUDAExecutionProvider ->
    `ort-cuda`, TensorrtExecutionProvider -> `ort-trt`, otherwise `ort-cpu`) unless given.
    """
    run = read_ort_profile_run(
        path, model=model, backend=backend, study=study, batch_size=batch_size
    )
    return commit(out, [run])[0]
