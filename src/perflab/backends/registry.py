"""Backend registry: name -> what it needs and where it lives, and why it cannot run here.

Imports only `errors` (and the standard library), so `spec` can check backend names when it reads
an experiment file, and the CLI can list backends, without importing any engine.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

from perflab.errors import SpecError


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
