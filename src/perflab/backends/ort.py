"""ONNX Runtime backends (CPU, CUDA and TensorRT execution providers) and the fp32 reference.

What each timed region holds:

- `ort-cpu`: `compute` is one `session.run` with numpy feeds. ORT returns once the outputs are
  in host memory, so nothing needs synchronizing and there are no `h2d` / `d2h` stages.
- `ort-cuda`, `ort-trt`: inputs and outputs are bound (IOBinding) to the device buffers of a
  `perflab.cuda.DeviceIO`, and ORT is given its CUDA stream as its compute stream. `h2d` copies
  the host batch into pinned staging memory and from there to the device on that stream, then
  waits; `compute` is `run_with_iobinding` (which by default synchronizes ORT's compute stream
  before it returns) followed by a wait on the stream; `d2h` copies the outputs into pinned host
  buffers and waits. CUDA events around each stage give its device duration; they measure
  ORT's kernels only if ORT issues them on the stream it was given (`user_compute_stream`),
  while the host durations are right either way.

Precision: fp32 runs the model as it is; fp16 and int8 run the models `models.convert` writes
(int8: static QDQ calibrated on the pipeline's own preprocessed batches). On `ort-trt`, fp16,
bf16 and `best` are TensorRT builder flags on the fp32 (or, for `best`, the QDQ) model, as
trtexec does it. What really ran is audited after the session is created: a separate session
with the same options runs once under ORT's profiler, which lists every node that executed after
graph optimization, its provider and its input types. The precision of the heavy operators
(Conv, Gemm, MatMul and their fused or quantized forms) is `precision_effective`. ORT quietly
changes precision in two common cases, and the audit catches both: the CPU provider runs an fp16
model's Conv/Gemm in fp32 behind inserted Cast nodes (it has no fp16 kernels on x86), and a QDQ
model runs in fp32 "fake quantization" wherever QDQ fusion does not happen (optimizations
disabled, or a provider without int8 kernels). With `strict_precision` (the default) such a run is
refused as unsupported instead of being measured under the wrong name.

Options: `threads` (intra-op threads; 0 = ORT's default of one per physical core),
`inter_threads`, `graph_optimization` (disable | basic | extended | layout | all),
`execution_mode` (sequential | parallel), `profile` (true: after the measured phase, a separate
profiled session runs `profile_iterations` iterations, default 20, for the `layers` table),
`engine_timer` (default true: the same profiled pass stores ONNX Runtime's own `model_run` time
in `reported`, stage `model_run`, beside perflab's `compute`),
`calibration_batches` (int8; default enough batches for 32 samples), `strict_precision`
(default true), and on the GPU backends `device_id`, `cuda.NAME` (CUDA provider options, e.g.
`cuda.cudnn_conv_algo_search`, `cuda.enable_cuda_graph`) and on ort-trt `trt.NAME` (TensorRT
provider options, e.g. `trt.engine_cache_enable`, `trt.engine_cache_path`,
`trt.timing_cache_enable`; the `trt_` prefix is optional).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perflab.backends.base import Backend, engine_facts
from perflab.backends.option_values import OptionValues
from perflab.errors import BackendUnavailable, ModelError, SpecError, Unsupported
from perflab.options import Option
from perflab.precisions import precision_effective, strict_refuses
from perflab.reference import CPU_PROVIDER, NUMPY_OF_ORT
from perflab.timing import COMPUTE, D2H, H2D
from perflab.tool_stages import reported_rows

if TYPE_CHECKING:
    import pandas as pd

    from perflab.models import ModelInfo
    from perflab.pipelines import Pipeline
    from perflab.spec import RunConfig
    from perflab.timing import Recorder, SetupTimer

PROVIDERS = {
    "ort-cpu": "CPUExecutionProvider",
    "ort-cuda": "CUDAExecutionProvider",
    "ort-trt": "TensorrtExecutionProvider",
}

DEFAULT_PROFILE_ITERATIONS = 20
#: Backend options, as listed by `perflab backends ort-cpu` (the `cuda.` / `trt.` provider
#: options apply to the GPU backends only).
DECLARED_OPTIONS = (
    Option("threads", "int >= 0", 0, "intra-op threads; 0: ONNX Runtime's default (one per core)"),
    Option("inter_threads", "int >= 0", 0, "inter-op threads (execution_mode parallel)"),
    Option("graph_optimization", "disable | basic | extended | layout | all", "all",
           "ONNX Runtime graph optimization level"),
    Option("execution_mode", "sequential | parallel", "sequential", "operator scheduling"),
    Option("profile", "bool", False, "run ONNX Runtime's profiler after the measured phase"),
    Option("profile_iterations", "int >= 1", DEFAULT_PROFILE_ITERATIONS,
           "profiled iterations (layer table, engine timer)"),
    Option("engine_timer", "bool", True,
           "store ONNX Runtime's own model_run time from a profiled pass after the measured phase"),
    Option("calibration_batches", "int >= 1", None,
           "int8 calibration batches; default: 32 samples' worth"),
    Option("strict_precision", "bool", True,
           "fail the run when the engine ran another precision than asked"),
    Option("device_id", "int >= 0", 0, "GPU to run on (ort-cuda, ort-trt)"),
    Option("cuda.NAME", "scalar", None, "CUDA execution provider option NAME (ort-cuda, ort-trt)"),
    Option("trt.NAME", "scalar", None, "TensorRT execution provider option trt_NAME (ort-trt)"),
)  # fmt: skip
OPTIONS = tuple(o.name for o in DECLARED_OPTIONS if not o.name.endswith(".NAME"))
GRAPH_OPTIMIZATION = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "layout": "ORT_ENABLE_LAYOUT",
    "all": "ORT_ENABLE_ALL",
}
EXECUTION_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}
#: Untimed runs of the profiled session before its profiled iterations, so that allocation and
#: first-run work (cuDNN algorithm search, TensorRT lazy builds) stay out of the layer table.
PROFILE_WARMUP_RUNS = 3
#: int8 calibration data, in samples: enough for MinMax ranges of image models to settle, few
#: enough that a calibration pass stays in seconds. Batches = ceil(samples / batch size).
DEFAULT_CALIBRATION_SAMPLES = 32

#: CUDA execution provider option names (onnxruntime cuda_execution_provider_info.cc).
#: device_id and user_compute_stream are perflab's to set: see option `device_id`.
CUDA_PROVIDER_OPTIONS = (
    "gpu_mem_limit",
    "arena_extend_strategy",
    "cudnn_conv_algo_search",
    "do_copy_in_default_stream",
    "cudnn_conv_use_max_workspace",
    "cudnn_conv1d_pad_to_nc1d",
    "enable_cuda_graph",
    "enable_skip_layer_norm_strict_mode",
    "prefer_nhwc",
    "use_ep_level_unified_stream",
    "use_tf32",
    "fuse_conv_bias",
    "tunable_op_enable",
    "tunable_op_tuning_enable",
    "tunable_op_max_tuning_duration_ms",
)
#: TensorRT execution provider option names (tensorrt_execution_provider_info.cc).
TRT_PROVIDER_OPTIONS = (
    "trt_max_workspace_size",
    "trt_fp16_enable",
    "trt_bf16_enable",
    "trt_int8_enable",
    "trt_int8_calibration_table_name",
    "trt_int8_use_native_calibration_table",
    "trt_engine_cache_enable",
    "trt_engine_cache_path",
    "trt_engine_cache_prefix",
    "trt_timing_cache_enable",
    "trt_timing_cache_path",
    "trt_force_timing_cache",
    "trt_profile_min_shapes",
    "trt_profile_max_shapes",
    "trt_profile_opt_shapes",
    "trt_builder_optimization_level",
    "trt_auxiliary_streams",
    "trt_max_partition_iterations",
    "trt_min_subgraph_size",
    "trt_dump_subgraphs",
    "trt_detailed_build_log",
    "trt_build_heuristics_enable",
    "trt_sparsity_enable",
    "trt_context_memory_sharing_enable",
    "trt_layer_norm_fp32_fallback",
    "trt_force_sequential_engine_build",
    "trt_tactic_sources",
    "trt_cuda_graph_enable",
    "trt_extra_plugin_lib_paths",
    "trt_dla_enable",
    "trt_dla_core",
    "trt_dump_ep_context_model",
    "trt_ep_context_file_path",
    "trt_ep_context_embed_mode",
    "trt_weight_stripped_engine_enable",
    "trt_onnx_model_folder_path",
    "trt_engine_hw_compatible",
    "trt_op_types_to_exclude",
    "trt_engine_decryption_enable",
    "trt_engine_decryption_lib_path",
)
#: The TensorRT builder flags that a precision sets; giving them as options would contradict it.
TRT_PRECISION_FLAGS = {
    "fp32": (),
    "fp16": ("trt_fp16_enable",),
    "bf16": ("trt_bf16_enable",),
    "int8": ("trt_int8_enable",),
    "best": ("trt_fp16_enable", "trt_int8_enable"),
}
_PERFLAB_OWNED = ("device_id", "user_compute_stream", "has_user_compute_stream")

#: Operators that carry a model's arithmetic; their precision is the run's precision.
HEAVY_OPS = frozenset({
    "Conv", "FusedConv", "NhwcConv", "NhwcFusedConv", "ConvTranspose", "MatMul", "FusedMatMul",
    "Gemm", "FusedGemm", "Attention", "MultiHeadAttention", "GroupQueryAttention",
    "QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger",
    "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention", "QOrderedMatMul",
})  # fmt: skip
#: Heavy operators whose kernels compute in integers (int8 / uint8 operands).
INT8_OPS = frozenset({
    "QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger",
    "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention", "QOrderedMatMul",
})  # fmt: skip
#: ONNX / ORT profiler type names -> perflab precision names.
TYPE_PRECISION = {
    "float": "fp32",
    "float32": "fp32",
    "f32": "fp32",
    "float16": "fp16",
    "f16": "fp16",
    "bfloat16": "bf16",
    "bf16": "bf16",
    "int8": "int8",
    "uint8": "int8",
    "i8": "int8",
    "u8": "int8",
    "double": "fp64",
    "float64": "fp64",
}


# ---------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class OrtOptions:
    """The backend options of one run, validated."""

    threads: int = 0  # 0: ORT's default (one thread per physical core)
    inter_threads: int = 0
    graph_optimization: str = "all"
    execution_mode: str = "sequential"
    profile: bool = False
    profile_iterations: int = DEFAULT_PROFILE_ITERATIONS
    engine_timer: bool = True
    calibration_batches: int | None = None  # None: calibration_batch_count(batch size)
    strict_precision: bool = True
    device_id: int = 0
    cuda: Mapping[str, Any] = field(default_factory=dict)
    trt: Mapping[str, Any] = field(default_factory=dict)


def parse_options(backend: str, options: Mapping[str, Any]) -> OrtOptions:
    """Validate `options` for an ONNX Runtime backend; SpecError names the bad key and the valid ones.

    `cuda.NAME` and `trt.NAME` are passed to the CUDA / TensorRT execution provider as NAME (the
    `trt_` prefix may be left out: `trt.fp16_enable` is `trt_fp16_enable`).
    """
    gpu = backend != "ort-cpu"
    values: dict[str, Any] = {}
    cuda: dict[str, Any] = {}
    trt: dict[str, Any] = {}
    for key, value in options.items():
        prefix, _, name = key.partition(".")
        if name and prefix in ("cuda", "trt"):
            if not gpu:
                raise SpecError(
                    f"{backend}: option {key!r} is a GPU provider option; "
                    f"{prefix}.* options apply to ort-cuda and ort-trt"
                )
            if prefix == "trt" and backend != "ort-trt":
                raise SpecError(f"{backend}: option {key!r} applies to ort-trt only")
            _check_scalar(backend, key, value)
            if name in _PERFLAB_OWNED:
                raise SpecError(
                    f"{backend}: option {key!r} is set by perflab; use the option 'device_id' "
                    "to pick the GPU (perflab owns the CUDA stream)"
                )
            if prefix == "cuda":
                if name not in CUDA_PROVIDER_OPTIONS:
                    raise SpecError(
                        f"{backend}: unknown CUDA provider option {key!r}; valid: "
                        + ", ".join(f"cuda.{n}" for n in CUDA_PROVIDER_OPTIONS)
                    )
                cuda[name] = value
            else:
                full = name if name.startswith("trt_") else f"trt_{name}"
                if full not in TRT_PROVIDER_OPTIONS:
                    raise SpecError(
                        f"{backend}: unknown TensorRT provider option {key!r}; valid: "
                        + ", ".join(f"trt.{n}" for n in TRT_PROVIDER_OPTIONS)
                    )
                trt[full] = value
            continue
        if key not in OPTIONS:
            valid = (
                list(OPTIONS)
                + (["cuda.NAME"] if gpu else [])
                + (["trt.NAME"] if backend == "ort-trt" else [])
            )
            raise SpecError(f"{backend}: unknown option {key!r}; valid: {', '.join(valid)}")
        values[key] = value

    if "device_id" in values and not gpu:
        raise SpecError(f"{backend}: option 'device_id' applies to ort-cuda and ort-trt")
    read = OptionValues(backend, values, vars(OrtOptions()), none_passes=True)
    return OrtOptions(
        threads=read.integer("threads", 0),
        inter_threads=read.integer("inter_threads", 0),
        graph_optimization=read.choice("graph_optimization", GRAPH_OPTIMIZATION),
        execution_mode=read.choice("execution_mode", EXECUTION_MODES),
        profile=read.boolean("profile"),
        profile_iterations=read.integer("profile_iterations", 1),
        engine_timer=read.boolean("engine_timer"),
        calibration_batches=read.integer("calibration_batches", 1),
        strict_precision=read.boolean("strict_precision"),
        device_id=read.integer("device_id", 0),
        cuda=cuda,
        trt=trt,
    )


def calibration_batch_count(batch_size: int) -> int:
    """How many pipeline batches calibrate int8 by default: DEFAULT_CALIBRATION_SAMPLES samples."""
    return max(1, -(-DEFAULT_CALIBRATION_SAMPLES // batch_size))


def _check_scalar(backend: str, key: str, value: Any) -> None:
    if not isinstance(value, (str, int, float, bool)):
        raise SpecError(f"{backend}: option {key!r}: {value!r} must be a string, number or boolean")


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


# ------------------------------------------------------------------------ provider fallback


def _check_providers(requested: Sequence[str], active: Sequence[str], backend: str = "") -> None:
    """Raise BackendUnavailable when a requested execution provider is not in the session.

    ONNX Runtime creates the session on the CPU provider, with no more than a logged warning,
    when a GPU provider cannot load (missing CUDA/cuDNN/TensorRT libraries, no driver, a build
    without it), so the only proof that a provider is in use is `session.get_providers()`.
    """
    missing = [p for p in requested if p not in active]
    if missing:
        who = f"{backend}: " if backend else ""
        raise BackendUnavailable(
            f"{who}ONNX Runtime did not load {', '.join(missing)} and fell back to "
            f"{', '.join(active) or 'nothing'}; check the CUDA, cuDNN and TensorRT libraries "
            "that this onnxruntime build needs (onnxruntime.preload_dlls() can load the pip "
            "wheels' copies)"
        )


# ------------------------------------------------------------------------ precision audit


def node_precision(op_type: str, input_types: Sequence[str]) -> str | None:
    """The precision a heavy operator computes in, from its type and its input element types;
    None for operators that are not heavy.

    Quantized kernels (QLinearConv, MatMulInteger, ...) and any heavy op fed int8/uint8 operands
    compute in int8; otherwise the first floating-point input's type decides.
    """
    if op_type not in HEAVY_OPS:
        return None
    if op_type in INT8_OPS or any(TYPE_PRECISION.get(t) == "int8" for t in input_types[:2]):
        return "int8"
    for t in input_types:
        p = TYPE_PRECISION.get(t)
        if p and p != "int8":
            return p
    return None


@dataclass(frozen=True)
class NodeRun:
    """One node execution in an ORT profile: node name, op type, provider, input element types."""

    name: str
    op_type: str
    provider: str
    input_types: tuple[str, ...]


def read_profile_nodes(path: str | os.PathLike) -> list[NodeRun]:
    """The node executions of an ORT profile JSON file, with their input element types (what the
    precision audit needs; the layer table comes from perflab.importers.ort_profile)."""
    nodes = []
    for e in json.loads(Path(path).read_text()):
        name = e.get("name", "")
        if e.get("cat") == "Node" and name.endswith("_kernel_time"):
            args = e.get("args") or {}
            types = tuple(
                next(iter(d))
                for d in args.get("input_type_shape") or ()
                if isinstance(d, dict) and d
            )
            nodes.append(
                NodeRun(
                    name=name[: -len("_kernel_time")],
                    op_type=str(args.get("op_name", "")),
                    provider=str(args.get("provider", "")),
                    input_types=types,
                )
            )
    return nodes


def audit_nodes(nodes: Iterable[NodeRun]) -> dict[str, Any]:
    """Per-provider node counts and per-precision heavy-op counts of one executed graph."""
    providers: Counter[str] = Counter()
    precisions: Counter[str] = Counter()
    op_types: Counter[str] = Counter()
    quantize_nodes = 0
    seen = set()
    for n in nodes:
        if n.name in seen:  # several runs in one profile: count each node once
            continue
        seen.add(n.name)
        providers[n.provider] += 1
        op_types[n.op_type] += 1
        if n.op_type in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"):
            quantize_nodes += 1
        p = node_precision(n.op_type, n.input_types)
        if p:
            precisions[p] += 1
    return {
        "nodes_per_provider": dict(providers),
        "heavy_ops_per_precision": dict(precisions),
        "op_types": dict(sorted(op_types.items())),
        "quantize_nodes": quantize_nodes,
    }


# --------------------------------------------------------------------------------- backend


class OrtBackend(Backend):
    """ONNX Runtime with one execution provider: ort-cpu, ort-cuda or ort-trt (see module doc)."""

    name = "ort"
    options = DECLARED_OPTIONS

    option_parser = staticmethod(parse_options)
    option_parser_args = ("backend", "options")

    def __init__(self, config: RunConfig):
        super().__init__(config)
        if config.backend not in PROVIDERS:
            raise SpecError(f"OrtBackend runs {', '.join(PROVIDERS)}, not {config.backend!r}")
        self.backend = self.name = config.backend
        self.provider = PROVIDERS[config.backend]
        self.gpu = config.backend != "ort-cpu"
        self.opts = parse_options(config.backend, config.option_dict)
        self.precision = config.precision
        self.device = f"cuda:{self.opts.device_id}" if self.gpu else "cpu"
        self._check_precision()
        self._session: Any = None
        self._output_names: list[str] = []
        self._casts: dict[str, Any] = {}
        self._stream: Any = None  # cupy Stream: ORT's compute stream and the copies' stream
        self._io: Any = None  # perflab.cuda.DeviceIO
        self._binding: Any = None  # the session's IOBinding on the DeviceIO buffers
        self._run_bound: Any = None
        self._dynamic_outputs = False
        self._device_name: str | None = None
        self._model_path: str | None = None
        self._providers: list[Any] = []
        self._precision_effective: str | None = None
        self._precision_source = ""
        self._layers: pd.DataFrame | None = None
        self._engine_ms: list[float] | None = None  # model_run times of the profiled pass
        self._last_inputs: Mapping[str, np.ndarray] | None = None
        self._meta: dict[str, Any] = {}
        self._conversion: dict[str, Any] = {}

    # -- validation --------------------------------------------------------------------------

    def _check_precision(self) -> None:
        p, b = self.precision, self.backend
        if p == "bf16" and b == "ort-cpu":
            raise Unsupported(
                "ort-cpu: ONNX Runtime's CPU execution provider has no bf16 kernels for Conv, "
                "MatMul or Gemm on x86 (its bf16 fast-math GEMM is ARM64 only); use the "
                "openvino backend for bf16 on a CPU with AVX512_BF16 or AMX"
            )
        if p == "bf16" and b == "ort-cuda":
            raise Unsupported(
                "ort-cuda: the CUDA execution provider has no bf16 mode, and perflab converts "
                "models to fp16 and int8 only; use ort-trt (trt_bf16_enable) or trt for bf16"
            )
        if p == "best" and b != "ort-trt":
            raise Unsupported(
                f"{b}: ONNX Runtime has no 'engine picks the precision' mode; ask for fp32, "
                "fp16 or int8 (best is available on ort-trt and trt)"
            )
        if b == "ort-trt":
            wanted = set(TRT_PRECISION_FLAGS[p])
            for flag in TRT_PRECISION_FLAGS["best"] + ("trt_bf16_enable",):
                if flag in self.opts.trt and _truthy(self.opts.trt[flag]) and flag not in wanted:
                    raise SpecError(
                        f"ort-trt: option trt.{flag}={self.opts.trt[flag]!r} contradicts "
                        f"precision {p}; the precision sets the TensorRT builder flags "
                        "(fp16 -> trt_fp16_enable, bf16 -> trt_bf16_enable, int8 -> "
                        "trt_int8_enable on the QDQ model, best -> fp16 + int8)"
                    )
        if b == "ort-cuda":
            graph = self.opts.cuda.get("enable_cuda_graph")
            if graph is not None and _truthy(graph) and self.opts.execution_mode == "parallel":
                raise SpecError("ort-cuda: cuda.enable_cuda_graph needs execution_mode sequential")

    # -- setup -------------------------------------------------------------------------------

    def setup(self, model: ModelInfo | None, pipeline: Pipeline, timer: SetupTimer) -> None:
        import onnxruntime as ort

        if model is None:
            raise Unsupported(f"{self.backend} needs an ONNX model")
        path = self._prepare_model(model, pipeline, timer)
        self._model_path = path
        if self.gpu:
            # The stream exists before the session: its pointer is a provider option.
            self._stream, self._device_name = _gpu_stream(self.backend, self.opts.device_id)
        self._providers = self._provider_list(path, model)
        requested = [p if isinstance(p, str) else p[0] for p in self._providers]
        requested = [p for p in requested if p != CPU_PROVIDER] or [CPU_PROVIDER]
        with timer("load"):
            sess = self._new_session(ort, path, self._providers)
        _check_providers(requested, sess.get_providers(), self.backend)
        self._session = sess
        self._output_names = [o.name for o in sess.get_outputs()]
        specs = {t.name: t for t in getattr(model, "inputs", ())}
        inputs = []
        for i in sess.get_inputs():
            dtype = NUMPY_OF_ORT.get(i.type)
            if dtype is None:
                raise Unsupported(
                    f"{self.backend}: input {i.name!r} has type {i.type}, which perflab cannot feed"
                )
            shape = tuple(specs[i.name].shape) if i.name in specs else tuple(i.shape)
            if not all(isinstance(d, int) and d > 0 for d in shape):
                raise ModelError(
                    f"input {i.name!r} has unresolved shape {list(shape)}; give "
                    "input_shapes in the experiment file"
                )
            inputs.append((i.name, shape, np.dtype(dtype)))
            spec = specs.get(i.name)
            if spec is not None and np.dtype(spec.dtype) != np.dtype(dtype):
                # Converted models may change I/O types; the cast is part of feeding the engine.
                self._casts[i.name] = np.dtype(dtype)
        self._inputs = inputs
        if self.gpu:
            self._bind_device_buffers(sess, model, inputs)
        self._run_audit(ort, path)

    def _prepare_model(self, model: ModelInfo, pipeline: Pipeline, timer: SetupTimer) -> str:
        """The model file the session loads: the model itself or a converted copy (timed as build)."""
        p = self.precision
        trt_flags_only = self.backend == "ort-trt" and p in ("fp16", "bf16")
        if trt_flags_only:
            self._conversion["conversion"] = f"none: TensorRT builds {p} from the fp32 model"
        if p == "fp32" or trt_flags_only:
            return str(model.path)
        from perflab import models

        target = "int8" if p in ("int8", "best") else p
        with timer("build"):
            calibration = None
            if target == "int8":
                n = self.opts.calibration_batches or calibration_batch_count(model.batch_size)
                calibration = pipeline.calibration_batches(n)
                self._conversion["calibration_batches"] = n
            converted = models.convert(model, target, calibration=calibration)
        self._conversion.update(conversion=converted.method, conversion_notes=list(converted.notes))
        return str(converted.path)

    def _provider_list(self, path: str, model: ModelInfo) -> list[Any]:
        if not self.gpu:
            return [CPU_PROVIDER]
        stream = str(self._stream.ptr)
        cuda = {"device_id": self.opts.device_id, "user_compute_stream": stream, **self.opts.cuda}
        if self.backend == "ort-cuda":
            return [(self.provider, cuda), CPU_PROVIDER]
        trt: dict[str, Any] = {"device_id": self.opts.device_id, "user_compute_stream": stream}
        for flag in TRT_PRECISION_FLAGS[self.precision]:
            trt[flag] = True
        trt.update(self.opts.trt)
        if not any(
            k in trt
            for k in ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes")
        ):
            # Without a profile for symbolic dims, the TensorRT EP builds its engine inside the
            # first run() instead of at session creation; pinning the run's static shapes keeps
            # the build in `load` and out of the first timed iteration.
            shapes = _symbolic_input_profile(path, model)
            if shapes:
                trt.update(
                    trt_profile_min_shapes=shapes,
                    trt_profile_opt_shapes=shapes,
                    trt_profile_max_shapes=shapes,
                )
        return [(self.provider, trt), ("CUDAExecutionProvider", cuda), CPU_PROVIDER]

    def _session_options(self, ort: Any) -> Any:
        so = ort.SessionOptions()
        o = self.opts
        if o.threads:
            so.intra_op_num_threads = o.threads
        if o.inter_threads:
            so.inter_op_num_threads = o.inter_threads
        level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION[o.graph_optimization], None)
        if level is None:
            raise Unsupported(
                f"graph_optimization {o.graph_optimization!r} needs a newer onnxruntime "
                f"than {ort.__version__}"
            )
        so.graph_optimization_level = level
        so.execution_mode = getattr(ort.ExecutionMode, EXECUTION_MODES[o.execution_mode])
        if self.backend == "ort-trt":
            # TensorRT fuses its nodes into engines the profiler cannot see into; the partition
            # record is then the only account of which nodes TensorRT took.
            so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
        return so

    def _new_session(self, ort: Any, path: str, providers: list[Any], so: Any = None) -> Any:
        so = so or self._session_options(ort)
        try:
            # enable_fallback=0: with fallback on, a provider that fails at creation makes the
            # Python wrapper retry silently on the CPU provider.
            return ort.InferenceSession(path, so, providers=providers, enable_fallback=0)
        except Exception as exc:  # ORT raises its own exception types (Fail, InvalidArgument, ...)
            text = str(exc)
            if self.gpu and any(
                k in text
                for k in ("CUDA", "cuDNN", "TensorRT", "libnvinfer", "cudnn", "Failed to create")
            ):
                raise BackendUnavailable(f"{self.backend}: {self.provider} failed: {text}") from exc
            if "NOT_IMPLEMENTED" in text or "Could not find an implementation" in text:
                raise Unsupported(f"{self.backend}: {text}") from exc
            raise

    # -- audit -------------------------------------------------------------------------------

    def _run_audit(self, ort: Any, path: str) -> None:
        """Find out what the session really runs; see the module docstring. Untimed."""
        sess = self._session
        meta: dict[str, Any] = {
            "onnxruntime_version": ort.__version__,
            "providers": list(sess.get_providers()),
            "provider_options": {
                k: {kk: vv for kk, vv in v.items() if kk != "user_compute_stream"}
                for k, v in sess.get_provider_options().items()
                if k != CPU_PROVIDER
            },
            "threads": self.opts.threads or None,
            "inter_threads": self.opts.inter_threads or None,
            "cpu_count": os.cpu_count(),
            "graph_optimization": self.opts.graph_optimization,
            "execution_mode": self.opts.execution_mode,
            "model_file": os.path.basename(path),
            **self._conversion,
        }
        if self.backend == "ort-trt":
            meta.update(self._trt_audit(sess))
            self._precision_effective = "mixed" if self.precision == "best" else self.precision
            self._precision_source = (
                "TensorRT builder flags; the engine's per-layer precision is not visible "
                "through ONNX Runtime (use the trt backend's engine inspector for it), and "
                "TensorRT may run fp32 layers in TF32 on Ampere and newer GPUs"
            )
        else:
            audit = self._profile_once(ort, path)
            meta.update(audit)
            counts = audit["heavy_ops_per_precision"]
            self._precision_effective = precision_effective(counts) or "fp32"
            self._precision_source = "ORT profiler: input types of the heavy operators that ran"
        meta["precision_source"] = self._precision_source
        self._meta = meta
        eff = self._precision_effective
        if self.opts.strict_precision and strict_refuses(self.precision, eff):
            counts = meta.get("heavy_ops_per_precision", {})
            raise Unsupported(
                f"{self.backend}: asked for {self.precision}, but ONNX Runtime ran the heavy "
                f"operators in {eff} ({_why_fallback(self.backend, self.precision, meta)}; heavy "
                f"ops per precision: {counts}); set option strict_precision: false to measure "
                "it anyway"
            )

    def _profile_once(self, ort: Any, path: str) -> dict[str, Any]:
        """Run a twin session once under the profiler and audit the nodes that executed."""
        so = self._session_options(ort)
        providers = _without_cuda_graph(self._providers)
        with tempfile.TemporaryDirectory(prefix="perflab-ort-audit-") as tmp:
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(tmp, "audit")
            twin = self._new_session(ort, path, providers, so)
            feeds = {name: np.zeros(shape, dtype) for name, shape, dtype in self._inputs}
            twin.run(None, feeds)
            nodes = read_profile_nodes(twin.end_profiling())
            del twin
        return audit_nodes(nodes)

    def _trt_audit(self, sess: Any) -> dict[str, Any]:
        info = getattr(sess, "get_provider_graph_assignment_info", None)
        if info is None:
            return {}
        per_provider: Counter[str] = Counter()
        for subgraph in info():
            per_provider[subgraph.ep_name] += len(subgraph.get_nodes())
        return {
            "nodes_per_provider": dict(per_provider),
            "nodes_per_provider_source": "graph partition (before fusion)",
        }

    # -- run ---------------------------------------------------------------------------------

    def run(self, inputs: dict[str, np.ndarray], rec: Recorder) -> dict[str, np.ndarray]:
        """One iteration: `compute` on ort-cpu; `h2d`, `compute`, `d2h` on the GPU providers.

        GPU outputs are the pinned host buffers, reused (overwritten) by the next call.
        """
        self._last_inputs = inputs
        if self._io is not None:
            return self._run_gpu(inputs, rec)
        if self._casts:
            t = rec.begin(COMPUTE)
            feeds = {
                k: (v.astype(self._casts[k]) if k in self._casts else v) for k, v in inputs.items()
            }
            outs = self._session.run(self._output_names, feeds)
            rec.end(COMPUTE, t)
        else:
            t = rec.begin(COMPUTE)
            outs = self._session.run(self._output_names, inputs)
            rec.end(COMPUTE, t)
        return dict(zip(self._output_names, outs))

    def _bind_device_buffers(
        self, sess: Any, model: ModelInfo, inputs: list[tuple[str, tuple[int, ...], np.dtype]]
    ) -> None:
        """Device and pinned buffers for every input and output, bound to the session."""
        from perflab import cuda
        from perflab.models import TensorSpec

        out_specs = {t.name: t for t in model.outputs}
        outputs = []
        for o in sess.get_outputs():
            shape = tuple(out_specs[o.name].shape) if o.name in out_specs else tuple(o.shape)
            if not all(isinstance(d, int) and d > 0 for d in shape):
                self._dynamic_outputs = True
            dtype = np.dtype(NUMPY_OF_ORT.get(o.type, np.float32))
            outputs.append(TensorSpec(o.name, shape, dtype.name))
        self._io = cuda.DeviceIO(
            [TensorSpec(name, shape, dtype.name) for name, shape, dtype in inputs],
            [] if self._dynamic_outputs else outputs,
            self.opts.device_id,
            stream=self._stream,
        )
        self._binding = _bind(sess, self._io, self._dynamic_outputs)
        self._run_bound = partial(sess.run_with_iobinding, self._binding)

    def _run_gpu(self, inputs: Mapping[str, np.ndarray], rec: Recorder) -> dict[str, np.ndarray]:
        io = self._io
        io.h2d(inputs, rec)
        # run_with_iobinding returns after ORT synchronizes its compute stream, so the call
        # is not an enqueue: no separate `enqueue` stage.
        io.compute(self._run_bound, rec, record_enqueue=False)
        if not self._dynamic_outputs:
            return io.d2h(rec)
        # Outputs of unknown shape were allocated by ORT; its copy to the host is synchronous.
        t = rec.begin(D2H)
        host = self._binding.copy_outputs_to_cpu()
        rec.end(D2H, t)
        elapsed, ev = io.cp.cuda.get_elapsed_time, io.events
        rec.device(H2D, round(elapsed(ev[0], ev[1]) * 1e6))
        rec.device(COMPUTE, round(elapsed(ev[2], ev[3]) * 1e6))
        return dict(zip(self._output_names, host))

    def measure_begin(self) -> None:
        if self._io is not None:
            from perflab import cuda

            cuda.profiler_start()

    def measure_end(self) -> None:
        if self._io is not None:
            from perflab import cuda

            cuda.profiler_stop()
        if self._wants_profiled_pass():
            self._profiled_pass()

    # -- profiled pass -----------------------------------------------------------------------

    def _wants_profiled_pass(self) -> bool:
        return (self.opts.profile and self._layers is None) or (
            self.opts.engine_timer and self._engine_ms is None
        )

    def _profiled_pass(self) -> None:
        """A separate profiled session, so ORT's profiler never runs during the timed iterations:
        its node times fill `layers` (option profile), its model_run times `reported` (option
        engine_timer)."""
        import onnxruntime as ort

        if self._session is None or self._model_path is None:
            return
        inputs = self._last_inputs or {
            name: np.zeros(shape, dtype) for name, shape, dtype in self._inputs
        }
        so = self._session_options(ort)
        with tempfile.TemporaryDirectory(prefix="perflab-ort-profile-") as tmp:
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(tmp, "ort")
            # CUDA graph replay would hide the nodes from the profiler.
            sess = self._new_session(
                ort, self._model_path, _without_cuda_graph(self._providers), so
            )
            once = self._one_run(sess, inputs)
            for _ in range(PROFILE_WARMUP_RUNS + self.opts.profile_iterations):
                once()
            profile_path = sess.end_profiling()
            if self.opts.profile:
                self._layers = profile_layers(profile_path, skip_runs=PROFILE_WARMUP_RUNS)
            self._engine_ms = model_run_ms(profile_path)[PROFILE_WARMUP_RUNS:]
        self._meta["profile_iterations"] = self.opts.profile_iterations
        self._meta["profile_warmup_runs"] = PROFILE_WARMUP_RUNS

    def _one_run(self, sess: Any, inputs: Mapping[str, np.ndarray]) -> Any:
        """A no-argument callable that runs `sess` once on `inputs` the way the timed runs do."""
        if self._io is not None:
            io = self._io
            for name in io.input_names:
                np.copyto(io.host_inputs[name], inputs[name], casting="same_kind")
                io.device_inputs[name].set(io.host_inputs[name], stream=io.stream)
            io.synchronize()
            binding = _bind(sess, io, self._dynamic_outputs)
            return lambda: sess.run_with_iobinding(binding)
        feeds = {
            k: (v.astype(self._casts[k]) if k in self._casts else v) for k, v in inputs.items()
        }
        return lambda: sess.run(self._output_names, feeds)

    def tables(self) -> dict[str, pd.DataFrame]:
        import pandas as pd

        if self._wants_profiled_pass():
            self._profiled_pass()
        out: dict[str, pd.DataFrame] = {}
        if self._layers is not None and self.opts.profile:
            out["layers"] = self._layers
        if self.opts.engine_timer and self._engine_ms:
            out["reported"] = pd.DataFrame(reported_rows("model_run", self._engine_ms))
        return out

    # -- facts -------------------------------------------------------------------------------

    def facts(self) -> dict[str, Any]:
        name = self._device_name if self.gpu else cpu_name()
        return engine_facts(self.device, name, self._precision_effective, self._meta)

    def close(self) -> None:
        self._session = self._binding = self._run_bound = None
        if self._io is not None:
            self._io.close()
            self._io = None
        self._stream = None


def _why_fallback(backend: str, precision: str, meta: Mapping[str, Any]) -> str:
    ops = meta.get("op_types", {})
    if precision == "fp16" and "Cast" in ops:
        return f"{backend} has no fp16 kernels for them and inserted Cast nodes around fp32 ones"
    if precision == "int8" and meta.get("quantize_nodes"):
        return (
            "the QuantizeLinear/DequantizeLinear pairs were not fused into int8 kernels, so "
            "the model ran as fp32 with fake quantization"
        )
    return "the provider chose other kernels"


def _without_cuda_graph(providers: list[Any]) -> list[Any]:
    out = []
    for p in providers:
        if isinstance(p, tuple):
            name, opts = p
            opts = {
                k: v
                for k, v in opts.items()
                if k not in ("enable_cuda_graph", "trt_cuda_graph_enable")
            }
            out.append((name, opts))
        else:
            out.append(p)
    return out


def _symbolic_input_profile(path: str, model: ModelInfo) -> str | None:
    """ "name:1x3x224x224,..." for the model's inputs when any of their dims is symbolic."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    symbolic = any(
        not d.HasField("dim_value")
        for i in graph.input
        if i.name not in initializers
        for d in i.type.tensor_type.shape.dim
    )
    if not symbolic:
        return None
    return ",".join(f"{t.name}:{'x'.join(str(d) for d in t.shape)}" for t in model.inputs)


