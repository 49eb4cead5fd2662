"""ONNX Runtime session profiles (`SessionOptions.enable_profiling`, Chrome-trace JSON events)
read into per-node and per-op-type tables.

ORT versions differ: Node events may lack `provider`, or `args` altogether; some versions write
`<node>_fence_before` / `_fence_after` events, which are synchronisation, not kernel time, and are
left out of the per-node numbers (their total is kept in the facts). Shared by the ONNX Runtime
backend (its precision audit) and the ORT profile importer; it reads no file and writes nothing.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import pandas as pd

from perflab.errors import ImportFormatError

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


def check_events(events: object, source: str) -> Iterator[Mapping]:
    """The profile's events (a bare array, Chrome's {"traceEvents": [...]}, or an iterator of
    events read one at a time), or ImportFormatError naming `source` when it is not a list."""
    if isinstance(events, dict) and isinstance(events.get("traceEvents"), list):
        events = events["traceEvents"]
    if not isinstance(events, (list, Iterator)):
        raise ImportFormatError(
            f"{source} is not an ONNX Runtime profile (expected a JSON array of events)"
        )
    return (e for e in events if isinstance(e, Mapping))


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


def parse_events(events: Iterable[Mapping], source: str = "<events>") -> ProfileTables:
    """Parse an ORT profile's events into ProfileTables.

    Raises ImportFormatError for event lists that are not ORT profiles. Used by the importer on a
    profile file, and by the ONNX Runtime backend on the profile of its own audit pass.
    """
    n_events = n_timed = 0
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
    for e in check_events(events, source):  # one pass: the events may be read as they come
        n_events += 1
        cat = e.get("cat")
        n_timed += cat in ("Session", "Node")
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
    if not n_timed:
        raise ImportFormatError(
            f"{source} is not an ONNX Runtime profile: no events with cat 'Session' or 'Node'"
        )
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
            "layer": f"op:{op_type}",
            "op_type": op_type,
            "provider": provider,
            "precision": precision,
        }

    op_types = _aggregate(op_durations, op_layer)
    runs.sort()
    facts = {
        "n_events": n_events,
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
