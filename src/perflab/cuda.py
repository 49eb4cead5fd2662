"""GPU device memory, streams and CUDA-event timing on CuPy; GPU availability and facts.

Everything here imports CuPy / NVML inside functions, so `import perflab.cuda` is free and works
without a GPU. The API, for backends that move their own tensors (native TensorRT, ONNX Runtime
IOBinding):

    from perflab import cuda
    reason = cuda.gpu_unavailable_reason(device_id)    # None, or why there is no usable GPU
    io = cuda.DeviceIO(model.inputs, model.outputs, device_id=0)
    io.stream_ptr                  # int cudaStream_t: give it to the engine (ORT:
                                   #   {"user_compute_stream": str(io.stream_ptr)})
    io.device_ptr(name)            # int device address of an input or output buffer
    io.shape(name), io.np_dtype(name)
    # ORT: binding.bind_input(name, "cuda", 0, io.np_dtype(name), io.shape(name),
    #                         io.device_ptr(name)); the same with bind_output.
    # per iteration (latency mode):
    io.h2d(inputs, rec)                          # stage `h2d`
    io.compute(lambda: engine_call(), rec)       # stage `compute` (+ `enqueue`)
    outputs = io.d2h(rec)                        # stage `d2h`; dict of pinned host arrays
    # around the measured phase:
    cuda.profiler_start(); ...; cuda.profiler_stop()

Timing (what each stage's numbers mean):
- Buffers: one pinned host buffer and one device buffer per input and output, allocated once;
  nothing is allocated per iteration. `h2d` first copies the caller's (pageable) arrays into the
  pinned buffers (`np.copyto`; skipped when the caller passes the pinned buffer itself, see
  `host_inputs`), then issues asynchronous copies on the stream. That host copy is inside the
  stage's host time, not its device time.
- Events: each stage is bracketed by its own pair of CUDA events recorded on the stream, reused
  every iteration; the device duration is `cudaEventElapsedTime` of the pair (ms -> ns).
- Synchronization: each stage ends with a host wait on its end event before its host clock is
  read, so host duration >= device duration, and stages never overlap in latency mode. The
  compute start event is recorded right before the engine call; on an idle stream the device
  duration therefore also holds the launch latency of the first kernels.
- `enqueue`: host time until the engine call returns (recorded inside `compute`).
- Returned outputs are the pinned host buffers themselves: valid until the next `d2h`.

Throughput mode (several requests in flight) uses `enqueue` / `complete` instead, one DeviceIO
per request slot (`SlotPool` hands them out), see those methods.
"""

from __future__ import annotations

import glob
import importlib.util
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

import numpy as np

from perflab.errors import BackendUnavailable
from perflab.stages import DEVICE_STAGES
from perflab.timing import COMPUTE, D2H, ENQUEUE_CODE, H2D, STAGE_CODES

if TYPE_CHECKING:
    from perflab.models import TensorSpec
    from perflab.timing import Recorder

__all__ = [
    "DeviceIO",
    "EventClock",
    "SlotPool",
    "driver_unavailable_reason",
    "gpu_facts",
    "gpu_unavailable_reason",
    "ms_to_ns",
    "profiler_start",
    "profiler_stop",
    "record_device_stages",
    "require_gpu",
    "starts_before",
    "stream_of",
]

#: The codes of the stages a DeviceIO times, in stream order (the order of their event pairs).
DEVICE_STAGE_CODES = tuple(STAGE_CODES[s] for s in DEVICE_STAGES)


def ms_to_ns(ms: float) -> int:
    """CUDA event milliseconds (a float) -> integer nanoseconds, rounded."""
    return round(ms * 1e6)


# ------------------------------------------------------------------------------ availability


def driver_unavailable_reason() -> str | None:
    """None when an NVIDIA driver is visible (device nodes or nvidia-smi); imports nothing."""
    if glob.glob("/dev/nvidia[0-9]*") or shutil.which("nvidia-smi"):
        return None
    return "no NVIDIA GPU or driver on this machine (/dev/nvidia* and nvidia-smi are absent)"


