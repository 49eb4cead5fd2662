"""Parquet tables on disk: one declared schema, one file per run, atomic writes, versioned files.

A study folder holds `OUT/<table>/<key>.parquet`. Each file is written to a hidden temporary name
and renamed, so a crash loses at most the run in progress and readers (perflab, pandas, duckdb)
never see half a file: pyarrow and duckdb's `*.parquet` glob both skip names starting with ".".
The `runs` file of a run is written last; it is the commit marker.

This module owns the folder's layout: the table files, the temporary names, the worker logs
(`.logs/<run_id>.log`), the marks of runs in progress (`.pending/<run_id>`) and the lock
(`.lock`). A run is marked pending before it writes anything and unmarked once its `runs` row is
committed and its worker's log dealt with, so the leftover sweep removes exactly what perflab itself left behind (temporary files,
and the files and log of a pending run that never committed) and never a file someone else put in
the folder. One writer at a time holds the folder's lock; the kernel drops it when that process
dies, even by SIGKILL, so a crashed run never blocks the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import uuid
import warnings
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from perflab.errors import StoreError, StoreVersionError

if TYPE_CHECKING:
    import pandas as pd

# Format history:
#   1: first version (runs, samples, env, telemetry, layers, reported, calibration, trace_*).
#      Columns added since within version 1 are nullable and read as null from older files
#      (readers union by name): runs.model_input/output_bytes_per_sample, runs.model_kernels,
#      runs.machine, runs.detections_per_iteration, runs.repetition, runs.order_seed,
#      runs.host_load_before/during/after, runs.host_steal_pct, runs.host_busy.
SCHEMA_VERSION = 1
VERSION_KEY = b"perflab.schema_version"
TABLE_KEY = b"perflab.table"


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    unit: str
    meaning: str


def _cols(*rows: tuple[str, pa.DataType, str, str]) -> tuple[Column, ...]:
    return tuple(Column(*row) for row in rows)


S, I64, I32, F64, B = pa.string(), pa.int64(), pa.int32(), pa.float64(), pa.bool_()
TS = pa.timestamp("us", tz="UTC")
DICT = pa.dictionary(pa.int32(), pa.string())


def _gpu_op_cols(name: str, *own: tuple[str, pa.DataType, str, str]) -> tuple[Column, ...]:
    """The columns of a table of GPU operations from a trace (kernels, memcpy/memset): what every
    operation has, then the table's `own` columns, then the NVTX range it ran in."""
    return _cols(
        ("run_id", S, "", "run the trace belongs to"),
        ("name", S, "", name),
        ("device", I64, "", "device id"),
        ("stream", I64, "", "stream id"),
        ("start_ns", I64, "ns", "start"),
        ("end_ns", I64, "ns", "end"),
        ("duration_ns", I64, "ns", "duration"),
        ("correlation_id", I64, "", "joins the launching runtime call"),
        *own,
        ("range", S, "", "innermost enclosing NVTX range"),
    )


# `layers` rows that total one operator type (`op:Conv`) rather than one layer or node: a profile
# may hold both kinds, each of which alone sums to the profiled time.
LAYER_OP_PREFIX = "op:"

