"""The `runs` row: the one builder for every writer of runs (the runner, its executors, importers).

A row starts from the fields every run fills the same way (id, study, creation time, status,
backend, perflab version); `for_config` adds what a config and the machine running it decide
before anything runs. Columns typed JSON in the store's schema may be given as Python values.
"""

from __future__ import annotations

import socket
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from perflab import __version__, store

if TYPE_CHECKING:
    from perflab.spec import RunConfig

# Study name of runs that come from no experiment file (imported files).
DEFAULT_STUDY = "imported"
JSON_COLUMNS = tuple(c.name for c in store.TABLES["runs"] if c.unit == "JSON")


def new(run_id: str, backend: str, *, study: str | None = None, **values: Any) -> dict[str, Any]:
    """A `runs` row: the common fields, then `values` (JSON columns encoded)."""
    row: dict[str, Any] = {
        "run_id": run_id,
        "study": study or DEFAULT_STUDY,
        "created_at": datetime.now(timezone.utc),
        "status": "ok",
        "backend": backend,
        "perflab_version": __version__,
    }
    row.update(values)
    for key in JSON_COLUMNS:
        if row.get(key) is not None and not isinstance(row[key], str):
            row[key] = store.json_text(row[key])
    return row


def for_config(
    config: RunConfig, run_id: str, *, env_id: str | None, machine: str | None = None
) -> dict[str, Any]:
    """The row of one config run on this machine, before anything runs.

    `machine` is the executor's name for the machine (a Dask worker's name); it defaults to the
    host name, so every run says where it ran.
    """
    host = socket.gethostname()
    return new(
        run_id,
        config.backend,
        study=config.study,
        spec_id=config.spec_id,
        label=config.label,
        model=config.model,
        pipeline=config.pipeline,
        mode=config.mode,
        inflight=config.inflight,
        precision=config.precision,
        batch_size=config.batch_size,
        input_shapes=config.shape_dict,
        options=config.option_dict,
        pipeline_options=config.pipeline_option_dict,
        seed=config.seed,
        warmup_policy=config.warmup.as_dict(),
        measure_policy=config.measure.as_dict(),
        timeout_s=config.timeout_s,
        env_id=env_id,
        repetition=config.repetition,
        order_seed=config.order_seed,
        host=host,
        machine=machine or host,
    )
