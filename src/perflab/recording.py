"""Instrument a loop you already have: `perflab.record()`, no experiment file.

    with perflab.record("my-yolo", out="data/my-yolo", backend="fastdeploy") as rec:
        for frame in frames:
            with rec.iteration():
                with rec.stage("preprocess"):
                    x = pre(frame)
                with rec.stage("compute"):
                    y = model.infer(x)

The block writes an ordinary run into `out` (runs, samples, env, calibration), so `perflab show`,
`perflab report` and `perflab.open` read it as they read `perflab run`'s. Each iteration is an
`e2e` sample, each stage a sample of that stage, timed by the same Recorder (and the same NVTX
ranges in the `perflab` domain) as the built-in loop. The first `warmup` iterations, or those
before `rec.end_warmup()`, are the warmup phase. `rec.stage(...)` and `rec.iteration()` also
decorate functions. What was recorded is written even when the block raises (the run is then
`failed` with the traceback tail); using the recording after its block is an error.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from perflab.errors import PerflabError
from perflab.stages import ITERATION_STAGES
from perflab.timing import E2E_CODE, STAGE_CODES, Recorder, calibrate, now_ns

_TRACEBACK_CHARS = 2000


class RecordError(PerflabError):
    """A recording used the wrong way (after its block, a stage left open, an unknown stage)."""


class _Timed:
    """One stage (or the iteration) as a reusable context manager and decorator.

    Objects are made once per stage name, so `with rec.stage("compute"):` costs a dict lookup
    and two method calls on top of the Recorder's begin / end. Nothing else is checked per stage:
    an open stage is its nonzero start, looked at once per iteration, and closing the recording
    swaps `_begin` for one that raises.
    """

    __slots__ = ("_begin", "_code", "_end", "_owner", "_t", "name")

    def __init__(self, owner: Recording, name: str, code: int) -> None:
        self._owner, self.name, self._code = owner, name, code
        self._begin, self._end = owner._rec.begin, owner._rec.end
        self._t = 0

    def __enter__(self) -> None:
        if self._t:
            raise RecordError(f"perflab.record {self._owner.study!r}: {self.name} entered twice")
        self._t = self._begin(self._code)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._end(self._code, self._t)
        self._t = 0

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return timed


class _Iteration(_Timed):
    __slots__ = ()

    def __enter__(self) -> None:
        if self._owner._open_stage() or self._t:
            raise RecordError(
                f"perflab.record {self._owner.study!r}: an iteration began inside an open "
                "stage or iteration; end it first"
            )
        self._t = self._begin(self._code)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        owner = self._owner
        self._end(E2E_CODE, self._t)
        self._t = 0
        left_open = owner._open_stage()
        owner._iteration_done()
        if left_open:
            left_open._t = 0
            raise RecordError(
                f"perflab.record {owner.study!r}: iteration {owner._rec.iteration - 1} ended "
                f"with stage {left_open.name!r} still open"
            )


class Recording:
    """The object `perflab.record()` yields: `iteration()`, `stage(name)`, `end_warmup()`."""

    def __init__(
        self,
        study: str,
        out: Path,
        *,
        backend: str,
        batch_size: int,
        warmup: int,
        model: str | None,
        precision: str,
        config: dict[str, Any],
    ) -> None:
        from perflab import run_row, spec, store

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise RecordError(
                f"perflab.record: batch_size must be a positive integer, got {batch_size!r}"
            )
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise RecordError(f"perflab.record: warmup must be a count >= 0, got {warmup!r}")
        if not isinstance(study, str) or not study or "/" in study:
            raise RecordError(
                f"perflab.record: study {study!r} must be a non-empty name without '/'"
            )
        store.check_writable(out)
        self.study, self.out = study, out
        self.config = spec.RunConfig(
            study=study,
            model=model or study,
            pipeline="record",
            backend=backend,
            precision=precision,
            batch_size=batch_size,
            options=tuple(sorted((str(k), v) for k, v in config.items())),
            warmup=spec.Policy(iterations=warmup),
            measure=spec.Policy(),
        )
        self.run_id = store.new_run_id()
        self._row = run_row.for_config(self.config, self.run_id, env_id=None)
        self._row["stop_reason"] = "block_end"
        self._calibration = calibrate()
        self._rec = Recorder(batch_size)
        self._rec.phase = 0 if warmup else 1
        self._warmup_left = warmup
        self._stages = {name: _Timed(self, name, STAGE_CODES[name]) for name in ITERATION_STAGES}
        self._iteration = _Iteration(self, "iteration", E2E_CODE)
        self._measure_start: int | None = None if warmup else now_ns()
        self._run_range = self._rec.annotator.run_range(self.config.label)

    def iteration(self) -> _Iteration:
        """One iteration (its `e2e` sample), as `with rec.iteration():` or a decorator."""
        return self._iteration

    def stage(self, name: str) -> _Timed:
        """Stage `name` (preprocess, h2d, compute, d2h, postprocess) of the current iteration."""
        timed = self._stages.get(name)
        if timed is None:
            raise RecordError(
                f"perflab.record: unknown stage {name!r}; stages: {', '.join(ITERATION_STAGES)}"
            )
        return timed

    def end_warmup(self) -> None:
        """The iterations from here on are measured (the warmup-by-call form)."""
        if self._rec.phase == 0:
            self._rec.phase = 1
            self._warmup_left = 0
            self._measure_start = now_ns()

    def _open_stage(self) -> _Timed | None:
        for timed in self._stages.values():
            if timed._t:
                return timed
        return None

    def _iteration_done(self) -> None:
        self._rec.next_iteration()
        if self._warmup_left:
            self._warmup_left -= 1
            if not self._warmup_left:
                self.end_warmup()

    def _close(self, error: BaseException | None) -> dict[str, Any]:
        from perflab import env, store

        study = self.study

        def closed(code: int) -> int:
            raise RecordError(f"perflab.record {study!r}: used after its block ended")

        for timed in (*self._stages.values(), self._iteration):
            timed._begin = closed
        rec, row = self._rec, self._row
        end = now_ns()
        row["first_ms"] = rec.first_e2e_ms()
        if rec.n_rows:
            samples = rec.table(self.run_id)
            phases = samples.column("phase").to_pylist()
            stages = samples.column("stage").to_pylist()
            e2e = [p for p, s in zip(phases, stages) if s == "e2e"]
            row["n_warmup"], row["n_measure"] = e2e.count("warmup"), e2e.count("measure")
        else:
            samples = None
            row["n_warmup"] = row["n_measure"] = 0
        if self._measure_start is not None:
            row["measure_wall_s"] = (end - self._measure_start) / 1e9
        if error is not None:
            row["status"] = "failed"
            text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            row["error"] = f"{type(error).__name__}: {error}\n{text[-_TRACEBACK_CHARS:]}"
        elif not row["n_measure"]:
            row["status"] = "failed"
            row["error"] = "no measured iteration was recorded"
        fp = env.fingerprint()
        env_row = env.row(fp)
        row["env_id"] = env_row["env_id"]
        row["notes"] = "[]"
        row["meta"] = "{}"
        tables: dict[str, Any] = {
            "calibration": [{**r, "run_id": self.run_id} for r in self._calibration]
        }
        if samples is not None:
            tables["samples"] = samples
        # Written at the end, under the folder's lock, like any run: one writer at a time.
        with store.locked(self.out, f"record {study}"):
            store.begin_run(self.out, self.run_id)
            store.write(self.out, "env", env_row["env_id"], env_row)
            store.write_run(self.out, row, tables)
            store.end_run(self.out, self.run_id)
        return row


class record:
    """`with perflab.record(study, out=..., backend=..., batch_size=1, warmup=0) as rec:`

    `backend` names what ran the loop (any name: "fastdeploy", "my-engine"); `model` defaults to
    the study name; other keyword arguments are stored as the run's options.
    """

    def __init__(
        self,
        study: str,
        out: str | Path,
        *,
        backend: str = "custom",
        batch_size: int = 1,
        warmup: int = 0,
        model: str | None = None,
        precision: str = "fp32",
        **options: Any,
    ) -> None:
        self._args = (study, Path(out))
        self._kwargs = {
            "backend": backend,
            "batch_size": batch_size,
            "warmup": warmup,
            "model": model,
            "precision": precision,
            "config": options,
        }
        self.recording: Recording | None = None
        self.row: dict[str, Any] | None = None

    def __enter__(self) -> Recording:
        self.recording = Recording(*self._args, **self._kwargs)
        self.recording._run_range.__enter__()
        return self.recording

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        recording = self.recording
        recording._run_range.__exit__(exc_type, exc, tb)
        self.row = recording._close(exc)
