"""What the in-process CPU engines share: mnn, ncnn, opencv-dnn and openvino-cpp.

Each reads the model's ONNX file (or its own conversion of it), runs on the host CPU and hands
back host arrays. They parse their options once when made, refuse in the constructor every
precision they cannot compute in (with the engine's reason), need a model, and report the host
CPU and fp32 once loaded. The engine subclasses keep what differs: the conversion, the load, the
thread setting and the run call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from perflab.backends.base import Backend, engine_facts
from perflab.errors import Unsupported

if TYPE_CHECKING:
    from perflab.models import ModelInfo
    from perflab.spec import RunConfig


class CpuEngine(Backend):
    """Base of the CPU engines that run an ONNX model in this process or a child of it."""

    device = "cpu"
    #: The precisions the engine computes in as asked; the constructor refuses any other.
    precisions: tuple[str, ...] = ("fp32", "best")
    #: Why another precision cannot run; `{precision}` stands for the one asked.
    precision_refusal = ""

    def __init__(self, config: RunConfig):
        super().__init__(config)
        assert self.option_parser is not None, f"{type(self).__name__} names no option_parser"
        self.opts = self.option_parser(config.option_dict)
        if config.precision not in self.precisions:
            raise Unsupported(self.precision_refusal.format(precision=config.precision))
        self._engine: Any = None  # the loaded network, module or runner; None until setup
        self._input_names: list[str] = []
        self._output_names: list[str] = []
        self._meta: dict[str, Any] = {}

    def onnx_model(self, model: ModelInfo | None) -> ModelInfo:
        """The model to load, its input and output names noted; Unsupported without one."""
        if model is None:
            raise Unsupported(f"{self.name} needs an ONNX model")
        self._input_names = [t.name for t in model.inputs]
        self._output_names = [t.name for t in model.outputs]
        return model

    def facts(self) -> dict[str, Any]:
        return engine_facts("cpu", self.device_name(), self.precision_effective(), self._meta)

    def device_name(self) -> str:
        from perflab.backends.ort import cpu_name

        return cpu_name()

    def precision_effective(self) -> str | None:
        """fp32 while loaded: these engines compute every layer in fp32."""
        return "fp32" if self._engine is not None else None
