"""Native TensorRT backend (`trt`): engine built from the ONNX model, run on CuPy buffers.

Build: the ONNX file is parsed into a network and built into a serialized engine, timed as
`build`; deserializing it is `load`. Engines and the builder's timing cache live on disk under
`cache_dir` (default: perflab's cache folder /trt), keyed by everything that changes the engine
(`engine_cache_key`), so a sweep builds each engine once.

Precision (`precision_plan`): TensorRT 10.12 deprecated the precision builder flags and 11
removed them in favour of strongly typed networks, whose precision is the ONNX file's own. So:
- typing "strong": fp32 runs the model as is; fp16 runs perflab's fp16 conversion; int8 runs its
  QDQ (explicit quantization) conversion; no precision flags.
- typing "weak": the fp32 model with BuilderFlag FP16 / BF16, and the QDQ model with INT8;
  "best" is FP16 + INT8 on the QDQ model (only weak typing lets TensorRT pick).
- typing "auto" (default): strong from 10.12 on where a strong path exists, weak before.
What the engine really runs is read back from the engine inspector (per-layer precision, into
the `layers` table) and the dominant layer precision is `precision_effective`.

Run (latency mode): h2d, compute and d2h are timed by `perflab.cuda.DeviceIO` (pinned host
buffers, one non-blocking stream, CUDA event pairs, each stage synchronized). compute is
`execute_async_v3(stream)` after `set_tensor_address` (TensorRT >= 8.5), or
`execute_async_v2(bindings, stream)` on older versions (chosen by `io_api`); with option
`cuda_graph: true` the enqueue is captured once into a CUDA graph and compute launches it.

Throughput mode: `submit` enqueues h2d + compute + d2h of one request on one of `streams` CUDA
streams (one execution context and buffer set per request slot) and returns at once; `wait`
blocks on that request and records its device stage times.

Options: device_id, typing (auto|strong|weak), max_batch (profile maximum, default the batch
size), streams (throughput, default 2), cuda_graph, layer_profile (IProfiler pass after the
measured phase), layer_profile_iterations, workspace_mb, builder_optimization_level (0-5),
tf32 (default true, TensorRT's default), cache (engine cache on/off), cache_dir,
calibration_batches (int8 QDQ calibration), telemetry (NVML sampling, default true),
telemetry_interval_ms.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from collections.abc import Collection, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perflab.backends.base import Backend, engine_facts
from perflab.backends.gpu_telemetry import start_sampler, telemetry_tables
from perflab.backends.inflight import Request, submit_on_slot
from perflab.backends.option_values import OptionValues
from perflab.errors import BackendUnavailable, ModelError, SpecError, Unsupported
from perflab.options import Option
from perflab.precisions import COMPUTE_LOWEST_FIRST, precision_effective, tensor_precision

if TYPE_CHECKING:
    import pandas as pd

    from perflab.models import ModelInfo, TensorSpec
    from perflab.pipelines import Pipeline
    from perflab.spec import RunConfig
    from perflab.timing import Recorder, SetupTimer

__all__ = [
    "BindingApi",
    "PrecisionPlan",
    "TensorApi",
    "TensorRTBackend",
    "TrtOptions",
    "engine_cache_key",
    "io_api",
    "layer_precision_counts",
    "layer_rows",
    "parse_engine_layers",
    "parse_options",
    "precision_plan",
    "profile_shapes",
    "profiles_needed",
    "trt_version",
]

#: Bumped when what perflab feeds the builder changes, so cached engines are not reused stale.
ENGINE_CACHE_VERSION = 1
#: The version from which "auto" typing prefers strongly typed networks (flags deprecated).
STRONG_TYPING_FROM = (10, 12)
#: Builder precision flags per precision, for weakly typed networks.
WEAK_FLAGS: dict[str, tuple[str, ...]] = {
    "fp32": (),
    "fp16": ("FP16",),
    "bf16": ("BF16",),
    "int8": ("INT8",),
    "best": ("FP16", "INT8"),
}
#: Which ONNX file each precision runs from: perflab's conversions are fp16 and int8 (QDQ).
STRONG_MODEL = {"fp32": "fp32", "fp16": "fp16", "int8": "int8"}
WEAK_MODEL = {"fp32": "fp32", "fp16": "fp32", "bf16": "fp32", "int8": "int8", "best": "int8"}
TYPINGS = ("auto", "strong", "weak")
DEFAULT_STREAMS = 2
DEFAULT_LAYER_PROFILE_ITERATIONS = 20
LAYER_PROFILE_WARMUP = 3
DEFAULT_CALIBRATION_SAMPLES = 32
#: Inspector layer types that move or reformat data: left out of the dominant precision.
BOOKKEEPING_LAYERS = frozenset(
    (
        "Reformat",
        "NoOp",
        "Shuffle",
        "Constant",
        "Identity",
        "Cast",
        "Slice",
        "Concatenation",
        "Gather",
        "Shape",
        "Quantize",
        "Dequantize",
        "ShapeHostToDevice",
    )
)


# ------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class TrtOptions:
    device_id: int = 0
    typing: str = "auto"
    max_batch: int | None = None
    streams: int = DEFAULT_STREAMS
    cuda_graph: bool = False
    layer_profile: bool = False
    layer_profile_iterations: int = DEFAULT_LAYER_PROFILE_ITERATIONS
    workspace_mb: int = 0
    builder_optimization_level: int | None = None
    tf32: bool = True
    cache: bool = True
    cache_dir: str | None = None
    calibration_batches: int | None = None
    telemetry: bool = True
    telemetry_interval_ms: float = 100.0


DECLARED_OPTIONS = (
    Option("device_id", "int >= 0", 0, "GPU to run on"),
    Option("typing", "auto | strong | weak", "auto",
           "network typing: strong keeps the ONNX types, weak lets the builder choose"),
    Option("max_batch", "int >= batch_size", None,
           "largest batch of the optimization profile; default: the batch size"),
    Option("streams", "int >= 1", DEFAULT_STREAMS, "CUDA streams (contexts) for throughput mode"),
    Option("cuda_graph", "bool", False, "capture the enqueue in a CUDA graph"),
    Option("layer_profile", "bool", False, "per-layer timings after the measured phase"),
    Option("layer_profile_iterations", "int >= 1", DEFAULT_LAYER_PROFILE_ITERATIONS,
           "profiled iterations (layer table)"),
    Option("workspace_mb", "int >= 0", 0, "builder workspace limit; 0: TensorRT's default"),
    Option("builder_optimization_level", "int 0..5", None, "builder optimization level"),
    Option("tf32", "bool", True, "allow TF32 in fp32 layers"),
    Option("cache", "bool", True, "reuse built engines from the engine cache"),
    Option("cache_dir", "path", None, "engine cache folder"),
    Option("calibration_batches", "int >= 1", None, "int8 calibration batches"),
    Option("telemetry", "bool", True, "sample GPU clocks, power and throttling during the run"),
    Option("telemetry_interval_ms", "number >= 10", 100.0, "telemetry sampling interval"),
)  # fmt: skip


def parse_options(options: Mapping[str, Any], batch_size: int = 1) -> TrtOptions:
    """Validate the trt backend's options; SpecError names the bad key and the valid ones."""
    valid = [f.name for f in TrtOptions.__dataclass_fields__.values()]
    values = OptionValues("trt", options, vars(TrtOptions()), none_passes=True)
    values.reject_unknown(valid)
    typing = values.choice("typing", TYPINGS)
    max_batch = values.integer("max_batch", 1)
    if max_batch is not None and max_batch < batch_size:
        raise SpecError(
            f"trt: option 'max_batch': {max_batch} is smaller than the batch size "
            f"{batch_size}; the optimization profile must cover the batch"
        )
    interval = values.number("telemetry_interval_ms", 10)
    cache_dir = options.get("cache_dir")
    if cache_dir is not None and not isinstance(cache_dir, str):
        raise values.bad("cache_dir", cache_dir, "must be a folder path")
    return TrtOptions(
        device_id=values.integer("device_id", 0),
        typing=typing,
        max_batch=max_batch,
        streams=values.integer("streams", 1),
        cuda_graph=values.boolean("cuda_graph"),
        layer_profile=values.boolean("layer_profile"),
        layer_profile_iterations=values.integer("layer_profile_iterations", 1),
        workspace_mb=values.integer("workspace_mb", 0),
        builder_optimization_level=values.integer("builder_optimization_level", 0, 5),
        tf32=values.boolean("tf32"),
        cache=values.boolean("cache"),
        cache_dir=cache_dir,
        calibration_batches=values.integer("calibration_batches", 1),
        telemetry=values.boolean("telemetry"),
        telemetry_interval_ms=interval,
    )


