"""OpenVINO backend: the model's ONNX file compiled for the CPU plugin.

`load` times reading the ONNX file, reshaping it to the run's static input shapes and compiling
it. `compute` is one synchronous `InferRequest.infer` on one request reused for every iteration;
the input arrays are shared with OpenVINO (no copy) and the outputs come back as fresh arrays.
Nothing runs off the host, so there are no `h2d` / `d2h` stages.

Precision is an inference-precision hint on the fp32 model (fp32 -> f32, bf16 -> bf16, fp16 ->
f16), or, for int8, the QDQ model `models.convert` writes, which the CPU plugin runs with int8
kernels (the rest of the graph pinned to f32). `best` leaves the hint to OpenVINO, which on a CPU
with native bf16 picks bf16: so fp32 is always asked for explicitly. OpenVINO quietly
substitutes what a CPU cannot do (an f16 hint on a CPU without fp16 arithmetic runs bf16 or f32),
so the precision reported is read back from the compiled model's runtime graph: the runtime
precision of its heavy layers (Convolution, FullyConnected, MatMul, ...).

Options: `threads` (INFERENCE_NUM_THREADS; 0 = OpenVINO's default), `hint` (latency, the
default, | throughput: PERFORMANCE_HINT; throughput splits the threads into several streams, and
one synchronous request runs on one of them with its share of the threads: meta `num_streams`
says how many), `streams` (NUM_STREAMS; 0 = the hint decides), `profile` / `profile_iterations` (per-layer times from a separately compiled model
with PERF_COUNT), `engine_timer` (default true: OpenVINO's own `InferRequest.latency` of every
measured iteration, read after its timed region, is stored in `reported`, stage
`infer_latency`, beside perflab's `compute`), `calibration_batches`
(int8) and `strict_precision` (default true).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from perflab.backends.base import Backend, engine_facts
from perflab.backends.option_values import OptionValues, declared_defaults
from perflab.backends.ort import (
    DEFAULT_PROFILE_ITERATIONS,
    PROFILE_WARMUP_RUNS,
    calibration_batch_count,
)
from perflab.errors import ModelError, Unsupported
from perflab.options import Option
from perflab.precisions import precision_effective, strict_refuses
from perflab.timing import COMPUTE
from perflab.tool_stages import reported_rows

if TYPE_CHECKING:
    import pandas as pd

    from perflab.models import ModelInfo
    from perflab.pipelines import Pipeline
    from perflab.spec import RunConfig
    from perflab.timing import Recorder, SetupTimer

DECLARED_OPTIONS = (
    Option("threads", "int >= 0", 0, "INFERENCE_NUM_THREADS; 0: OpenVINO's default"),
    Option("hint", "latency | throughput", "latency", "PERFORMANCE_HINT"),
    Option("streams", "int >= 0", 0, "NUM_STREAMS; 0: what the hint chooses"),
    Option("profile", "bool", False, "per-layer performance counters after the measured phase"),
    Option("profile_iterations", "int >= 1", DEFAULT_PROFILE_ITERATIONS,
           "profiled iterations (layer table)"),
    Option("engine_timer", "bool", True,
           "store OpenVINO's own InferRequest.latency of the measured iterations"),
    Option("calibration_batches", "int >= 1", None, "int8 calibration batches"),
    Option("strict_precision", "bool", True,
           "fail the run when the engine ran another precision than asked"),
)  # fmt: skip
OPTIONS = tuple(o.name for o in DECLARED_OPTIONS)
HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
#: perflab precision -> (INFERENCE_PRECISION_HINT, the OPTIMIZATION_CAPABILITIES entry it needs).
PRECISION_HINTS = {
    "fp32": ("f32", "FP32"),
    "bf16": ("bf16", "BF16"),
    "fp16": ("f16", "FP16"),
    "int8": ("f32", "INT8"),  # int8 comes from the QDQ model; f32 keeps the rest of it fp32
    "best": (None, None),
}
#: Runtime-graph layer types that carry the arithmetic (CPU plugin names).
HEAVY_LAYERS = frozenset({
    "Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul",
    "ScaledDotProductAttention", "MHA", "RNNSeq", "RNNCell", "FullyConnectedCompressed",
})  # fmt: skip
#: OpenVINO element type names (rt_info runtimePrecision) -> perflab precision names.
OV_PRECISION = {
    "f32": "fp32",
    "bf16": "bf16",
    "f16": "fp16",
    "i8": "int8",
    "u8": "int8",
    "f64": "fp64",
}
#: Runtime-graph layers that do no work of their own (they are listed, never executed).
_PASSIVE_LAYERS = frozenset({"Const", "Input", "Parameter", "Output", "Result"})


def parse_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the openvino backend's options; SpecError names the bad key and the valid ones."""
    values = OptionValues(
        "openvino", options, declared_defaults(DECLARED_OPTIONS), none_passes=True
    )
    values.reject_unknown(OPTIONS)
    hint = values.get("hint")
    if not isinstance(hint, str) or hint.lower() not in HINTS:
        raise values.bad("hint", hint, f"is not one of {', '.join(HINTS)}")
    return {
        "threads": values.integer("threads", 0),
        "hint": hint.lower(),
        "streams": values.integer("streams", 0),
        "profile": values.boolean("profile"),
        "profile_iterations": values.integer("profile_iterations", 1),
        "engine_timer": values.boolean("engine_timer"),
        "calibration_batches": values.integer("calibration_batches", 1),
        "strict_precision": values.boolean("strict_precision"),
    }


