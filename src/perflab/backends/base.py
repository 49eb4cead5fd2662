"""The backend protocol and the factory that instantiates a backend by name.

A backend is a class with this protocol (see `Backend`); the runner drives it:

    backend = create(config)                       # may raise Unsupported / BackendUnavailable
    backend.setup(model, pipeline, setup_timer)    # times `load` / `build` with setup_timer(...)
    outputs = backend.run(inputs, recorder)        # records h2d / compute / d2h (and enqueue)
    backend.facts()                                # device, device_name, precision_effective, meta
                                                   # (engine_facts builds it)
    backend.close()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from perflab.backends.registry import backend_class, unavailable_reason
from perflab.errors import BackendUnavailable
from perflab.options import Option, check_keys

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from perflab.models import ModelInfo
    from perflab.pipelines import Pipeline
    from perflab.spec import RunConfig
    from perflab.timing import Recorder, SetupTimer


def create(config: RunConfig) -> Backend:
    """Instantiate the backend a config names, or raise BackendUnavailable with the reason."""
    reason = unavailable_reason(config.backend)
    if reason:
        raise BackendUnavailable(f"{config.backend} unavailable: {reason}")
    return backend_class(config.backend)(config)


def engine_facts(
    device: str,
    device_name: str | None,
    precision_effective: str | None,
    meta: Mapping[str, Any],
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The `facts()` of a backend that drives an engine: what ran where, and its meta (a copy,
    so the run's row never aliases the backend's state), with the notes the engine left (what
    went wrong without stopping the run) under meta["notes"] where there are any."""
    meta = dict(meta)
    if notes:
        meta["notes"] = list(notes)
    return {
        "device": device,
        "device_name": device_name,
        "precision_effective": precision_effective,
        "meta": meta,
    }


class Backend:
    """Base class with the defaults; subclasses implement `setup` and `run`."""

    name = "base"
    device = "cpu"
    #: The options this backend reads (listed by `perflab backends NAME`).
    options: tuple[Option, ...] = ()

    def __init__(self, config: RunConfig):
        self.config = config

    #: A backend whose values need checking names its module's parser here (it raises SpecError).
    option_parser: Callable[..., Any] | None = None
    #: What `option_parser` is called with, in its order: "options", and where its checks need
    #: them "backend" (the name, for a class that serves several) and "batch_size".
    option_parser_args: tuple[str, ...] = ("options",)

    @classmethod
    def check_options(cls, backend: str, options: Mapping[str, Any], batch_size: int) -> None:
        """Raise SpecError for an unknown option or a bad value; runs when the experiment file is
        read, so it must not import the engine. `option_parser` checks values where set (called
        with `option_parser_args`); without one, only the keys are checked."""
        if cls.option_parser is None:
            check_keys(f"backend {backend!r}", options, cls.options)
            return
        available = {"backend": backend, "options": options, "batch_size": batch_size}
        cls.option_parser(*(available[name] for name in cls.option_parser_args))

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