TABLES: dict[str, tuple[Column, ...]] = {
    "runs": _cols(
        ("run_id", S, "", "unique id of one executed config"),
        ("study", S, "", "study name from the experiment file"),
        ("spec_id", S, "", "hash of the config's content and the schema version"),
        ("label", S, "", "short human label of the config"),
        ("created_at", TS, "UTC", "when the run started"),
        ("status", S, "", "ok | failed | timeout | unsupported | skipped"),
        ("error", S, "", "why the run is not ok (signal, exception, stderr tail)"),
        ("model", S, "", "zoo name or model path"),
        ("model_sha256", S, "", "sha256 of the fp32 ONNX file"),
        ("pipeline", S, "", "raw | classify | detect, or a user pipeline FILE.py:CLASS"),
        ("backend", S, "", "backend name"),
        ("mode", S, "", "latency | throughput"),
        ("inflight", I64, "requests", "requests kept in flight (1 in latency mode)"),
        ("device", S, "", "cpu, cuda:0, ..."),
        ("device_name", S, "", "CPU model or GPU name"),
        ("precision", S, "", "precision asked for"),
        ("precision_effective", S, "", "precision the engine reports it ran"),
        ("precision_mismatch", B, "", "true when the request and the engine disagree"),
        ("batch_size", I64, "items", "items per iteration"),
        ("input_shapes", S, "JSON", "resolved input shapes"),
        ("options", S, "JSON", "backend options"),
        ("pipeline_options", S, "JSON", "pipeline options"),
        ("seed", I64, "", "seed of generated inputs and synthetic jitter"),
        ("warmup_policy", S, "JSON", "warmup policy as given"),
        ("measure_policy", S, "JSON", "measure policy as given"),
        ("timeout_s", F64, "s", "per-config time limit"),
        ("n_warmup", I64, "iterations", "warmup iterations run"),
        ("n_measure", I64, "iterations", "measured iterations run"),
        ("stop_reason", S, "", "why the measured phase stopped"),
        ("measure_wall_s", F64, "s", "wall time of the measured phase"),
        ("load_ms", F64, "ms", "setup stage load"),
        ("build_ms", F64, "ms", "setup stage build"),
        ("first_ms", F64, "ms", "setup stage first (the very first iteration)"),
        ("output_max_abs_err", F64, "", "max |output - fp32 reference| on fixed inputs"),
        ("output_cosine", F64, "", "cosine similarity with the fp32 reference"),
        ("detections_per_iteration", F64, "boxes", "detections kept per iteration (detect)"),
        ("model_flops_per_sample", F64, "FLOP", "model cost from the ONNX graph"),
        ("model_param_bytes", F64, "B", "parameter bytes"),
        ("model_activation_bytes_per_sample", F64, "B", "intermediate tensor bytes"),
        ("model_input_bytes_per_sample", F64, "B", "model input bytes (what h2d copies)"),
        ("model_output_bytes_per_sample", F64, "B", "model output bytes (what d2h copies)"),
        ("model_kernels", F64, "", "graph nodes or engine layers per iteration (launch floor)"),
        (
            "repetition",
            I64,
            "",
            "which repetition of its config (0-based; repetitions share spec_id)",
        ),
        ("order_seed", I64, "", "seed that shuffled the study's run order; null: file order"),
        ("host_load_before", F64, "", "1-minute load average just before the run"),
        ("host_load_during", F64, "", "highest 1-minute load average sampled during the run"),
        ("host_load_after", F64, "", "1-minute load average just after the run"),
        ("host_steal_pct", F64, "%", "CPU time stolen by the hypervisor during the run"),
        ("host_busy", B, "", "true when the run was measured on a busy host (perflab.host)"),
        ("notes", S, "JSON", "list of facts about the run (symbolic batch, busy host, ...)"),
        ("meta", S, "JSON", "backend- or importer-specific facts (versions, flags)"),
        ("env_id", S, "", "environment fingerprint id"),
        ("host", S, "", "host name"),
        ("machine", S, "", "machine that ran it: the Dask worker's name, else the host name"),
        ("perflab_version", S, "", "perflab version that ran it"),
    ),
    "samples": _cols(
        ("run_id", DICT, "", "run"),
        ("iteration", I32, "", "0-based over warmup and measure"),
        ("phase", DICT, "", "warmup | measure"),
        ("stage", DICT, "", "stage name"),
        ("start_ns", I64, "ns", "stage start, from the run's start"),
        ("host_ns", I64, "ns", "host duration (perf_counter_ns, after sync)"),
        ("device_ns", I64, "ns", "device duration from events, null where none"),
        ("items", I32, "items", "items in this iteration"),
    ),
    "env": _cols(
        ("env_id", S, "", "hash of the fingerprint content"),
        ("host", S, "", "host name"),
        ("cpu_model", S, "", "CPU model name"),
        ("cpu_cores", I64, "", "physical cores"),
        ("cpu_threads", I64, "", "logical CPUs"),
        ("memory_gib", F64, "GiB", "host memory"),
        ("os", S, "", "operating system"),
        ("python", S, "", "Python version"),
        ("gpu_name", S, "", "GPU name, null without one"),
        ("gpu_compute_capability", S, "", "major.minor"),
        ("cuda_driver", S, "", "driver version"),
        ("cuda_runtime", S, "", "CUDA runtime version"),
        ("fingerprint", S, "JSON", "the full fingerprint"),
    ),
    "telemetry": _cols(
        ("run_id", S, "", "run"),
        ("t_ns", I64, "ns", "time from the run's start"),
        ("sm_clock_mhz", F64, "MHz", "SM clock"),
        ("mem_clock_mhz", F64, "MHz", "memory clock"),
        ("temp_c", F64, "C", "GPU temperature"),
        ("power_w", F64, "W", "board power"),
        ("util_pct", F64, "%", "GPU utilization"),
        ("throttle_reasons", S, "", "active clock-event reasons, comma-separated"),
        ("throttled", B, "", "true when a reason that lowers clocks was active"),
    ),
    "layers": _cols(
        ("run_id", S, "", "run"),
        ("layer", S, "", "layer or node name; op:<OpType> for an operator type's total"),
        ("op_type", S, "", "operator type"),
        ("provider", S, "", "execution provider or engine"),
        ("precision", S, "", "layer precision where known"),
        ("count", I64, "", "executions profiled"),
        ("total_ms", F64, "ms", "total time"),
        ("median_ms", F64, "ms", "median time per execution"),
    ),
    "reported": _cols(
        ("run_id", S, "", "run"),
        ("stage", S, "", "stage the statistic describes"),
        ("statistic", S, "", "mean, median, min, max, p90, p95, p99, ..."),
        (
            "value_ms",
            F64,
            "ms",
            "value as printed; throughput_qps, walltime_s, total_s, count: unit in the name",
        ),
    ),
    "calibration": _cols(
        ("run_id", S, "", "run whose worker measured it"),
        ("what", S, "", "timer | nvtx_push_pop | stage_overhead | event_record | stream_sync"),
        ("median_ns", F64, "ns", "median cost"),
        ("p90_ns", F64, "ns", "90th percentile cost"),
        ("n", I64, "", "repetitions"),
    ),
    "trace_ranges": _cols(
        ("run_id", S, "", "run the trace belongs to"),
        ("name", S, "", "range text"),
        ("domain", S, "", "NVTX domain"),
        ("pid", I64, "", "process id"),
        ("tid", I64, "", "thread id"),
        ("start_ns", I64, "ns", "range start"),
        ("end_ns", I64, "ns", "range end"),
        ("duration_ns", I64, "ns", "range duration"),
        ("depth", I64, "", "nesting depth on its thread"),
        ("gpu_start_ns", I64, "ns", "first GPU op attributed to the range"),
        ("gpu_end_ns", I64, "ns", "last GPU op end"),
        ("gpu_duration_ns", I64, "ns", "gpu_end_ns - gpu_start_ns"),
        ("n_gpu_ops", I64, "", "kernels + memcpy + memset attributed"),
        ("perflab_run", S, "", "perflab run label parsed from the range"),
        ("iteration", I64, "", "perflab iteration parsed from the range"),
        ("stage", S, "", "perflab stage parsed from the range"),
    ),
    "trace_kernels": _gpu_op_cols("kernel name"),
    "trace_memcpy": _gpu_op_cols(
        "memcpy or memset",
        ("bytes", I64, "B", "bytes copied or set"),
        ("copy_kind", S, "", "HtoD, DtoH, DtoD, memset, ..."),
    ),
}