# ------------------------------------------------------------------------------- versions


def trt_version(trt: Any) -> tuple[int, ...]:
    """tensorrt.__version__ "10.16.1.11" -> (10, 16, 1, 11); unparsable parts stop the tuple."""
    parts: list[int] = []
    for p in str(getattr(trt, "__version__", "0")).split("."):
        digits = p[: len(p) - len(p.lstrip("0123456789"))]  # leading digits ("0rc1" -> "0")
        if not digits:
            break
        parts.append(int(digits))
        if digits != p:
            break
    return tuple(parts) or (0,)


def enum_names(enum: Any) -> frozenset[str]:
    """Member names of a TensorRT (pybind11) enum class; empty when the enum is absent."""
    if enum is None:
        return frozenset()
    members = getattr(enum, "__members__", None)
    if members is not None:
        return frozenset(members)
    return frozenset(n for n in dir(enum) if n.isupper())


@dataclass(frozen=True)
class PrecisionPlan:
    """How an engine gets its precision: typing, builder flags, and which ONNX file it reads."""

    precision: str
    strongly_typed: bool
    builder_flags: tuple[str, ...]
    model_precision: str  # "fp32" (the model as is), "fp16" or "int8" (perflab's conversions)

    @property
    def typing(self) -> str:
        return "strong" if self.strongly_typed else "weak"


def precision_plan(
    precision: str,
    version: Sequence[int],
    builder_flags: Collection[str],
    network_flags: Collection[str],
    typing: str = "auto",
) -> PrecisionPlan:
    """Decide typing, flags and model file for `precision` on a TensorRT of `version` whose
    BuilderFlag members are `builder_flags` and NetworkDefinitionCreationFlag members
    `network_flags`. Raises Unsupported when this TensorRT cannot build that precision."""
    if precision not in WEAK_FLAGS:
        raise Unsupported(f"trt: unknown precision {precision!r}")
    v = ".".join(map(str, version))
    strong_ok = "STRONGLY_TYPED" in network_flags and precision in STRONG_MODEL
    weak_flags = WEAK_FLAGS[precision]
    weak_ok = all(f in builder_flags for f in weak_flags)
    strong = PrecisionPlan(precision, True, (), STRONG_MODEL.get(precision, ""))
    weak = PrecisionPlan(precision, False, weak_flags, WEAK_MODEL[precision])

    def why_not_strong() -> str:
        if "STRONGLY_TYPED" not in network_flags:
            return f"TensorRT {v} has no strongly typed networks (they came with 9.x/10.0)"
        if precision == "bf16":
            return (
                "a strongly typed bf16 engine needs a bf16 ONNX model, and perflab "
                "converts models to fp16 and int8 only"
            )
        return "strongly typed networks cannot let TensorRT pick precisions ('best')"

    def why_not_weak() -> str:
        missing = [f for f in weak_flags if f not in builder_flags]
        return (
            f"TensorRT {v} has no BuilderFlag {', '.join(missing)} (removed in 11 in favour "
            "of strong typing)"
        )

    if typing == "strong":
        if not strong_ok:
            raise Unsupported(f"trt: precision {precision} with typing strong: {why_not_strong()}")
        return strong
    if typing == "weak":
        if not weak_ok:
            raise Unsupported(f"trt: precision {precision} with typing weak: {why_not_weak()}")
        return weak
    prefer_strong = tuple(version) >= STRONG_TYPING_FROM and precision != "best"
    if prefer_strong and strong_ok:
        return strong
    if weak_ok:
        return weak
    if strong_ok:
        return strong
    raise Unsupported(f"trt: precision {precision}: {why_not_strong()}; {why_not_weak()}")


