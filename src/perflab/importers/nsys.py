"""Import Nsight Systems traces (`nsys export --type sqlite`) and project NVTX ranges onto GPU work.

Tables written (schemas in `store.TABLES`):

- `trace_ranges`: every NVTX push/pop and start/end range. `depth` is the nesting depth among the
  ranges of the same thread, domain and kind (push/pop stacks are per thread and domain). The
  projection follows `nvtx_gpu_proj_trace`: a GPU operation (kernel, memcpy, memset) belongs to a
  range when the runtime API call that launched it (same correlationId, same process) *starts*
  inside the range (range start <= call start <= range end) on the range's own thread; only
  ranges that start and end on one thread are projected. gpu_start_ns / gpu_end_ns are the first
  start and last end of the attributed operations, so gpu_duration_ns is a span, not a sum (child
  time is not subtracted from the parent). n_gpu_ops is 0 for a projected range without GPU work and
  null when it cannot be projected (the trace holds no GPU activity tables, the range crosses
  threads, or it was never closed).
  perflab-domain ranges are parsed (see perflab.nvtx): the run range (category `run`, or any
  other range that is neither a stage nor an iteration) gives `perflab_run` = its message, the
  config label, to every range inside it; stage ranges are named (or categorised) by the stage
  and carry the iteration as payload (else it comes from the enclosing iteration range); the
  iteration range ("iteration N", category `iteration`, payload N, or just the text) is the
  iteration's `e2e` range, so it gets stage `e2e` unless the trace has explicit e2e ranges.
- `trace_kernels`, `trace_memcpy` (memcpy and memset rows): `range` is the innermost range (latest
  start) on the launching thread that contains the launching call's start.

`perflab.analysis.traces.correlate` (and `Results.correlate()`) sets the trace beside perflab's
own per-stage samples.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from perflab import run_row, stages, store
from perflab.errors import ImportFormatError
from perflab.importers import (
    ImportedRun,
    check_file,
    check_table,
    checked_columns,
    commit,
    frame,
    misfit,
    table_arrow,
)

BACKEND = "nsys"
PERFLAB_DOMAIN = "perflab"
# Range names a perflab run pushes: its stages (setup ones included) and its phases.
STAGES = frozenset((*stages.STAGES, *stages.SETUP_STAGES))
PHASES = frozenset(stages.PHASES)

# Used when a trace has no ENUM_NSYS_EVENT_TYPE table (nsys 2022.1 exports none).
_EVENT_TYPES = {
    "NvtxCategory": 33,
    "NvtxPushPopRange": 59,
    "NvtxStartEndRange": 60,
    "NvtxDomainCreate": 75,
}
# CUPTI_ActivityMemcpyKind ids, used when the trace has no ENUM_CUDA_MEMCPY_OPER table.
_MEMCPY_KINDS = {
    0: "Unknown",
    1: "HtoD",
    2: "DtoH",
    3: "HtoA",
    4: "AtoH",
    5: "AtoA",
    6: "AtoD",
    7: "DtoA",
    8: "DtoD",
    9: "HtoH",
    10: "PtoP",
    11: "UVM HtoD",
    12: "UVM DtoH",
    13: "UVM DtoD",
}
_ITERATION_RE = re.compile(r"^\s*iteration\s+(\d+)\s*$", re.IGNORECASE)
_SQLITE_MAGIC = b"SQLite format 3\x00"
_PAYLOAD_COLUMNS = (
    "int64Value",
    "uint64Value",
    "int32Value",
    "uint32Value",
    "doubleValue",
    "floatValue",
)


def split_global_tid(global_tid: np.ndarray | int) -> tuple:
    """globalTid -> (pid, tid): PID is bits 24-47, TID bits 0-23 (Nsight schema reference)."""
    g = np.asarray(global_tid, dtype=np.int64)
    return (g >> 24) & 0xFFFFFF, g & 0xFFFFFF


# --- reading the SQLite file ------------------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    data_head = check_file(path, "Nsight Systems SQLite export")[:16]
    if data_head != _SQLITE_MAGIC:
        raise ImportFormatError(
            f"{path} is not a SQLite database (an `nsys export --type sqlite` file)"
        )
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        con.execute("select count(*) from sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ImportFormatError(f"{path}: unreadable SQLite database ({exc})") from None
    return con


# Columns without which the events of a table cannot be placed in time or on a thread.
_EVENT_COLUMNS = ("start", "globalTid")


class _Db:
    def __init__(self, con: sqlite3.Connection, path: Path):
        self.con = con
        self.path = path
        self.tables = {
            r[0] for r in con.execute("select name from sqlite_master where type='table'")
        }
        self._cols: dict[str, list[str]] = {}

    def columns(self, table: str) -> list[str]:
        if table not in self._cols:
            self._cols[table] = [r[1] for r in self.con.execute(f'pragma table_info("{table}")')]
        return self._cols[table]

    def has(self, table: str, *cols: str) -> bool:
        return table in self.tables and all(c in self.columns(table) for c in cols)

    def query(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        try:
            return pd.read_sql_query(sql, self.con, params=params)
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
            raise ImportFormatError(f"{self.path}: cannot read the trace ({exc})") from None

    def select(self, table: str, wanted: list[str], where: str = "") -> pd.DataFrame:
        """Columns that exist, by name; absent ones come back as nulls, except the times and
        thread ids every event needs: a table without them is not an export nsys wrote."""
        present = [c for c in wanted if c in self.columns(table)]
        lost = [c for c in wanted if c in _EVENT_COLUMNS and c not in present]
        if lost and table in self.tables:
            raise ImportFormatError(
                f"{self.path}: table {table} has no column {', '.join(lost)} "
                "(renamed, or not an Nsight Systems export)"
            )
        cols = ", ".join(f'"{c}"' for c in present) or "NULL AS _none"
        df = self.query(f'select {cols} from "{table}" {where}')
        for c in wanted:
            if c not in df.columns:
                df[c] = None
        return df[wanted]


def _check_nsight(db: _Db) -> None:
    nsight_tables = {
        "NVTX_EVENTS",
        "CUPTI_ACTIVITY_KIND_KERNEL",
        "CUPTI_ACTIVITY_KIND_RUNTIME",
        "CUPTI_ACTIVITY_KIND_MEMCPY",
        "TARGET_INFO_GPU",
        "META_DATA_EXPORT",
        "EXPORT_META_DATA",
    }
    if "StringIds" not in db.tables or not (db.tables & nsight_tables):
        raise ImportFormatError(
            f"{db.path} is a SQLite database but not an Nsight Systems export "
            "(no StringIds with NVTX_EVENTS or CUPTI_ACTIVITY_KIND_* tables)"
        )


def _metadata(db: _Db) -> dict[str, str]:
    meta: dict[str, str] = {}
    for table in ("META_DATA_EXPORT", "EXPORT_META_DATA"):
        if db.has(table, "name", "value"):
            for name, value in db.con.execute(f'select name, value from "{table}"'):
                meta.setdefault(str(name), value)
    return meta


def _enum(db: _Db, table: str) -> dict[int, str]:
    if not db.has(table, "id", "name"):
        return {}
    return {int(i): str(n) for i, n in db.con.execute(f'select id, name from "{table}"')}


def _strings(db: _Db) -> pd.Series:
    df = db.query("select id, value from StringIds")
    return pd.Series(df["value"].to_numpy(dtype=object), index=df["id"].to_numpy(dtype=np.int64))


def _resolve_names(ids: pd.Series, strings: pd.Series) -> pd.Series:
    """StringIds ids (or inline strings in older schemas) -> text."""
    out = pd.Series([None] * len(ids), index=ids.index, dtype=object)
    numeric = pd.to_numeric(ids, errors="coerce")
    is_id = numeric.notna()
    if is_id.any():
        out[is_id] = numeric[is_id].astype(np.int64).map(strings).to_numpy(dtype=object)
    is_text = ids.notna() & ~is_id
    out[is_text] = ids[is_text].astype(str)
    return out


@dataclass
class Trace:
    """A parsed trace: ranges, GPU operations and facts, before projection results are written."""

    ranges: pd.DataFrame
    kernels: pd.DataFrame
    memcpy: pd.DataFrame
    facts: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _read_nvtx(
    db: _Db, strings: pd.Series, event_ids: dict[str, int], notes: list[str]
) -> pd.DataFrame:
    cols = [
        "start",
        "end",
        "eventType",
        "text",
        "textId",
        "globalTid",
        "endGlobalTid",
        "domainId",
        "category",
        *_PAYLOAD_COLUMNS,
    ]
    empty = pd.DataFrame(
        columns=[
            "name",
            "domain",
            "global_tid",
            "start_ns",
            "end_ns",
            "style",
            "category_name",
            "payload",
            "cross_thread",
            "domain_id",
        ]
    )
    if "NVTX_EVENTS" not in db.tables:
        notes.append("no NVTX_EVENTS table: the trace has no NVTX ranges")
        return empty
    push, startend = event_ids["NvtxPushPopRange"], event_ids["NvtxStartEndRange"]
    dom_type, cat_type = event_ids["NvtxDomainCreate"], event_ids["NvtxCategory"]
    df = db.select(
        "NVTX_EVENTS", cols, f"where eventType in ({push}, {startend}, {dom_type}, {cat_type})"
    )
    text = df["text"].astype(object)
    from_id = _resolve_names(df["textId"], strings) if df["textId"].notna().any() else None
    if from_id is not None:
        text = text.where(text.notna(), from_id)
    df["name"] = text
    domain_id = pd.to_numeric(df["domainId"], errors="coerce").fillna(0).astype(np.int64)
    df["domain_id"] = domain_id
    is_dom = df["eventType"] == dom_type
    domains = dict(zip(domain_id[is_dom], df.loc[is_dom, "name"]))
    is_cat = df["eventType"] == cat_type
    categories = {
        (int(d), int(c)): n
        for d, c, n in zip(domain_id[is_cat], df.loc[is_cat, "category"], df.loc[is_cat, "name"])
        if pd.notna(c)
    }
    r = df[df["eventType"].isin([push, startend])].copy()
    r["style"] = np.where(r["eventType"] == push, "pushpop", "startend")
    r["domain"] = r["domain_id"].map(lambda d: domains.get(int(d)) if d else None)
    r["category_name"] = [
        categories.get((int(d), int(c))) if pd.notna(c) else None
        for d, c in zip(r["domain_id"], r["category"])
    ]
    payload = pd.Series([None] * len(r), index=r.index, dtype=object)
    for col in _PAYLOAD_COLUMNS:
        payload = payload.where(payload.notna(), r[col].astype(object))
    r["payload"] = payload
    r["global_tid"] = pd.to_numeric(r["globalTid"], errors="coerce").astype("Int64")
    r["start_ns"] = pd.to_numeric(r["start"], errors="coerce").astype("Int64")
    r["end_ns"] = pd.to_numeric(r["end"], errors="coerce").astype("Int64")
    end_tid = pd.to_numeric(r["endGlobalTid"], errors="coerce").astype("Int64")
    r["cross_thread"] = (end_tid.notna() & (end_tid != r["global_tid"])).fillna(False).astype(bool)
    open_ranges = int(r["end_ns"].isna().sum())
    if open_ranges:
        notes.append(f"{open_ranges} NVTX ranges were never closed (no end); not projected")
    if int(r["cross_thread"].sum()):
        notes.append(
            f"{int(r['cross_thread'].sum())} start/end ranges end on another thread; not projected"
        )
    return r[empty.columns].reset_index(drop=True)


def _copy_kind_label(enum_name: str) -> str:
    """`CUDA_MEMCPY_KIND_HTOD` -> `HtoD`, `CUDA_MEMCPY_KIND_UVM_DTOH` -> `UVM DtoH`."""
    name = enum_name.removeprefix("CUDA_MEMCPY_KIND_")
    prefix = ""
    if name.startswith("UVM_"):
        prefix, name = "UVM ", name[4:]
    m = re.fullmatch(r"([A-Z])TO([A-Z])", name)
    if m:
        return f"{prefix}{m.group(1)}to{m.group(2)}"
    return prefix + name.title()


# Rows fetched from SQLite at a time: the GPU operations and their launches are streamed, so
# memory follows this batch, not the trace.
BATCH_ROWS = 100_000


@dataclass(frozen=True)
class _OpSource:
    """A table of GPU operations and the store table its rows go to."""

    source: str  # CUPTI_ACTIVITY_KIND_*
    table: str  # trace_kernels | trace_memcpy
    what: str  # kernel | memcpy | memset


_OP_SOURCES = (
    _OpSource("CUPTI_ACTIVITY_KIND_KERNEL", "trace_kernels", "kernel"),
    _OpSource("CUPTI_ACTIVITY_KIND_MEMCPY", "trace_memcpy", "memcpy"),
    _OpSource("CUPTI_ACTIVITY_KIND_MEMSET", "trace_memcpy", "memset"),
)
_OP_COLUMNS = ("start", "end", "deviceId", "streamId", "correlationId")
_KERNEL_NAMES = ("demangledName", "shortName", "mangledName")


def _op_sql(db: _Db, src: _OpSource, launch_by_process: bool) -> str:
    """One pass over a GPU op table: its rows (rowid order), the launching runtime call's
    thread and start, and for kernels the name resolved through StringIds.

    The launch is the first runtime call (lowest rowid) with the op's correlationId, in the op's
    process when the trace records processes; a call without thread or start launches nothing.
    Where several calls match, the join yields one row per call; the reader keeps the first row
    of each op (SQLite walks the matches of one op in rowid order)."""
    cols = db.columns(src.source)
    if "start" not in cols:  # an op's thread is its launch's: only its start is a must
        raise ImportFormatError(
            f"{db.path}: table {src.source} has no column start "
            "(renamed, or not an Nsight Systems export)"
        )

    def col(c: str) -> str:
        return f'k."{c}"' if c in cols else "NULL"

    select = ["k.rowid", *(col(c) for c in _OP_COLUMNS)]
    joins = []
    if db.has("CUPTI_ACTIVITY_KIND_RUNTIME", "correlationId", "globalTid", "start"):
        on = [
            'r."correlationId" = k."correlationId"',
            'r."globalTid" IS NOT NULL',
            'r."start" IS NOT NULL',
        ]
        if launch_by_process:
            on.append(f'(r."globalTid" >> 24) = ({col("globalPid")} >> 24)')
        joins.append(f"LEFT JOIN CUPTI_ACTIVITY_KIND_RUNTIME r ON {' AND '.join(on)}")
        select += ['r."globalTid"', 'r."start"']
    else:
        select += ["NULL", "NULL"]
    if src.what == "kernel":
        names = []
        for i, c in enumerate(_KERNEL_NAMES):
            if c in cols:
                # An id into StringIds (nsys 2021+), or the text itself (older schemas).
                joins.append(f'LEFT JOIN StringIds s{i} ON s{i}.id = k."{c}"')
                names.append(
                    f'CASE WHEN typeof(k."{c}") = \'text\' THEN k."{c}" ELSE s{i}.value END'
                )
        select.append(f"COALESCE({', '.join(names)})" if len(names) > 1 else (names or ["NULL"])[0])
    else:
        select += [col("bytes"), col("copyKind") if src.what == "memcpy" else "NULL"]
    return f'SELECT {", ".join(select)} FROM "{src.source}" k {" ".join(joins)}'


def _launch_by_process(db: _Db, sources: list[_OpSource]) -> bool:
    """Match launches within the op's process, unless no op records its process."""
    return any(
        db.con.execute(
            f'SELECT 1 FROM "{s.source}" WHERE "globalPid" IS NOT NULL LIMIT 1'
        ).fetchone()
        for s in sources
        if "globalPid" in db.columns(s.source)
    )


