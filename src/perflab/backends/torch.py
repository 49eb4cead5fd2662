"""PyTorch backends (`torch-cpu`, `torch-cuda`): the same ONNX model, run as a torch module.

The model is converted by perflab.backends.onnx_torch (an interpreter module over the ONNX
graph; `load` times loading and converting it). Eager by default; option `compile: true` wraps
it in torch.compile (`compile_mode`: default, reduce-overhead, max-autotune,
max-autotune-no-cudagraphs) and one call on zero inputs triggers the compilation, timed as
`build`.

Precision: fp32 as is; fp16 casts the weights and activations to float16 (on the CPU too, where
torch has the kernels; a missing half kernel turns the run `unsupported`); bf16 runs under
torch.autocast (matmuls and convolutions in bfloat16, the rest in float32); int8 and best are
unsupported (the converter makes float modules; quantized torch models are another workflow).
`precision_effective` is the module's weight dtype, or the autocast dtype.

Timed regions:
- torch-cpu: one `compute` stage: `torch.from_numpy` on the inputs (zero-copy: no data moves),
  the forward under torch.inference_mode, `.numpy()` on the outputs (zero-copy too). No h2d or
  d2h: the data never leaves host memory.
- torch-cuda: `h2d` copies the inputs into pinned host tensors and then to preallocated device
  tensors (non_blocking, on the run's own CUDA stream); `compute` runs the forward on that
  stream (its `enqueue` stage is the host time until the forward returns, i.e. all kernels are
  launched); `d2h` copies the outputs into pinned host tensors. Each stage is bracketed by a
  torch.cuda.Event(enable_timing=True) pair on the stream and ends with a host wait on its end
  event, so host >= device. The pinned output buffers are what `run` returns (valid until the
  next run). cudaProfilerStart/Stop bracket the measured phase (torch.cuda.profiler), and GPU
  telemetry (perflab.telemetry) is sampled during the run.
- Throughput mode (torch-cuda): `submit` issues h2d + forward + d2h of one request on one of
  `streams` CUDA streams, each request slot with its own buffers and events; `wait` blocks on
  that request and records its device stage times.

Options: threads (torch.set_num_threads; 0 = torch's default), compile, compile_mode, and for
torch-cuda device_id, streams, tf32 (matmul and cuDNN TF32; default: torch's own settings),
cudnn_benchmark (default false, torch's default), telemetry, telemetry_interval_ms.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from functools import partial
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

import numpy as np

from perflab.backends.base import Backend, engine_facts
from perflab.backends.gpu_telemetry import start_sampler, telemetry_tables
from perflab.backends.inflight import Request, submit_on_slot
from perflab.backends.option_values import OptionValues
from perflab.errors import BackendUnavailable, SpecError, Unsupported
from perflab.options import Option
from perflab.timing import COMPUTE, D2H, ENQUEUE_CODE, H2D

if TYPE_CHECKING:
    import pandas as pd

    from perflab.models import ModelInfo
    from perflab.pipelines import Pipeline
    from perflab.spec import RunConfig
    from perflab.timing import Recorder, SetupTimer

__all__ = ["TorchBackend", "TorchOptions", "parse_options"]

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# The precisions this backend casts a module to; check_precision refuses int8 and best with why.
CAST_PRECISIONS = ("fp32", "fp16", "bf16")
_DTYPE_ERROR = re.compile(r"not implemented for '(Half|BFloat16)'")


@dataclass(frozen=True)
class TorchOptions:
    threads: int = 0
    compile: bool = False
    compile_mode: str = "default"
    device_id: int = 0
    streams: int = 2
    tf32: bool | None = None
    cudnn_benchmark: bool = False
    telemetry: bool = True
    telemetry_interval_ms: float = 100.0


DECLARED_OPTIONS = (
    Option("threads", "int >= 0", 0, "torch.set_num_threads; 0: PyTorch's default"),
    Option("compile", "bool", False, "run the module through torch.compile"),
    Option("compile_mode", " | ".join(COMPILE_MODES), "default", "torch.compile mode"),
    Option("device_id", "int >= 0", 0, "GPU to run on (torch-cuda)"),
    Option("streams", "int >= 1", 2, "CUDA streams for throughput mode (torch-cuda)"),
    Option("tf32", "bool", None, "allow TF32 matmuls; default: PyTorch's (torch-cuda)"),
    Option("cudnn_benchmark", "bool", False, "cudnn.benchmark autotuning (torch-cuda)"),
    Option("telemetry", "bool", True, "sample GPU clocks and throttling (torch-cuda)"),
    Option("telemetry_interval_ms", "number >= 10", 100.0, "telemetry interval (torch-cuda)"),
)  # fmt: skip

_GPU_ONLY = (
    "device_id",
    "streams",
    "tf32",
    "cudnn_benchmark",
    "telemetry",
    "telemetry_interval_ms",
)


def parse_options(backend: str, options: Mapping[str, Any]) -> TorchOptions:
    """Validate a torch backend's options; SpecError names the bad key and the valid ones."""
    gpu = backend == "torch-cuda"
    valid = [f for f in TorchOptions.__dataclass_fields__ if gpu or f not in _GPU_ONLY]
    values = OptionValues(backend, options, vars(TorchOptions()))
    values.reject_unknown(valid, notes=dict.fromkeys(_GPU_ONLY, " (a torch-cuda option)"))
    mode = values.choice("compile_mode", COMPILE_MODES)
    interval = values.number("telemetry_interval_ms", 10)
    return TorchOptions(
        threads=values.integer("threads", 0),
        compile=values.boolean("compile"),
        compile_mode=mode,
        device_id=values.integer("device_id", 0),
        streams=values.integer("streams", 1),
        tf32=values.boolean("tf32", allow_none=True),
        cudnn_benchmark=values.boolean("cudnn_benchmark"),
        telemetry=values.boolean("telemetry"),
        telemetry_interval_ms=interval,
    )


