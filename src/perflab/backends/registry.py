"""Backend registry: name -> what it needs and where it lives, and why it cannot run here.

Imports only `errors` (and the standard library), so `spec` can check backend names when it reads
an experiment file, and the CLI can list backends, without importing any engine.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
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


def find_compiler() -> str | None:
    """The C++ compiler to use: $CXX, else c++ or g++ on PATH."""
    for name in (os.environ.get("CXX"), "c++", "g++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cxx_compiler() -> str | None:
    """None when a C++ compiler is on PATH ($CXX, c++ or g++), else the reason."""
    return None if find_compiler() else "no C++ compiler found (install g++)"


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
    )
}
# Rows imported from other tools carry these backend names; they cannot be run.
IMPORTED_BACKENDS = ("trtexec", "nsys")
CUSTOM = "custom"
ENTRY_POINT_GROUP = "perflab.backends"


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


def backend_class(name: str) -> type:
    """The class of backend `name`, imported (engine modules import their engine only when
    they run); SpecError for an unknown name or a plugin that cannot be imported."""
    info = get_info(name)
    if name in plugins():
        cls, reason = _plugin_class(info)
        if reason:
            raise SpecError(f"backend {name!r}: {reason}")
        return cls
    return _import_target(info)
