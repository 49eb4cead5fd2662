"""Import ONNX Runtime session profiles (`SessionOptions.enable_profiling`) as perflab runs.

The profile is a JSON array of Chrome-trace events (`ts`/`dur` in microseconds), parsed by
`perflab.ort_trace`; this module reads the file and maps the tables into a run.

Mapping into the store:

- `layers`: one row per node (`layer` = node name) and one row per op type and provider with
  `layer` = `"op:<OpType>"` (the `op:` prefix keeps the two kinds apart in one table). count =
  executions profiled, total_ms = summed kernel time, median_ms = median time of one execution.
  precision is the element type of the node's first output where the profile records it.
- `samples`: one row per `model_run` event: stage `compute`, phase `measure`, host_ns = its
  duration, start_ns = its start from the profiler's start.
- `reported`: `model_loading_uri` -> stage `load`, `session_initialization` -> stage `build`
  (graph optimisation and kernel creation, the ORT counterpart of an engine build), statistic
  `value` (one measurement each). The same numbers fill `runs.load_ms` / `runs.build_ms`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from perflab import run_row, store
from perflab.errors import ImportFormatError
from perflab.importers import (
    ImportedRun,
    commit,
    frame,
    read_bytes,
    refuse_non_finite,
)
from perflab.ort_trace import ProfileTables, parse_events


def _load_events(path_or_events: str | Path | Iterable[Mapping]) -> tuple[list[Mapping], str]:
    if isinstance(path_or_events, (str, Path)):
        path = Path(path_or_events)
        data = read_bytes(path, "ONNX Runtime profile")
        try:
            events = json.loads(
                data.decode("utf-8", errors="replace"), parse_constant=refuse_non_finite
            )
        except json.JSONDecodeError as exc:
            raise ImportFormatError(
                f"{path}: not valid JSON or cut short (line {exc.lineno}: {exc.msg})"
            ) from None
        source = str(path)
    else:
        events = list(path_or_events)
        source = "<events>"
    return events, source


def parse_ort_profile(path_or_events: str | Path | Iterable[Mapping]) -> ProfileTables:
    """Parse an ORT profile (a path, or the already-loaded event list) into ProfileTables.

    Raises ImportFormatError for files that are not ORT profiles.
    """
    return parse_events(*_load_events(path_or_events))


def _wall_s(tables: ProfileTables) -> float | None:
    """From the first model_run's start to the last one's end."""
    if not tables.model_run_ms:
        return None
    end_us = tables.model_run_start_us[-1] + tables.model_run_ms[-1] * 1000.0
    return (end_us - tables.model_run_start_us[0]) / 1e6


def read_ort_profile_run(
    path: str | Path,
    *,
    model: str | None = None,
    backend: str | None = None,
    study: str | None = None,
    batch_size: int | None = None,
) -> ImportedRun:
    """Parse one profile into a run (rows and tables) without writing anything."""
    tables = parse_ort_profile(path)
    run_id = store.new_run_id()
    notes = []
    if not tables.providers:
        notes.append("the profile records no execution provider (older ORT); CPU assumed")
    if tables.facts["fence_events"]:
        notes.append(f"{tables.facts['fence_events']} fence events left out of kernel times")
    be = backend or tables.backend
    layers = tables.layers.copy()
    layers.insert(0, "run_id", run_id)
    samples = pd.DataFrame(
        {
            "run_id": run_id,
            "iteration": range(len(tables.model_run_ms)),
            "phase": "measure",
            "stage": "compute",
            "start_ns": [round(t * 1000) for t in tables.model_run_start_us],
            "host_ns": [round(ms * 1e6) for ms in tables.model_run_ms],
            "device_ns": None,
            "items": batch_size,
        }
    )
    reported = [
        {"run_id": run_id, "stage": stage, "statistic": "value", "value_ms": value}
        for stage, value in (("load", tables.model_load_ms), ("build", tables.session_init_ms))
        if value is not None
    ]
    meta = {
        "source": str(path),
        "profiler": "onnxruntime",
        "providers": list(tables.providers),
        "model_load_ms": tables.model_load_ms,
        "session_init_ms": tables.session_init_ms,
        "model_run_ms": tables.model_run_ms,
        "reported_mapping": {"model_loading_uri": "load", "session_initialization": "build"},
        "layers_convention": "per node: layer = node name; per op type: layer = 'op:<OpType>'",
        **tables.facts,
    }
    device = "cpu" if be == "ort-cpu" else None
    row = run_row.new(
        run_id,
        be,
        study=study,
        label=f"{be} {Path(model).name if model else Path(path).stem}",
        model=model,
        device=device,
        batch_size=batch_size,
        n_warmup=0,
        n_measure=len(tables.model_run_ms),
        load_ms=tables.model_load_ms,
        build_ms=tables.session_init_ms,
        first_ms=tables.model_run_ms[0] if tables.model_run_ms else None,
        measure_wall_s=_wall_s(tables),
        notes=notes,
        meta=meta,
    )
    return ImportedRun(
        row=row,
        tables={
            "layers": frame("layers", layers),
            "samples": frame("samples", samples),
            "reported": frame("reported", reported),
        },
    )


def import_ort_profile(
    path: str | Path,
    out: str | Path,
    *,
    model: str | None = None,
    backend: str | None = None,
    study: str | None = None,
    batch_size: int | None = None,
) -> str:
    """Import one ORT profile file into `out` as a run; returns its run id.

    The backend is inferred from the providers in the profile (CUDAExecutionProvider ->
    `ort-cuda`, TensorrtExecutionProvider -> `ort-trt`, otherwise `ort-cpu`) unless given.
    """
    run = read_ort_profile_run(
        path, model=model, backend=backend, study=study, batch_size=batch_size
    )
    return commit(out, [run])[0]