def profile_layers(path: str | os.PathLike, skip_runs: int = 0) -> pd.DataFrame:
    """The `layers` rows (layer, op_type, provider, precision, count, total_ms, median_ms) of an
    ORT profile, per node and per op type (`op:<OpType>`, as the ORT profile importer writes
    them), leaving out everything up to the end of the first `skip_runs` runs."""
    from perflab.ort_trace import parse_events

    events = json.loads(Path(path).read_text())
    runs = sorted(
        (float(e["ts"]), float(e["ts"]) + float(e["dur"]))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    if skip_runs and len(runs) > skip_runs:
        cutoff = runs[skip_runs - 1][1]
        events = [
            e
            for e in events
            if e.get("cat") not in ("Node", "Session") or float(e.get("ts", 0)) >= cutoff
        ]
    return parse_events(events, str(path)).layers.reset_index(drop=True)


def model_run_ms(path: str | os.PathLike) -> list[float]:
    """The duration of each `model_run` event (one session Run) of an ORT profile, in ms, in
    the order they ran."""
    events = json.loads(Path(path).read_text())
    runs = sorted(
        (float(e["ts"]), float(e["dur"]) / 1e3)
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    return [dur for _, dur in runs]


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo, else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


# ------------------------------------------------------------------------------- GPU helpers


def _gpu_stream(backend: str, device_id: int) -> tuple[Any, str]:
    """A new non-blocking CuPy stream on `device_id`, and the device's name."""
    from perflab import cuda

    cuda.require_gpu(device_id, backend)
    import cupy as cp

    with cp.cuda.Device(device_id):
        stream = cp.cuda.Stream(non_blocking=True)
    name = cp.cuda.runtime.getDeviceProperties(device_id).get("name", b"")
    return stream, name.decode() if isinstance(name, bytes) else str(name)


def _bind(session: Any, io: Any, dynamic_outputs: bool) -> Any:
    """An IOBinding of `session` on a DeviceIO's device buffers (outputs of unknown shape are
    left to ORT to allocate on the device)."""
    binding = session.io_binding()
    for name in io.input_names:
        binding.bind_input(
            name, "cuda", io.device_id, io.np_dtype(name), io.shape(name), io.device_ptr(name)
        )
    if dynamic_outputs:
        for o in session.get_outputs():
            binding.bind_output(o.name, "cuda", io.device_id)
    else:
        for name in io.output_names:
            binding.bind_output(
                name, "cuda", io.device_id, io.np_dtype(name), io.shape(name), io.device_ptr(name)
            )
    return binding
