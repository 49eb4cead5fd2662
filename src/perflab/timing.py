"""The per-iteration stage recorder (host clock, device durations, NVTX ranges).

Host durations come from `time.perf_counter_ns`. The recorder never synchronizes anything itself:
a stage ends when its caller calls `end`, and for device stages the caller synchronizes first, so
the host duration covers the work up to completion. Device durations (CUDA events) are added by the
backend after its own synchronization with `device`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from time import perf_counter_ns
from typing import TYPE_CHECKING

import numpy as np

from perflab.nvtx import Annotator
from perflab.stages import PHASES, SETUP_STAGES, STAGES

if TYPE_CHECKING:  # pyarrow is imported by `table` only, so timing works where it is missing
    import pyarrow as pa

# The recorder's stage codes: indexes into STAGES.
PREPROCESS, H2D, COMPUTE, D2H, POSTPROCESS, E2E_CODE, ENQUEUE_CODE = range(len(STAGES))
STAGE_CODES: dict[str, int] = {name: code for code, name in enumerate(STAGES)}


class VirtualClock:
    """A deterministic clock for tests: each read costs `tick_ns`; busy-waits advance it exactly.

    With it, the synthetic backend's stages take exactly their configured time whatever the
    machine is doing, so the loop's and the analysis's arithmetic can be checked to the nanosecond.
    """

    def __init__(self, tick_ns: int = 50, start_ns: int = 1_000_000_000):
        self.now = start_ns
        self.tick_ns = tick_ns

    def __call__(self) -> int:
        self.now += self.tick_ns
        return self.now

    def advance(self, duration_ns: int) -> None:
        self.now += duration_ns


_clock: Callable[[], int] = perf_counter_ns


def now_ns() -> int:
    """The harness's host clock: perf_counter_ns, or the test clock inside `use_clock`."""
    return _clock()


@contextmanager
def use_clock(clock: Callable[[], int]) -> Iterator[None]:
    """Run the harness on another clock (tests); recorders created inside keep using it."""
    global _clock
    previous, _clock = _clock, clock
    try:
        yield
    finally:
        _clock = previous


class Recorder:
    """Collects one run's samples: (iteration, phase, stage, start, host duration, device duration).

    Hot path: `t = rec.begin(COMPUTE)` ... `rec.end(COMPUTE, t)`. `begin` pushes the stage's NVTX
    range and then reads the clock; `end` reads the clock and then pops, so the timed region holds
    the work plus one clock read, never the range calls. `end` returns nothing (`last_ns()`
    gives the newest duration). Both are closures (no attribute lookups), NVTX calls are left out
    entirely when no profiler is attached, and a row is three ints added to one flat list: ints are
    not tracked by the garbage collector, tuples are, and a list of tuples growing in the timed loop
    makes the collector run inside it. Iteration and phase are kept as boundaries, not per row.
    Arrays are built once, after the run.
    """

    def __init__(self, batch_size: int, annotator: Annotator | None = None):
        self.annotator = annotator or Annotator(STAGES)
        self.items = batch_size
        self.iteration = 0
        self._phase = 0  # index into PHASES
        clock = _clock
        self.t0_ns = clock()
        rows: list[int] = []  # flat: stage, start_ns, end_ns, stage, start_ns, end_ns, ...
        self._rows = rows
        self._iteration_starts = [0]  # row index where each iteration begins
        self._phase_changes: list[tuple[int, int]] = [(0, 0)]  # (first iteration, phase)
        self._late: list[tuple[int, int, int, int]] = []  # rows recorded for earlier iterations
        self._device: dict[tuple[int, int], int] = {}
        extend = rows.extend
        # Names are bound as default arguments: local loads are the cheapest in CPython.
        if self.annotator.enabled:
            push, pop, annotator = self.annotator.push, self.annotator.pop, self.annotator

            def begin(stage: int, push=push, annotator=annotator, clock=clock) -> int:
                push(annotator.stage_attrs[stage])
                return clock()

            def end(stage: int, start_ns: int, clock=clock, pop=pop, extend=extend) -> None:
                t = clock()
                pop()
                extend((stage, start_ns, t))

        else:

            def begin(stage: int, clock=clock) -> int:
                return clock()

            def end(stage: int, start_ns: int, clock=clock, extend=extend) -> None:
                extend((stage, start_ns, clock()))

        self.begin = begin
        self.end = end

    def last_ns(self) -> int:
        """Duration of the most recently ended stage."""
        return self._rows[-1] - self._rows[-2]

    @property
    def phase(self) -> int:
        return self._phase

    @phase.setter
    def phase(self, value: int) -> None:
        self._phase = value
        self._phase_changes.append((self.iteration, value))

    def record(self, iteration: int, stage: int, start_ns: int, duration_ns: int) -> None:
        """Add a row for an earlier iteration (throughput mode completes requests out of step)."""
        self._late.append((iteration, stage, start_ns, duration_ns))

    def device(self, stage: int, duration_ns: int, iteration: int | None = None) -> None:
        """Attach a device-measured duration to a stage of this (or the given) iteration."""
        self._device[(self.iteration if iteration is None else iteration, stage)] = duration_ns

    def next_iteration(self) -> None:
        self.iteration += 1
        self._iteration_starts.append(len(self._rows) // 3)
        self.annotator.set_iteration(self.iteration)

    def first_e2e_ms(self) -> float | None:
        """The `first` setup stage: e2e of iteration 0, the cold start."""
        end = self._iteration_starts[1] if len(self._iteration_starts) > 1 else len(self._rows) // 3
        rows = self._rows
        for stage, start, stop in zip(
            rows[0 : 3 * end : 3], rows[1 : 3 * end : 3], rows[2 : 3 * end : 3]
        ):
            if stage == E2E_CODE:
                return (stop - start) / 1e6
        return None

    @property
    def n_rows(self) -> int:
        return len(self._rows) // 3 + len(self._late)

    def arrays(self) -> dict[str, np.ndarray]:
        """All rows as columns: iteration, phase, stage, start_ns (absolute), host_ns, device_ns (-1 = none)."""
        n = len(self._rows) // 3
        rows = np.array(self._rows, dtype=np.int64).reshape(n, 3)
        stage, start, stop = rows.T
        iteration = np.searchsorted(
            np.asarray(self._iteration_starts[1:]), np.arange(n), side="right"
        )
        host = stop - start
        if self._late:
            late = np.array(self._late, dtype=np.int64)
            iteration = np.concatenate([iteration, late[:, 0]])
            stage = np.concatenate([stage, late[:, 1]])
            start = np.concatenate([start, late[:, 2]])
            host = np.concatenate([host, late[:, 3]])
        changes = np.array(self._phase_changes, dtype=np.int64)
        # The last change at or before each iteration decides its phase.
        phase = changes[np.searchsorted(changes[:, 0], iteration, side="right") - 1, 1]
        device = np.full(len(stage), -1, dtype=np.int64)
        if self._device:
            index = {key: i for i, key in enumerate(zip(iteration.tolist(), stage.tolist()))}
            for key, ns in self._device.items():
                if key in index:
                    device[index[key]] = ns
        return {
            "iteration": iteration,
            "phase": phase,
            "stage": stage,
            "start_ns": start,
            "host_ns": host,
            "device_ns": device,
        }

    def table(self, run_id: str) -> pa.Table:
        """The samples as an arrow table in the store's `samples` layout."""
        import pyarrow as pa

        from perflab import store

        a = self.arrays()
        n = len(a["stage"])

        def dict_col(codes: np.ndarray, names: tuple[str, ...]) -> pa.Array:
            return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(names))

        return pa.Table.from_arrays(
            [
                dict_col(np.zeros(n, dtype=np.int32), (run_id,)),
                pa.array(a["iteration"], pa.int32()),
                dict_col(a["phase"].astype(np.int32), PHASES),
                dict_col(a["stage"].astype(np.int32), STAGES),
                pa.array(a["start_ns"] - self.t0_ns, pa.int64()),
                pa.array(a["host_ns"], pa.int64()),
                pa.array(a["device_ns"], pa.int64(), mask=a["device_ns"] < 0),
                pa.array(np.full(n, self.items, dtype=np.int32), pa.int32()),
            ],
            schema=store.schema("samples"),
        )


