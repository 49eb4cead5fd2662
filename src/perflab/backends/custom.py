"""`backend: custom`: a user pipeline that owns its engine (its own ONNX Runtime session, a
TensorRT context, FastDeploy, Paddle Inference, ...).

The pipeline's own `h2d`, `compute` and `d2h` methods are the engine stages; the harness times
each one it has, calling the pipeline's `sync()` (when it has one) before it reads the clock after
each, so asynchronous device work is inside the stage that launched it. Options: none of its own
(the pipeline's are `pipeline_options`, its constructor's keyword arguments).
"""

from __future__ import annotations

from typing import Any

from perflab import pipelines
from perflab.backends.base import Backend
from perflab.stages import DEVICE_STAGES
from perflab.timing import STAGE_CODES


class CustomBackend(Backend):
    name = "custom"

    def __init__(self, config):
        super().__init__(config)
        self._pipeline = pipelines.create(
            config.pipeline, (), batch_size=config.batch_size, options=config.pipeline_option_dict
        )
        methods = pipelines.stage_methods(self._pipeline)
        # Bound once: (stage code, method) for each device stage the pipeline has, in order.
        self._stages = tuple(
            (STAGE_CODES[s], methods[s]) for s in DEVICE_STAGES if methods[s] is not None
        )
        self._sync = getattr(self._pipeline, "sync", None) or _no_sync

    def pipeline(self) -> Any:
        return self._pipeline

    def setup(self, model, pipeline, timer) -> None:
        """Nothing of its own: the runner calls the pipeline's setup."""

    def run(self, inputs: Any, rec) -> Any:
        begin, end, sync = rec.begin, rec.end, self._sync
        x = inputs
        for code, stage in self._stages:
            t = begin(code)
            x = stage(x)
            sync()
            end(code, t)
        return x

    def facts(self) -> dict[str, Any]:
        pipe = self._pipeline
        return {
            "device": str(getattr(pipe, "device", "cpu")),
            "device_name": getattr(pipe, "device_name", None),
            "precision_effective": getattr(pipe, "precision_effective", None),
        }


def _no_sync() -> None:
    pass