def profiles_needed(version: Sequence[int], n_contexts: int, dynamic: bool) -> int:
    """Optimization profiles to build: 0 for static shapes; with dynamic shapes one, shared by
    every execution context from TensorRT 10 on (profile sharing is on by default there), and
    one per context before (a profile could serve only one context at a time)."""
    if not dynamic:
        return 0
    return 1 if tuple(version) >= (10,) else max(1, n_contexts)


def profile_shapes(
    inputs: Sequence[TensorSpec],
    batch_size: int,
    max_batch: int | None = None,
    network_shapes: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) shapes of every input with a dynamic dim.

    The batch dim (dim 0, when dynamic in the network and equal to `batch_size` in the resolved
    spec) spans 1 .. max_batch (default: the batch size) with opt = the batch size; other
    dynamic dims are pinned to the spec's value. `network_shapes` are the parsed network's input
    shapes with -1 for dynamic dims; without them every input's dim 0 counts as dynamic.
    Inputs whose network shape is fully static are left out (TensorRT needs no profile there).
    """
    top = batch_size if max_batch is None else max_batch
    if top < batch_size:
        raise SpecError(f"max_batch {top} is smaller than the batch size {batch_size}")
    out = {}
    for spec in inputs:
        shape = tuple(int(d) for d in spec.shape)
        net = None if network_shapes is None else network_shapes.get(spec.name)
        if net is None and network_shapes is not None:
            raise ModelError(
                f"input {spec.name!r} is not an input of the TensorRT network "
                f"({', '.join(network_shapes)})"
            )
        if net is None:
            net = (-1,) + shape[1:]
        net = tuple(int(d) for d in net)
        if len(net) != len(shape):
            raise ModelError(
                f"input {spec.name!r}: the network has rank {len(net)}, the "
                f"resolved shape {shape} rank {len(shape)}"
            )
        if all(d >= 0 for d in net):
            if net != shape:
                raise ModelError(
                    f"input {spec.name!r}: the network's static shape {net} "
                    f"differs from the resolved shape {shape}"
                )
            continue
        lo, opt, hi = list(shape), list(shape), list(shape)
        for i, d in enumerate(net):
            if d >= 0 and d != shape[i]:
                raise ModelError(
                    f"input {spec.name!r}: dim {i} is fixed at {d} in the network "
                    f"but resolved to {shape[i]}"
                )
            if d < 0 and i == 0 and shape[0] == batch_size:
                lo[0], hi[0] = 1, top
        out[spec.name] = (tuple(lo), tuple(opt), tuple(hi))
    return out


def engine_cache_key(
    *,
    model_sha256: str,
    plan: PrecisionPlan,
    inputs: Sequence[TensorSpec],
    batch_size: int,
    max_batch: int | None,
    n_profiles: int,
    trt_version: str,
    gpu_name: str,
    compute_capability: str,
    build_options: Mapping[str, Any] | None = None,
) -> str:
    """A stable hex key for an engine: same key, same engine. Everything that changes what
    the builder makes is in it: the model bytes, precision plan, input shapes and profile
    range, TensorRT version, GPU model and compute capability, and the build options."""
    content = {
        "version": ENGINE_CACHE_VERSION,
        "model_sha256": model_sha256,
        "precision": plan.precision,
        "typing": plan.typing,
        "builder_flags": sorted(plan.builder_flags),
        "model_precision": plan.model_precision,
        "inputs": [[t.name, [int(d) for d in t.shape], str(t.dtype)] for t in inputs],
        "batch_size": int(batch_size),
        "max_batch": int(max_batch if max_batch is not None else batch_size),
        "n_profiles": int(n_profiles),
        "trt_version": str(trt_version),
        "gpu_name": str(gpu_name),
        "compute_capability": str(compute_capability),
        "build_options": dict(sorted((build_options or {}).items())),
    }
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def timing_cache_name(trt_version: str, gpu_name: str, compute_capability: str) -> str:
    """File name of the builder's timing cache: one per TensorRT version and GPU model."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in gpu_name).strip("-").lower() or "gpu"
    return f"timing-trt{trt_version}-{slug}-sm{compute_capability.replace('.', '')}.cache"


# ------------------------------------------------------------------------------- I/O APIs