def schema(table: str) -> pa.Schema:
    """The arrow schema of a table, with the schema version in its metadata."""
    if table not in TABLES:
        raise StoreError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    return pa.schema(
        [pa.field(c.name, c.type) for c in TABLES[table]],
        metadata={VERSION_KEY: str(SCHEMA_VERSION).encode(), TABLE_KEY: table.encode()},
    )


def to_arrow(
    table: str, data: pd.DataFrame | Mapping[str, object] | Sequence[Mapping[str, object]]
) -> pa.Table:
    """Conform a frame, one row (a mapping) or a list of rows to the table's schema.

    Missing columns become nulls; unknown columns are an error, so a typo never silently drops data.
    Rows given as mappings are converted without pandas, which keeps worker processes light.
    """
    sch = schema(table)
    if isinstance(data, Mapping):
        data = [data]
    if isinstance(data, Sequence):
        names = set().union(*(row.keys() for row in data)) if data else set()
        columns = {name: [_scalar(row.get(name)) for row in data] for name in names}
        n = len(data)
    else:
        names = set(data.columns)
        columns = {name: _plain(data[name]) for name in names}
        n = len(data)
    unknown = names - set(sch.names)
    if unknown:
        raise StoreError(f"table {table!r} has no column(s) {sorted(unknown)}")
    arrays = []
    for field in sch:
        if field.name not in columns:
            arrays.append(pa.nulls(n, type=field.type))
        elif pa.types.is_dictionary(field.type):
            arrays.append(
                pa.array(columns[field.name], type=pa.string()).dictionary_encode().cast(field.type)
            )
        else:
            arrays.append(pa.array(columns[field.name], type=field.type))
    return pa.Table.from_arrays(arrays, schema=sch)