def check_precision(backend: str, precision: str) -> None:
    """Raise Unsupported for precisions the torch backends cannot run, with the reason."""
    if precision == "int8":
        raise Unsupported(
            f"{backend}: int8 needs a quantized torch model (torch.ao quantization or a "
            "QDQ-aware importer); perflab's ONNX->torch converter builds float modules only"
        )
    if precision == "best":
        raise Unsupported(
            f"{backend}: PyTorch has no 'engine picks the precision' mode; ask "
            "for fp32, fp16 or bf16"
        )
    if precision not in CAST_PRECISIONS:
        raise Unsupported(f"{backend}: unknown precision {precision!r}")


@dataclass
class _Slot:
    """One request's buffers and events on one CUDA stream (torch-cuda)."""

    stream: Any
    pinned_in: list[Any]
    pinned_in_np: list[np.ndarray]
    dev_in: list[Any]
    pinned_out: dict[str, Any]
    events: list[Any]
    outputs: Any = None  # device outputs of the request in flight (kept alive until waited)
    out_np: dict[str, np.ndarray] = field(default_factory=dict)


class TorchBackend(Backend):
    """torch-cpu / torch-cuda (see the module docstring)."""

    name = "torch"
    options = DECLARED_OPTIONS

    option_parser = staticmethod(parse_options)
    option_parser_args = ("backend", "options")

    def __init__(self, config: RunConfig):
        super().__init__(config)
        self.backend = config.backend
        self.gpu = config.backend == "torch-cuda"
        self.opts = parse_options(config.backend, config.option_dict)
        self.precision = config.precision
        check_precision(config.backend, config.precision)
        self.device = f"cuda:{self.opts.device_id}" if self.gpu else "cpu"
        self.supports_throughput = self.gpu
        self._module: Any = None
        self._torch: Any = None
        self._in_names: tuple[str, ...] = ()
        self._out_names: tuple[str, ...] = ()
        self._autocast_dtype: Any = None
        self._slots: list[_Slot] = []
        self._pool: Any = None
        self._clock: Any = None
        self._meta: dict[str, Any] = {}
        self._notes: list[str] = []
        self._sampler: Any = None
        self._t0_ns: int | None = None
        self._device_name = "cpu"
        if self.gpu:
            reason = cuda_unavailable_reason(self.opts.device_id)
            if reason:
                raise BackendUnavailable(f"torch-cuda unavailable: {reason}")

    # -- setup

    def setup(self, model: ModelInfo | None, pipeline: Pipeline, timer: SetupTimer) -> None:
        import onnx
        import torch

        from perflab.backends.onnx_torch import convert

        if model is None:
            raise Unsupported(f"{self.backend} needs an ONNX model")
        self._torch = torch
        if self.opts.threads:
            torch.set_num_threads(self.opts.threads)
        device = torch.device(self.device)
        if self.gpu:
            torch.cuda.set_device(device)
            self._configure_cuda(torch)
            self._device_name = torch.cuda.get_device_name(device)
        else:
            self._device_name = _cpu_name()
        with timer("load"):
            module = convert(onnx.load(str(model.path))).eval()
            if self.precision == "fp16":
                module.set_compute_dtype(torch.float16)
            module.to(device)
            if self.gpu:
                torch.cuda.synchronize(device)
        self._in_names, self._out_names = module.input_names, module.output_names
        specs = {t.name: t for t in model.inputs}
        missing = [n for n in self._in_names if n not in specs]
        if missing:
            raise SpecError(f"{self.backend}: model inputs {missing} have no resolved shape")
        self._in_specs = [specs[n] for n in self._in_names]
        out_specs = {t.name: t for t in getattr(model, "outputs", ())}
        self._out_specs = [out_specs.get(n) for n in self._out_names]
        if self.precision == "bf16":
            self._autocast_dtype = torch.bfloat16
        self._module = module
        self._meta.update(
            torch_version=torch.__version__,
            threads=torch.get_num_threads(),
            compile=self.opts.compile,
            ops=sum(module.op_counts.values()),
        )
        if self._autocast_dtype is not None:
            self._meta["autocast"] = "bfloat16 (matmul and convolution ops; others float32)"
        if self.gpu:
            n_slots = self._slot_count()
            self._make_slots(torch, n_slots)
        if self.opts.compile:
            self._compile(torch, timer)
        if self.gpu:
            from perflab import cuda

            if self.config.mode == "throughput":
                self._pool = cuda.SlotPool(len(self._slots))
                self._clock = _torch_clock(torch, self._slots[0].stream)
            self._start_telemetry(torch)

    def _configure_cuda(self, torch: Any) -> None:
        if self.opts.tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = self.opts.tf32
            torch.backends.cudnn.allow_tf32 = self.opts.tf32
        torch.backends.cudnn.benchmark = self.opts.cudnn_benchmark
        self._meta.update(
            tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
            tf32_cudnn=bool(torch.backends.cudnn.allow_tf32),
            cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
            cudnn_version=torch.backends.cudnn.version(),
            cuda_runtime=torch.version.cuda,
        )

    def _slot_count(self) -> int:
        from perflab.cuda import SlotPool

        if self.config.mode != "throughput":
            return 1
        return SlotPool.size_for(getattr(self.config, "inflight", 1))

    def _make_slots(self, torch: Any, n_slots: int) -> None:
        from perflab.cuda import stream_of

        device = torch.device(self.device)
        n_streams = min(self.opts.streams, n_slots) if n_slots > 1 else 1
        streams = [torch.cuda.Stream(device=device) for _ in range(n_streams)]
        for k in range(n_slots):
            pinned_in, pinned_np, dev_in = [], [], []
            for spec in self._in_specs:
                dt = _torch_dtype(torch, spec.dtype)
                p = torch.empty(tuple(spec.shape), dtype=dt, pin_memory=True)
                pinned_in.append(p)
                pinned_np.append(p.numpy())
                dev_in.append(torch.empty(tuple(spec.shape), dtype=dt, device=device))
            pinned_out = {}
            for name, spec in zip(self._out_names, self._out_specs):
                if spec is not None and all(int(d) > 0 for d in spec.shape):
                    pinned_out[name] = torch.empty(
                        tuple(spec.shape), dtype=_torch_dtype(torch, spec.dtype), pin_memory=True
                    )
            events = [torch.cuda.Event(enable_timing=True) for _ in range(6)]
            slot = _Slot(
                streams[stream_of(k, n_streams)], pinned_in, pinned_np, dev_in, pinned_out, events
            )
            slot.out_np = {n: t.numpy() for n, t in pinned_out.items()}
            self._slots.append(slot)
        torch.cuda.synchronize(device)
        self._meta.update(streams=n_streams, slots=n_slots)

    def _compile(self, torch: Any, timer: SetupTimer) -> None:
        """torch.compile, and one call on zeros so the compilation happens here, in `build`."""
        compiled = torch.compile(self._module, mode=self.opts.compile_mode)
        with timer("build"):
            if self.gpu:
                slot = self._slots[0]
                with torch.cuda.stream(slot.stream), torch.inference_mode(), self._autocast():
                    compiled(*[torch.zeros_like(t) for t in slot.dev_in])
                slot.stream.synchronize()
            else:
                zeros = [
                    torch.zeros(tuple(t.shape), dtype=_torch_dtype(torch, t.dtype))
                    for t in self._in_specs
                ]
                with torch.inference_mode(), self._autocast():
                    compiled(*zeros)
        self._module = compiled
        self._meta["compile_mode"] = self.opts.compile_mode

    def _autocast(self) -> Any:
        if self._autocast_dtype is None:
            return nullcontext()
        return self._torch.autocast(
            device_type="cuda" if self.gpu else "cpu", dtype=self._autocast_dtype
        )

    def _start_telemetry(self, torch: Any) -> None:
        if not self.opts.telemetry:
            return
        self._sampler = start_sampler(
            self.opts.device_id,
            self.opts.telemetry_interval_ms,
            _pci_bus_id(torch, self.opts.device_id),
            self._notes,
        )

    # -- run

    def run(self, inputs: dict[str, np.ndarray], rec: Recorder) -> dict[str, np.ndarray]:
        if self._t0_ns is None:
            self._t0_ns = rec.t0_ns
        try:
            if self.gpu:
                return self._run_cuda(inputs, rec)
            return self._run_cpu(inputs, rec)
        except RuntimeError as exc:
            if _DTYPE_ERROR.search(str(exc)):
                raise Unsupported(
                    f"{self.backend} {self.precision}: a kernel is missing: {exc}"
                ) from exc
            raise

    def _run_cpu(self, inputs: Mapping[str, np.ndarray], rec: Recorder) -> dict[str, np.ndarray]:
        torch = self._torch
        t = rec.begin(COMPUTE)
        xs = [_from_numpy(torch, inputs[n]) for n in self._in_names]
        with torch.inference_mode(), self._autocast():
            ys = self._module(*xs)
        out = {n: y.numpy() for n, y in zip(self._out_names, ys)}
        rec.end(COMPUTE, t)
        return out

    def _run_cuda(self, inputs: Mapping[str, np.ndarray], rec: Recorder) -> dict[str, np.ndarray]:
        torch = self._torch
        slot = self._slots[0]
        s, ev = slot.stream, slot.events
        with torch.cuda.stream(s):
            with _stage_on_stream(rec, H2D, s, ev[0], ev[1]):
                self._copy_in(slot, inputs)
            with (
                _stage_on_stream(rec, COMPUTE, s, ev[2], ev[3]),
                torch.inference_mode(),
                self._autocast(),
            ):
                te = rec.begin(ENQUEUE_CODE)
                ys = self._module(*slot.dev_in)
                rec.end(ENQUEUE_CODE, te)
            with _stage_on_stream(rec, D2H, s, ev[4], ev[5]):
                out = self._copy_out(slot, ys)
        del ys
        for stage, ns in zip((H2D, COMPUTE, D2H), _durations_ns(ev)):
            rec.device(stage, ns)
        return out

    def _copy_in(self, slot: _Slot, inputs: Mapping[str, np.ndarray]) -> None:
        for name, host, pinned, dev in zip(
            self._in_names, slot.pinned_in_np, slot.pinned_in, slot.dev_in
        ):
            src = inputs[name]
            if src is not host:
                np.copyto(host, src, casting="same_kind")
            dev.copy_(pinned, non_blocking=True)

    def _copy_out(self, slot: _Slot, ys: Sequence[Any]) -> dict[str, np.ndarray]:
        torch = self._torch
        for name, y in zip(self._out_names, ys):
            buf = slot.pinned_out.get(name)
            if buf is None or tuple(buf.shape) != tuple(y.shape) or buf.dtype != y.dtype:
                # An output shape the model's specs did not give: allocated on first sight.
                buf = slot.pinned_out[name] = torch.empty(
                    tuple(y.shape), dtype=y.dtype, pin_memory=True
                )
                slot.out_np[name] = buf.numpy()
            buf.copy_(y, non_blocking=True)
        return {n: slot.out_np[n] for n in self._out_names}

    def submit(self, inputs: dict[str, np.ndarray], rec: Recorder) -> Request:
        if self._pool is None:
            raise Unsupported(f"{self.backend}: submit needs mode: throughput on torch-cuda")
        if self._t0_ns is None:
            self._t0_ns = rec.t0_ns
        return submit_on_slot(self._pool, rec, partial(self._enqueue, inputs))

    def _enqueue(self, inputs: Mapping[str, np.ndarray], k: int) -> None:
        """One request's copy in, forward and copy out on slot `k`'s stream, bracketed by its
        events; nothing waits."""
        torch = self._torch
        slot = self._slots[k]
        s, ev = slot.stream, slot.events
        with torch.cuda.stream(s):
            ev[0].record(s)
            self._copy_in(slot, inputs)
            ev[1].record(s)
            ev[2].record(s)
            with torch.inference_mode(), self._autocast():
                slot.outputs = self._module(*slot.dev_in)
            ev[3].record(s)
            ev[4].record(s)
            self._copy_out(slot, slot.outputs)
            ev[5].record(s)

    def wait(self, handle: Request, rec: Recorder) -> dict[str, np.ndarray]:
        from perflab import cuda

        slot = self._slots[handle.slot]
        try:
            ev = slot.events
            ev[5].synchronize()
            durations = _durations_ns(ev)
            if self._clock is not None:
                starts = [self._clock.host_ns(ev[i]) for i in (0, 2, 4)]
            else:
                starts = cuda.starts_before(perf_counter_ns(), durations)
            cuda.record_device_stages(rec, handle.iteration, starts, durations)
            slot.outputs = None
            return {n: slot.out_np[n] for n in self._out_names}
        finally:
            self._pool.release(handle.slot)

    def measure_begin(self) -> None:
        if self.gpu:
            try:
                self._torch.cuda.profiler.start()
            except Exception as exc:  # noqa: BLE001 - no profiler API: the run goes on, noted
                self._notes.append(f"cudaProfilerStart failed: {exc}")

    def measure_end(self) -> None:
        if self.gpu:
            try:
                self._torch.cuda.profiler.stop()
            except Exception as exc:  # noqa: BLE001
                self._notes.append(f"cudaProfilerStop failed: {exc}")

    # -- results

    def facts(self) -> dict[str, Any]:
        return engine_facts(
            self.device, self._device_name, self._precision_effective(), self._meta, self._notes
        )

    def _precision_effective(self) -> str | None:
        if self._module is None:
            return None
        if self._autocast_dtype is not None:
            return "bf16"
        module = getattr(self._module, "_orig_mod", self._module)
        dtypes = {t.dtype for t in module.buffers() if t.is_floating_point() and t.numel()}
        dtypes |= {p.dtype for p in module.parameters() if p.is_floating_point()}
        names = {_precision_name(d) for d in dtypes}
        if not names:  # no float weights at all: the compute dtype says
            cdt = getattr(module, "compute_dtype", None)
            return _precision_name(cdt) if cdt is not None else "fp32"
        return names.pop() if len(names) == 1 else "mixed"

    def tables(self) -> dict[str, pd.DataFrame]:
        return telemetry_tables(self._sampler, self._t0_ns)

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
        if self.gpu and self._torch is not None:
            with suppress(Exception):  # freeing is best effort; the process ends soon
                self._torch.cuda.synchronize()
        self._slots.clear()
        self._module = None