class TensorApi:
    """Name-based I/O (TensorRT >= 8.5): set_tensor_address + execute_async_v3(stream)."""

    name = "v3"

    def __init__(self, trt: Any, engine: Any) -> None:
        self.trt, self.engine = trt, engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == is_input]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) != is_input]

    def dtype(self, name: str) -> np.dtype:
        return _np_dtype(self.trt, self.engine.get_tensor_dtype(name), name)

    def new_slot(self, ctx: Any, profile: int, stream_ptr: int) -> Any:
        if profile and hasattr(ctx, "set_optimization_profile_async"):
            ctx.set_optimization_profile_async(profile, stream_ptr)
        return None

    def set_input_shape(self, ctx: Any, state: Any, name: str, shape: Sequence[int]) -> None:
        if not ctx.set_input_shape(name, tuple(int(d) for d in shape)):
            raise ModelError(
                f"TensorRT refused input shape {tuple(shape)} for {name!r} "
                "(outside the engine's optimization profile?)"
            )

    def output_shape(self, ctx: Any, state: Any, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in ctx.get_tensor_shape(name))

    def bind(self, ctx: Any, state: Any, name: str, ptr: int) -> None:
        if not ctx.set_tensor_address(name, int(ptr)):
            raise RuntimeError(f"TensorRT refused the device address of {name!r}")

    def execute(self, ctx: Any, state: Any, stream_ptr: int) -> None:
        if not ctx.execute_async_v3(stream_ptr):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")


class BindingApi:
    """Binding-index I/O (TensorRT 7 / 8 before 8.5): execute_async_v2(bindings, stream).

    With several optimization profiles each has its own copy of the bindings: profile k's
    binding of a tensor is its index + k * (bindings per profile).
    """

    name = "v2"

    def __init__(self, trt: Any, engine: Any) -> None:
        self.trt, self.engine = trt, engine
        n_profiles = max(1, int(getattr(engine, "num_optimization_profiles", 1)))
        self.per_profile = int(engine.num_bindings) // n_profiles
        names = [engine.get_binding_name(i) for i in range(self.per_profile)]
        self.index = {n: i for i, n in enumerate(names)}
        self.inputs = [n for i, n in enumerate(names) if engine.binding_is_input(i)]
        self.outputs = [n for i, n in enumerate(names) if not engine.binding_is_input(i)]

    def dtype(self, name: str) -> np.dtype:
        return _np_dtype(self.trt, self.engine.get_binding_dtype(self.index[name]), name)

    def new_slot(self, ctx: Any, profile: int, stream_ptr: int) -> dict[str, Any]:
        if profile:
            ctx.set_optimization_profile_async(profile, stream_ptr)
        return {
            "offset": profile * self.per_profile,
            "bindings": [0] * int(self.engine.num_bindings),
        }

    def set_input_shape(self, ctx: Any, state: Any, name: str, shape: Sequence[int]) -> None:
        if not ctx.set_binding_shape(self.index[name] + state["offset"], tuple(shape)):
            raise ModelError(f"TensorRT refused input shape {tuple(shape)} for {name!r}")

    def output_shape(self, ctx: Any, state: Any, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in ctx.get_binding_shape(self.index[name] + state["offset"]))

    def bind(self, ctx: Any, state: Any, name: str, ptr: int) -> None:
        state["bindings"][self.index[name] + state["offset"]] = int(ptr)

    def execute(self, ctx: Any, state: Any, stream_ptr: int) -> None:
        if not ctx.execute_async_v2(bindings=state["bindings"], stream_handle=stream_ptr):
            raise RuntimeError("TensorRT execute_async_v2 failed (see the TensorRT log)")


def io_api(trt: Any) -> type[TensorApi | BindingApi]:
    """The I/O API this TensorRT has: name-based v3 where it exists, binding indices before."""
    ctx_cls = getattr(trt, "IExecutionContext", None)
    if hasattr(ctx_cls, "execute_async_v3") and hasattr(ctx_cls, "set_tensor_address"):
        return TensorApi
    if hasattr(ctx_cls, "execute_async_v2"):
        return BindingApi
    raise BackendUnavailable(
        f"tensorrt {getattr(trt, '__version__', '?')}: its execution context has neither "
        "execute_async_v3 nor execute_async_v2"
    )


def _np_dtype(trt: Any, trt_dtype: Any, name: str) -> np.dtype:
    try:
        return np.dtype(trt.nptype(trt_dtype))
    except TypeError:
        raise Unsupported(
            f"trt: I/O tensor {name!r} has TensorRT type {trt_dtype}, which has no "
            "numpy equivalent (bf16/fp8/int4 I/O)"
        ) from None


# ------------------------------------------------------------------------------- inspection


def parse_engine_layers(info: str | Mapping[str, Any]) -> list[dict[str, Any]]:
    """Layers of an engine from `IEngineInspector.get_engine_information(JSON)`.

    Returns [{"layer", "op_type", "precision"}]; precision is the lowest float/int8 precision
    among the layer's input tensors ("" when the engine was built without DETAILED profiling
    verbosity, where layers are only names). Reads TensorRT 8-10 ("Bindings") and 11
    ("I/O Tensors") documents alike, since only "Layers" is used.
    """
    data = json.loads(info) if isinstance(info, str) else dict(info)
    out = []
    for layer in data.get("Layers", []):
        if isinstance(layer, str):
            out.append({"layer": layer, "op_type": "", "precision": ""})
            continue
        precisions = []
        for tensor in layer.get("Inputs", []) or []:
            if isinstance(tensor, Mapping):
                p = tensor_precision(str(tensor.get("Format/Datatype", "")))
                if p in COMPUTE_LOWEST_FIRST:
                    precisions.append(p)
        if not precisions:  # e.g. a layer fed only by constants: use what it produces
            for tensor in layer.get("Outputs", []) or []:
                if isinstance(tensor, Mapping):
                    p = tensor_precision(str(tensor.get("Format/Datatype", "")))
                    if p in COMPUTE_LOWEST_FIRST:
                        precisions.append(p)
        precision = min(precisions, key=COMPUTE_LOWEST_FIRST.index) if precisions else ""
        out.append(
            {
                "layer": str(layer.get("Name", "")),
                "op_type": str(layer.get("LayerType", "")),
                "precision": precision,
            }
        )
    return out


