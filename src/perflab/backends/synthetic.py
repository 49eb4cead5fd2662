"""The calibration backend: every stage busy-waits a configured duration, so the truth is known.

Options (milliseconds): preprocess_ms, h2d_ms, compute_ms, compute_ms_per_item (times the batch
size), d2h_ms, postprocess_ms; `jitter` (relative standard deviation of each stage of each
iteration, seeded by the config's seed and repetition); `run_jitter` (relative standard deviation
of one multiplicative offset per run, drawn once per process from the config's seed and
repetition, so repetitions of one config differ the way separate processes do: address-space
layout, clocks, a neighbour's load);
a warmup pattern `warmup_iterations` / `warmup_extra_ms` (extra compute time decaying linearly to
zero over those iterations); fault injection `crash` (none | segfault | abort | oom | hang |
exception) at iteration `crash_at`. Stages with zero duration are not recorded, so a run without
h2d_ms / d2h_ms looks like a CPU backend's.
"""

from __future__ import annotations

import ctypes
import os
import queue
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

import numpy as np

from perflab.backends.base import Backend, engine_facts
from perflab.errors import SpecError
from perflab.options import Option
from perflab.timing import COMPUTE, D2H, ENQUEUE_CODE, H2D, busy_wait_ns, now_ns

DURATIONS = (
    "preprocess_ms",
    "h2d_ms",
    "compute_ms",
    "compute_ms_per_item",
    "d2h_ms",
    "postprocess_ms",
)
# Seed-sequence word that keeps the per-run offset's stream apart from the per-iteration one.
RUN_OFFSET_STREAM = 0x0FF5E7
CRASHES = ("none", "segfault", "abort", "oom", "hang", "exception")
DECLARED_OPTIONS = (
    Option("preprocess_ms", "ms >= 0", 0.2, "busy-wait of the preprocess stage"),
    Option("h2d_ms", "ms >= 0", 0.0, "busy-wait of h2d (0: no h2d stage)"),
    Option("compute_ms", "ms >= 0", 1.0, "busy-wait of compute"),
    Option("compute_ms_per_item", "ms >= 0", 0.0, "extra compute per batch item"),
    Option("d2h_ms", "ms >= 0", 0.0, "busy-wait of d2h (0: no d2h stage)"),
    Option("postprocess_ms", "ms >= 0", 0.2, "busy-wait of the postprocess stage"),
    Option("jitter", "number >= 0", 0.0, "relative standard deviation of every duration"),
    Option(
        "run_jitter",
        "number >= 0",
        0.0,
        "relative standard deviation of one offset per run (between-process variance)",
    ),
    Option("warmup_iterations", "int >= 0", 0, "iterations over which extra compute decays"),
    Option("warmup_extra_ms", "ms >= 0", 0.0, "extra compute at iteration 0, decaying to 0"),
    Option("crash", " | ".join(CRASHES), "none", "fault to inject"),
    Option("crash_at", "int >= 0", 0, "iteration at which the fault happens"),
)
OPTIONS = tuple(o.name for o in DECLARED_OPTIONS)
DEFAULTS: dict[str, Any] = {o.name: o.default for o in DECLARED_OPTIONS}