def gpu_unavailable_reason(device_id: int = 0) -> str | None:
    """None when CuPy can use CUDA device `device_id`, else the reason in one line.

    Cheap checks first (package installed, driver visible, without importing anything); then
    `cudaGetDeviceCount` through CuPy, which loads the driver but creates no CUDA context.
    """
    if importlib.util.find_spec("cupy") is None:
        return "package cupy is not installed; pip install 'perflab[gpu]'"
    reason = driver_unavailable_reason()
    if reason:
        return reason
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - CUDARuntimeError (no/old driver), ImportError
        return f"the CUDA runtime sees no usable GPU: {_describe(exc)}"
    if count == 0:
        return "the CUDA runtime sees no GPU (CUDA_VISIBLE_DEVICES may hide them)"
    if not 0 <= device_id < count:
        return f"CUDA device {device_id} asked for, but {count} device(s) are visible"
    return None


def require_gpu(device_id: int = 0, what: str = "this backend") -> None:
    """Raise BackendUnavailable with the reason when `gpu_unavailable_reason` gives one."""
    reason = gpu_unavailable_reason(device_id)
    if reason:
        raise BackendUnavailable(f"{what} unavailable: {reason}")


# ------------------------------------------------------------------------------ profiler range


def profiler_start() -> str | None:
    """cudaProfilerStart (opens `nsys --capture-range=cudaProfilerApi`); None, or why not."""
    return _profiler("Start")


def profiler_stop() -> str | None:
    """cudaProfilerStop; None, or why not."""
    return _profiler("Stop")


def _profiler(which: str) -> str | None:
    errors = []
    try:
        import cupy

        getattr(cupy.cuda.runtime, f"profiler{which}")()
        return None
    except Exception as exc:  # noqa: BLE001 - no CuPy: try cuda-python, which needs no CuPy
        errors.append(f"cupy: {_describe(exc)}")
    try:
        from cuda.bindings import runtime as cudart

        result = getattr(cudart, f"cudaProfiler{which}")()
        err = result[0] if isinstance(result, tuple) else result
        if int(err) != 0:
            raise RuntimeError(f"cudaProfiler{which} returned {err}")
        return None
    except Exception as exc:  # noqa: BLE001
        errors.append(f"cuda-python: {_describe(exc)}")
    return f"cudaProfiler{which} unavailable ({'; '.join(errors)})"


# ------------------------------------------------------------------------------ buffers, events


