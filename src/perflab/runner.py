"""Run configs: setup stages, warmup, the measured loop with its stopping rule, and storage.

`execute` runs one config in this process and writes its tables. `run_study` runs a whole study
through an executor (`perflab.executors`): by default each config in its own child process, so
that a crash, a hang or leaked GPU state in one config never touches the others; the parent
writes the `runs` row for a child that died or timed out.
"""

from __future__ import annotations

import math
import signal
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perflab import host, run_row, store
from perflab.backends.base import create
from perflab.backends.registry import get_info
from perflab.errors import BackendUnavailable, PerflabError, StoreError, Unsupported
from perflab.executors import Executor, Hooks, InlineExecutor, Interrupt
from perflab.executors.local import LocalExecutor
from perflab.nvtx import Annotator
from perflab.precisions import precision_mismatch
from perflab.spec import Policy, RunConfig, Study
from perflab.stages import STAGES
from perflab.timing import (
    E2E_CODE,
    POSTPROCESS,
    PREPROCESS,
    Recorder,
    SetupTimer,
    calibrate,
    now_ns,
)

# Adaptive stopping: the order-statistic CI of the median needs a few dozen samples to exist.
MIN_ADAPTIVE_ITERATIONS = 30
Z95 = 1.959964
PROGRESS_EVERY_S = 0.25
STDERR_TAIL_CHARS = 2000

Progress = Callable[[int, float], None]


def median_ci(values: np.ndarray, z: float = Z95) -> tuple[float, float, float]:
    """Distribution-free CI of the median from order statistics (binomial, normal approximation).

    Returns (median, low, high); low and high are NaN where the ranks fall outside the sample
    (too few values for a CI: the rule of analysis.stats.order_stat_ci_ranks). Exact enough for
    n >= 30 and cheap: one sort, and no scipy in the measured process.
    """
    n = len(values)
    s = np.sort(values)
    half = z * math.sqrt(n) / 2
    lo = math.floor(n / 2 - half) - 1
    hi = math.ceil(n / 2 + half)
    med = float(np.median(s)) if n else math.nan
    if lo < 0 or hi > n - 1:
        return med, math.nan, math.nan
    return med, float(s[lo]), float(s[hi])


