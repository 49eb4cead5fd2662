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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from perflab import run_row, stages, store
from perflab.errors import ImportFormatError
from perflab.importers import ImportedRun, check_file, commit, frame

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


def _read_gpu_ops(
    db: _Db, strings: pd.Series, notes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    base = ["start", "end", "deviceId", "streamId", "correlationId", "globalPid"]
    kernels = pd.DataFrame(columns=[*base, "name"])
    have_gpu = False
    if "CUPTI_ACTIVITY_KIND_KERNEL" in db.tables:
        have_gpu = True
        k = db.select(
            "CUPTI_ACTIVITY_KIND_KERNEL", [*base, "demangledName", "shortName", "mangledName"]
        )
        name = _resolve_names(k["demangledName"], strings)
        for col in ("shortName", "mangledName"):
            if name.isna().any():
                name = name.where(name.notna(), _resolve_names(k[col], strings))
        k["name"] = name
        kernels = k[[*base, "name"]]
    copies = []
    if "CUPTI_ACTIVITY_KIND_MEMCPY" in db.tables:
        have_gpu = True
        m = db.select("CUPTI_ACTIVITY_KIND_MEMCPY", [*base, "bytes", "copyKind"])
        enum = _enum(db, "ENUM_CUDA_MEMCPY_OPER")
        kinds = {i: _copy_kind_label(n) for i, n in enum.items()} or _MEMCPY_KINDS
        kind_ids = pd.to_numeric(m["copyKind"], errors="coerce")
        m["copy_kind"] = [
            kinds.get(int(k), f"kind {int(k)}") if pd.notna(k) else None for k in kind_ids
        ]
        m["name"] = "memcpy"
        copies.append(m[[*base, "bytes", "copy_kind", "name"]])
    if "CUPTI_ACTIVITY_KIND_MEMSET" in db.tables:
        have_gpu = True
        z = db.select("CUPTI_ACTIVITY_KIND_MEMSET", [*base, "bytes"])
        z["copy_kind"] = "memset"
        z["name"] = "memset"
        copies.append(z[[*base, "bytes", "copy_kind", "name"]])
    memcpy = (
        pd.concat(copies, ignore_index=True)
        if copies
        else pd.DataFrame(columns=[*base, "bytes", "copy_kind", "name"])
    )
    if not have_gpu:
        notes.append("no kernel, memcpy or memset tables: GPU work was not traced; no projection")
    return kernels.reset_index(drop=True), memcpy.reset_index(drop=True), have_gpu


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


def _launches(db: _Db, ops: pd.DataFrame) -> pd.DataFrame:
    """For each GPU op (rows of `ops`), the launching runtime call's thread and start (or null)."""
    out = pd.DataFrame(index=ops.index, data={"launch_tid": pd.NA, "launch_start": pd.NA})
    if not len(ops) or not db.has(
        "CUPTI_ACTIVITY_KIND_RUNTIME", "correlationId", "globalTid", "start"
    ):
        return out.astype("Int64")
    api = db.select("CUPTI_ACTIVITY_KIND_RUNTIME", ["correlationId", "globalTid", "start"])
    api = api.dropna().astype(np.int64)
    api["proc"] = api["globalTid"].to_numpy(dtype=np.int64) >> 24
    left = pd.DataFrame(
        {
            "correlationId": pd.to_numeric(ops["correlationId"], errors="coerce").astype("Int64"),
            "proc": (pd.to_numeric(ops["globalPid"], errors="coerce").astype("Int64") // (1 << 24)),
            "_row": np.arange(len(ops)),
        }
    )
    if left["proc"].isna().all():
        api = api.drop_duplicates("correlationId")
        merged = left.merge(api.drop(columns="proc"), on="correlationId", how="left")
    else:
        api = api.drop_duplicates(["correlationId", "proc"])
        left["proc"] = left["proc"].astype("Int64")
        api["proc"] = api["proc"].astype("Int64")
        merged = left.merge(api, on=["correlationId", "proc"], how="left")
    merged = merged.sort_values("_row")
    out["launch_tid"] = merged["globalTid"].to_numpy()
    out["launch_start"] = merged["start"].to_numpy()
    return out.astype("Int64")


# --- projection ------------------------------------------------------------------------------


def project(
    range_tid: np.ndarray,
    range_start: np.ndarray,
    range_end: np.ndarray,
    op_tid: np.ndarray,
    op_launch: np.ndarray,
    op_start: np.ndarray,
    op_end: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Project ranges onto GPU ops launched from their thread, vectorised.

    A range [s, e] on thread t gets every op whose launching call started on t at a time in
    [s, e]. Ops are sorted by (thread, launch time), so each range's ops are one contiguous slice;
    the slice's min start / max end come from `np.minimum/maximum.reduceat` over the slices
    ordered by their first index (so the in-between segments add at most one pass over the ops).
    Returns (gpu_start, gpu_end, n_ops, innermost range index per op (-1: none)).
    """
    n_r = len(range_start)
    range_tid = np.asarray(range_tid, dtype=np.int64)
    range_start = np.asarray(range_start, dtype=np.int64)
    range_end = np.asarray(range_end, dtype=np.int64)
    op_tid = np.asarray(op_tid, dtype=np.int64)
    op_launch = np.asarray(op_launch, dtype=np.int64)
    gpu_start = np.zeros(n_r, dtype=np.int64)
    gpu_end = np.zeros(n_r, dtype=np.int64)
    n_ops = np.zeros(n_r, dtype=np.int64)
    innermost = np.full(len(op_tid), -1, dtype=np.int64)
    if n_r == 0 or len(op_tid) == 0:
        return gpu_start, gpu_end, n_ops, innermost

    order = np.lexsort((op_launch, op_tid))
    s_tid, s_launch = op_tid[order], op_launch[order]
    s_start = np.asarray(op_start, dtype=np.int64)[order]
    s_end = np.asarray(op_end, dtype=np.int64)[order]
    lo = np.empty(n_r, dtype=np.int64)
    hi = np.empty(n_r, dtype=np.int64)
    for tid in np.unique(range_tid):
        rmask = range_tid == tid
        a = np.searchsorted(s_tid, tid, "left")
        b = np.searchsorted(s_tid, tid, "right")
        seg = s_launch[a:b]
        lo[rmask] = a + np.searchsorted(seg, range_start[rmask], "left")
        hi[rmask] = a + np.searchsorted(seg, range_end[rmask], "right")
    n_ops = hi - lo
    has = n_ops > 0
    if has.any():
        q = np.flatnonzero(has)
        q = q[np.argsort(lo[q], kind="stable")]
        idx = np.empty(2 * len(q), dtype=np.int64)
        idx[0::2] = lo[q]
        idx[1::2] = hi[q]
        pad_start = np.append(s_start, s_start[-1])
        pad_end = np.append(s_end, s_end[-1])
        gpu_start[q] = np.minimum.reduceat(pad_start, idx)[0::2]
        gpu_end[q] = np.maximum.reduceat(pad_end, idx)[0::2]

    # Innermost containing range per op: ranges sorted by (thread, start, -end); for an op, the
    # candidate is the last range on its thread that started at or before the launch; walking
    # "previous range with a later end" pointers skips exactly the ranges that cannot contain it.
    r_order = np.lexsort((-range_end, range_start, range_tid))
    r_tid, r_start, r_end = range_tid[r_order], range_start[r_order], range_end[r_order]
    prev = [-1] * n_r
    ends, tids = r_end.tolist(), r_tid.tolist()
    stack: list[int] = []
    last_tid = None
    for j in range(n_r):
        if tids[j] != last_tid:
            stack.clear()
            last_tid = tids[j]
        e = ends[j]
        while stack and ends[stack[-1]] <= e:
            stack.pop()
        if stack:
            prev[j] = stack[-1]
        stack.append(j)
    prev_greater = np.asarray(prev, dtype=np.int64)
    cand = np.full(len(op_tid), -1, dtype=np.int64)
    for tid in np.unique(op_tid):
        omask = op_tid == tid
        a = np.searchsorted(r_tid, tid, "left")
        b = np.searchsorted(r_tid, tid, "right")
        if a == b:
            continue
        c = a + np.searchsorted(r_start[a:b], op_launch[omask], "right") - 1
        c[c < a] = -1
        cand[omask] = c
    active = cand >= 0
    active[active] = r_end[cand[active]] < op_launch[active]
    while active.any():
        cand[active] = prev_greater[cand[active]]
        active = cand >= 0
        active[active] = r_end[cand[active]] < op_launch[active]
    innermost[cand >= 0] = r_order[cand[cand >= 0]]
    return gpu_start, gpu_end, n_ops, innermost


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


def load_trace(path: str | Path) -> Trace:
    """Read an `nsys export --type sqlite` file and project its ranges; writes nothing."""
    path = Path(path)
    con = _connect(path)
    try:
        db = _Db(con, path)
        _check_nsight(db)
        notes: list[str] = []
        meta = _metadata(db)
        enum = {v: k for k, v in _enum(db, "ENUM_NSYS_EVENT_TYPE").items()}
        event_ids = {name: enum.get(name, default) for name, default in _EVENT_TYPES.items()}
        strings = _strings(db)
        ranges = _read_nvtx(db, strings, event_ids, notes)
        kernels, memcpy, have_gpu = _read_gpu_ops(db, strings, notes)
        ops = pd.concat(
            [
                kernels[["correlationId", "globalPid", "start", "end"]],
                memcpy[["correlationId", "globalPid", "start", "end"]],
            ],
            ignore_index=True,
        )
        launches = _launches(db, ops)
        gpus = _gpus(db)
        session_start = None
        if db.has("TARGET_INFO_SESSION_START_TIME", "utcEpochNs"):
            row = con.execute("select utcEpochNs from TARGET_INFO_SESSION_START_TIME").fetchone()
            session_start = row[0] if row else None
        capture_host = None
        if db.has("META_DATA_CAPTURE", "name", "value"):
            row = con.execute(
                "select value from META_DATA_CAPTURE where name='DEVICE_DISPLAY_NAME'"
            ).fetchone()
            capture_host = row[0] if row else None
        tables = sorted(db.tables)
    finally:
        con.close()

    # Projection over ranges that start and end on one thread and were closed.
    eligible = (
        ranges["end_ns"].notna() & ranges["global_tid"].notna() & ~ranges["cross_thread"]
    ).to_numpy(dtype=bool)
    el_idx = np.flatnonzero(eligible)
    launched = launches["launch_tid"].notna().to_numpy(dtype=bool)
    op_idx = np.flatnonzero(launched)
    gs, ge, n, inner = project(
        ranges["global_tid"].to_numpy(dtype=np.int64, na_value=0)[el_idx],
        ranges["start_ns"].to_numpy(dtype=np.int64, na_value=0)[el_idx],
        ranges["end_ns"].to_numpy(dtype=np.int64, na_value=0)[el_idx],
        launches["launch_tid"].to_numpy(dtype=np.int64, na_value=0)[op_idx],
        launches["launch_start"].to_numpy(dtype=np.int64, na_value=0)[op_idx],
        pd.to_numeric(ops["start"]).to_numpy(dtype=np.int64)[op_idx],
        pd.to_numeric(ops["end"]).to_numpy(dtype=np.int64)[op_idx],
    )
    out = ranges.copy()
    n_ops_col = pd.Series(pd.NA, index=out.index, dtype="Int64")
    gstart_col = pd.Series(pd.NA, index=out.index, dtype="Int64")
    gend_col = pd.Series(pd.NA, index=out.index, dtype="Int64")
    if have_gpu:
        n_ops_col.iloc[el_idx] = n
        has = n > 0
        gstart_col.iloc[el_idx[has]] = gs[has]
        gend_col.iloc[el_idx[has]] = ge[has]
    out["n_gpu_ops"] = n_ops_col
    out["gpu_start_ns"] = gstart_col
    out["gpu_end_ns"] = gend_col
    out["gpu_duration_ns"] = gend_col - gstart_col
    out["duration_ns"] = out["end_ns"] - out["start_ns"]
    out["depth"] = _depths(out)
    pid, tid = split_global_tid(out["global_tid"].fillna(0).to_numpy(dtype=np.int64))
    known = out["global_tid"].notna().to_numpy(dtype=bool)
    out["pid"] = pd.array(np.where(known, pid, 0), dtype="Int64")
    out["tid"] = pd.array(np.where(known, tid, 0), dtype="Int64")
    out.loc[~known, ["pid", "tid"]] = pd.NA
    out = pd.concat([out, _perflab_columns(out)], axis=1)

    # Innermost range name per GPU op.
    names = out["name"].to_numpy(dtype=object)
    range_of_op = np.full(len(ops), None, dtype=object)
    found = inner >= 0
    range_of_op[op_idx[found]] = names[el_idx[inner[found]]]
    nk = len(kernels)
    kernels = kernels.assign(range=range_of_op[:nk])
    memcpy = memcpy.assign(range=range_of_op[nk:])

    n_inside = int(np.count_nonzero(found))
    facts = {
        "source": str(path),
        "nsys_version": meta.get("EXPORT_PRODUCT_VERSION"),
        "schema_version": meta.get("EXPORT_SCHEMA_VERSION"),
        "export_host": meta.get("EXPORT_HOST"),
        "capture_host": capture_host,
        "session_start_utc_ns": session_start,
        "gpus": gpus,
        "tables": tables,
        "n_ranges": len(out),
        "n_pushpop": int((out["style"] == "pushpop").sum()),
        "n_startend": int((out["style"] == "startend").sum()),
        "n_kernels": len(kernels),
        "n_memcpy": int((memcpy["name"] == "memcpy").sum()),
        "n_memset": int((memcpy["name"] == "memset").sum()),
        "n_gpu_ops_without_launch": int(len(ops) - len(op_idx)),
        "n_gpu_ops_in_ranges": n_inside,
        "n_kernels_in_ranges": int(np.count_nonzero(found & (op_idx < nk))),
        "domains": sorted({d for d in out["domain"].dropna().unique()}),
        "perflab_runs": sorted({r for r in out["perflab_run"].dropna().unique()}),
        "projection": "GPU op in range when its launching runtime call starts inside the range "
        "on the same thread (nvtx_gpu_proj_trace); span = first op start to last op end",
    }
    if len(ops) - len(op_idx):
        notes.append(
            f"{len(ops) - len(op_idx)} GPU operations have no launching runtime call in the trace"
        )
    return Trace(ranges=out, kernels=kernels, memcpy=memcpy, facts=facts, notes=notes)


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


def _trace_tables(trace: Trace, run_id: str) -> dict[str, pd.DataFrame]:
    r = trace.ranges
    ranges = pd.DataFrame(
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
    )

    def ops(df: pd.DataFrame, extra: list[str]) -> pd.DataFrame:
        start = pd.to_numeric(df["start"]).astype("Int64")
        end = pd.to_numeric(df["end"]).astype("Int64")
        data = {
            "run_id": run_id,
            "name": df["name"],
            "device": df["deviceId"],
            "stream": df["streamId"],
            "start_ns": start,
            "end_ns": end,
            "duration_ns": end - start,
            "correlation_id": df["correlationId"],
            "range": df["range"],
        }
        for col in extra:
            data[col] = df[col]
        return pd.DataFrame(data)

    return {
        "trace_ranges": frame("trace_ranges", ranges),
        "trace_kernels": frame("trace_kernels", ops(trace.kernels, [])),
        "trace_memcpy": frame("trace_memcpy", ops(trace.memcpy, ["bytes", "copy_kind"])),
    }


def read_nsys_run(
    path: str | Path,
    *,
    run_id: str | None = None,
    out: str | Path | None = None,
    study: str | None = None,
) -> ImportedRun:
    """Parse one trace (.sqlite, or .nsys-rep through `nsys export`) into a run; writes nothing.

    With `run_id` the trace tables are filed under that run; its `runs` row is written only when
    `out` holds none for it yet (so importing the trace of an existing perflab run keeps that
    run's own row).
    """
    path = Path(path)
    if path.suffix.lower() in (".nsys-rep", ".qdrep"):
        check_file(path, "Nsight Systems report")
        with tempfile.TemporaryDirectory(prefix="perflab-nsys-") as tmp:
            trace = load_trace(export_sqlite(path, Path(tmp)))
        trace.facts["source"] = str(path)
    else:
        trace = load_trace(path)
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
    row = run_row.new(
        rid,
        BACKEND,
        study=study,
        label=f"nsys {path.stem}",
        created_at=created,
        device=f"cuda:{gpus[0]['id']}"
        if len(gpus) == 1 and gpus[0].get("id") is not None
        else None,
        device_name=", ".join(names) or None,
        notes=trace.notes,
        meta=trace.facts,
    )
    return ImportedRun(row=row, tables=_trace_tables(trace, rid), write_row=write_row)


def import_nsys(path: str | Path, out: str | Path, *, run_id: str | None = None) -> str:
    """Import an Nsight Systems trace into `out`; returns the run id (the given one, if any).

    `.sqlite` files are read directly; `.nsys-rep` files are first exported with `nsys export
    --type sqlite` (needs Nsight Systems on PATH). Malformed files raise ImportFormatError and
    write nothing.
    """
    return commit(out, [read_nsys_run(path, run_id=run_id, out=out)])[0]


__all__ = [
    "import_nsys",
    "load_trace",
    "project",
    "read_nsys_run",
    "split_global_tid",
]
