"""Backend registry: name -> what it needs and where it lives, imported only when used.

A backend is a class with this protocol (see `Backend`); the runner drives it:

    backend = create(config)                       # may raise Unsupported / BackendUnavailable
    backend.setup(model, pipeline, setup_timer)    # times `load` / `build` with setup_timer(...)
    outputs = backend.run(inputs, recorder)        # records h2d / compute / d2h (and enqueue)
    backend.facts()                                # device, device_name, precision_effective, meta
    backend.close()
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from perflab.errors import BackendUnavailable, SpecError

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


def _cxx_compiler() -> str | None:
    """None when a C++ compiler is on PATH ($CXX, c++ or g++), else the reason."""
    from perflab.backends.openvino_cpp import find_compiler

    return None if find_compiler() else "no C++ compiler found (install g++)"


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
            "openvino-cpp",
            "perflab.backends.openvino_cpp:OpenVinoCppBackend",
            ("openvino",),
            extra="openvino",
            description="OpenVINO on the CPU driven from a C++ runner (compiled on first use)",
            checks=(_cxx_compiler,),
        ),
        BackendInfo(
            "opencv-dnn",
            "perflab.backends.opencv_dnn:OpenCvDnnBackend",
            ("cv2",),  # opencv-python-headless is a core dependency: no extra
            description="OpenCV DNN on the CPU (readNetFromONNX)",
        ),
        BackendInfo(
            "mnn",
            "perflab.backends.mnn:MnnBackend",
            ("MNN",),
            extra="mnn",
            description="Alibaba MNN on the CPU (the ONNX model converted by MNN's converter)",
        ),
        BackendInfo(
            "ncnn",
            "perflab.backends.ncnn:NcnnBackend",
            ("ncnn", "pnnx"),
            extra="ncnn",
            description="Tencent ncnn on the CPU (the ONNX model converted by pnnx)",
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
    )
}
# Rows imported from other tools carry these backend names; they cannot be run.
IMPORTED_BACKENDS = ("trtexec", "nsys")


def unavailable_reason(name: str) -> str | None:
    """None when `name` can run here, else why not. Imports nothing heavy unless it must."""
    info = get_info(name)
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
    if name not in BACKENDS:
        raise SpecError(f"unknown backend {name!r}; known backends: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def create(config: RunConfig) -> Backend:
    """Instantiate the backend a config names, or raise BackendUnavailable with the reason."""
    info = get_info(config.backend)
    reason = unavailable_reason(config.backend)
    if reason:
        raise BackendUnavailable(f"{config.backend} unavailable: {reason}")
    module_name, class_name = info.target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(config)


class Backend:
    """Base class with the defaults; subclasses implement `setup` and `run`."""

    name = "base"
    device = "cpu"

    def __init__(self, config: RunConfig):
        self.config = config

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