def runtime_layers(compiled: Any) -> list[dict[str, Any]]:
    """Per layer of a compiled model's runtime graph: name, layer type, perflab precision,
    OpenVINO runtime precision and primitive (kernel) type."""
    rows = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        runtime = _rt_text(rt, "runtimePrecision")
        rows.append(
            {
                "layer": op.get_friendly_name(),
                "op_type": _rt_text(rt, "layerType") or op.get_type_name(),
                "runtime_precision": runtime,
                "precision": OV_PRECISION.get(runtime or "", runtime),
                "primitive": _rt_text(rt, "primitiveType"),
            }
        )
    return rows


def _rt_text(rt_info: Any, key: str) -> str | None:
    return rt_info[key].astype(str) if key in rt_info else None


def heavy_precisions(layers: list[dict[str, Any]]) -> dict[str, int]:
    """How many heavy layers run in each precision."""
    return dict(
        Counter(r["precision"] for r in layers if r["op_type"] in HEAVY_LAYERS and r["precision"])
    )


class OpenVinoBackend(Backend):
    """OpenVINO on the CPU (see the module docstring for the timed region and precision)."""

    name = "openvino"
    device = "cpu"
    options = DECLARED_OPTIONS
    option_parser = staticmethod(parse_options)

    def __init__(self, config: RunConfig):
        super().__init__(config)
        self.opts = parse_options(config.option_dict)
        self.precision = config.precision
        self._core: Any = None
        self._compiled: Any = None
        self._request: Any = None
        self._model_path: str | None = None
        self._shapes: dict[str, list[int]] = {}
        self._casts: dict[str, np.dtype] = {}
        self._out_ports: list[tuple[str, Any]] = []
        self._layers: list[dict[str, Any]] = []
        self._profile_table: pd.DataFrame | None = None
        # InferRequest.latency of each measured iteration; None outside the measured phase.
        self._engine_ms: list[float] | None = None
        self._engine_timed: list[float] = []
        self._last_inputs: Mapping[str, np.ndarray] | None = None
        self._precision_effective: str | None = None
        self._meta: dict[str, Any] = {}

    def setup(self, model: ModelInfo | None, pipeline: Pipeline, timer: SetupTimer) -> None:
        import openvino as ov

        if model is None:
            raise Unsupported("openvino needs an ONNX model")
        core = self._core = ov.Core()
        capabilities = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        hint, needs = PRECISION_HINTS[self.precision]
        if needs and needs not in capabilities:
            raise Unsupported(
                f"openvino: this CPU cannot compute in {self.precision}: its OpenVINO "
                f"capabilities are {', '.join(capabilities)}, without {needs}"
                + (
                    " (native fp16 arithmetic needs AVX512_FP16 or AMX_FP16; an f16 hint "
                    "would quietly run bf16 or f32)"
                    if self.precision == "fp16"
                    else ""
                )
            )
        path = str(model.path)
        conversion: dict[str, Any] = {}
        if self.precision == "int8":
            from perflab import models

            n = self.opts["calibration_batches"] or calibration_batch_count(model.batch_size)
            with timer("build"):
                converted = models.convert(
                    model, "int8", calibration=pipeline.calibration_batches(n)
                )
            path = str(converted.path)
            conversion = {
                "conversion": converted.method,
                "conversion_notes": list(converted.notes),
                "calibration_batches": n,
            }
        self._model_path = path
        self._shapes = {t.name: list(t.shape) for t in model.inputs}
        config = self._compile_config(hint)
        with timer("load"):
            compiled = self._compile(path, config)
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        specs = {t.name: t for t in model.inputs}
        for port in compiled.inputs:
            name = port.get_any_name()
            want = np.dtype(port.get_element_type().to_dtype())
            if name in specs and np.dtype(specs[name].dtype) != want:
                self._casts[name] = want
        self._out_ports = [(p.get_any_name(), p) for p in compiled.outputs]
        self._layers = runtime_layers(compiled)
        counts = heavy_precisions(self._layers)
        self._precision_effective = precision_effective(counts) or "fp32"
        self._meta = {
            "openvino_version": ov.get_version(),
            "device_capabilities": capabilities,
            "compile_config": {k: str(v) for k, v in config.items()},
            "inference_precision": compiled.get_property(
                "INFERENCE_PRECISION_HINT"
            ).get_type_name(),
            "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")),
            "num_streams": int(compiled.get_property("NUM_STREAMS")),
            "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
            "optimal_infer_requests": int(
                compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
            ),
            "heavy_layers_per_precision": counts,
            "layers_per_precision": dict(
                Counter(
                    r["precision"]
                    for r in self._layers
                    if r["op_type"] not in _PASSIVE_LAYERS and r["precision"]
                )
            ),
            "precision_source": "runtime precision of the heavy layers of the compiled model",
            "model_file": path.rsplit("/", 1)[-1],
            **conversion,
        }
        eff = self._precision_effective
        if self.opts["strict_precision"] and strict_refuses(self.precision, eff):
            raise Unsupported(
                f"openvino: asked for {self.precision}, but the compiled model runs its heavy "
                f"layers in {eff} (heavy layers per precision: {counts}"
                + (f"; model file: {conversion['conversion']}" if conversion else "")
                + "); set option strict_precision: false to measure it anyway"
            )

    def _compile_config(self, precision_hint: str | None) -> dict[str, Any]:
        config: dict[str, Any] = {"PERFORMANCE_HINT": HINTS[self.opts["hint"]]}
        if precision_hint:
            config["INFERENCE_PRECISION_HINT"] = precision_hint
        if self.opts["threads"]:
            config["INFERENCE_NUM_THREADS"] = self.opts["threads"]
        if self.opts["streams"]:
            config["NUM_STREAMS"] = self.opts["streams"]
        return config

    def _compile(self, path: str, config: Mapping[str, Any]) -> Any:
        ov_model = self._core.read_model(path)
        names = {p.get_any_name() for p in ov_model.inputs}
        missing = [n for n in self._shapes if n not in names]
        if missing:
            raise ModelError(f"openvino: model inputs {sorted(names)} lack {missing}")
        # Static shapes: the CPU plugin then compiles one kernel set for exactly these dims.
        ov_model.reshape(self._shapes)
        return self._core.compile_model(ov_model, "CPU", dict(config))

    def run(self, inputs: dict[str, np.ndarray], rec: Recorder) -> dict[str, np.ndarray]:
        """One `infer` on the reused request; the outputs are copies, safe to keep."""
        self._last_inputs = inputs
        request = self._request
        if self._casts:
            t = rec.begin(COMPUTE)
            feeds = {
                k: (v.astype(self._casts[k]) if k in self._casts else v) for k, v in inputs.items()
            }
            result = request.infer(feeds, share_inputs=True)
            rec.end(COMPUTE, t)
        else:
            t = rec.begin(COMPUTE)
            result = request.infer(inputs, share_inputs=True)
            rec.end(COMPUTE, t)
        if self._engine_ms is not None:
            # Read after the timed region, so compute is untouched (the property read lands in
            # the harness gap); the same calls' own latency makes the comparison paired.
            self._engine_ms.append(float(request.latency))
        return {name: result[port] for name, port in self._out_ports}

    def measure_begin(self) -> None:
        if self.opts["engine_timer"]:
            self._engine_ms = []

    def measure_end(self) -> None:
        if self._engine_ms is not None:
            self._engine_timed, self._engine_ms = self._engine_ms, None
        if self.opts["profile"] and self._profile_table is None:
            self._profiled_pass()

    def _profiled_pass(self) -> None:
        """Per-layer times from a separately compiled model with PERF_COUNT on, so the counters
        never run during the timed iterations."""
        import openvino as ov
        import pandas as pd

        if self._compiled is None or self._model_path is None:
            return
        executed = ov.ProfilingInfo.Status.EXECUTED
        hint, _ = PRECISION_HINTS[self.precision]
        config = {**self._compile_config(hint), "PERF_COUNT": True}
        compiled = self._compile(self._model_path, config)
        precisions = {r["layer"]: r["precision"] for r in runtime_layers(compiled)}
        request = compiled.create_infer_request()
        inputs = self._last_inputs or {
            p.get_any_name(): np.zeros(
                self._shapes[p.get_any_name()], p.get_element_type().to_dtype()
            )
            for p in compiled.inputs
        }
        feeds = {
            k: (v.astype(self._casts[k]) if k in self._casts else v) for k, v in inputs.items()
        }
        times: dict[str, list[float]] = {}
        types: dict[str, str] = {}
        for i in range(PROFILE_WARMUP_RUNS + self.opts["profile_iterations"]):
            request.infer(feeds, share_inputs=True)
            if i < PROFILE_WARMUP_RUNS:
                continue
            for info in request.get_profiling_info():
                if info.status == executed:
                    times.setdefault(info.node_name, []).append(
                        info.real_time.total_seconds() * 1e3
                    )
                    types[info.node_name] = info.node_type
        rows = [
            {
                "layer": name,
                "op_type": types[name],
                "provider": "openvino",
                "precision": precisions.get(name),
                "count": len(t),
                "total_ms": float(np.sum(t)),
                "median_ms": float(np.median(t)),
            }
            for name, t in times.items()
        ]
        self._profile_table = pd.DataFrame(rows, columns=_LAYER_COLUMNS)
        self._meta["profile_iterations"] = self.opts["profile_iterations"]
        self._meta["profile_warmup_runs"] = PROFILE_WARMUP_RUNS

    def tables(self) -> dict[str, pd.DataFrame]:
        """`layers`: per-layer times from the profiled pass (option profile), else one row per
        runtime layer with its precision and no times."""
        import pandas as pd

        if self.opts["profile"] and self._profile_table is None:
            self._profiled_pass()
        out = {}
        if self._engine_timed:
            out["reported"] = pd.DataFrame(reported_rows("infer_latency", self._engine_timed))
        if self._profile_table is not None:
            return {**out, "layers": self._profile_table}
        if not self._layers:
            return out
        rows = [
            {
                "layer": r["layer"],
                "op_type": r["op_type"],
                "provider": "openvino",
                "precision": r["precision"],
                "count": None,
                "total_ms": None,
                "median_ms": None,
            }
            for r in self._layers
            if r["op_type"] not in _PASSIVE_LAYERS
        ]
        frame = pd.DataFrame(rows, columns=_LAYER_COLUMNS)
        return {
            **out,
            "layers": frame.astype(
                {"count": "Int64", "total_ms": "float64", "median_ms": "float64"}
            ),
        }

    def facts(self) -> dict[str, Any]:
        name = None
        if self._core is not None:
            name = str(self._core.get_property("CPU", "FULL_DEVICE_NAME"))
        return engine_facts("cpu", name, self._precision_effective, self._meta)

    def close(self) -> None:
        self._request = None
        self._compiled = None
        self._core = None


_LAYER_COLUMNS = ["layer", "op_type", "provider", "precision", "count", "total_ms", "median_ms"]