def parse_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the synthetic backend's options; SpecError names the bad key and the valid ones."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise SpecError(
            f"synthetic backend: unknown option {unknown[0]!r}; valid: {', '.join(OPTIONS)}"
        )
    opts = {**DEFAULTS, **options}
    for key in (
        *DURATIONS,
        "jitter",
        "run_jitter",
        "warmup_extra_ms",
        "warmup_iterations",
        "crash_at",
    ):
        value = opts[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise SpecError(
                f"synthetic backend: option {key!r}: {value!r} must be a non-negative number"
            )
    if opts["crash"] not in CRASHES:
        raise SpecError(
            f"synthetic backend: option 'crash': {opts['crash']!r} is not one of {', '.join(CRASHES)}"
        )
    return opts


class _Clock:
    """Draws each stage's duration (ns) for the current iteration:
    base x run_offset x (1 + jitter x N(0,1)), where run_offset = 1 + run_jitter x N(0,1) is
    drawn once per run."""

    def __init__(self, opts: dict[str, Any], batch_size: int, seed: int, repetition: int = 0):
        self.ns = {k: opts[k] * 1e6 for k in DURATIONS}
        self.ns["compute_ms"] += opts["compute_ms_per_item"] * batch_size * 1e6
        self.jitter = float(opts["jitter"])
        # Repetition 0 keeps the stream a plain seed gives, so single runs are as they were.
        self.rng = np.random.default_rng(seed if repetition == 0 else [seed, repetition])
        run_rng = np.random.default_rng([seed, repetition, RUN_OFFSET_STREAM])
        self.run_offset = max(0.0, 1 + float(opts["run_jitter"]) * run_rng.standard_normal())
        self.ns = {k: v * self.run_offset for k, v in self.ns.items()}
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
        entry = now_ns()
        busy_wait_ns(self.clock.draw("preprocess_ms"), entry)
        return {"x": raw}

    def postprocess(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        entry = now_ns()
        busy_wait_ns(self.clock.draw("postprocess_ms"), entry)
        self.clock.iteration += 1
        return outputs

    def calibration_batches(self, n: int) -> list[dict[str, np.ndarray]]:
        return [{"x": self.tensor} for _ in range(n)]


class SyntheticBackend(Backend):
    name = "synthetic"
    options = DECLARED_OPTIONS
    option_parser = staticmethod(parse_options)

    def __init__(self, config):
        super().__init__(config)
        self.opts = parse_options(config.option_dict)
        self.clock = _Clock(self.opts, config.batch_size, config.seed, config.repetition)
        self._pipeline = SyntheticPipeline(self.clock, config.batch_size)
        self._device: threading.Thread | None = None

    def pipeline(self) -> SyntheticPipeline | None:
        """Its own busy-waiting workload, unless the config names a user pipeline to run on it."""
        return None if ":" in self.config.pipeline else self._pipeline  # pipelines.is_target

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
                busy_wait_ns(ns, t)
                rec.end(code, t)
        return {"y": inputs}

    # Throughput mode: a "device" thread runs the h2d / compute / d2h of submitted requests in
    # order, sleeping (so the host thread runs on, as it would beside a GPU).
    supports_throughput = True

    def submit(self, inputs: dict[str, np.ndarray], rec) -> _Job:
        t = rec.begin(ENQUEUE_CODE)
        if self._device is None:
            # The host thread busy-waits holding the GIL; a short switch interval lets the device
            # thread wake on time instead of after the default 5 ms. Restored in close().
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(5e-5)
            self._queue: queue.SimpleQueue = queue.SimpleQueue()
            self._device = threading.Thread(target=self._device_loop, daemon=True)
            self._device.start()
        clock = self.clock
        job = _Job(
            rec.iteration,
            [
                (code, clock.draw(key))
                for code, key in ((H2D, "h2d_ms"), (COMPUTE, "compute_ms"), (D2H, "d2h_ms"))
            ],
        )
        self._queue.put(job)
        rec.end(ENQUEUE_CODE, t)
        return job

    def wait(self, job: _Job, rec) -> dict[str, np.ndarray]:
        job.done.wait()
        for code, start, duration in job.times:
            rec.record(job.iteration, code, start, duration)
        return {"y": self._pipeline.tensor}

    def _device_loop(self) -> None:
        while (job := self._queue.get()) is not None:
            for code, ns in job.stages:
                if ns or code == COMPUTE:
                    t = perf_counter_ns()
                    time.sleep(ns / 1e9)
                    job.times.append((code, t, perf_counter_ns() - t))
            job.done.set()

    def close(self) -> None:
        if self._device is not None:
            self._queue.put(None)
            self._device.join(timeout=5)
            sys.setswitchinterval(self._switch_interval)
            self._device = None

    def facts(self) -> dict[str, Any]:
        meta = {
            "synthetic": {k: self.opts[k] for k in OPTIONS},
            "synthetic_run_offset": self.clock.run_offset,
        }
        return engine_facts("cpu", "synthetic", self.config.precision, meta)


@dataclass
class _Job:
    iteration: int
    stages: list[tuple[int, int]]
    times: list[tuple[int, int, int]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


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