def _scalar(value: object) -> object:
    """A row value as arrow takes it: missing values (NaN, NaT, pandas NA) become None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def _plain(values: pd.Series) -> list[object]:
    """A pandas column as Python values, with missing values (NaN, NaT, NA) as None."""
    import pandas

    if pandas.api.types.is_datetime64_any_dtype(values):
        values = pandas.to_datetime(values, utc=True)
    out = values.astype(object).where(values.notna(), None).tolist()
    return [None if isinstance(v, float) and math.isnan(v) else v for v in out]


# ----------------------------------------------------------------------------- layout

LOGS = ".logs"
PENDING = ".pending"
LOCK = ".lock"
# `.<name>.tmp-<pid>`: hidden from readers, and recognisably perflab's own half-written file.
_TEMPORARY = re.compile(r"^\..+\.tmp-\d+$")


def table_file(out: Path, table: str, key: str) -> Path:
    """Where the file of one run (or one fingerprint, for `env`) of a table lives."""
    return Path(out) / table / f"{key}.parquet"


def run_file(out: Path, run_id: str) -> Path:
    """The `runs` file of a run: its existence is the run's commit."""
    return table_file(out, "runs", run_id)


def is_committed(out: Path, run_id: str) -> bool:
    return run_file(out, run_id).exists()


def temporary_name(final: Path) -> Path:
    """The hidden name a file is written under before it is renamed to `final`."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def log_file(out: Path, run_id: str) -> Path:
    """The captured output of a run's worker process (kept only for runs that died)."""
    folder = Path(out) / LOGS
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{run_id}.log"


def remove_empty_logs(out: Path) -> None:
    logs = Path(out) / LOGS
    if logs.is_dir() and not any(logs.iterdir()):
        logs.rmdir()


def begin_run(out: Path, run_id: str) -> None:
    """Mark a run as in progress before anything of it is written (see `sweep_leftovers`)."""
    folder = Path(out) / PENDING
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / run_id).touch()
    except OSError as exc:
        raise StoreError(f"cannot write in {out}: {exc.strerror}") from None


def end_run(out: Path, run_id: str) -> None:
    """Unmark a run once it is committed and its process is done with it (log handled)."""
    folder = Path(out) / PENDING
    (folder / run_id).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()  # only when empty


def discard_run(out: Path, run_id: str) -> list[Path]:
    """Remove what a pending run left: the child-table files of a run that never committed, and
    the worker log (of a committed run too: its process died before removing it)."""
    removed = []
    if not is_committed(out, run_id):
        for table in TABLES:
            path = table_file(out, table, run_id)
            if table != "env" and path.exists():
                path.unlink()
                removed.append(path)
    log = Path(out) / LOGS / f"{run_id}.log"
    if log.exists():
        log.unlink()
        removed.append(log)
    end_run(out, run_id)
    remove_empty_logs(out)
    return removed


def sweep_leftovers(out: Path) -> list[Path]:
    """Remove what perflab itself left half-done in `out`: temporary files (`.NAME.tmp-PID`) and
    the files of runs marked pending that never committed. Call it holding the folder's lock."""
    out = Path(out)
    removed = []
    for table in TABLES:
        folder = out / table
        if folder.is_dir():
            for path in folder.iterdir():
                if _TEMPORARY.match(path.name) and path.is_file():
                    path.unlink(missing_ok=True)
                    removed.append(path)
    pending = out / PENDING
    if pending.is_dir():
        for mark in sorted(pending.iterdir()):
            removed += discard_run(out, mark.name)
    return removed


