"""OpenCV DNN backend: the model's ONNX file read by `cv2.dnn.readNetFromONNX`, run on the CPU.

`load` times reading the ONNX file into a `cv2.dnn.Net`. `compute` is `setInput` for every input
plus one `forward` of all the unconnected output layers; OpenCV returns host arrays, so there are
no `h2d` / `d2h` stages.

Precision: OpenCV 5's DNN engine (the one `ENGINE_AUTO` selects) runs on the CPU in fp32 only and
ignores preferable targets such as `DNN_TARGET_CPU_FP16` (it logs "Targets are not supported by
the new graph engine"), so every precision other than fp32 (and `best`, which means fp32 here)
is `unsupported` rather than measured under a name it did not run. A model whose operators
OpenCV cannot import is `unsupported` with OpenCV's own message.

Options: `threads` (`cv2.setNumThreads`, process-wide; 0 = OpenCV's default; the previous value
is restored on close).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from perflab.backends.cpu_engine import CpuEngine
from perflab.backends.option_values import parse_whole_numbers
from perflab.errors import Unsupported
from perflab.options import Option
from perflab.timing import COMPUTE

if TYPE_CHECKING:
    from perflab.models import ModelInfo
    from perflab.pipelines import Pipeline
    from perflab.timing import Recorder, SetupTimer

DECLARED_OPTIONS = (
    Option("threads", "int >= 0", 0, "cv2.setNumThreads (process-wide); 0: OpenCV's default"),
)


def parse_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the opencv-dnn backend's options; SpecError names the bad key and the valid ones."""
    return parse_whole_numbers("opencv-dnn", options, DECLARED_OPTIONS, {"threads": 0})


class OpenCvDnnBackend(CpuEngine):
    """OpenCV DNN on the CPU (see the module docstring for the timed region and precision)."""

    name = "opencv-dnn"
    options = DECLARED_OPTIONS
    option_parser = staticmethod(parse_options)
    precision_refusal = (
        "opencv-dnn: OpenCV's DNN engine computes in fp32 only on the CPU (it ignores "
        "targets such as DNN_TARGET_CPU_FP16), so {precision} cannot run"
    )
    _threads_before: int | None = None

    def setup(self, model: ModelInfo | None, pipeline: Pipeline, timer: SetupTimer) -> None:
        import cv2

        model = self.onnx_model(model)
        self._threads_before = cv2.getNumThreads()
        if self.opts["threads"]:
            cv2.setNumThreads(self.opts["threads"])
        with timer("load"):
            try:
                net = cv2.dnn.readNetFromONNX(str(model.path))
            except cv2.error as exc:
                raise Unsupported(f"opencv-dnn cannot import {model.name}: {_cv_message(exc)}")
            net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self._engine = net
        self._output_names = list(net.getUnconnectedOutLayersNames())
        # OpenCV checks most operators only on the first forward: run one here, untimed, so a
        # model it cannot execute is unsupported at setup rather than a failure mid-loop.
        try:
            self._forward(pipeline.preprocess(pipeline.make_inputs()))
        except cv2.error as exc:
            raise Unsupported(f"opencv-dnn cannot run {model.name}: {_cv_message(exc)}")
        self._meta = {
            "opencv_version": cv2.__version__,
            "threads": cv2.getNumThreads(),
            "dnn_backend": "DNN_BACKEND_OPENCV",
            "precision_source": "OpenCV's DNN engine computes in fp32 on the CPU",
        }

    def _forward(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        net = self._engine
        for name in self._input_names:
            net.setInput(np.ascontiguousarray(inputs[name]), name)
        outs = net.forward(self._output_names)
        return dict(zip(self._output_names, outs, strict=True))

    def run(self, inputs: dict[str, np.ndarray], rec: Recorder) -> dict[str, np.ndarray]:
        """setInput + forward; OpenCV hands back new arrays each call, safe to keep."""
        t = rec.begin(COMPUTE)
        out = self._forward(inputs)
        rec.end(COMPUTE, t)
        return out

    def close(self) -> None:
        self._engine = None
        if self._threads_before is not None:
            import cv2

            cv2.setNumThreads(self._threads_before)
            self._threads_before = None


def _cv_message(exc: Exception) -> str:
    """OpenCV's error text without its source-location preamble, on one line."""
    text = str(exc).strip()
    return " ".join(line.strip() for line in text.splitlines() if line.strip())[:500]