# --- projection ------------------------------------------------------------------------------


class Projection:
    """Ranges projected onto GPU ops that arrive in batches, in any order.

    A range [s, e] on thread t gets every op whose launching call started on t at a time in
    [s, e]: per range the number of such ops, the first op start and the last op end. Each batch
    is sorted by (thread, launch time), so a range's ops in it are one contiguous slice; the
    slices' min start / max end come from `np.minimum/maximum.reduceat` over the slices ordered by
    their first index (the in-between segments add at most one pass over the batch). Counts add
    up and minima and maxima combine, so batches give exactly the one-pass answer. Memory: a few
    arrays the length of the ranges, plus one batch.
    """

    def __init__(self, range_tid: np.ndarray, range_start: np.ndarray, range_end: np.ndarray):
        self.tid = np.asarray(range_tid, dtype=np.int64)
        self.start = np.asarray(range_start, dtype=np.int64)
        self.end = np.asarray(range_end, dtype=np.int64)
        n_r = len(self.start)
        self.n_ops = np.zeros(n_r, dtype=np.int64)
        self._first = np.full(n_r, np.iinfo(np.int64).max, dtype=np.int64)
        self._last = np.full(n_r, np.iinfo(np.int64).min, dtype=np.int64)
        order = np.argsort(self.tid, kind="stable")
        tids, cuts = np.unique(self.tid[order], return_index=True)
        self._by_tid = dict(zip(tids.tolist(), np.split(order, cuts[1:])))
        # Innermost containing range per op: ranges sorted by (thread, start, -end); for an op,
        # the candidate is the last range on its thread that started at or before the launch;
        # walking "previous range with a later end" pointers skips exactly the ranges that
        # cannot contain it.
        self._order = np.lexsort((-self.end, self.start, self.tid))
        self._r_tid = self.tid[self._order]
        self._r_start = self.start[self._order]
        self._r_end = self.end[self._order]
        prev = [-1] * n_r
        ends, r_tids = self._r_end.tolist(), self._r_tid.tolist()
        stack: list[int] = []
        last_tid = None
        for j in range(n_r):
            if r_tids[j] != last_tid:
                stack.clear()
                last_tid = r_tids[j]
            e = ends[j]
            while stack and ends[stack[-1]] <= e:
                stack.pop()
            if stack:
                prev[j] = stack[-1]
            stack.append(j)
        self._prev_greater = np.asarray(prev, dtype=np.int64)

    def add(
        self, op_tid: np.ndarray, op_launch: np.ndarray, op_start: np.ndarray, op_end: np.ndarray
    ) -> np.ndarray:
        """Count a batch of ops in; returns each op's innermost range index (-1: none)."""
        op_tid = np.asarray(op_tid, dtype=np.int64)
        op_launch = np.asarray(op_launch, dtype=np.int64)
        innermost = np.full(len(op_tid), -1, dtype=np.int64)
        if len(self.start) == 0 or len(op_tid) == 0:
            return innermost
        order = np.lexsort((op_launch, op_tid))
        s_tid, s_launch = op_tid[order], op_launch[order]
        s_start = np.asarray(op_start, dtype=np.int64)[order]
        s_end = np.asarray(op_end, dtype=np.int64)[order]
        rows, lo, hi = [], [], []
        for tid in np.unique(s_tid).tolist():
            ranges = self._by_tid.get(tid)
            if ranges is None:
                continue
            a = np.searchsorted(s_tid, tid, "left")
            b = np.searchsorted(s_tid, tid, "right")
            seg = s_launch[a:b]
            rows.append(ranges)
            lo.append(a + np.searchsorted(seg, self.start[ranges], "left"))
            hi.append(a + np.searchsorted(seg, self.end[ranges], "right"))
        if rows:
            r, lo_a, hi_a = np.concatenate(rows), np.concatenate(lo), np.concatenate(hi)
            has = hi_a > lo_a
            if has.any():
                r, lo_a, hi_a = r[has], lo_a[has], hi_a[has]
                q = np.argsort(lo_a, kind="stable")
                r, lo_a, hi_a = r[q], lo_a[q], hi_a[q]
                idx = np.empty(2 * len(r), dtype=np.int64)
                idx[0::2] = lo_a
                idx[1::2] = hi_a
                pad_start = np.append(s_start, s_start[-1])
                pad_end = np.append(s_end, s_end[-1])
                self.n_ops[r] += hi_a - lo_a
                self._first[r] = np.minimum(
                    self._first[r], np.minimum.reduceat(pad_start, idx)[0::2]
                )
                self._last[r] = np.maximum(self._last[r], np.maximum.reduceat(pad_end, idx)[0::2])

        cand = np.full(len(op_tid), -1, dtype=np.int64)
        r_tid, r_start, r_end = self._r_tid, self._r_start, self._r_end
        for tid in np.unique(op_tid).tolist():
            a = np.searchsorted(r_tid, tid, "left")
            b = np.searchsorted(r_tid, tid, "right")
            if a == b:
                continue
            omask = op_tid == tid
            c = a + np.searchsorted(r_start[a:b], op_launch[omask], "right") - 1
            c[c < a] = -1
            cand[omask] = c
        active = cand >= 0
        active[active] = r_end[cand[active]] < op_launch[active]
        while active.any():
            cand[active] = self._prev_greater[cand[active]]
            active = cand >= 0
            active[active] = r_end[cand[active]] < op_launch[active]
        innermost[cand >= 0] = self._order[cand[cand >= 0]]
        return innermost

    def spans(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(gpu_start, gpu_end, n_ops) per range; start and end are 0 where n_ops is 0."""
        has = self.n_ops > 0
        return np.where(has, self._first, 0), np.where(has, self._last, 0), self.n_ops.copy()


def project(
    range_tid: np.ndarray,
    range_start: np.ndarray,
    range_end: np.ndarray,
    op_tid: np.ndarray,
    op_launch: np.ndarray,
    op_start: np.ndarray,
    op_end: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Project ranges onto GPU ops in one batch (see `Projection`).

    Returns (gpu_start, gpu_end, n_ops, innermost range index per op (-1: none)).
    """
    projection = Projection(range_tid, range_start, range_end)
    innermost = projection.add(op_tid, op_launch, op_start, op_end)
    return (*projection.spans(), innermost)


def _depths(ranges: pd.DataFrame) -> np.ndarray:
    """Nesting depth among ranges of the same thread, domain and style (0 = outermost)."""
    depth = np.zeros(len(ranges), dtype=np.int64)
    if not len(ranges):
        return depth
    valid = ranges["start_ns"].notna().to_numpy()
    tid = ranges["global_tid"].fillna(-1).to_numpy(dtype=np.int64)
    dom = ranges["domain_id"].to_numpy(dtype=np.int64)
    style = (ranges["style"] == "pushpop").to_numpy(dtype=np.int64)
    start = ranges["start_ns"].fillna(0).to_numpy(dtype=np.int64)
    end = ranges["end_ns"].fillna(np.iinfo(np.int64).max).to_numpy(dtype=np.int64)
    order = np.lexsort((-end, start, style, dom, tid)).tolist()
    valid_l, tid_l, dom_l, style_l, end_l = (
        valid.tolist(),
        tid.tolist(),
        dom.tolist(),
        style.tolist(),
        end.tolist(),
    )
    out = [0] * len(order)
    stack: list[int] = []
    key = None
    for j in order:
        if not valid_l[j]:
            continue
        k = (tid_l[j], dom_l[j], style_l[j])
        if k != key:
            stack.clear()
            key = k
        e = end_l[j]
        while stack and stack[-1] < e:
            stack.pop()
        out[j] = len(stack)
        stack.append(e)
    depth[:] = out
    return depth


def _perflab_columns(ranges: pd.DataFrame) -> pd.DataFrame:
    """perflab_run / iteration / stage for perflab-domain ranges (nulls elsewhere)."""
    n = len(ranges)
    run_col: list = [None] * n
    iter_col: list = [None] * n
    stage_col: list = [None] * n
    mask = (ranges["domain"] == PERFLAB_DOMAIN).fillna(False).to_numpy(dtype=bool)
    idx = np.flatnonzero(mask).tolist()
    if not idx:
        return _perflab_frame(run_col, iter_col, stage_col)
    names = ranges["name"].to_numpy(dtype=object)
    cats = ranges["category_name"].to_numpy(dtype=object)
    payloads = ranges["payload"].to_numpy(dtype=object)
    big = np.iinfo(np.int64).max
    gtid = ranges["global_tid"].to_numpy(dtype=np.int64, na_value=-1)
    start = ranges["start_ns"].to_numpy(dtype=np.int64, na_value=-1)
    end = ranges["end_ns"].to_numpy(dtype=np.int64, na_value=big)
    has_start = ranges["start_ns"].notna().to_numpy(dtype=bool)
    kind: dict[int, str] = {}
    for i in idx:
        name = names[i] if isinstance(names[i], str) else None
        cat = cats[i] if isinstance(cats[i], str) else None
        it = _payload_int(payloads[i])
        m = _ITERATION_RE.match(name or "")
        if cat == "run":
            kind[i] = "run"
            run_col[i] = name
        elif name in STAGES or cat in STAGES:
            kind[i] = "stage"
            stage_col[i] = name if name in STAGES else cat
            iter_col[i] = it
        elif cat == "iteration" or m or it is not None:
            kind[i] = "iteration"
            iter_col[i] = it if it is not None else (int(m.group(1)) if m else None)
        elif name in PHASES or cat in PHASES:
            kind[i] = "phase"
        else:
            kind[i] = "run"
            run_col[i] = name
    # perflab's own annotator makes the iteration range the `e2e` stage range ("iteration N"),
    # so iteration ranges stand for e2e unless the trace also has explicit e2e ranges.
    if not any(stage_col[i] == "e2e" for i in idx):
        for i in idx:
            if kind[i] == "iteration":
                stage_col[i] = "e2e"
    # Inherit the enclosing run label and iteration, thread by thread (push/pop nesting).
    sub = np.asarray(idx, dtype=np.int64)
    order = sub[np.lexsort((-end[sub], start[sub], gtid[sub]))].tolist()
    stack: list[tuple[int, int]] = []
    tid = None
    for i in order:
        if not has_start[i]:
            continue
        e = int(end[i])
        if gtid[i] != tid:
            stack.clear()
            tid = gtid[i]
        while stack and stack[-1][0] < e:
            stack.pop()
        for _, j in reversed(stack):
            if run_col[i] is None and kind[j] == "run":
                run_col[i] = run_col[j]
            if iter_col[i] is None and kind[i] == "stage" and kind[j] == "iteration":
                iter_col[i] = iter_col[j]
            if run_col[i] is not None and (iter_col[i] is not None or kind[i] != "stage"):
                break
        stack.append((e, i))
    # A run range that is a start/end range on another thread: match by time within the process.
    run_ranges = [j for j in idx if kind[j] == "run" and end[j] != big and has_start[j]]
    if run_ranges:
        for i in idx:
            if run_col[i] is None and has_start[i]:
                pid = int(gtid[i]) >> 24
                inside = [
                    j
                    for j in run_ranges
                    if start[j] <= start[i] <= end[j] and int(gtid[j]) >> 24 == pid
                ]
                if inside:
                    run_col[i] = run_col[max(inside, key=lambda j: start[j])]
    return _perflab_frame(run_col, iter_col, stage_col)


def _perflab_frame(run_col: list, iter_col: list, stage_col: list) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "perflab_run": pd.Series(run_col, dtype=object),
            "iteration": pd.array(iter_col, dtype="Int64"),
            "stage": pd.Series(stage_col, dtype=object),
        }
    )