class DeviceIO:
    """Pinned host and device buffers for one model's inputs and outputs, one non-blocking
    stream, and a CUDA event pair per device stage (see the module docstring for the timing).

    `stream`: an existing cupy Stream to share (throughput slots); by default a new
    non-blocking stream (one that does not synchronize with the legacy default stream).
    `cupy_module` replaces the cupy module (tests pass a fake).
    """

    def __init__(
        self,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        device_id: int = 0,
        *,
        stream: Any = None,
        cupy_module: Any = None,
    ) -> None:
        cp = cupy_module if cupy_module is not None else _import_cupy()
        self.cp = cp
        self.device_id = device_id
        self._specs = {t.name: t for t in (*inputs, *outputs)}
        self.input_names = tuple(t.name for t in inputs)
        self.output_names = tuple(t.name for t in outputs)
        for t in (*inputs, *outputs):
            if any(int(d) < 0 for d in t.shape):
                raise ValueError(
                    f"tensor {t.name!r} has an unresolved shape {t.shape}; "
                    "DeviceIO needs concrete shapes"
                )
        with cp.cuda.Device(device_id):
            self.stream = stream if stream is not None else cp.cuda.Stream(non_blocking=True)
            self.host_inputs = {t.name: _pinned(cp, t.shape, t.dtype) for t in inputs}
            self.host_outputs = {t.name: _pinned(cp, t.shape, t.dtype) for t in outputs}
            self.device_inputs = {t.name: cp.empty(t.shape, np.dtype(t.dtype)) for t in inputs}
            self.device_outputs = {t.name: cp.empty(t.shape, np.dtype(t.dtype)) for t in outputs}
            # start/end per stage: h2d (0, 1), compute (2, 3), d2h (4, 5)
            self.events = tuple(cp.cuda.Event() for _ in range(6))
        self._in = [(self.host_inputs[n], self.device_inputs[n]) for n in self.input_names]
        self._out = [(self.device_outputs[n], self.host_outputs[n]) for n in self.output_names]

    # -- what engines bind to

    @property
    def stream_ptr(self) -> int:
        return int(self.stream.ptr)

    def device_ptr(self, name: str) -> int:
        arr = self.device_inputs.get(name)
        if arr is None:
            arr = self.device_outputs.get(name)
        if arr is None:
            raise KeyError(
                f"no buffer {name!r}; inputs: {self.input_names}, outputs: {self.output_names}"
            )
        return int(arr.data.ptr)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self._specs[name].shape)

    def np_dtype(self, name: str) -> type:
        """The numpy scalar type (ORT's bind_input wants e.g. np.float32, not a dtype object)."""
        return np.dtype(self._specs[name].dtype).type

    # -- latency mode: one stage at a time, each synchronized

    def h2d(self, host_arrays: Mapping[str, np.ndarray], rec: Recorder) -> None:
        """Stage `h2d`: stage into pinned memory, copy to the device, wait for the copy."""
        ev, s = self.events, self.stream
        t = rec.begin(H2D)
        ev[0].record(s)
        self._stage_inputs(host_arrays)
        ev[1].record(s)
        ev[1].synchronize()
        rec.end(H2D, t)

    def compute(
        self, enqueue: Callable[[], Any], rec: Recorder, *, record_enqueue: bool = True
    ) -> Any:
        """Stage `compute`: `enqueue()` issues the engine's work on `stream`; wait for it.

        `enqueue` is recorded as its own stage (host time of the call) unless
        `record_enqueue=False` (for engines whose call blocks until the work is done).
        Returns what `enqueue` returned.
        """
        ev, s = self.events, self.stream
        t = rec.begin(COMPUTE)
        ev[2].record(s)
        if record_enqueue:
            te = rec.begin(ENQUEUE_CODE)
            result = enqueue()
            rec.end(ENQUEUE_CODE, te)
        else:
            result = enqueue()
        ev[3].record(s)
        ev[3].synchronize()
        rec.end(COMPUTE, t)
        return result

    def d2h(self, rec: Recorder) -> dict[str, np.ndarray]:
        """Stage `d2h`: copy outputs into the pinned host buffers and wait; then attach the
        device durations of this iteration's three stages to `rec`."""
        ev, s = self.events, self.stream
        t = rec.begin(D2H)
        ev[4].record(s)
        for dev, host in self._out:
            dev.get(stream=s, out=host, blocking=False)
        ev[5].record(s)
        ev[5].synchronize()
        rec.end(D2H, t)
        for stage, ns in zip(DEVICE_STAGE_CODES, self.device_durations_ns()):
            rec.device(stage, ns)
        return self.host_outputs

    def device_durations_ns(self) -> tuple[int, int, int]:
        """(h2d, compute, d2h) device durations of the last completed request, in ns."""
        ev, elapsed = self.events, self.cp.cuda.get_elapsed_time
        return (
            ms_to_ns(elapsed(ev[0], ev[1])),
            ms_to_ns(elapsed(ev[2], ev[3])),
            ms_to_ns(elapsed(ev[4], ev[5])),
        )

    # -- throughput mode: the whole request enqueued, completed later

    def enqueue(self, host_arrays: Mapping[str, np.ndarray], enqueue: Callable[[], Any]) -> None:
        """Issue h2d, the engine call and d2h on the stream without waiting for any of them.

        The caller times this (stage `enqueue`) and later calls `complete`. Until then the
        buffers belong to the device: do not call `enqueue` on this DeviceIO again first.
        """
        ev, s = self.events, self.stream
        ev[0].record(s)
        self._stage_inputs(host_arrays)
        ev[1].record(s)
        ev[2].record(s)
        enqueue()
        ev[3].record(s)
        ev[4].record(s)
        for dev, host in self._out:
            dev.get(stream=s, out=host, blocking=False)
        ev[5].record(s)

    def complete(
        self, rec: Recorder, iteration: int, clock: EventClock | None = None
    ) -> dict[str, np.ndarray]:
        """Wait for the request issued by `enqueue` and record its device stages.

        Overlapping requests have no per-stage host time, so each stage row carries the device
        duration as its duration too, and starts at the stage's start event mapped onto the
        host clock by `clock` (or, without one, at the time the wait returned, minus the
        durations). The device duration is attached with `rec.device(..., iteration=...)`.
        """
        ev = self.events
        ev[5].synchronize()
        now = perf_counter_ns()
        durations = self.device_durations_ns()
        if clock is not None:
            starts = [clock.host_ns(ev[0]), clock.host_ns(ev[2]), clock.host_ns(ev[4])]
        else:
            starts = starts_before(now, durations)
        record_device_stages(rec, iteration, starts, durations)
        return self.host_outputs

    @property
    def done(self) -> bool:
        """True when the last enqueued request has finished (does not block)."""
        return bool(self.events[5].done)

    def synchronize(self) -> None:
        self.stream.synchronize()

    # -- helpers

    def _stage_inputs(self, host_arrays: Mapping[str, np.ndarray]) -> None:
        s = self.stream
        for name, (host, dev) in zip(self.input_names, self._in):
            src = host_arrays[name]
            if src is not host:  # the caller may write straight into the pinned buffer
                np.copyto(host, src, casting="same_kind")
            dev.set(host, stream=s)

    def close(self) -> None:
        """Wait for outstanding work and drop the buffers (the pools keep the memory)."""
        try:
            self.stream.synchronize()
        finally:
            self._in, self._out = [], []
            self.host_inputs, self.host_outputs = {}, {}
            self.device_inputs, self.device_outputs = {}, {}