@dataclass
class Loop:
    """The iteration loop of one run. Keeps its own e2e list for the stopping rules.

    Latency mode runs one request at a time. Throughput mode keeps `inflight` requests in the
    backend (`submit` / `wait`), trtexec-style: the next batch is preprocessed and enqueued while
    earlier ones run; an iteration's e2e then spans its own preprocess to its own postprocess.
    A pipeline without a `preprocess` or `postprocess` method has no such stage: its raw input
    goes to the backend as it is, and the backend's outputs are the result.
    """

    backend: Any
    pipeline: Any
    raw: Any
    rec: Recorder
    progress: Progress | None = None
    inflight: int = 1
    e2e_ns: list[int] = field(default_factory=list)
    pending: deque = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.preprocess = getattr(self.pipeline, "preprocess", None)
        self.postprocess = getattr(self.pipeline, "postprocess", None)

    def preprocessed(self) -> Any:
        """This iteration's backend input: the raw input through the pipeline's preprocess (timed
        as its stage), or the raw input itself where the pipeline has none."""
        if self.preprocess is None:
            return self.raw
        t = self.rec.begin(PREPROCESS)
        x = self.preprocess(self.raw)
        self.rec.end(PREPROCESS, t)
        return x

    def iterate(self) -> int:
        rec, post = self.rec, self.postprocess
        t_e2e = rec.begin(E2E_CODE)
        out = self.backend.run(self.preprocessed(), rec)
        if post is not None:
            t = rec.begin(POSTPROCESS)
            post(out)
            rec.end(POSTPROCESS, t)
        rec.end(E2E_CODE, t_e2e)
        rec.next_iteration()
        return rec.last_ns()

    def iterate_overlapped(self) -> int | None:
        """Submit one request; complete the oldest once `inflight` are pending (its e2e, or None)."""
        rec = self.rec
        t_e2e = now_ns()
        x = self.preprocessed()
        self.pending.append((rec.iteration, t_e2e, self.backend.submit(x, rec)))
        rec.next_iteration()
        return self.complete_oldest() if len(self.pending) >= self.inflight else None

    def complete_oldest(self) -> int:
        iteration, t_e2e, handle = self.pending.popleft()
        out = self.backend.wait(handle, self.rec)
        t = now_ns()
        if self.postprocess is not None:
            self.postprocess(out)
        t_end = now_ns()
        if self.postprocess is not None:
            self.rec.record(iteration, POSTPROCESS, t, t_end - t)
        self.rec.record(iteration, E2E_CODE, t_e2e, t_end - t_e2e)
        return t_end - t_e2e

    def phase(self, policy: Policy, phase: str) -> tuple[int, str]:
        """Run one phase to its stopping rule; returns (completed iterations, stop_reason)."""
        self.rec.phase = 0 if phase == "warmup" else 1
        measuring = phase == "measure"
        step = self.iterate if self.inflight == 1 else self.iterate_overlapped
        start = now_ns() / 1e9  # the harness clock, so a test clock drives the rules too
        next_progress = start + PROGRESS_EVERY_S
        n = 0
        if policy.iterations is not None:
            limit_n, limit_s, reason = policy.iterations, math.inf, "iterations"
        elif policy.seconds is not None:
            limit_n, limit_s, reason = math.inf, policy.seconds, "seconds"
        else:
            limit_n, limit_s, reason = math.inf, policy.max_seconds or 30.0, "max_seconds"
        target = policy.target_rel_ci
        min_n = max(policy.min_iterations or 0, MIN_ADAPTIVE_ITERATIONS if target else 1)
        next_check = min_n
        stop = None
        while stop is None:
            now = now_ns() / 1e9
            if n + len(self.pending) >= limit_n or (now - start >= limit_s and n > 0):
                stop = reason
                break
            e2e = step()
            if e2e is None:
                continue
            n += 1
            if measuring:
                self.e2e_ns.append(e2e)
                if target and n >= next_check:
                    # Checking costs a sort; checking at +10% steps keeps it O(n log n) overall.
                    next_check = n + max(10, n // 10)
                    med, lo, hi = median_ci(np.asarray(self.e2e_ns))
                    if (hi - lo) / 2 <= target * med:
                        stop = "ci_reached"
                if self.progress and now >= next_progress:
                    next_progress = now + PROGRESS_EVERY_S
                    self.progress(n, float(np.median(self.e2e_ns[-200:])) / 1e6)
        while self.pending:  # a phase ends with nothing in flight
            e2e = self.complete_oldest()
            n += 1
            if measuring:
                self.e2e_ns.append(e2e)
        return n, stop


def _output_check(backend, model, pipeline) -> dict[str, float]:
    """Compare this run's outputs on fixed inputs with the fp32 reference of the same model."""
    if model is None or not hasattr(pipeline, "calibration_batches"):
        return {}
    from perflab.reference import reference_outputs

    inputs = pipeline.calibration_batches(1)[0]
    got = backend.run(inputs, Recorder(1))
    ref = reference_outputs(model.path, inputs)
    names = [k for k in ref if k in got]
    if not names:  # outputs named otherwise (a plugin), or none at all (a calibration mode)
        return {}
    a = np.concatenate([np.asarray(got[k], dtype=np.float64).ravel() for k in names])
    b = np.concatenate([np.asarray(ref[k], dtype=np.float64).ravel() for k in names])
    if a.size == 0 or a.size != b.size:
        return {}
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return {
        "output_max_abs_err": float(np.max(np.abs(a - b))),
        "output_cosine": float(a @ b / denom) if denom else float("nan"),
    }


def _host_notes(config: RunConfig) -> list[str]:
    """Facts about the device at the start of a run that can distort its numbers (the CPUs'
    load is sampled through the whole run: perflab.host)."""
    if get_info(config.backend).gpu:
        from perflab.telemetry import gpu_busy_note

        note = gpu_busy_note(int(config.option_dict.get("device_id", 0)))
        if note:
            return [note]
    return []


# How the error of a run refused for a busy host begins (quiet.then: stop ends the study there).
HOST_BUSY = "host busy:"


def _wait_quiet(config: RunConfig) -> tuple[str | None, list[str]]:
    """Wait for a quiet host when the study asks to. Returns (why the run must not start, notes)."""
    quiet = config.quiet
    if quiet is None:
        return None, []
    ok, load = host.wait_quiet(quiet.max_load, quiet.max_wait_s)
    if ok:
        return None, []
    text = (
        f"{HOST_BUSY} load average {load:.2f} on {host.cpus()} CPUs stayed above "
        f"{quiet.max_load * host.cpus():.2f} (quiet.max_load {quiet.max_load:g} per CPU) "
        f"for {quiet.max_wait_s:g} s"
    )
    if quiet.then == "stop":
        return text, []
    return None, [text + "; measured anyway (quiet.then: run)"]


def execute(
    config: RunConfig,
    out: Path,
    *,
    run_id: str | None = None,
    env_id: str | None = None,
    machine: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run one config in this process, write its tables, and return its `runs` row.

    Nothing measured is lost: a failure after some iterations still writes those samples.
    `machine` is the name the executor knows this machine by (default: the host name).
    """
    run_id = run_id or store.new_run_id()
    row = run_row.for_config(config, run_id, env_id=env_id, machine=machine)
    refused, notes = _wait_quiet(config)
    if refused:
        row.update(status="skipped", error=refused, notes=store.json_text(notes))
        store.write_run(out, row)
        return row
    sampler = host.HostSampler().start()
    notes += _host_notes(config)
    meta: dict[str, Any] = {}
    tables: dict[str, Any] = {}
    rec: Recorder | None = None
    backend = None
    pipeline = None
    annotator = Annotator(STAGES)
    try:
        tables["calibration"] = calibrate()
        backend = create(config)
        model = None
        if get_info(config.backend).needs_model:
            from perflab import models

            model = models.resolve(
                config.model, batch_size=config.batch_size, input_shapes=config.shape_dict or None
            )
            notes += list(model.notes)
            row.update(
                model_sha256=model.sha256,
                model_flops_per_sample=model.flops_per_sample,
                model_param_bytes=model.param_bytes,
                model_activation_bytes_per_sample=model.activation_bytes_per_sample,
                model_input_bytes_per_sample=models.tensor_bytes(model.inputs) / config.batch_size,
                model_output_bytes_per_sample=models.tensor_bytes(model.outputs)
                / config.batch_size,
                model_kernels=float(model.node_count),
                input_shapes=store.json_text({t.name: list(t.shape) for t in model.inputs}),
            )
        # A backend that brings its own workload (synthetic, custom) hands it over; otherwise
        # the config's pipeline is built for the model's inputs.
        pipeline = backend.pipeline()
        if pipeline is None:
            from perflab import pipelines

            pipeline = pipelines.create(
                config.pipeline,
                model.inputs if model is not None else (),
                batch_size=config.batch_size,
                seed=config.seed,
                options=config.pipeline_option_dict,
            )
        timer = SetupTimer()
        if hasattr(pipeline, "setup"):  # a user pipeline loads its model or engine here
            with timer("load"):
                pipeline.setup()
        backend.setup(model, pipeline, timer)
        row.update(load_ms=timer.ms.get("load"), build_ms=timer.ms.get("build"))
        raw = pipeline.make_inputs() if hasattr(pipeline, "make_inputs") else None
        rec = Recorder(config.batch_size, annotator)
        if config.inflight > 1 and not backend.supports_throughput:
            raise Unsupported(
                f"{config.backend} has no throughput mode (it cannot keep several "
                "requests in flight); use mode: latency"
            )
        loop = Loop(backend, pipeline, raw, rec, progress, inflight=config.inflight)
        with annotator.run_range(config.label):
            warm = config.warmup
            if (warm.iterations or 0) > 0 or (warm.seconds or 0) > 0:
                row["n_warmup"], _ = loop.phase(warm, "warmup")
            else:
                row["n_warmup"] = 0
            backend.measure_begin()
            t0 = now_ns()
            try:
                row["n_measure"], row["stop_reason"] = loop.phase(config.measure, "measure")
            finally:
                row["measure_wall_s"] = (now_ns() - t0) / 1e9
                backend.measure_end()
        first = rec.first_e2e_ms()
        row["first_ms"] = first
        row.update(_output_check(backend, model, pipeline))
        facts = backend.facts()
        meta.update(facts.get("meta") or {})
        row.update(
            device=facts.get("device"),
            device_name=facts.get("device_name"),
            precision_effective=facts.get("precision_effective"),
        )
        eff = row["precision_effective"]
        row["precision_mismatch"] = precision_mismatch(config.precision, eff)
        if row["precision_mismatch"]:
            notes.append(f"asked for {config.precision}, the engine ran {eff}")
        tables.update(backend.tables())
        if hasattr(pipeline, "facts"):
            facts = pipeline.facts() or {}
            row.update({k: v for k, v in facts.items() if k in store.schema("runs").names})
    except (Unsupported, BackendUnavailable) as exc:
        row.update(status="unsupported", error=str(exc))
    except PerflabError as exc:
        row.update(status="failed", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - any engine error is a failed run, kept with its traceback
        row.update(
            status="failed",
            error=f"{type(exc).__name__}: {exc}\n"
            + traceback.format_exc(limit=8)[-STDERR_TAIL_CHARS:],
        )
    finally:
        if hasattr(pipeline, "teardown"):
            try:
                pipeline.teardown()
            except Exception as exc:  # noqa: BLE001 - a failing teardown must not lose the run
                notes.append(f"pipeline teardown failed: {type(exc).__name__}: {exc}")
        if backend is not None:
            try:
                backend.close()
            except Exception as exc:  # noqa: BLE001 - a failing close must not lose the run
                notes.append(f"backend close failed: {exc}")
        sampler.stop()
        row.update(sampler.columns())
        busy_note = host.busy_note(row)
        if busy_note:
            notes.append(busy_note)
    if rec is not None and rec.n_rows:
        tables["samples"] = rec.table(run_id)
        row.setdefault("n_warmup", 0)
    row["notes"] = store.json_text(notes)
    row["meta"] = store.json_text(meta)
    for name, rows in list(tables.items()):
        if name == "samples" or rows is None or not len(rows):
            continue
        # Backends hand DataFrames; the harness's own rows are plain dicts (no pandas in workers).
        is_list = isinstance(rows, list)
        tables[name] = (
            [{**r, "run_id": run_id} for r in rows] if is_list else rows.assign(run_id=run_id)
        )
    store.write_run(out, row, tables)
    return row


# ----------------------------------------------------------------------------- study level


@dataclass
class StudyResult:
    rows: list[dict[str, Any]]
    skipped: int = 0
    interrupted: str | None = None
    # Why the study stopped before its last run (a host that never became quiet), or None.
    stopped: str | None = None

    def by_status(self, *statuses: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] in statuses]


def plan(study: Study, out: Path, *, resume: bool, append: bool) -> list[RunConfig]:
    """Which runs to make, in order (study.schedule), after the guards on what the folder holds.

    --resume makes the repetitions that have no ok run yet; --append adds `repeat` more
    repetitions of every config, numbered after the ones the folder holds."""
    existing = store.read(out, "runs") if (out / "runs").is_dir() else None
    if existing is None or existing.empty:
        return study.schedule()
    ours = {c.spec_id for c in study.configs}
    foreign = existing.loc[~existing["spec_id"].isin(ours)]
    if len(foreign) and not append:
        raise StoreError(
            f"{out} holds {len(foreign)} run(s) of a different spec (study {foreign['study'].iloc[0]!r}); "
            "use --append to add to it, or -o NEW_FOLDER"
        )
    if not resume and not append:
        raise StoreError(
            f"{out} already holds results of this study; use --resume to finish it, "
            "--append to add repetitions, or -o NEW_FOLDER"
        )
    # Folders written before repetitions existed hold repetition 0 of each config.
    repetition = existing["repetition"].fillna(0).astype(int) if "repetition" in existing else 0
    existing = existing.assign(repetition=repetition)
    if resume:
        ok = existing.loc[existing["status"] == "ok"]
        done = set(zip(ok["spec_id"], ok["repetition"]))
        return [c for c in study.schedule() if (c.spec_id, c.repetition) not in done]
    first = (existing.groupby("spec_id")["repetition"].max() + 1).to_dict()
    return study.schedule({k: int(v) for k, v in first.items()})


def run_study(
    study: Study,
    out: Path,
    *,
    configs: Sequence[RunConfig] | None = None,
    executor: Executor | None = None,
    isolate: bool = True,
    env_id: str | None = None,
    on_start: Callable[[int, int, RunConfig, str | None], None] | None = None,
    on_done: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[int, float, str | None], None] | None = None,
) -> StudyResult:
    """Run configs through an executor; a crash or timeout in one never stops the others.

    `executor` defaults to the local one (a child process per config), or the inline one with
    `isolate=False`. `on_start(k, total, config, machine)` and `progress(n, median_ms, machine)`
    name the machine that runs the config (None: this one). `configs` defaults to the study's
    whole schedule (every repetition, round by round).
    """
    todo = list(study.schedule() if configs is None else configs)
    result = StudyResult(rows=[], skipped=len(study.configs) * study.repeat - len(todo))
    if executor is None:
        executor = LocalExecutor() if isolate else InlineExecutor()
    executor.check(todo)
    hooks = Hooks(on_start, progress)
    with Interrupt() as interrupt:
        for row in executor.run(execute, todo, Path(out), env_id, hooks, interrupt):
            result.rows.append(row)
            if on_done:
                on_done(row)
            if row["status"] == "skipped" and str(row.get("error") or "").startswith(HOST_BUSY):
                result.stopped = str(row["error"])  # quiet.then: stop
                break
        if interrupt.signal is not None:
            result.interrupted = signal.Signals(interrupt.signal).name
    store.remove_empty_logs(Path(out))  # worker logs are kept only for runs that died
    return result