class SetupTimer:
    """Times the once-per-run setup stages (`load`, `build`) in milliseconds."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if stage not in SETUP_STAGES:
            raise ValueError(f"unknown setup stage {stage!r}; setup stages: {SETUP_STAGES}")
        t = perf_counter_ns()
        try:
            yield
        finally:
            self.ms[stage] = self.ms.get(stage, 0.0) + (perf_counter_ns() - t) / 1e6


def busy_wait_ns(duration_ns: int, since_ns: int | None = None) -> None:
    """Spin (never sleep) until `duration_ns` after `since_ns` (default: now).

    Anchoring to a timestamp taken on entry keeps the caller's own bookkeeping (drawing the
    duration, a method call) inside the duration instead of on top of it.
    """
    clock = _clock
    if isinstance(clock, VirtualClock):
        clock.advance(max(0, duration_ns))
        return
    end = (clock() if since_ns is None else since_ns) + duration_ns
    while clock() < end:
        pass


def calibrate(repeats: int = 20000) -> list[dict[str, float]]:
    """The harness's own cost on this machine, measured in the same process as the run.

    `timer`: two back-to-back perf_counter_ns reads (the floor of any host measurement);
    `nvtx_push_pop`: one stage range push + pop; `stage_overhead`: a whole begin/end pair of the
    Recorder with no work between, i.e. what every recorded stage adds to the e2e it sits in.
    Returns rows of the `calibration` table (without run_id).
    """
    rec = Recorder(1)
    attrs = rec.annotator.stage_attrs[0]
    push, pop = rec.annotator.push, rec.annotator.pop
    timer = np.empty(repeats, dtype=np.int64)
    nvtx = np.empty(repeats, dtype=np.int64)
    stage = np.empty(repeats, dtype=np.int64)
    for i in range(repeats):
        t0 = perf_counter_ns()
        t1 = perf_counter_ns()
        timer[i] = t1 - t0
    for i in range(repeats):
        t0 = perf_counter_ns()
        push(attrs)
        pop()
        nvtx[i] = perf_counter_ns() - t0
    begin, end = rec.begin, rec.end
    for i in range(repeats):
        t0 = perf_counter_ns()
        end(0, begin(0))
        stage[i] = perf_counter_ns() - t0
    floor = float(np.median(timer))
    rows = []
    for what, values in (
        ("timer", timer),
        ("nvtx_push_pop", nvtx - floor),
        ("stage_overhead", stage - floor),
    ):
        rows.append(
            {
                "what": what,
                "median_ns": float(np.median(values)),
                "p90_ns": float(np.percentile(values, 90)),
                "n": repeats,
            }
        )
    return rows