def starts_before(end_ns: int, durations: Sequence[int]) -> list[int]:
    """Back-to-back stage starts ending at `end_ns` (when no device clock anchor exists)."""
    starts = []
    t = end_ns - sum(durations)
    for d in durations:
        starts.append(t)
        t += d
    return starts


class EventClock:
    """Maps CUDA events onto the host's perf_counter_ns clock through one anchor event.

    The anchor is recorded on an idle stream and waited for; the host reads its clock right
    after, so the anchor's host time is late by the wake-up latency (microseconds). Any event
    on the same device then maps to anchor_ns + elapsed(anchor, event). CUDA's elapsed times
    are float32 milliseconds: over a minute their resolution is about 4 us.

    `elapsed_ms(a, b)` is cupy.cuda.get_elapsed_time, or for torch events
    `lambda a, b: a.elapsed_time(b)`; `for_cupy` builds the anchor on a CuPy stream.
    """

    def __init__(
        self, anchor: Any, anchor_ns: int, elapsed_ms: Callable[[Any, Any], float]
    ) -> None:
        self.anchor, self.anchor_ns, self._elapsed = anchor, int(anchor_ns), elapsed_ms

    @classmethod
    def for_cupy(cls, cp: Any, stream: Any) -> EventClock:
        anchor = cp.cuda.Event()
        stream.synchronize()
        anchor.record(stream)
        anchor.synchronize()
        return cls(anchor, perf_counter_ns(), cp.cuda.get_elapsed_time)

    def host_ns(self, event: Any) -> int:
        return self.anchor_ns + ms_to_ns(self._elapsed(self.anchor, event))