def _payload_int(value: object) -> int | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if np.isnan(f) or not f.is_integer():
        return None
    return int(f)


class _TraceFile:
    """An opened export: facts and NVTX ranges read (the ranges are held, a few hundred bytes
    each), GPU operations left to stream batch by batch (`stream_ops`), so memory grows with the
    ranges but not with the kernels, copies and runtime calls, which outnumber them."""

    def __init__(self, path: Path):
        self.path = path
        self.con = _connect(path)
        try:
            self._read()
        except BaseException:
            self.con.close()
            raise

    def close(self) -> None:
        self.con.close()

    def _read(self) -> None:
        db = self.db = _Db(self.con, self.path)
        _check_nsight(db)
        notes: list[str] = []
        meta = _metadata(db)
        enum = {v: k for k, v in _enum(db, "ENUM_NSYS_EVENT_TYPE").items()}
        event_ids = {name: enum.get(name, default) for name, default in _EVENT_TYPES.items()}
        ranges = _read_nvtx(db, _strings(db), event_ids, notes)
        self.sources = [s for s in _OP_SOURCES if s.source in db.tables]
        if not self.sources:
            notes.append(
                "no kernel, memcpy or memset tables: GPU work was not traced; no projection"
            )
        by_process = _launch_by_process(db, self.sources)
        # Built now, so a table without the columns every op needs is refused before anything is
        # written.
        self.sql = {s: _op_sql(db, s, by_process) for s in self.sources}
        copy_enum = _enum(db, "ENUM_CUDA_MEMCPY_OPER")
        self.copy_kinds = {i: _copy_kind_label(n) for i, n in copy_enum.items()} or _MEMCPY_KINDS
        session_start = None
        if db.has("TARGET_INFO_SESSION_START_TIME", "utcEpochNs"):
            row = db.con.execute("select utcEpochNs from TARGET_INFO_SESSION_START_TIME").fetchone()
            session_start = row[0] if row else None
        capture_host = None
        if db.has("META_DATA_CAPTURE", "name", "value"):
            row = db.con.execute(
                "select value from META_DATA_CAPTURE where name='DEVICE_DISPLAY_NAME'"
            ).fetchone()
            capture_host = row[0] if row else None

        # Everything about the ranges but the projection, which needs every GPU op.
        ranges["depth"] = _depths(ranges)
        pid, tid = split_global_tid(ranges["global_tid"].fillna(0).to_numpy(dtype=np.int64))
        known = ranges["global_tid"].notna().to_numpy(dtype=bool)
        ranges["pid"] = pd.array(np.where(known, pid, 0), dtype="Int64")
        ranges["tid"] = pd.array(np.where(known, tid, 0), dtype="Int64")
        ranges.loc[~known, ["pid", "tid"]] = pd.NA
        self.ranges = pd.concat([ranges, _perflab_columns(ranges)], axis=1)
        self.notes = notes
        self.facts = {
            "source": str(self.path),
            "nsys_version": meta.get("EXPORT_PRODUCT_VERSION"),
            "schema_version": meta.get("EXPORT_SCHEMA_VERSION"),
            "export_host": meta.get("EXPORT_HOST"),
            "capture_host": capture_host,
            "session_start_utc_ns": session_start,
            "gpus": _gpus(db),
            "tables": sorted(db.tables),
            "n_ranges": len(ranges),
            "n_pushpop": int((ranges["style"] == "pushpop").sum()),
            "n_startend": int((ranges["style"] == "startend").sum()),
            "domains": sorted({d for d in ranges["domain"].dropna().unique()}),
            "perflab_runs": sorted({r for r in self.ranges["perflab_run"].dropna().unique()}),
            "projection": "GPU op in range when its launching runtime call starts inside the "
            "range on the same thread (nvtx_gpu_proj_trace); span = first op start to last op end",
        }

    def stream_ops(self, run_id: str, label: str, sink: Callable[[str, pa.Table], None]) -> None:
        """Read the GPU ops a batch at a time, give each batch (a trace_kernels or trace_memcpy
        table, checked, with its innermost ranges) to `sink`, and project the ranges onto them;
        then complete `ranges` and the facts."""
        r = self.ranges
        # Projection over ranges that start and end on one thread and were closed.
        eligible = (r["end_ns"].notna() & r["global_tid"].notna() & ~r["cross_thread"]).to_numpy(
            dtype=bool
        )
        el_idx = np.flatnonzero(eligible)
        projection = Projection(
            r["global_tid"].to_numpy(dtype=np.int64, na_value=0)[el_idx],
            r["start_ns"].to_numpy(dtype=np.int64, na_value=0)[el_idx],
            r["end_ns"].to_numpy(dtype=np.int64, na_value=0)[el_idx],
        )
        try:
            names = pa.array(
                r["name"].to_numpy(dtype=object)[el_idx], type=pa.string(), from_pandas=True
            )
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise misfit(label, "trace_ranges", exc) from None
        counts = dict.fromkeys(("kernel", "memcpy", "memset", "unlaunched", "inside"), 0)
        counts["kernels_inside"] = 0
        for src in self.sources:
            try:
                cursor = self.con.execute(self.sql[src])
                last_rowid = None
                while rows := cursor.fetchmany(BATCH_ROWS):
                    batch, launch_tid, launch_start, last_rowid = self._batch(
                        src, rows, run_id, label, last_rowid
                    )
                    check_table(
                        label, src.table, batch.select(checked_columns(src.table)).to_pandas()
                    )
                    launched = launch_tid.is_valid().to_numpy(zero_copy_only=False) & (
                        launch_start.is_valid().to_numpy(zero_copy_only=False)
                    )
                    op_idx = np.flatnonzero(launched)
                    inner = projection.add(
                        pc.fill_null(launch_tid, 0).to_numpy()[op_idx],
                        pc.fill_null(launch_start, 0).to_numpy()[op_idx],
                        batch["start_ns"].to_numpy()[op_idx],
                        batch["end_ns"].to_numpy()[op_idx],
                    )
                    found = inner >= 0
                    range_idx = np.full(batch.num_rows, -1, dtype=np.int64)
                    range_idx[op_idx[found]] = inner[found]
                    ranges_of_ops = names.take(pa.array(range_idx, mask=range_idx < 0))
                    column = batch.schema.get_field_index("range")
                    sink(src.table, batch.set_column(column, "range", ranges_of_ops))
                    counts[src.what] += batch.num_rows
                    counts["unlaunched"] += batch.num_rows - len(op_idx)
                    counts["inside"] += int(found.sum())
                    if src.what == "kernel":
                        counts["kernels_inside"] += int(found.sum())
            except sqlite3.DatabaseError as exc:
                raise ImportFormatError(f"{self.path}: cannot read the trace ({exc})") from None

        gs, ge, n = projection.spans()
        n_ops_col = pd.Series(pd.NA, index=r.index, dtype="Int64")
        gstart_col = pd.Series(pd.NA, index=r.index, dtype="Int64")
        gend_col = pd.Series(pd.NA, index=r.index, dtype="Int64")
        if self.sources:
            n_ops_col.iloc[el_idx] = n
            has = n > 0
            gstart_col.iloc[el_idx[has]] = gs[has]
            gend_col.iloc[el_idx[has]] = ge[has]
        r["n_gpu_ops"] = n_ops_col
        r["gpu_start_ns"] = gstart_col
        r["gpu_end_ns"] = gend_col
        r["gpu_duration_ns"] = gend_col - gstart_col
        r["duration_ns"] = r["end_ns"] - r["start_ns"]
        self.facts.update(
            n_kernels=counts["kernel"],
            n_memcpy=counts["memcpy"],
            n_memset=counts["memset"],
            n_gpu_ops_without_launch=counts["unlaunched"],
            n_gpu_ops_in_ranges=counts["inside"],
            n_kernels_in_ranges=counts["kernels_inside"],
        )
        if counts["unlaunched"]:
            self.notes.append(
                f"{counts['unlaunched']} GPU operations have no launching runtime call in the trace"
            )

    def _batch(
        self, src: _OpSource, rows: list[tuple], run_id: str, label: str, last_rowid: int | None
    ) -> tuple[pa.Table, pa.Array, pa.Array, int]:
        """Fetched rows -> (the store table's rows, launch thread, launch start, last rowid)."""
        cols = list(zip(*rows))
        rowid = np.fromiter(cols[0], dtype=np.int64, count=len(rows))
        keep = np.empty(len(rowid), dtype=bool)
        keep[0] = rowid[0] != last_rowid
        keep[1:] = rowid[1:] != rowid[:-1]  # a second runtime call with the op's correlationId
        n = len(rowid)
        try:
            start, end, device, stream, corr, launch_tid, launch_start = (
                pa.array(cols[i], type=pa.int64()) for i in range(1, 8)
            )
            if src.what == "kernel":
                name = pa.array(cols[8], type=pa.string())
                extra = []
            else:
                name = pa.array(np.full(n, src.what, dtype=object), type=pa.string())
                kind = (
                    self._copy_kinds(cols[9])
                    if src.what == "memcpy"
                    else np.full(n, "memset", dtype=object)
                )
                extra = [pa.array(cols[8], type=pa.int64()), pa.array(kind, type=pa.string())]
            duration = pc.subtract_checked(end, start)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise misfit(label, src.table, exc) from None
        arrays = [
            pa.array(np.full(n, run_id, dtype=object), type=pa.string()),
            name,
            device,
            stream,
            start,
            end,
            duration,
            corr,
            *extra,
            pa.nulls(n, pa.string()),  # range: set once projected
        ]
        table = pa.Table.from_arrays(arrays, schema=store.schema(src.table))
        if not keep.all():
            keep_a = pa.array(keep)
            table, launch_tid, launch_start = (
                table.filter(keep_a),
                launch_tid.filter(keep_a),
                launch_start.filter(keep_a),
            )
        return table, launch_tid, launch_start, int(rowid[-1])

    def _copy_kinds(self, values: tuple) -> list:
        """copyKind ids -> labels (`kind N` for ids the trace does not name; null for non-numbers)."""
        labels: dict = {}
        out = []
        for v in values:
            if v not in labels:
                try:
                    k = float(v)
                except (TypeError, ValueError):
                    k = float("nan")
                labels[v] = None if np.isnan(k) else self.copy_kinds.get(int(k), f"kind {int(k)}")
            out.append(labels[v])
        return out


