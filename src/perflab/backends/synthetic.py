"""The calibration backend: every stage busy-waits a configured duration, so the truth is known.

Options (milliseconds): preprocess_ms, h2d_ms, compute_ms, compute_ms_per_item (times the batch
size), d2h_ms, postprocess_ms; `jitter` (relative standard deviation, seeded by the config's seed);
a warmup pattern `warmup_iterations` / `warmup_extra_ms` (extra compute time decaying linearly to
zero over those iterations); fault injection `crash` (none | segfault | abort | oom | hang |
exception) at iteration `crash_at`. Stages with zero duration are not recorded, so a run without
h2d_ms / d2h_ms looks like a CPU backend's.
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any

import numpy as np

from perflab.backends import Backend
from perflab.errors import SpecError, Unsupported
from perflab.timing import COMPUTE, D2H, H2D, busy_wait_ns

DURATIONS = (
    "preprocess_ms",
    "h2d_ms",
    "compute_ms",
    "compute_ms_per_item",
    "d2h_ms",
    "postprocess_ms",
)
CRASHES = ("none", "segfault", "abort", "oom", "hang", "exception")
OPTIONS = (*DURATIONS, "jitter", "warmup_iterations", "warmup_extra_ms", "crash", "crash_at")
DEFAULTS: dict[str, Any] = {
    "preprocess_ms": 0.2,
    "h2d_ms": 0.0,
    "compute_ms": 1.0,
    "compute_ms_per_item": 0.0,
    "d2h_ms": 0.0,
    "postprocess_ms": 0.2,
    "jitter": 0.0,
    "warmup_iterations": 0,
    "warmup_extra_ms": 0.0,
    "crash": "none",
    "crash_at": 0,
}


class _Clock:
    """Draws each stage's duration (ns) for the current iteration: base x (1 + jitter x N(0,1))."""

    def __init__(self, opts: dict[str, Any], batch_size: int, seed: int):
        self.ns = {k: opts[k] * 1e6 for k in DURATIONS}
        self.ns["compute_ms"] += opts["compute_ms_per_item"] * batch_size * 1e6
        self.jitter = float(opts["jitter"])
        self.rng = np.random.default_rng(seed)
        self.warm_n = int(opts["warmup_iterations"])
        self.warm_extra_ns = opts["warmup_extra_ms"] * 1e6
        self.iteration = 0

    def draw(self, key: str) -> int:
        base = self.ns[key]
        if key == "compute_ms" and self.iteration < self.warm_n:
            base += self.warm_extra_ns * (1 - self.iteration / self.warm_n)
        if self.jitter and base:
            base *= max(0.0, 1 + self.jitter * self.rng.standard_normal())
        return int(base)


class SyntheticPipeline:
    name = "synthetic"

    def __init__(self, clock: _Clock, batch_size: int):
        self.clock = clock
        self.tensor = np.zeros((batch_size, 4), dtype=np.float32)

    def make_inputs(self) -> np.ndarray:
        return self.tensor

    def preprocess(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        busy_wait_ns(self.clock.draw("preprocess_ms"))
        return {"x": raw}

    def postprocess(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        busy_wait_ns(self.clock.draw("postprocess_ms"))
        self.clock.iteration += 1
        return outputs

    def calibration_batches(self, n: int) -> list[dict[str, np.ndarray]]:
        return [{"x": self.tensor} for _ in range(n)]


class SyntheticBackend(Backend):
    name = "synthetic"

    def __init__(self, config):
        super().__init__(config)
        opts = config.option_dict
        unknown = sorted(set(opts) - set(OPTIONS))
        if unknown:
            raise SpecError(
                f"synthetic backend: unknown option {unknown[0]!r}; valid: {', '.join(OPTIONS)}"
            )
        self.opts = {**DEFAULTS, **opts}
        for key in (*DURATIONS, "jitter", "warmup_extra_ms", "warmup_iterations", "crash_at"):
            value = self.opts[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise SpecError(
                    f"synthetic backend: option {key!r}: {value!r} must be a non-negative number"
                )
        if self.opts["crash"] not in CRASHES:
            raise SpecError(
                f"synthetic backend: option 'crash': {self.opts['crash']!r} is not one of {', '.join(CRASHES)}"
            )
        if config.mode != "latency":
            raise Unsupported("synthetic backend runs in latency mode only")
        self.clock = _Clock(self.opts, config.batch_size, config.seed)
        self._pipeline = SyntheticPipeline(self.clock, config.batch_size)

    def pipeline(self) -> SyntheticPipeline:
        return self._pipeline

    def setup(self, model, pipeline, timer) -> None:
        with timer("load"):
            pass

    def run(self, inputs: dict[str, np.ndarray], rec) -> dict[str, np.ndarray]:
        clock = self.clock
        if self.opts["crash"] != "none" and clock.iteration == self.opts["crash_at"]:
            _crash(self.opts["crash"], clock.iteration)
        for code, key in ((H2D, "h2d_ms"), (COMPUTE, "compute_ms"), (D2H, "d2h_ms")):
            ns = clock.draw(key)
            if ns or code == COMPUTE:
                t = rec.begin(code)
                busy_wait_ns(ns)
                rec.end(code, t)
        return {"y": inputs["x"]}

    def facts(self) -> dict[str, Any]:
        return {
            "device": "cpu",
            "device_name": "synthetic",
            "precision_effective": self.config.precision,
            "meta": {"synthetic": {k: self.opts[k] for k in OPTIONS}},
        }


def _crash(kind: str, iteration: int) -> None:
    """Fail the way real engines fail, so isolation and reporting are tested for real."""
    if kind == "segfault":
        ctypes.string_at(0)
    elif kind == "abort":
        os.abort()
    elif kind == "oom":
        # An allocation the machine cannot satisfy, like an engine build past device memory.
        np.ones(1 << 46, dtype=np.uint8)
    elif kind == "hang":
        while True:
            time.sleep(1)
    raise RuntimeError(f"synthetic failure injected at iteration {iteration}")