def record_device_stages(
    rec: Recorder, iteration: int, starts_ns: Sequence[int], durations_ns: Sequence[int]
) -> None:
    """Rows for one overlapped request's h2d, compute and d2h (throughput mode).

    Such stages have no host time of their own, so each row's duration is the device
    duration, starting at the stage's start event on the host clock; the device duration is
    attached too (`rec.device(..., iteration=...)`), so host_ns == device_ns marks these rows.
    """
    for stage, start, ns in zip(DEVICE_STAGE_CODES, starts_ns, durations_ns):
        rec.record(iteration, stage, int(start), int(ns))
        rec.device(stage, int(ns), iteration=iteration)


@dataclass
class SlotPool:
    """Request slots for throughput mode, handed out round-robin.

    A slot (buffers, events, execution context) holds one request from `acquire` until
    `release`. Round-robin order with one slot more than the requests in flight means the
    outputs a finished request returned stay untouched until the next request completes,
    so the caller can post-process them after taking the next request in.
    """

    size: int
    _next: int = 0
    _busy: dict[int, int] | None = None  # slot -> iteration holding it

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"a slot pool needs at least one slot, got {self.size}")
        self._busy = {}

    @staticmethod
    def size_for(inflight: int) -> int:
        """Slots needed to keep `inflight` requests in flight with outputs kept as above."""
        return max(1, int(inflight)) + 1

    def acquire(self, iteration: int) -> int:
        slot = self._next
        assert self._busy is not None
        if slot in self._busy:
            raise RuntimeError(
                f"request slot {slot} still holds iteration {self._busy[slot]}: more requests "
                f"in flight than the {self.size} slots (wait for the oldest first)"
            )
        self._busy[slot] = iteration
        self._next = (slot + 1) % self.size
        return slot

    def release(self, slot: int) -> None:
        assert self._busy is not None
        if slot not in self._busy:
            raise RuntimeError(f"request slot {slot} is not in use")
        del self._busy[slot]

    @property
    def in_flight(self) -> int:
        return len(self._busy or {})


def stream_of(slot: int, n_streams: int) -> int:
    """Which of `n_streams` streams a slot issues its work on (slots share streams cyclically)."""
    return slot % max(1, n_streams)


# ------------------------------------------------------------------------------ facts


def gpu_facts(
    device_ids: Iterable[int] | None = None, *, nvml: Any = None, cupy_module: Any = None
) -> list[dict[str, Any]]:
    """Stable facts about each GPU, for the environment fingerprint; [] without a GPU.

    Through NVML (no CUDA context): name, uuid, PCI bus id, compute capability, memory, maximum
    and application clocks, power limits, maximum PCIe link generation and width, ECC and
    persistence mode, VBIOS, driver and CUDA driver version. Through the CUDA runtime (CuPy;
    `cudaDeviceGetAttribute` creates no context): runtime version, SM count, L2 size, memory
    bus width. cuDNN's version from the loaded library or the installed wheel. Values that
    change from moment to moment (current clocks, current PCIe link, temperature) are left out
    so the fingerprint of a machine stays the same between runs; telemetry records them.
    Every field is read on its own; a field that fails is absent and listed in "unavailable".
    """
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            nvml = None
    gpus: list[dict[str, Any]] = []
    system: dict[str, Any] = {}
    system_errors: dict[str, str] = {}
    if nvml is not None:
        try:
            nvml.nvmlInit()
        except Exception:  # noqa: BLE001 - no driver: no GPU facts at all
            nvml = None
    if nvml is not None:
        try:
            _field(
                system,
                system_errors,
                "driver_version",
                lambda: _text(nvml.nvmlSystemGetDriverVersion()),
            )
            _field(
                system,
                system_errors,
                "cuda_driver_version",
                lambda: _cuda_version_text(nvml.nvmlSystemGetCudaDriverVersion()),
            )
            count = int(nvml.nvmlDeviceGetCount())
            wanted = range(count) if device_ids is None else [i for i in device_ids if i < count]
            for i in wanted:
                gpus.append(_nvml_gpu(nvml, i))
        except Exception as exc:  # noqa: BLE001 - a broken NVML must not stop a study
            system_errors["nvml"] = _describe(exc)
        finally:
            with suppress(Exception):  # shutting down is best effort
                nvml.nvmlShutdown()
    if not gpus:
        return []
    _cuda_facts(gpus, system, system_errors, cupy_module)
    cudnn = _cudnn_version()
    if cudnn:
        system["cudnn_version"] = cudnn
    for gpu in gpus:
        errors = {**system_errors, **gpu.pop("_errors", {})}
        gpu.update(system)
        if errors:
            gpu["unavailable"] = dict(sorted(errors.items()))
    return gpus