def load_trace(path: str | Path) -> Trace:
    """Read an `nsys export --type sqlite` file and project its ranges, in memory; writes
    nothing. (`perflab import nsys` streams the same reading into the store instead.)"""
    path = Path(path)
    trace = _TraceFile(path)
    parts: dict[str, list[pa.Table]] = {"trace_kernels": [], "trace_memcpy": []}
    try:
        trace.stream_ops("", str(path), lambda table, batch: parts[table].append(batch))
    finally:
        trace.close()

    def frame_of(table: str) -> pd.DataFrame:
        arrow = (
            pa.concat_tables(parts[table]) if parts[table] else store.schema(table).empty_table()
        )
        return arrow.drop_columns(["run_id"]).to_pandas()

    return Trace(
        ranges=trace.ranges,
        kernels=frame_of("trace_kernels"),
        memcpy=frame_of("trace_memcpy"),
        facts=trace.facts,
        notes=trace.notes,
    )


def _gpus(db: _Db) -> list[dict]:
    if "TARGET_INFO_GPU" not in db.tables:
        return []
    wanted = ["id", "name", "computeMajor", "computeMinor", "smCount", "totalMemory", "busLocation"]
    df = db.select("TARGET_INFO_GPU", wanted)
    return [
        {k: (None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)) for k, v in r.items()}
        for r in df.to_dict("records")
    ]


