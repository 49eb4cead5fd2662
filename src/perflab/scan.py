"""Stored samples read through DuckDB in chunks of whole runs, with only the rows and columns an
analysis needs, so that memory is bounded by the chunk rather than by the study.

Every per-run analysis (summary, warmup, harness gap, breakdown) depends only on each run's own
rows, so running it on one chunk of runs at a time and concatenating gives exactly the numbers of
one call on the whole frame: each group's sorted values are the same array either way.

Plan: one DuckDB scan of the run, phase and stage columns (the catalog, kept by the caller) counts
rows per file, run, phase and stage; each read packs the runs it selects, in run-id order, into
chunks of at most `max_rows` rows (a run is never split) and reads each chunk with one filtered,
projected scan of just the files that hold its runs.

Statistics that the engine can compute (counts, exact integer sums, quantiles) are not pulled
into Python at all: `aggregate` runs a grouped query over each batch of runs and returns one row
per (run, stage). A frame already in memory (`Frame`) is read the same way, so the in-memory and
the stored path share one query and give the same numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from perflab import store

# Rows per chunk: about 200 MB as arrays, a few hundred MB while an analysis sorts them.
CHUNK_ROWS = 4_000_000
# Rows per grouped query: the quantile states hold every value of the batch (a few tens of
# bytes per row), and larger batches keep both threads busy.
AGGREGATE_ROWS = 10_000_000
# DuckDB's own memory while scanning (sorts and joins spill beyond this).
DUCKDB_MEMORY = "2GB"


@dataclass(frozen=True)
class Filter:
    """Which sample rows to read: these runs (None: all), one phase (None: all), some stages."""

    run_ids: Sequence[str] | None = None
    phase: str | None = None
    stages: Sequence[str] | None = None


@dataclass(frozen=True)
class Frame:
    """Sample rows already in memory (a frame as `store.read` returns it), read through DuckDB
    like stored files."""

    frame: pd.DataFrame


def _connect():
    """A new DuckDB connection (closed by its user). Not one kept per process: a database
    inherited by a forked worker would be torn down there without its threads."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{DUCKDB_MEMORY}'")
    con.execute("SET preserve_insertion_order = false")
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.Error:
        pass  # in Jupyter without ipywidgets DuckDB refuses the setting, and draws no bar anyway
    return con


def _where(flt: Filter, con) -> tuple[str, list[object]]:
    """SQL condition and parameters; the run ids go in through a registered table."""
    parts, params = ["TRUE"], []
    if flt.run_ids is not None:
        con.register("_wanted", pa.table({"run_id": pa.array(list(flt.run_ids), pa.string())}))
        parts.append("run_id IN (SELECT run_id FROM _wanted)")
    if flt.phase is not None:
        parts.append("phase = ?")
        params.append(flt.phase)
    if flt.stages is not None:
        parts.append("stage IN (SELECT unnest(?))")
        params.append(list(flt.stages))
    return " AND ".join(parts), params


def _source(files: Sequence[Path], uniform: bool, extra: str = "") -> str:
    """A scan of the files; files of different columns (older versions) matched by name."""
    listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
    return f"read_parquet([{listed}], union_by_name = {str(not uniform).lower()}{extra})"


@dataclass(frozen=True)
class Catalog:
    """What the samples files hold: rows per (file, run, phase, stage), from one DuckDB scan of
    those three columns. Every later read is planned from it without scanning again."""

    files: tuple[Path, ...]
    columns: frozenset[str]
    counts: pd.DataFrame  # filename, run_id, phase, stage, n
    uniform: bool  # every file has the same columns

    @functools.cached_property
    def _files_by_run(self) -> dict[str, set[str]]:
        files: dict[str, set[str]] = {}
        for run_id, filename in zip(
            self.counts["run_id"].tolist(), self.counts["filename"].tolist()
        ):
            files.setdefault(run_id, set()).add(filename)
        return files

    def single_file_runs(self) -> dict[str, str]:
        """The runs whose rows all lie in one file, and that file."""
        return {r: next(iter(f)) for r, f in self._files_by_run.items() if len(f) == 1}

    def source(self, run_ids: Sequence[str]) -> str:
        """A scan of the files that hold these runs' rows."""
        paths = set().union(*(self._files_by_run[r] for r in run_ids))
        return _source(sorted(paths), self.uniform)