def _nvml_gpu(nvml: Any, index: int) -> dict[str, Any]:
    gpu: dict[str, Any] = {"index": index}
    errors: dict[str, str] = {}
    h = nvml.nvmlDeviceGetHandleByIndex(index)
    f = gpu
    _field(f, errors, "name", lambda: _text(nvml.nvmlDeviceGetName(h)))
    _field(f, errors, "uuid", lambda: _text(nvml.nvmlDeviceGetUUID(h)))
    _field(f, errors, "pci_bus_id", lambda: _text(nvml.nvmlDeviceGetPciInfo(h).busId))
    _field(
        f,
        errors,
        "compute_capability",
        lambda: "{}.{}".format(*nvml.nvmlDeviceGetCudaComputeCapability(h)),
    )
    _field(
        f,
        errors,
        "memory_total_mib",
        lambda: int(nvml.nvmlDeviceGetMemoryInfo(h).total) // (1 << 20),
    )
    _field(f, errors, "sm_clock_max_mhz", lambda: int(nvml.nvmlDeviceGetMaxClockInfo(h, 1)))
    _field(f, errors, "mem_clock_max_mhz", lambda: int(nvml.nvmlDeviceGetMaxClockInfo(h, 2)))
    _field(f, errors, "sm_clock_app_mhz", lambda: int(nvml.nvmlDeviceGetApplicationsClock(h, 1)))
    _field(f, errors, "power_limit_w", lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0)
    _field(
        f,
        errors,
        "power_limit_default_w",
        lambda: nvml.nvmlDeviceGetPowerManagementDefaultLimit(h) / 1000.0,
    )
    _field(f, errors, "pcie_gen_max", lambda: int(nvml.nvmlDeviceGetMaxPcieLinkGeneration(h)))
    _field(f, errors, "pcie_width_max", lambda: int(nvml.nvmlDeviceGetMaxPcieLinkWidth(h)))
    _field(f, errors, "ecc_enabled", lambda: bool(nvml.nvmlDeviceGetEccMode(h)[0]))
    _field(f, errors, "persistence_mode", lambda: bool(nvml.nvmlDeviceGetPersistenceMode(h)))
    _field(f, errors, "vbios_version", lambda: _text(nvml.nvmlDeviceGetVbiosVersion(h)))
    gpu["_errors"] = errors
    return gpu