# --- .nsys-rep ------------------------------------------------------------------------------


def export_sqlite(rep: Path, folder: Path) -> Path:
    """Run `nsys export --type sqlite` on a report; ImportFormatError when nsys is not installed."""
    nsys = shutil.which("nsys")
    if nsys is None:
        raise ImportFormatError(
            f"{rep} is an Nsight Systems report; reading it needs the `nsys` command, which is not on "
            "PATH: install Nsight Systems, or run `nsys export --type sqlite` on the machine that "
            "has it and import the .sqlite file"
        )
    target = folder / (rep.stem + ".sqlite")
    cmd = [
        nsys,
        "export",
        "--type",
        "sqlite",
        "--force-overwrite",
        "true",
        "--output",
        str(target),
        str(rep),
    ]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImportFormatError(f"{rep}: `nsys export` did not run ({exc})") from None
    if proc.returncode != 0 or not target.exists():
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise ImportFormatError(f"{rep}: `nsys export --type sqlite` failed: {tail[0]}")
    return target


# --- runs -----------------------------------------------------------------------------------


def _range_rows(r: pd.DataFrame, run_id: str) -> pd.DataFrame:
    return frame(
        "trace_ranges",
        pd.DataFrame(
            {
                "run_id": run_id,
                "name": r["name"],
                "domain": r["domain"],
                "pid": r["pid"],
                "tid": r["tid"],
                "start_ns": r["start_ns"],
                "end_ns": r["end_ns"],
                "duration_ns": r["duration_ns"],
                "depth": r["depth"],
                "gpu_start_ns": r["gpu_start_ns"],
                "gpu_end_ns": r["gpu_end_ns"],
                "gpu_duration_ns": r["gpu_duration_ns"],
                "n_gpu_ops": r["n_gpu_ops"],
                "perflab_run": r["perflab_run"],
                "iteration": r["iteration"],
                "stage": r["stage"],
            }
        ),
    )