@contextlib.contextmanager
def locked(out: Path, command: str) -> Iterator[None]:
    """Hold `out` for one writer (`command` says who, for the message another writer gets).

    A second writer is refused at once with the holder's process id. The lock is an flock on
    `out/.lock`: the kernel releases it when its process ends in any way, so a lock left by a
    killed process never blocks. The file stays (removing it would race a writer opening it).
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot write in {out}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise StoreError(
                f"{out} is in use by {holder}; wait for it to finish, or use -o NEW_FOLDER"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"perflab {command} (process {os.getpid()})".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the flock


# ----------------------------------------------------------------------------- writing


def write(
    out: Path,
    table: str,
    key: str,
    data: pd.DataFrame | Mapping[str, object] | Sequence[Mapping[str, object]] | pa.Table,
) -> Path:
    """Write one file `out/table/key.parquet` atomically (temporary name, then rename)."""
    arrow = data if isinstance(data, pa.Table) else to_arrow(table, data)
    folder = Path(out) / table
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create {folder}: {exc.strerror}") from None
    final = table_file(out, table, key)
    tmp = temporary_name(final)
    try:
        pq.write_table(arrow, tmp, compression="zstd")
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {final}: {exc.strerror}") from None
    return final


class TableWriter:
    """`write` for a table too large to hold: one table file written in row groups under its temporary name, so a table larger than
    memory can be streamed into place: `write` appends rows, `commit` renames the finished file to
    `out/table/key.parquet`, `discard` removes it. Nothing is visible to readers before `commit`;
    a process killed on the way leaves only a temporary file, which `sweep_leftovers` removes.
    A writer that was given no rows makes no file."""

    def __init__(self, out: Path, table: str, key: str):
        self.table = table
        self.schema = schema(table)
        self.final = table_file(out, table, key)
        self.temporary = temporary_name(self.final)
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        if not data.num_rows:
            return
        try:
            if self._writer is None:
                self.final.parent.mkdir(parents=True, exist_ok=True)
                self._writer = pq.ParquetWriter(self.temporary, self.schema, compression="zstd")
            table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
            self._writer.write_table(table.cast(self.schema))
        except OSError as exc:
            self.discard()
            raise StoreError(f"cannot write {self.final}: {exc.strerror or exc}") from None
        self.rows += data.num_rows

    def commit(self) -> Path:
        """Finish the file and rename it into place (no file when no rows were written)."""
        if self._writer is None:
            return self.final
        try:
            self._writer.close()
            self._writer = None
            os.replace(self.temporary, self.final)
        except OSError as exc:
            self.discard()
            raise StoreError(f"cannot write {self.final}: {exc.strerror or exc}") from None
        return self.final

    def discard(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(OSError, pa.ArrowException):
                self._writer.close()
            self._writer = None
        self.temporary.unlink(missing_ok=True)


def write_run(
    out: Path, run: Mapping[str, object], tables: Mapping[str, object] | None = None
) -> None:
    """Write a run's child tables, then its `runs` row last (the commit marker)."""
    run_id = str(run["run_id"])
    for table, data in (tables or {}).items():
        if data is not None and len(data):
            write(out, table, run_id, data)
    write(out, "runs", run_id, run)


def check_writable(out: Path) -> None:
    """Fail early, before anything is measured, when `out` cannot hold results."""
    out = Path(out)
    probe_dir = out
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir() or not os.access(probe_dir, os.W_OK | os.X_OK):
        raise StoreError(
            f"output folder {out} is not writable ({probe_dir} does not allow writing)"
        )


def file_version(path: Path) -> int:
    return _version(pq.read_schema(path).metadata or {}, path)


def _version(meta: Mapping[bytes, bytes], path: Path) -> int:
    raw = meta.get(VERSION_KEY)
    if raw is None:
        raise StoreError(f"{path} is not a perflab table (no schema version in its metadata)")
    try:
        return int(raw)
    except ValueError:
        raise StoreError(f"{path} is not a perflab table (schema version {raw[:20]!r})") from None