def catalog(folders: Iterable[Path]) -> Catalog | None:
    """The catalog of the folders' samples files; None when there are none. Each folder's
    counts are kept in its samples index (store.indexed), so only new files are scanned."""
    files, shapes, parts = [], set(), []
    for folder in folders:
        rows, notes = store.indexed(folder, "samples", "catalog", _count_rows)
        if rows is None or not notes:
            continue
        names = {p.name: str(p) for p in notes}
        counts = rows.to_pandas()
        counts["filename"] = counts.pop(store.INDEX_FILE).map(names)
        parts.append(counts)
        files += list(notes)
        shapes.update(notes.values())
    if not files:
        return None
    counts = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return Catalog(tuple(files), store.shape_columns(shapes), counts, store.same_columns(shapes))


def _count_rows(paths: list[Path], table: str) -> tuple[pa.Table, dict[Path, object]]:
    """Rows per (file, run, phase, stage) of samples files, from one scan of those columns."""
    good, shapes = store.check_files(paths, table)
    out = {"run_id": pa.string(), "phase": pa.string(), "stage": pa.string(), "n": pa.int64()}
    empty = pa.schema([*out.items(), (store.INDEX_FILE, pa.string())]).empty_table()
    if not good:
        return empty, {}
    present = store.shape_columns(shapes.values())
    listed = ", ".join(
        f'CAST("{c}" AS VARCHAR) AS "{c}"' if c in present else f'CAST(NULL AS VARCHAR) AS "{c}"'
        for c in ("run_id", "phase", "stage")
    )
    uniform = store.same_columns(shapes.values())
    con = _connect()
    try:
        arrow = con.sql(
            f"SELECT {listed}, count(*) AS n, filename "
            f"FROM {_source(good, uniform, ', filename = true')} GROUP BY ALL"
        ).to_arrow_table()
    finally:
        con.close()
    names = pa.array([Path(f).name for f in arrow.column("filename").to_pylist()], pa.string())
    columns = [arrow.column(c).cast(t) for c, t in out.items()]
    return pa.Table.from_arrays([*columns, names], schema=empty.schema), dict(shapes)


def _selected(counts: pd.DataFrame, flt: Filter) -> pd.DataFrame:
    """The catalog rows of the (file, run, phase, stage) groups that `flt` selects."""
    if flt.run_ids is not None:
        counts = counts[counts["run_id"].isin(list(flt.run_ids))]
    if flt.phase is not None:
        counts = counts[counts["phase"] == flt.phase]
    if flt.stages is not None:
        counts = counts[counts["stage"].isin(list(flt.stages))]
    return counts


def pack(counts: pd.DataFrame, max_rows: int) -> list[list[str]]:
    """The runs of these catalog rows in sorted id order, packed into batches of whole runs of
    at most `max_rows` rows (a run alone may have more)."""
    batches: list[list[str]] = []
    rows = 0
    for run_id, n in counts.groupby("run_id", sort=True)["n"].sum().items():
        if not batches or rows + n > max_rows:
            batches.append([])
            rows = 0
        batches[-1].append(str(run_id))
        rows += int(n)
    return batches


def chunks(
    cat: Catalog | None, flt: Filter, columns: Sequence[str], *, max_rows: int = CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """The selected sample rows as frames of whole runs, runs in sorted id order, at most
    `max_rows` rows each unless one run alone has more. Columns have the stored types
    (dictionary columns as pandas categoricals), missing ones filled with nulls. Nothing is
    yielded when no row is selected."""
    if cat is None:
        return
    sch = store.schema("samples")
    counts = _selected(cat.counts, flt)
    if counts.empty:
        return
    wanted = [c for c in columns if c in cat.columns]
    # Dictionary columns come back as DuckDB ENUMs, which arrive as arrow dictionaries and
    # pandas categoricals without a string per row; the catalog gives their values.
    levels = {
        c: sorted(counts[c].dropna().unique())
        for c in wanted
        if c != "run_id" and pa.types.is_dictionary(sch.field(c).type)
    }
    con = _connect()
    try:
        where, params = _where(flt, con)
        for run_ids in pack(counts, max_rows):
            con.register("_chunk", pa.table({"run_id": pa.array(run_ids, pa.string())}))
            types = {"run_id": _enum(run_ids), **{c: _enum(v) for c, v in levels.items()}}
            selected = ", ".join(
                f'CAST("{c}" AS {types[c]}) AS "{c}"' if c in types else f'"{c}"' for c in wanted
            )
            arrow = con.sql(
                f"SELECT {selected} FROM {cat.source(run_ids)} "
                f"WHERE {where} AND run_id IN (SELECT run_id FROM _chunk)",
                params=params,
            ).to_arrow_table()
            yield _conform(arrow, sch, columns).to_pandas()
    finally:
        con.close()


def _enum(levels: Sequence[str]) -> str:
    quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in levels)
    return f"ENUM({quoted})" if levels else "VARCHAR"