def layer_precision_counts(layers: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Compute layers per precision: layers not in BOOKKEEPING_LAYERS with a known precision
    (what `precisions.precision_effective` names the engine from)."""
    counts: dict[str, int] = {}
    for layer in layers:
        p = layer.get("precision") or ""
        if not p or layer.get("op_type") in BOOKKEEPING_LAYERS:
            continue
        counts[p] = counts.get(p, 0) + 1
    return dict(sorted(counts.items()))


def layer_rows(
    layers: Sequence[Mapping[str, Any]], times_ms: Mapping[str, Sequence[float]] | None = None
) -> list[dict[str, Any]]:
    """`layers` table rows: the inspector's layers with, where a profiling pass ran, the times
    IProfiler reported per layer (count, total_ms, median_ms). Layers the profiler reports that
    the inspector does not list (reformats TensorRT adds at run time) are appended."""
    nan = float("nan")
    times = dict(times_ms or {})
    rows = []
    seen = set()
    for layer in layers:
        name = str(layer.get("layer", ""))
        seen.add(name)
        t = list(times.get(name, ()))
        rows.append(
            {
                "layer": name,
                "op_type": str(layer.get("op_type", "")),
                "provider": "tensorrt",
                "precision": str(layer.get("precision", "")),
                "count": len(t),
                "total_ms": float(sum(t)) if t else nan,
                "median_ms": float(statistics.median(t)) if t else nan,
            }
        )
    for name, t in times.items():
        if name in seen or not t:
            continue
        rows.append(
            {
                "layer": name,
                "op_type": "",
                "provider": "tensorrt",
                "precision": "",
                "count": len(t),
                "total_ms": float(sum(t)),
                "median_ms": float(statistics.median(t)),
            }
        )
    return rows


# ------------------------------------------------------------------------------- backend


@dataclass
class _Slot:
    """One request's resources: execution context, buffers on a stream, optional CUDA graph."""

    ctx: Any
    state: Any
    io: Any  # perflab.cuda.DeviceIO
    graph: Any = None
    enqueue: Any = None


@dataclass
class _Built:
    plan_bytes: bytes = b""
    cache: str = "off"  # hit | miss | off
    key: str = ""
    path: str = ""
    notes: list[str] = field(default_factory=list)


class TensorRTBackend(Backend):
    """Native TensorRT (see the module docstring)."""

    name = "trt"
    supports_throughput = True
    options = DECLARED_OPTIONS

    option_parser = staticmethod(parse_options)
    option_parser_args = ("options", "batch_size")

    def __init__(self, config: RunConfig):
        super().__init__(config)
        self.opts = parse_options(config.option_dict, config.batch_size)
        self.precision = config.precision
        self.device = f"cuda:{self.opts.device_id}"
        self._slots: list[_Slot] = []
        self._pool: Any = None
        self._clock: Any = None
        self._streams: list[Any] = []
        self._engine: Any = None
        self._runtime: Any = None
        self._logger: Any = None
        self._api: Any = None
        self._trt: Any = None
        self._cp: Any = None
        self._layers: list[dict[str, Any]] = []
        self._layer_times: dict[str, list[float]] | None = None
        self._precision_effective: str | None = None
        self._meta: dict[str, Any] = {}
        self._notes: list[str] = []
        self._sampler: Any = None
        self._t0_ns: int | None = None
        self._device_name = ""
        self._specs_in: list[TensorSpec] = []

    # -- setup

    def setup(self, model: ModelInfo | None, pipeline: Pipeline, timer: SetupTimer) -> None:
        from perflab import cuda

        if model is None:
            raise Unsupported("trt needs an ONNX model")
        cuda.require_gpu(self.opts.device_id, "trt")
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise BackendUnavailable(
                f"trt unavailable: cannot import tensorrt ({exc}); "
                "pip install 'perflab[gpu,tensorrt]'"
            ) from exc
        import cupy as cp

        self._trt, self._cp = trt, cp
        version = trt_version(trt)
        cp.cuda.Device(self.opts.device_id).use()
        self._device_name, cc = _device_identity(cp, self.opts.device_id)
        if self.precision == "bf16" and cc < (8, 0):
            raise Unsupported(
                f"trt: bf16 needs compute capability 8.0 or newer; "
                f"{self._device_name} is {cc[0]}.{cc[1]}"
            )
        plan = precision_plan(
            self.precision,
            version,
            enum_names(trt.BuilderFlag),
            enum_names(getattr(trt, "NetworkDefinitionCreationFlag", None)),
            self.opts.typing,
        )
        api_cls = io_api(trt)
        throughput = self.config.mode == "throughput"
        n_slots = _slot_count(self.config) if throughput else 1
        dynamic_hint = True  # refined once the network is parsed; the key covers both cases
        n_profiles = profiles_needed(version, n_slots, dynamic_hint)
        self._meta.update(
            trt_version=trt.__version__,
            typing=plan.typing,
            builder_flags=list(plan.builder_flags),
            io_api=api_cls.name,
            cuda_graph=self.opts.cuda_graph,
            slots=n_slots,
            tf32=self.opts.tf32,
        )

        if plan.model_precision == "fp32":
            onnx_path, model_sha = str(model.path), model.sha256
        else:  # converting (or finding the cached conversion) is part of building the engine
            with timer("build"):
                onnx_path, model_sha = self._model_file(model, pipeline, plan)
        build_options = {
            "workspace_mb": self.opts.workspace_mb,
            "builder_optimization_level": self.opts.builder_optimization_level,
            "tf32": self.opts.tf32,
        }
        key = engine_cache_key(
            model_sha256=model_sha,
            plan=plan,
            inputs=model.inputs,
            batch_size=self.config.batch_size,
            max_batch=self.opts.max_batch,
            n_profiles=n_profiles,
            trt_version=trt.__version__,
            gpu_name=self._device_name,
            compute_capability=f"{cc[0]}.{cc[1]}",
            build_options=build_options,
        )
        cache_dir = self._cache_dir()
        engine_path = cache_dir / f"{key}.engine" if cache_dir else None
        logger = self._logger = _logger(trt)  # TensorRT keeps a pointer: it must outlive the engine
        built = _Built(key=key, path=str(engine_path or ""))
        if engine_path is not None and engine_path.exists():
            with timer("load"):
                blob = engine_path.read_bytes()
            built.cache = "hit"
        else:
            with timer("build"):
                blob = self._build(
                    trt, logger, onnx_path, plan, model.inputs, n_profiles, cache_dir, version, cc
                )
            built.cache = "miss" if engine_path is not None else "off"
            if engine_path is not None:
                _write_atomic(engine_path, blob)
                _write_atomic(
                    engine_path.with_suffix(".json"),
                    json.dumps(
                        {
                            "model": str(model.path),
                            "model_sha256": model_sha,
                            "precision": plan.precision,
                            "typing": plan.typing,
                            "builder_flags": list(plan.builder_flags),
                            "batch_size": self.config.batch_size,
                            "max_batch": self.opts.max_batch,
                            "trt_version": trt.__version__,
                            "gpu": self._device_name,
                        },
                        indent=1,
                    ).encode(),
                )
        with timer("load"):
            self._runtime = trt.Runtime(logger)
            self._engine = self._runtime.deserialize_cuda_engine(blob)
        if self._engine is None:
            raise RuntimeError(
                f"TensorRT could not deserialize the engine {engine_path or ''}: "
                + "; ".join(logger.errors[-3:])
            )
        self._meta.update(engine_cache=built.cache, engine_path=built.path, engine_key=key)
        self._api = api_cls(trt, self._engine)
        self._check_inputs(model.inputs)
        self._make_slots(model, n_slots, timer)
        self._audit()
        if throughput:
            self._pool = cuda.SlotPool(n_slots)
            self._clock = cuda.EventClock.for_cupy(cp, self._streams[0])
        self._start_telemetry(cp)

    def _model_file(
        self, model: ModelInfo, pipeline: Pipeline, plan: PrecisionPlan
    ) -> tuple[str, str]:
        """perflab's fp16 or int8 (QDQ) conversion of the model, and its sha256 (cached)."""
        from perflab import models

        calibration = None
        method = None
        if plan.model_precision == "int8":
            n = self.opts.calibration_batches or max(
                1, -(-DEFAULT_CALIBRATION_SAMPLES // self.config.batch_size)
            )
            calibration = pipeline.calibration_batches(n)
            method = "static"  # TensorRT reads Q/DQ pairs; dynamic quantization ops it cannot
            self._meta["calibration_batches"] = n
        converted = models.convert(
            model,
            plan.model_precision,
            calibration=calibration,
            **({"method": method} if method else {}),
        )
        if plan.model_precision == "int8" and "qdq" not in converted.method:
            raise Unsupported(f"trt: int8 needs a QDQ model; conversion gave {converted.method}")
        self._meta.update(conversion=converted.method, conversion_notes=list(converted.notes))
        return str(converted.path), converted.sha256

    def _cache_dir(self) -> Path | None:
        if not self.opts.cache:
            return None
        if self.opts.cache_dir:
            d = Path(self.opts.cache_dir).expanduser()
        else:
            from perflab import models

            d = models.cache_root() / "trt"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _build(
        self,
        trt: Any,
        logger: Any,
        onnx_path: str,
        plan: PrecisionPlan,
        inputs: Sequence[TensorSpec],
        n_profiles: int,
        cache_dir: Path | None,
        version: tuple[int, ...],
        cc: tuple[int, int],
    ) -> bytes:
        builder = trt.Builder(logger)
        net_flags = trt.NetworkDefinitionCreationFlag
        flags = 0
        if plan.strongly_typed:
            flags |= 1 << int(net_flags.STRONGLY_TYPED)
        if version < (10,) and hasattr(net_flags, "EXPLICIT_BATCH"):
            flags |= 1 << int(net_flags.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise Unsupported(
                "trt: TensorRT's ONNX parser rejected the model: "
                + "; ".join(errors[:3] or logger.errors[-3:])
            )
        network_shapes = {}
        for i in range(network.num_inputs):
            t = network.get_input(i)
            network_shapes[t.name] = tuple(int(d) for d in t.shape)
        profiles = profile_shapes(
            inputs, self.config.batch_size, self.opts.max_batch, network_shapes
        )
        config = builder.create_builder_config()
        for name in plan.builder_flags:
            config.set_flag(getattr(trt.BuilderFlag, name))
        if not self.opts.tf32 and hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)
        if self.opts.workspace_mb:
            size = self.opts.workspace_mb << 20
            if hasattr(config, "set_memory_pool_limit"):
                config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, size)
            else:
                config.max_workspace_size = size
        if self.opts.builder_optimization_level is not None:
            if not hasattr(config, "builder_optimization_level"):
                raise Unsupported(
                    f"trt: TensorRT {trt.__version__} has no builder "
                    "optimization level (8.6 and later)"
                )
            config.builder_optimization_level = self.opts.builder_optimization_level
        if hasattr(trt, "ProfilingVerbosity"):  # per-layer precision in the inspector
            config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        if profiles:
            for _ in range(max(1, n_profiles)):
                prof = builder.create_optimization_profile()
                for name, (lo, opt, hi) in profiles.items():
                    prof.set_shape(name, lo, opt, hi)
                if config.add_optimization_profile(prof) < 0:
                    raise ModelError(f"TensorRT rejected the optimization profile {profiles}")
        self._meta["profile_shapes"] = {k: [list(s) for s in v] for k, v in profiles.items()}
        timing_path = None
        if cache_dir is not None and hasattr(config, "create_timing_cache"):
            timing_path = cache_dir / timing_cache_name(
                trt.__version__, self._device_name, f"{cc[0]}.{cc[1]}"
            )
            blob = timing_path.read_bytes() if timing_path.exists() else b""
            cache = config.create_timing_cache(blob)
            config.set_timing_cache(cache, ignore_mismatch=False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError("TensorRT engine build failed: " + "; ".join(logger.errors[-3:]))
        if timing_path is not None:
            _write_atomic(timing_path, bytes(memoryview(config.get_timing_cache().serialize())))
            self._meta["timing_cache"] = str(timing_path)
        if self.precision in ("fp16", "best") and not getattr(
            builder, "platform_has_fast_fp16", True
        ):
            self._notes.append(f"{self._device_name} has no fast fp16")
        return bytes(memoryview(serialized))

    def _check_inputs(self, specs: Sequence[TensorSpec]) -> None:
        names = {t.name for t in specs}
        if set(self._api.inputs) != names:
            raise ModelError(
                f"the engine's inputs {sorted(self._api.inputs)} differ from the "
                f"model's {sorted(names)}"
            )
        self._specs_in = list(specs)

    def _make_slots(self, model: ModelInfo, n_slots: int, timer: SetupTimer) -> None:
        from perflab import cuda
        from perflab.models import TensorSpec

        cp, api, engine = self._cp, self._api, self._engine
        n_streams = min(self.opts.streams, n_slots) if n_slots > 1 else 1
        self._streams = [cp.cuda.Stream(non_blocking=True) for _ in range(n_streams)]
        n_profiles = int(getattr(engine, "num_optimization_profiles", 1) or 1)
        shapes = {t.name: tuple(t.shape) for t in model.inputs}
        for k in range(n_slots):
            stream = self._streams[cuda.stream_of(k, n_streams)]
            ctx = engine.create_execution_context()
            if ctx is None:
                raise RuntimeError(
                    "TensorRT could not create an execution context (out of device memory?)"
                )
            state = api.new_slot(ctx, k if n_profiles > 1 else 0, int(stream.ptr))
            for name in api.inputs:
                api.set_input_shape(ctx, state, name, shapes[name])
            outs = []
            for name in api.outputs:
                shape = api.output_shape(ctx, state, name)
                if any(d < 0 for d in shape):
                    raise Unsupported(
                        f"trt: output {name!r} has a data-dependent shape "
                        f"{shape}; perflab needs static output shapes"
                    )
                outs.append(TensorSpec(name, shape, api.dtype(name).name))
            ins = [TensorSpec(n, shapes[n], api.dtype(n).name) for n in api.inputs]
            io = cuda.DeviceIO(ins, outs, self.opts.device_id, stream=stream)
            for name in (*api.inputs, *api.outputs):
                api.bind(ctx, state, name, io.device_ptr(name))
            slot = _Slot(ctx, state, io)
            slot.enqueue = _enqueue_fn(api, slot, int(stream.ptr))
            if self.opts.cuda_graph:
                with timer("build"):
                    slot.graph = _capture(api, slot, stream)
                slot.enqueue = _graph_fn(slot.graph, stream)
            self._slots.append(slot)
        self._meta["streams"] = n_streams

    def _audit(self) -> None:
        """Per-layer precision from the engine inspector; precision_effective from it."""
        trt = self._trt
        if not hasattr(self._engine, "create_engine_inspector"):
            self._notes.append("no engine inspector in this TensorRT: precision unknown")
            return
        try:
            insp = self._engine.create_engine_inspector()
            insp.execution_context = self._slots[0].ctx  # resolves dynamic-shape formats
            info = insp.get_engine_information(trt.LayerInformationFormat.JSON)
            self._layers = parse_engine_layers(info)
        except Exception as exc:  # noqa: BLE001 - the audit explains a run; it must not fail it
            self._notes.append(f"engine inspector failed: {exc}")
            return
        counts = layer_precision_counts(self._layers)
        self._precision_effective = precision_effective(counts)
        self._meta["layer_precisions"] = counts

    def _start_telemetry(self, cp: Any) -> None:
        if not self.opts.telemetry:
            return
        try:
            bus = cp.cuda.Device(self.opts.device_id).pci_bus_id
        except Exception:  # noqa: BLE001 - the index is the fallback
            bus = None
        self._sampler = start_sampler(
            self.opts.device_id, self.opts.telemetry_interval_ms, bus, self._notes
        )

    # -- run

    def run(self, inputs: dict[str, np.ndarray], rec: Recorder) -> dict[str, np.ndarray]:
        if self._t0_ns is None:
            self._t0_ns = rec.t0_ns
        slot = self._slots[0]
        io = slot.io
        io.h2d(inputs, rec)
        io.compute(slot.enqueue, rec)
        return io.d2h(rec)

    def submit(self, inputs: dict[str, np.ndarray], rec: Recorder) -> Request:
        if self._pool is None:
            raise Unsupported("trt: submit needs mode: throughput (slots are made at setup)")
        if self._t0_ns is None:
            self._t0_ns = rec.t0_ns
        return submit_on_slot(self._pool, rec, partial(self._enqueue, inputs))

    def _enqueue(self, inputs: dict[str, np.ndarray], k: int) -> None:
        slot = self._slots[k]
        slot.io.enqueue(inputs, slot.enqueue)

    def wait(self, handle: Request, rec: Recorder) -> dict[str, np.ndarray]:
        slot = self._slots[handle.slot]
        try:
            return slot.io.complete(rec, handle.iteration, self._clock)
        finally:
            self._pool.release(handle.slot)

    def measure_begin(self) -> None:
        from perflab import cuda

        note = cuda.profiler_start()
        if note:
            self._notes.append(note)

    def measure_end(self) -> None:
        from perflab import cuda

        note = cuda.profiler_stop()
        if note:
            self._notes.append(note)
        if self.opts.layer_profile and self._layer_times is None:
            try:
                self._layer_times = self._profile_layers()
            except Exception as exc:  # noqa: BLE001 - a failed profiling pass keeps the run
                self._notes.append(f"layer profiling failed: {exc}")
                self._layer_times = {}

    def _profile_layers(self) -> dict[str, list[float]]:
        """Per-layer times from IProfiler over a separate pass (enqueue becomes synchronous)."""
        trt, api = self._trt, self._api
        base = self._slots[0]
        stream = base.io.stream
        if isinstance(api, TensorApi) and trt_version(trt) >= (10,):
            ctx = self._engine.create_execution_context()  # shares profile 0 (TRT 10)
            state = api.new_slot(ctx, 0, int(stream.ptr))
            for t in self._specs_in:
                api.set_input_shape(ctx, state, t.name, tuple(t.shape))
            for name in (*api.inputs, *api.outputs):
                api.bind(ctx, state, name, base.io.device_ptr(name))
        else:  # one profile per context before TRT 10: borrow the latency slot's context
            ctx, state = base.ctx, base.state
        profiler = _layer_profiler(trt)
        ctx.profiler = profiler
        for i in range(LAYER_PROFILE_WARMUP + self.opts.layer_profile_iterations):
            if i == LAYER_PROFILE_WARMUP:
                profiler.times.clear()
            api.execute(ctx, state, int(stream.ptr))
            stream.synchronize()
        self._meta["layer_profile_iterations"] = self.opts.layer_profile_iterations
        return {k: list(v) for k, v in profiler.times.items()}

    # -- results

    def facts(self) -> dict[str, Any]:
        return engine_facts(
            self.device, self._device_name, self._precision_effective, self._meta, self._notes
        )

    def tables(self) -> dict[str, pd.DataFrame]:
        import pandas as pd

        out: dict[str, pd.DataFrame] = {}
        if self._layers or self._layer_times:
            out["layers"] = pd.DataFrame(layer_rows(self._layers, self._layer_times))
        out.update(telemetry_tables(self._sampler, self._t0_ns))
        return out

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
        for slot in self._slots:
            with suppress(Exception):  # freeing is best effort; the process ends soon
                slot.io.close()
        self._slots.clear()
        self._engine = self._runtime = None


# ------------------------------------------------------------------------------- helpers


def _slot_count(config: RunConfig) -> int:
    from perflab.cuda import SlotPool

    return SlotPool.size_for(getattr(config, "inflight", 1))


def _enqueue_fn(api: Any, slot: _Slot, stream_ptr: int) -> Any:
    execute, ctx, state = api.execute, slot.ctx, slot.state

    def enqueue() -> None:
        execute(ctx, state, stream_ptr)

    return enqueue


def _graph_fn(graph: Any, stream: Any) -> Any:
    def enqueue() -> None:
        graph.launch(stream)

    return enqueue


def _capture(api: Any, slot: _Slot, stream: Any) -> Any:
    """Capture one enqueue into a CUDA graph. TensorRT defers some work to the first enqueue
    after shapes are set, so one plain enqueue runs first."""
    if not isinstance(api, TensorApi):
        raise Unsupported("trt: cuda_graph needs TensorRT >= 8.5 (execute_async_v3)")
    ptr = int(stream.ptr)
    api.execute(slot.ctx, slot.state, ptr)
    stream.synchronize()
    stream.begin_capture()
    try:
        api.execute(slot.ctx, slot.state, ptr)
    finally:
        graph = stream.end_capture()
    if hasattr(graph, "upload"):
        graph.upload(stream)
    stream.synchronize()
    return graph


def _layer_profiler(trt: Any) -> Any:
    class LayerTimes(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)  # the binding requires the explicit base init
            self.times: dict[str, list[float]] = {}

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.times.setdefault(layer_name, []).append(float(ms))

    return LayerTimes()


def _logger(trt: Any) -> Any:
    """A TensorRT logger that keeps warnings and errors (for error messages) and prints them."""
    import sys

    class Log(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            level = int(severity)
            if level <= int(trt.ILogger.Severity.WARNING):
                print(f"[TensorRT] {msg}", file=sys.stderr)
            if level <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg))

    return Log()


def _device_identity(cp: Any, device_id: int) -> tuple[str, tuple[int, int]]:
    props = cp.cuda.runtime.getDeviceProperties(device_id)
    name = props.get("name", b"")
    name = name.decode() if isinstance(name, bytes) else str(name)
    return name, (int(props.get("major", 0)), int(props.get("minor", 0)))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