def _cuda_facts(
    gpus: list[dict[str, Any]], system: dict[str, Any], errors: dict[str, str], cupy_module: Any
) -> None:
    cp = cupy_module
    if cp is None:
        if importlib.util.find_spec("cupy") is None:
            return
        try:
            import cupy as cp
        except Exception as exc:  # noqa: BLE001
            errors["cuda_runtime_version"] = _describe(exc)
            return
    rt = cp.cuda.runtime
    _field(
        system, errors, "cuda_runtime_version", lambda: _cuda_version_text(rt.runtimeGetVersion())
    )
    try:
        count = int(rt.getDeviceCount())
    except Exception as exc:  # noqa: BLE001
        errors["cuda_devices"] = _describe(exc)
        return
    by_bus = {}
    for dev in range(count):
        with suppress(Exception):  # attributes unavailable: no CUDA-side facts for this device
            bus = (
                rt.deviceGetAttribute(rt.cudaDevAttrPciDomainId, dev),
                rt.deviceGetAttribute(rt.cudaDevAttrPciBusId, dev),
                rt.deviceGetAttribute(rt.cudaDevAttrPciDeviceId, dev),
            )
            by_bus[bus] = dev
    attributes = (
        ("multiprocessor_count", "cudaDevAttrMultiProcessorCount"),
        ("l2_cache_bytes", "cudaDevAttrL2CacheSize"),
        ("memory_bus_width_bits", "cudaDevAttrGlobalMemoryBusWidth"),
    )
    for gpu in gpus:
        key = _parse_bus_id(gpu.get("pci_bus_id", ""))
        dev = by_bus.get(key) if key else None
        if dev is None:
            continue
        gpu["cuda_index"] = dev
        e = gpu.setdefault("_errors", {})
        for field_name, attr in attributes:
            _field(
                gpu,
                e,
                field_name,
                lambda attr=attr, dev=dev: int(rt.deviceGetAttribute(getattr(rt, attr), dev)),
            )


def _cudnn_version() -> str | None:
    """cuDNN's version: from the library when one loads, else from the installed wheel."""
    import ctypes

    for lib in ("libcudnn.so.9", "libcudnn.so.8", "libcudnn.so"):
        try:
            version = int(ctypes.CDLL(lib).cudnnGetVersion())
        except (OSError, AttributeError):
            continue
        return _cudnn_version_text(version)
    from importlib import metadata

    for dist in ("nvidia-cudnn-cu13", "nvidia-cudnn-cu12"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def _cudnn_version_text(version: int) -> str:
    # cuDNN 9 encodes major*10000 + minor*100 + patch; cuDNN 8 major*1000 + minor*100 + patch.
    if version >= 90000:
        return f"{version // 10000}.{version % 10000 // 100}.{version % 100}"
    return f"{version // 1000}.{version % 1000 // 100}.{version % 100}"


def _cuda_version_text(version: int) -> str:
    """CUDA's major*1000 + minor*10 encoding -> "13.0"; 0 (no driver) -> "none"."""
    version = int(version)
    if version <= 0:
        return "none"
    return f"{version // 1000}.{version % 1000 // 10}"


def _parse_bus_id(text: str) -> tuple[int, int, int] | None:
    """ "00000000:3B:00.0" (NVML) or "0000:3b:00.0" (CUDA) -> (domain, bus, device)."""
    try:
        domain, bus, rest = text.split(":")
        device = rest.split(".")[0]
        return int(domain, 16), int(bus, 16), int(device, 16)
    except (ValueError, AttributeError):
        return None


def _field(out: dict[str, Any], errors: dict[str, str], key: str, read: Callable[[], Any]) -> None:
    try:
        out[key] = read()
    except Exception as exc:  # noqa: BLE001 - one field failing leaves the others
        errors[key] = _describe(exc)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ------------------------------------------------------------------------------ helpers


def _import_cupy() -> Any:
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailable(
            f"package cupy is not installed ({exc}); pip install 'perflab[gpu]'"
        ) from exc
    return cupy


def _pinned(cp: Any, shape: Sequence[int], dtype: str) -> np.ndarray:
    """A numpy array in page-locked memory (what makes the async copies asynchronous)."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    mem = cp.cuda.alloc_pinned_memory(max(n, 1))
    return np.frombuffer(mem, dt, int(np.prod(shape, dtype=np.int64))).reshape(tuple(shape))


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"