def read_nsys_run(
    path: str | Path,
    *,
    run_id: str | None = None,
    out: str | Path | None = None,
    study: str | None = None,
) -> ImportedRun:
    """Open one trace (.sqlite, or .nsys-rep through `nsys export`) as a run; writes nothing.

    Its facts and NVTX ranges are read here; its kernels, copies and memsets are streamed into
    the store, in row groups, when `commit` calls the run's `stage` (so a trace of any number of
    GPU operations imports in bounded memory). With `run_id` the trace tables are filed under
    that run; its `runs` row is written only when `out` holds none for it yet (so importing the
    trace of an existing perflab run keeps that run's own row).
    """
    path = Path(path)
    export_folder = None
    if path.suffix.lower() in (".nsys-rep", ".qdrep"):
        check_file(path, "Nsight Systems report")
        export_folder = tempfile.TemporaryDirectory(prefix="perflab-nsys-")
        try:
            trace = _TraceFile(export_sqlite(path, Path(export_folder.name)))
        except BaseException:
            export_folder.cleanup()
            raise
        trace.facts["source"] = str(path)
    else:
        trace = _TraceFile(path)
    rid = run_id or store.new_run_id()
    write_row = True
    if run_id is not None and out is not None and store.is_committed(Path(out), run_id):
        write_row = False
    gpus = trace.facts["gpus"]
    names = sorted({g["name"] for g in gpus if g.get("name")})
    start_ns = trace.facts.get("session_start_utc_ns")
    created = (
        datetime.fromtimestamp(start_ns / 1e9, tz=timezone.utc)
        if start_ns
        else datetime.now(timezone.utc)
    )
    label = f"nsys {path.stem}"
    row = run_row.new(
        rid,
        BACKEND,
        study=study,
        label=label,
        created_at=created,
        device=f"cuda:{gpus[0]['id']}"
        if len(gpus) == 1 and gpus[0].get("id") is not None
        else None,
        device_name=", ".join(names) or None,
        notes=trace.notes,
        meta=trace.facts,
    )
    run = ImportedRun(row=row, write_row=write_row)

    def stage(out: Path) -> list[store.TableWriter]:
        writers = {
            table: store.TableWriter(out, table, rid)
            for table in ("trace_kernels", "trace_memcpy", "trace_ranges")
        }
        try:
            trace.stream_ops(rid, label, lambda table, batch: writers[table].write(batch))
            ranges = _range_rows(trace.ranges, rid)
            check_table(label, "trace_ranges", ranges)
            for a in range(0, len(ranges), BATCH_ROWS):
                writers["trace_ranges"].write(
                    table_arrow(label, "trace_ranges", ranges[a : a + BATCH_ROWS])
                )
        except BaseException:
            for writer in writers.values():
                writer.discard()
            raise
        finally:
            trace.close()
            if export_folder is not None:
                export_folder.cleanup()
        run.row["notes"] = store.json_text(trace.notes)
        run.row["meta"] = store.json_text(trace.facts)
        return list(writers.values())

    run.stage = stage
    return run


def import_nsys(path: str | Path, out: str | Path, *, run_id: str | None = None) -> str:
    """Import an Nsight Systems trace into `out`; returns the run id (the given one, if any).

    `.sqlite` files are read directly; `.nsys-rep` files are first exported with `nsys export
    --type sqlite` (needs Nsight Systems on PATH). Malformed files raise ImportFormatError and
    write nothing.
    """
    return commit(out, [read_nsys_run(path, run_id=run_id, out=out)])[0]


__all__ = [
    "Projection",
    "import_nsys",
    "load_trace",
    "project",
    "read_nsys_run",
    "split_global_tid",
]