def _check_footer(path: Path, table: str) -> pa.Schema:
    """Refuse a file from a newer schema (StoreVersionError), of another tool, or of another
    table (a `samples` file dropped into `runs/` must not be read as phantom runs); the file's
    schema otherwise."""
    file_schema = pq.read_schema(path)
    meta = file_schema.metadata or {}
    version = _version(meta, path)
    if version > SCHEMA_VERSION:
        raise StoreVersionError(
            f"{path} was written by perflab schema version {version}; this perflab reads up to "
            f"version {SCHEMA_VERSION}: upgrade perflab to read it"
        )
    found = meta.get(TABLE_KEY)
    if found is not None and found != table.encode():
        raise StoreError(
            f"{path} is a perflab {found[:40].decode(errors='replace')!r} table, not {table!r}"
        )
    return file_schema


def _read_file(path: Path, table: str) -> pa.Table:
    _check_footer(path, table)
    return _conform(pq.read_table(path), schema(table))


def read_run_tables(folder: Path, run_id: str) -> tuple[dict[str, object], dict[str, pa.Table]]:
    """One committed run of a folder: its `runs` row and its files of the tables keyed by run id,
    each version-checked, ready for `write_run` into another folder."""
    folder = Path(folder)
    row = read_run(run_file(folder, run_id))
    tables = {}
    for table in TABLES:
        path = table_file(folder, table, run_id)
        if table not in ("runs", "env") and path.exists():
            tables[table] = _read_file(path, table)
    return row, tables


def read_run(path: Path) -> dict[str, object]:
    """One run's row from its `runs` file, as a dict."""
    return _read_file(Path(path), "runs").to_pylist()[0]