# ------------------------------------------------------------------------------- helpers


def cuda_unavailable_reason(device_id: int = 0) -> str | None:
    """None when this torch build can use CUDA device `device_id`, else why not."""
    from perflab.cuda import driver_unavailable_reason

    reason = driver_unavailable_reason()
    if reason:
        return reason
    import torch

    if torch.version.cuda is None:
        return (
            f"this torch build ({torch.__version__}) has no CUDA support; install a CUDA "
            "build of torch"
        )
    try:
        count = torch.cuda.device_count()
    except Exception as exc:  # noqa: BLE001 - driver too old for this build
        return f"torch cannot use the GPU: {exc}"
    if count == 0 or not torch.cuda.is_available():
        return "torch sees no CUDA device (driver too old for this build, or hidden)"
    if device_id >= count:
        return f"CUDA device {device_id} asked for, but torch sees {count}"
    return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _from_numpy(torch: Any, a: np.ndarray) -> Any:
    # Zero-copy; a read-only array would make torch warn (it cannot promise not to write), so
    # that rare case is copied.
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def _torch_dtype(torch: Any, name: str) -> Any:
    return torch.from_numpy(np.empty(0, dtype=np.dtype(name))).dtype


def _precision_name(dtype: Any) -> str:
    text = str(dtype)
    return {
        "torch.float32": "fp32",
        "torch.float16": "fp16",
        "torch.bfloat16": "bf16",
        "torch.float64": "fp64",
    }.get(text, text.replace("torch.", ""))


