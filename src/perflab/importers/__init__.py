"""Importers: other tools' results (trtexec, ONNX Runtime profiles, Nsight Systems) as perflab runs.

Every importer parses its input completely before it writes anything, so a malformed file raises
`ImportFormatError` and leaves the output folder untouched. The values parsed are checked here, on
the one write path every importer shares (`commit`): a duration that is NaN, infinite or negative,
or a time that is missing where the table needs one, cannot be true and refuses the import. Each
imported run is then written with `store.write_run` (child tables first, the `runs` row last, the
commit marker), holding the folder's lock.

The importer modules are loaded only when their kind is asked for, which keeps `import perflab`
light and lets this package hold the helpers they share without an import cycle.
"""

from __future__ import annotations

import contextlib
import importlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from perflab import store
from perflab.errors import ImportFormatError
from perflab.untrusted import check_regular_file, printable

KINDS = ("trtexec", "ort-profile", "nsys")

_DISPATCH = {
    "trtexec": ("perflab.importers.trtexec", "read_trtexec_runs"),
    "ort-profile": ("perflab.importers.ort_profile", "read_ort_profile_run"),
    "nsys": ("perflab.importers.nsys", "read_nsys_run"),
}


def import_file(
    kind: str,
    paths: str | Path | Iterable[str | Path],
    out: str | Path,
    *,
    model: str | Path | None = None,
) -> list[str]:
    """Import one or more files of one kind into the result folder `out`; returns the run ids.

    `trtexec` takes all paths together (JSON exports given together belong to one run);
    `ort-profile` and `nsys` import each path as its own run. All files are parsed before the first
    one is written, so one bad file leaves `out` as it was. `model` (trtexec only) names the ONNX
    file the log timed (see `attach_model`).
    """
    if model is not None and kind != "trtexec":
        raise ImportFormatError(f"a model file goes with trtexec imports, not {kind}")
    if kind not in _DISPATCH:
        raise ImportFormatError(f"unknown import kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    path_list = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not path_list:
        raise ImportFormatError(f"no files given to import as {kind}")
    for path in path_list:
        if not path.exists():
            raise ImportFormatError(f"{path}: no such file")
        check_regular_file(path, f"{kind} file", ImportFormatError)
    module_name, _ = _DISPATCH[kind]
    module = importlib.import_module(module_name)
    try:
        if kind == "trtexec":
            parsed = module.read_trtexec_runs(path_list)
        elif kind == "ort-profile":
            parsed = [module.read_ort_profile_run(p) for p in path_list]
        else:
            parsed = [module.read_nsys_run(p, out=out) for p in path_list]
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        # Parsing writes nothing, so a value the format does not allow (text in an integer
        # column, 1e308 nanoseconds, JSON nested a thousand deep) is a bad file, told in one line.
        names = ", ".join(str(p) for p in path_list)
        text = " ".join(str(exc).split())[:160]
        raise ImportFormatError(
            f"{names}: not a valid {kind} file ({type(exc).__name__}: {text})"
        ) from None
    if kind == "trtexec" and model is not None:
        for run in parsed:
            attach_model(run.row, Path(model))
    return commit(out, parsed)


# --- helpers shared by the importer modules -------------------------------------------------


@dataclass
class ImportedRun:
    """One parsed run waiting to be written: its `runs` row and its child tables.

    A table too large to hold (a trace of millions of kernels) is streamed instead: `stage`,
    called by `commit` holding the folder, reads the rest of the file and writes those tables
    under the store's temporary names (checked batch by batch with `check_table`), and may
    complete `row`; `commit` renames them into place with the other tables, or removes them when
    any run fails.
    """

    row: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    write_row: bool = True
    stage: Callable[[Path], list[store.TableWriter]] | None = None

    @property
    def run_id(self) -> str:
        return str(self.row["run_id"])


def frame(table: str, rows: list[Mapping[str, object]] | pd.DataFrame) -> pd.DataFrame:
    """Rows as a frame with exactly the table's columns (missing ones null), in schema order."""
    names = [c.name for c in store.TABLES[table]]
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    for name in names:
        if name not in df.columns:
            df[name] = None
    return df[names]


# Columns whose values are durations or times: finite and never negative where given.
DURATIONS = {
    "samples": ("start_ns", "host_ns", "device_ns"),
    "layers": ("total_ms", "median_ms"),
    "reported": ("value_ms",),
    "calibration": ("median_ns", "p90_ns"),
    "trace_ranges": ("duration_ns", "gpu_duration_ns"),
    "trace_kernels": ("start_ns", "end_ns", "duration_ns"),
    "trace_memcpy": ("start_ns", "end_ns", "duration_ns"),
}
# Columns a row of the table means nothing without: a missing value is a file perflab misread
# (a renamed column in an export), not a fact to store.
REQUIRED = {
    "samples": ("host_ns",),
    "reported": ("value_ms",),
    "trace_ranges": ("start_ns",),
    "trace_kernels": ("start_ns", "end_ns"),
    "trace_memcpy": ("start_ns", "end_ns"),
}


# A stage, layer or kernel longer than a week is a misread file, not a measurement.
MAX_DURATION_S = 7 * 86400
_SECONDS_PER_UNIT = {"_ns": 1e-9, "_ms": 1e-3}


def refuse_non_finite(constant: str) -> float:
    """`parse_constant` for json.loads: NaN and Infinity are not JSON, and no time is either."""
    raise ImportFormatError(f"the file holds {constant}, which is not a duration or time")


def check_values(run: ImportedRun) -> None:
    """ImportFormatError when a parsed table holds values that cannot be true."""
    for table, df in run.tables.items():
        check_table(run.row.get("label") or run.run_id, table, df)


def check_table(where: str, table: str, df: pd.DataFrame | None) -> None:
    """ImportFormatError naming `where` when rows of `table` hold values that cannot be true
    (a streaming importer calls it on each batch; only the REQUIRED and DURATIONS columns are
    read)."""
    if df is None or not len(df):
        return
    for col in REQUIRED.get(table, ()):
        if col in df.columns and (missing := int(df[col].isna().sum())):
            raise ImportFormatError(
                f"{printable(where)}: {missing} of {len(df)} {table} rows have no {col} "
                "value (NaN, or a column renamed or missing in the file)"
            )
    for col in DURATIONS.get(table, ()):
        if col not in df.columns:
            continue
        values = pd.to_numeric(df[col], errors="coerce").astype("float64").to_numpy()
        given = values[~np.isnan(values)]
        bad = given[~np.isfinite(given) | (given < 0)]
        if len(bad):
            raise ImportFormatError(
                f"{printable(where)}: {table}.{col} holds {len(bad)} value(s) that cannot be "
                f"a duration or time (e.g. {bad[0]:.6g}): infinite or negative"
            )
        unit = _SECONDS_PER_UNIT.get(col[-3:])
        is_duration = not col.startswith(("start", "end")) and col != "value_ms"
        if unit and is_duration and len(given) and given.max() * unit > MAX_DURATION_S:
            raise ImportFormatError(
                f"{printable(where)}: {table}.{col} holds {given.max():.6g}, longer than a "
                "week: not a duration this file can have measured"
            )


def checked_columns(table: str) -> list[str]:
    """The columns `check_table` reads (a streaming importer hands it only those)."""
    return [*dict.fromkeys((*REQUIRED.get(table, ()), *DURATIONS.get(table, ())))]


def _to_arrow(run: ImportedRun) -> dict[str, object]:
    """The run's non-empty tables in their stored types."""
    where = run.row.get("label") or run.run_id
    return {
        name: table_arrow(where, name, df)
        for name, df in run.tables.items()
        if df is not None and len(df)
    }


def table_arrow(where: str, table: str, df: pd.DataFrame) -> object:
    """Rows of `table` in their stored types; ImportFormatError naming `where` and the table when
    a value does not fit its column (text where the file should hold an integer)."""
    import pyarrow as pa

    try:
        return store.to_arrow(table, df)
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
        raise misfit(where, table, exc) from None


def misfit(where: str, table: str, exc: Exception) -> ImportFormatError:
    """The one-line error for a value that does not convert to its column's type."""
    text = " ".join(str(exc).split())[:160]
    return ImportFormatError(
        f"{printable(where)}: a {table} value does not fit its column ({text})"
    )


def attach_model(row: dict, model: Path) -> None:
    """Give an imported run the cost of the ONNX model it timed, at its batch size.

    The log's own name for the model stays in ``meta.model_in_log``. Weight bytes and the kernel
    count that the log printed for its engine are kept: the engine is what was timed."""
    from perflab import models

    batch = int(row.get("batch_size") or 1)
    info = models.resolve(str(model), batch_size=batch)
    meta = json.loads(row.get("meta") or "{}")
    meta["model_in_log"] = row.get("model")
    notes = json.loads(row.get("notes") or "[]")
    if row.get("model") and Path(str(row["model"])).name != model.name:
        notes.append(f"the log names {Path(str(row['model'])).name}; cost from {model.name}")
    row.update(
        model=str(model),
        model_sha256=info.source_sha256 or info.sha256,
        model_flops_per_sample=info.flops_per_sample,
        model_activation_bytes_per_sample=info.activation_bytes_per_sample,
        model_input_bytes_per_sample=models.tensor_bytes(info.inputs) / batch,
        model_output_bytes_per_sample=models.tensor_bytes(info.outputs) / batch,
    )
    row.setdefault("model_param_bytes", float(info.param_bytes))
    row.setdefault("model_kernels", float(info.node_count))
    row["meta"], row["notes"] = store.json_text(meta), store.json_text(notes)


def commit(out: str | Path, runs: list[ImportedRun]) -> list[str]:
    """Check the parsed runs' values, then write them holding the folder's lock: the streamed
    tables of every run first (`ImportedRun.stage`, under temporary names), then each run's child
    tables and its `runs` row (store.write_run). A run that fails while streaming leaves nothing:
    every staged file is removed before the error goes on."""
    out = Path(out)
    converted = []
    for run in runs:
        check_values(run)
        converted.append(_to_arrow(run))  # every value converts before the first file is written
    ids = []
    with store.locked(out, "import"):
        store.sweep_leftovers(out)
        staged: list[list[store.TableWriter]] = []
        try:
            for run in runs:
                staged.append(run.stage(out) if run.stage is not None else [])
        except BaseException:
            for writers in staged:
                for writer in writers:
                    writer.discard()
            raise
        for run, tables, writers in zip(runs, converted, staged):
            if run.write_row:
                store.begin_run(out, run.run_id)
                for writer in writers:
                    writer.commit()
                store.write_run(out, run.row, tables)
                store.end_run(out, run.run_id)
            else:
                for writer in writers:
                    writer.commit()
                for table, df in tables.items():
                    store.write(out, table, run.run_id, df)
            ids.append(run.run_id)
    return ids


@contextlib.contextmanager
def _reading(p: Path, what: str) -> Iterator[None]:
    """Turn the errors of opening or reading `p` into an ImportFormatError naming the file."""
    try:
        yield
    except FileNotFoundError:
        raise ImportFormatError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ImportFormatError(f"{p} is a folder, not a {what} file") from None
    except OSError as exc:
        raise ImportFormatError(f"{p}: cannot read ({exc.strerror})") from None


def check_file(path: str | Path, what: str) -> bytes:
    """The first 64 bytes of a non-empty file (for format checks without reading it all);
    ImportFormatError naming the file when it is missing, a folder, or empty."""
    p = Path(path)
    with _reading(p, what), p.open("rb") as f:
        head = f.read(64)
    if not head:
        raise ImportFormatError(f"{p} is empty; expected a {what} file")
    return head


def read_bytes(path: str | Path, what: str) -> bytes:
    """The file's content, or ImportFormatError naming the file when it is missing or empty."""
    p = Path(path)
    with _reading(p, what):
        data = p.read_bytes()
    if not data.strip():
        raise ImportFormatError(f"{p} is empty; expected a {what} file")
    return data


__all__ = ["KINDS", "ImportedRun", "check_table", "import_file"]