def table_files(folder: Path, table: str) -> list[Path]:
    """The table's files in a folder, by name (not the ones named `.tmp-*` or `_*`)."""
    where = Path(folder) / table
    try:
        with os.scandir(where) as entries:
            names = [
                e.name for e in entries if e.name.endswith(".parquet") and e.name[0] not in "._"
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []
    # Names sorted as strings: the order of the paths, without comparing hundreds of Paths.
    return [where / name for name in sorted(names)]


def readable(folders: Path | str | Iterable[Path | str], table: str) -> tuple[list[Path], bool]:
    """The table's files in these folders whose footer reads (see check_files), and whether all
    of them have the same columns: such files are read in one scan without matching columns by
    name."""
    paths = [p for folder in _folders(folders) for p in table_files(folder, table)]
    good, shapes = check_files(paths, table)
    return good, same_columns(shapes.values())


def check_files(paths: Iterable[Path], table: str) -> tuple[list[Path], dict[Path, str]]:
    """The files whose footer reads (the others skipped with a warning naming them; a file from
    a newer schema version stops the read), and each one's columns, as text."""
    good, shapes = [], {}
    for path in paths:
        try:
            file_schema = _check_footer(path, table)  # reads only the footer
        except StoreVersionError:
            raise
        except (OSError, pa.ArrowException, ValueError, StoreError) as exc:
            warnings.warn(f"skipping unreadable file {path}: {exc}", stacklevel=4)
            continue
        good.append(path)
        shapes[path] = json.dumps([[f.name, str(f.type)] for f in file_schema])
    return good, shapes


def same_columns(shapes: Iterable[str]) -> bool:
    """Whether files of these check_files shapes all have the same columns."""
    return len(set(shapes)) <= 1


def shape_columns(shapes: Iterable[str]) -> frozenset[str]:
    """The column names that files of these check_files shapes hold between them."""
    return frozenset(name for shape in set(shapes) for name, _ in json.loads(shape))


def _folders(folders: Path | str | Iterable[Path | str]) -> list[Path]:
    return [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]


def read(folders: Path | str | Iterable[Path | str], table: str) -> pd.DataFrame:
    """Read one table from one or more result folders.

    A file that cannot be parsed is skipped with a warning naming it; a file from a newer schema
    version stops the read with a message that says so. The INDEXED tables are read through each
    folder's index (see `indexed`): one file rather than a footer per run.
    """
    if table in INDEXED:
        parts = [indexed(folder, table, "rows", _read_rows)[0] for folder in _folders(folders)]
        parts = [t.drop_columns([INDEX_FILE]) for t in parts if t is not None]
        if not parts:
            return schema(table).empty_table().to_pandas()
        return pa.concat_tables(parts).to_pandas()
    good, uniform = readable(folders, table)
    return _read_files(good, table, uniform)[0].to_pandas()


def _read_files(
    good: list[Path], table: str, uniform: bool, *, files: bool = False
) -> tuple[pa.Table, list[Path]]:
    """The files' rows in the declared schema (with `files`, each row's file name in
    INDEX_FILE), and the files read: a footer that reads but a body that does not is found by
    reading a file at a time, and skipped with a warning naming it."""
    sch = schema(table).append(pa.field(INDEX_FILE, pa.string())) if files else schema(table)
    if not good:
        return sch.empty_table(), []
    try:
        return _scan(good, schema(table), uniform=uniform, files=files), good
    except (OSError, pa.ArrowException):
        parts, read = [], []
        for path in good:
            try:
                part = _read_file(path, table)
            except (OSError, pa.ArrowException, ValueError) as exc:
                warnings.warn(f"skipping unreadable file {path}: {exc}", stacklevel=2)
                continue
            if files:
                part = part.append_column(INDEX_FILE, pa.array([path.name] * len(part)))
            parts.append(part)
            read.append(path)
        return (pa.concat_tables(parts) if parts else sch.empty_table()), read


def _read_rows(paths: list[Path], table: str) -> tuple[pa.Table, dict[Path, object]]:
    """`indexed`'s derive for a table's rows: each row with its file's name, and per file read
    its columns."""
    good, shapes = check_files(paths, table)
    rows, read = _read_files(good, table, same_columns(shapes.values()), files=True)
    return rows, {path: shapes[path] for path in read}


def _scan(
    paths: list[Path], sch: pa.Schema, *, uniform: bool = False, files: bool = False
) -> pa.Table:
    """All files in one duckdb scan (parallel, several times faster than a file at a time on
    studies of hundreds of runs), conformed to the declared schema; with `files`, each row's
    file name in INDEX_FILE. Files of different columns (older versions) are matched by name."""
    import duckdb

    con = duckdb.connect()
    try:
        result = con.read_parquet(
            [str(p) for p in paths], union_by_name=not uniform, filename=files
        ).arrow()
        arrow = result.read_all() if hasattr(result, "read_all") else result
    except duckdb.Error as exc:
        raise OSError(f"scan failed: {exc}") from exc
    finally:
        con.close()
    out = _conform(arrow, sch)
    if files:
        names = pa.array([Path(p).name for p in arrow.column("filename").to_pylist()])
        out = out.append_column(INDEX_FILE, names)
    return out


# ----------------------------------------------------------------------------- file index

# A table folder's index: what was derived from each of its files (a runs file's row, a samples
# file's row counts), with the size and modification time each file had when it was read.
# Opening a study of hundreds of runs otherwise parses hundreds of parquet footers (about a
# millisecond each); with the index it reads one file and stats the others, and reads again only
# files that are new or changed. It is a cache: removing it loses nothing, and where the folder
# is not writable it is not kept. It lives in the folder's `.index/`, which no reader takes for a
# table.
INDEX = ".index"
# Tables whose rows the index holds: `runs` is read on every open, a small row per run file (the
# samples index holds row counts instead, see scan.catalog).
INDEXED = ("runs",)
INDEX_FILE = "_file"  # the column naming each row's file
INDEX_VERSION = 1


def index_path(folder: Path, table: str, name: str) -> Path:
    """Beside the tables, not in them: a table's folder holds only its files."""
    return Path(folder) / INDEX / f"{table}-{name}.parquet"


def indexed(
    folder: Path | str,
    table: str,
    name: str,
    derive,
    *,
    version: str = "",
    only: Collection[str] | None = None,
) -> tuple[pa.Table | None, dict[Path, object]]:
    """Rows derived from each readable file of one folder's table, in file-name order, each with
    its file's name in INDEX_FILE, and per file what `derive` noted of it (JSON-able).

    `derive(paths, table) -> (rows, {path: note})` reads the files that are not in the index or
    changed since; a path missing from its notes was unreadable (warned about, not indexed, and
    tried again next time). `version` names what derive computes: an index kept by another
    version is rebuilt. With `only` (file names), new or changed files not named there are
    neither read nor returned. None when the folder has no such files."""
    folder = Path(folder)
    files = table_files(folder, table)
    if not files:
        return None, {}
    stats = {}
    for path in files:
        st = path.stat()
        stats[path.name] = [st.st_size, st.st_mtime_ns]
    where = index_path(folder, table, name)
    old, known = _load_index(where, [table, name, version])
    keep = [n for n in stats if n in known and known[n][:2] == stats[n]]
    kept = set(keep)
    fresh = [p for p in files if p.name not in kept and (only is None or p.name in only)]
    parts = []
    if old is not None and keep:
        parts.append(old.filter(pc.is_in(old[INDEX_FILE], pa.array(keep))))
    by_name = {p.name: p for p in files}
    notes = {by_name[n]: known[n][2] for n in keep}
    if fresh:
        rows, fresh_notes = derive(fresh, table)
        parts.append(rows)
        notes.update(fresh_notes)
    rows = pa.concat_tables(parts) if len(parts) > 1 else parts[0] if parts else None
    if rows is not None and len(rows):
        rows = rows.take(pc.sort_indices(rows, [(INDEX_FILE, "ascending")]))
    if fresh or len(keep) != len(known):
        entries = {p.name: [*stats[p.name], note] for p, note in notes.items()}
        _save_index(where, rows, entries, [table, name, version])
    return rows, dict(sorted(notes.items(), key=lambda item: item[0].name))


def _load_index(where: Path, of: list[str]) -> tuple[pa.Table | None, dict]:
    try:
        # One file: ParquetFile reads it without the dataset discovery read_table does.
        with pq.ParquetFile(where) as index:
            arrow = index.read()
        meta = arrow.schema.metadata or {}
        head = json.loads(meta[b"perflab_index"])
        if head["version"] != [INDEX_VERSION, SCHEMA_VERSION] or head["of"] != of:
            return None, {}
        return arrow.replace_schema_metadata(None), head["files"]
    except (OSError, pa.ArrowException, ValueError, KeyError, TypeError):
        return None, {}  # none yet, or not one this version can use: it is rebuilt


def _save_index(where: Path, rows: pa.Table | None, entries: dict, of: list[str]) -> None:
    if rows is None:
        return
    head = {"version": [INDEX_VERSION, SCHEMA_VERSION], "of": of, "files": entries}
    tmp = temporary_name(where)
    try:
        where.parent.mkdir(exist_ok=True)
        meta = {"perflab_index": json.dumps(head)}
        pq.write_table(rows.replace_schema_metadata(meta), tmp, compression="zstd")
        os.replace(tmp, where)
    except OSError:
        tmp.unlink(missing_ok=True)  # a folder perflab may not write in: read without an index


def _conform(arrow: pa.Table, sch: pa.Schema) -> pa.Table:
    """A table in the declared schema: columns by name, the ones a file predates as nulls."""
    columns = [
        arrow.column(f.name).cast(f.type)
        if f.name in arrow.column_names
        else pa.nulls(len(arrow), f.type)
        for f in sch
    ]
    return pa.Table.from_arrays(columns, schema=sch)


def read_study_check(folder: Path | str) -> None:
    """Refuse folders that do not exist, or that hold no perflab tables at all."""
    path = Path(folder)
    if not path.exists():
        raise StoreError(f"result folder {path} does not exist")
    if not path.is_dir():
        raise StoreError(f"result folder {path} is not a folder")
    if not any((path / t).is_dir() for t in TABLES):
        raise StoreError(
            f"{path} holds no perflab results (no {', '.join(t + '/' for t in ('runs', 'samples'))})"
        )


def new_run_id() -> str:
    """A unique, time-sortable run id: UTC timestamp plus random suffix."""
    now = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return f"{now}-{uuid.uuid4().hex[:8]}"


def json_text(value: object) -> str:
    """Canonical JSON for the JSON-typed string columns."""
    return json.dumps(value, sort_keys=True, default=str)