def _conform(arrow: pa.Table, sch: pa.Schema, columns: Sequence[str]) -> pa.Table:
    """The stored types (dictionaries keep DuckDB's narrower index type: pandas reads both as
    categoricals), and nulls for columns no file has."""
    arrays = []
    for name in columns:
        field = sch.field(name)
        if name not in arrow.column_names:
            arrays.append(pa.nulls(len(arrow), field.type))
            continue
        col = arrow.column(name)
        same_kind = pa.types.is_dictionary(col.type) and pa.types.is_dictionary(field.type)
        arrays.append(col if same_kind else col.cast(field.type))
    return pa.Table.from_arrays(arrays, names=list(columns))


# --------------------------------------------------------------------------------------------
# Grouped queries: one row per (run, stage), computed by the engine.


def source_columns(src: Catalog | Frame | None) -> frozenset[str]:
    if src is None:
        return frozenset()
    return src.columns if isinstance(src, Catalog) else frozenset(map(str, src.frame.columns))


def integer_column(src: Catalog | Frame, name: str) -> bool:
    """Whether a column holds integers (stored nanoseconds always do; a user's frame may not)."""
    if isinstance(src, Catalog):
        return pa.types.is_integer(store.schema("samples").field(name).type)
    return pd.api.types.is_integer_dtype(src.frame[name].dtype)


def group_counts(src: Catalog | Frame | None, flt: Filter) -> pd.DataFrame:
    """Rows per (run, stage) that `flt` selects: run_id, stage (strings), n; rows without a run
    or a stage are never selected. From the catalog for stored files (no scan), from one counting
    query for a frame."""
    empty = pd.DataFrame(
        {
            "run_id": pd.Series(dtype=object),
            "stage": pd.Series(dtype=object),
            "n": pd.Series(dtype=np.int64),
        }
    )
    if src is None:
        return empty
    if isinstance(src, Catalog):
        counts = _selected(src.counts.dropna(subset=["run_id", "stage"]), flt)
        if counts.empty:
            return empty
        out = counts.groupby(["run_id", "stage"], sort=True, as_index=False)["n"].sum()
        return out.astype({"run_id": object, "stage": object, "n": np.int64})
    con = _connect()
    try:
        con.register("_frame", src.frame)
        where, params = _where(flt, con)
        out = con.execute(
            "SELECT CAST(run_id AS VARCHAR) AS run_id, CAST(stage AS VARCHAR) AS stage, "
            f"count(*) AS n FROM _frame WHERE {where} AND run_id IS NOT NULL "
            "AND stage IS NOT NULL GROUP BY ALL ORDER BY run_id, stage",
            params,
        ).df()
    finally:
        con.close()
    return out.astype({"run_id": object, "stage": object, "n": np.int64}) if len(out) else empty


def aggregate(
    src: Catalog | Frame, flt: Filter, query: str, batches: Iterable[Sequence[str]]
) -> Iterator[pa.Table]:
    """A grouped query over the rows `flt` selects, once per batch of run ids (reading only the
    batch's files), as arrow tables. `query` names those rows `{rows}`, a relation with the
    samples' columns (run_id and stage as strings)."""
    con = _connect()
    try:
        if isinstance(src, Frame):
            con.register("_frame", src.frame)
        where, params = _where(Filter(None, flt.phase, flt.stages), con)
        for run_ids in batches:
            run_ids = [str(r) for r in run_ids]
            source = src.source(run_ids) if isinstance(src, Catalog) else "_frame"
            con.register("_batch", pa.table({"run_id": pa.array(run_ids, pa.string())}))
            rows = (
                "(SELECT * REPLACE (CAST(run_id AS VARCHAR) AS run_id, "
                f"CAST(stage AS VARCHAR) AS stage) FROM {source} WHERE {where} "
                "AND run_id IN (SELECT run_id FROM _batch))"
            )
            yield con.sql(query.format(rows=rows), params=params).to_arrow_table()
    finally:
        con.close()
