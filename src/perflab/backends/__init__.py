"""Backend registry: name -> what it needs and where it lives, imported only when used.

Besides the built-ins, installed distributions add backends through the entry-point group
`perflab.backends` (name = "module:Class", the way xarray finds its engines). A plugin that fails
to import is listed as unavailable with the reason; the others still work.

A backend is a class with this protocol (see `Backend`); the runner drives it:

    backend = create(config)                       # may raise Unsupported / BackendUnavailable
    backend.setup(model, pipeline, setup_timer)    # times `load` / `build` with setup_timer(...)
    outputs = backend.run(inputs, recorder)        # records h2d / compute / d2h (and enqueue)
    backend.facts()                                # device, device_name, precision_effective, meta
    backend.close()
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from perflab.errors import BackendUnavailable, SpecError
from perflab.options import Option, check_keys

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from perflab.models import ModelInfo
    from perflab.pipelines import Pipeline
    from perflab.spec import RunConfig
    from perflab.timing import Recorder, SetupTimer


@dataclass(frozen=True)
class BackendInfo:
    name: str
    target: str  # "module:Class"
    requires: tuple[str, ...] = ()  # import names that must be installed
    extra: str | None = None  # pip extra that installs them
    gpu: bool = False
    needs_model: bool = True
    description: str = ""
    checks: tuple[Callable[[], str | None], ...] = field(default=(), compare=False)


def _nvidia_gpu() -> str | None:
    """None when an NVIDIA driver is visible, else the reason; never initializes CUDA."""
    import glob

    if glob.glob("/dev/nvidia[0-9]*") or shutil.which("nvidia-smi"):
        return None
    return "no NVIDIA GPU or driver on this machine (/dev/nvidia* and nvidia-smi are absent)"


def _ort_provider(provider: str) -> Callable[[], str | None]:
    def check() -> str | None:
        import onnxruntime

        if provider in onnxruntime.get_available_providers():
            return None
        return (
            f"{provider} is not in this onnxruntime build "
            f"({', '.join(onnxruntime.get_available_providers())}); install onnxruntime-gpu "
            "(pip install 'perflab[gpu]') in place of onnxruntime"
        )

    return check


BACKENDS: dict[str, BackendInfo] = {
    b.name: b
    for b in (
        BackendInfo(
            "synthetic",
            "perflab.backends.synthetic:SyntheticBackend",
            needs_model=False,
            description="calibration backend: busy-waits known stage durations",
        ),
        BackendInfo(
            "ort-cpu",
            "perflab.backends.ort:OrtBackend",
            ("onnxruntime",),
            description="ONNX Runtime, CPU execution provider",
        ),
        BackendInfo(
            "ort-cuda",
            "perflab.backends.ort:OrtBackend",
            ("onnxruntime", "cupy"),
            extra="gpu",
            gpu=True,
            description="ONNX Runtime, CUDA execution provider, IOBinding on CuPy buffers",
            checks=(_nvidia_gpu, _ort_provider("CUDAExecutionProvider")),
        ),
        BackendInfo(
            "ort-trt",
            "perflab.backends.ort:OrtBackend",
            ("onnxruntime", "cupy", "tensorrt"),
            extra="gpu,tensorrt",
            gpu=True,
            description="ONNX Runtime, TensorRT execution provider, IOBinding on CuPy buffers",
            checks=(_nvidia_gpu, _ort_provider("TensorrtExecutionProvider")),
        ),
        BackendInfo(
            "trt",
            "perflab.backends.trt:TensorRTBackend",
            ("tensorrt", "cupy"),
            extra="gpu,tensorrt",
            gpu=True,
            description="native TensorRT engine with CuPy device buffers",
            checks=(_nvidia_gpu,),
        ),
        BackendInfo(
            "openvino",
            "perflab.backends.openvino:OpenVinoBackend",
            ("openvino",),
            extra="openvino",
            description="OpenVINO runtime on the CPU",
        ),
        BackendInfo(
            "torch-cpu",
            "perflab.backends.torch:TorchBackend",
            ("torch",),
            extra="torch",
            description="PyTorch on the CPU (the ONNX model converted to torch)",
        ),
        BackendInfo(
            "torch-cuda",
            "perflab.backends.torch:TorchBackend",
            ("torch",),
            extra="torch",
            gpu=True,
            description="PyTorch on CUDA, timed with CUDA events",
            checks=(_nvidia_gpu,),
        ),
        BackendInfo(
            "custom",
            "perflab.backends.custom:CustomBackend",
            needs_model=False,
            description="your pipeline owns its engine (pipeline: FILE.py:CLASS with compute)",
        ),
    )
}
CUSTOM = "custom"
ENTRY_POINT_GROUP = "perflab.backends"
# Rows imported from other tools carry these backend names; they cannot be run.
IMPORTED_BACKENDS = ("trtexec", "nsys")


@functools.cache
def plugins() -> dict[str, BackendInfo]:
    """Backends installed by other distributions (entry points), by name; built-ins win a clash.

    Only the entry points are read here; a plugin's module is imported when it is used, so a
    broken plugin costs nothing until then and is reported by name.
    """
    from importlib.metadata import entry_points

    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BACKENDS or ep.name in found:
            continue
        dist = getattr(ep.dist, "name", None) or "an installed package"
        found[ep.name] = BackendInfo(ep.name, ep.value, description=f"plugin from {dist}")
    return found


def names() -> list[str]:
    """Every backend an experiment file may name: the built-ins, then the plugins."""
    return [*BACKENDS, *plugins()]


def _import_target(info: BackendInfo) -> type:
    module_name, _, class_name = info.target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def _plugin_class(info: BackendInfo) -> tuple[type | None, str | None]:
    """(class, None), or (None, why the plugin cannot be imported)."""
    try:
        return _import_target(info), None
    except Exception as exc:  # noqa: BLE001 - any failure of a third-party import is a reason
        return None, f"plugin {info.target} failed to import: {type(exc).__name__}: {exc}"


def unavailable_reason(name: str) -> str | None:
    """None when `name` can run here, else why not. Imports nothing heavy unless it must."""
    info = get_info(name)
    if name in plugins():
        cls, reason = _plugin_class(info)
        if reason:
            return reason
        check = getattr(cls, "unavailable_reason", None)
        return check() if callable(check) else None
    missing = [m for m in info.requires if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"package {', '.join(missing)} not installed; pip install 'perflab[{info.extra}]'"
            if info.extra
            else f"package {', '.join(missing)} not installed"
        )
    for check in info.checks:
        reason = check()
        if reason:
            return reason
    return None


def get_info(name: str) -> BackendInfo:
    if name in BACKENDS:
        return BACKENDS[name]
    info = plugins().get(name)
    if info is None:
        raise SpecError(f"unknown backend {name!r}; known backends: {', '.join(names())}")
    cls, _ = _plugin_class(info)
    if cls is None:
        return info
    # A plugin states what it needs on its class, as the built-ins do in BACKENDS.
    doc = (cls.__doc__ or "").strip().splitlines()
    return BackendInfo(
        name,
        info.target,
        gpu=bool(getattr(cls, "gpu", False)),
        needs_model=bool(getattr(cls, "needs_model", True)),
        description=f"{doc[0] if doc else cls.__name__} ({info.description})",
    )


def backend_class(name: str) -> type[Backend]:
    """The class of backend `name`, imported (engine modules import their engine only when
    they run); SpecError for an unknown name or a plugin that cannot be imported."""
    info = get_info(name)
    if name in plugins():
        cls, reason = _plugin_class(info)
        if reason:
            raise SpecError(f"backend {name!r}: {reason}")
        return cls
    return _import_target(info)


def create(config: RunConfig) -> Backend:
    """Instantiate the backend a config names, or raise BackendUnavailable with the reason."""
    reason = unavailable_reason(config.backend)
    if reason:
        raise BackendUnavailable(f"{config.backend} unavailable: {reason}")
    return backend_class(config.backend)(config)


class Backend:
    """Base class with the defaults; subclasses implement `setup` and `run`."""

    name = "base"
    device = "cpu"
    #: The options this backend reads (listed by `perflab backends NAME`).
    options: tuple[Option, ...] = ()

    def __init__(self, config: RunConfig):
        self.config = config

    @classmethod
    def check_options(cls, backend: str, options: Mapping[str, Any], batch_size: int) -> None:
        """Raise SpecError for an unknown option or a bad value; runs when the experiment file is
        read, so it must not import the engine. Backends that check values override it."""
        check_keys(f"backend {backend!r}", options, cls.options)

    def pipeline(self) -> Pipeline | None:
        """A backend that brings its own workload (the synthetic one) returns it here."""
        return None

    def setup(self, model: ModelInfo | None, pipeline: Pipeline, timer: SetupTimer) -> None:
        raise NotImplementedError

    def run(self, inputs: dict[str, np.ndarray], rec: Recorder) -> dict[str, np.ndarray]:
        """One iteration's engine stages; records h2d / compute / d2h (and enqueue) on `rec`."""
        raise NotImplementedError

    def measure_begin(self) -> None:
        """Called right before the measured phase (GPU backends start the CUDA profiler range)."""

    def measure_end(self) -> None:
        """Called right after the measured phase."""

    def facts(self) -> dict[str, Any]:
        """What really ran: device, device_name, precision_effective (a precision name from
        spec.PRECISIONS, or "mixed"), and backend-specific facts under "meta" (a dict)."""
        return {"device": self.device}

    def tables(self) -> dict[str, pd.DataFrame]:
        """Extra rows for other tables (layers, telemetry), without run_id; read after the run."""
        return {}

    # Throughput mode (trtexec-style overlap): backends that can keep several requests in flight
    # implement `submit` (enqueue without waiting; records `enqueue`) and `wait` (block until that
    # request's outputs are on the host; records its device stages). The runner keeps up to
    # `options.inflight` requests in flight and measures wall-clock throughput.
    supports_throughput = False

    def submit(self, inputs: dict[str, np.ndarray], rec: Recorder) -> Any:
        raise NotImplementedError

    def wait(self, handle: Any, rec: Recorder) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Free engine resources."""