@contextmanager
def _stage_on_stream(
    rec: Recorder, stage: int, stream: Any, start: Any, end: Any
) -> Iterator[None]:
    """Times `stage` on the host around the block's work, which the events `start` and `end`
    bracket on `stream`; waits for `end` before the stage ends, so that its host time covers the
    device's work. An exception in the block propagates without the closing calls."""
    t = rec.begin(stage)
    start.record(stream)
    yield
    end.record(stream)
    end.synchronize()
    rec.end(stage, t)


def _durations_ns(ev: Sequence[Any]) -> list[int]:
    from perflab.cuda import ms_to_ns

    return [ms_to_ns(ev[a].elapsed_time(ev[b])) for a, b in ((0, 1), (2, 3), (4, 5))]


def _torch_clock(torch: Any, stream: Any) -> Any:
    from perflab.cuda import EventClock

    anchor = torch.cuda.Event(enable_timing=True)
    stream.synchronize()
    anchor.record(stream)
    anchor.synchronize()
    return EventClock(anchor, perf_counter_ns(), lambda a, b: a.elapsed_time(b))


def _pci_bus_id(torch: Any, device_id: int) -> str | None:
    """ "dddd:bb:dd.0" for NVML to find the same GPU, when this torch reports PCI ids."""
    try:
        p = torch.cuda.get_device_properties(device_id)
        return f"{p.pci_domain_id:04x}:{p.pci_bus_id:02x}:{p.pci_device_id:02x}.0"
    except Exception:  # noqa: BLE001 - older torch: NVML's index is the fallback
        return None
