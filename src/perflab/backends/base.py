"""The backend protocol and the factory that instantiates a backend by name.

A backend is a class with this protocol (see `Backend`); the runner drives it:

    backend = create(config)                       # may raise Unsupported / BackendUnavailable
    backend.setup(model, pipeline, setup_timer)    # times `load` / `build` with setup_timer(...)
    outputs = backend.run(inputs, recorder)        # records h2d / compute / d2h (and enqueue)
    backend.facts()                                # device, device_name, precision_effective, meta
    backend.close()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from perflab.backends.registry import get_info, unavailable_reason
from perflab.errors import BackendUnavailable

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from perflab.models import ModelInfo
    from perflab.pipelines import Pipeline
    from perflab.spec import RunConfig
    from perflab.timing import Recorder, SetupTimer


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
        precisions.NAMED, or "mixed", by precisions.precision_effective), and backend-specific facts under "meta" (a dict)."""
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
