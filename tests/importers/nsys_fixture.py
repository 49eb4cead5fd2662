"""Build small Nsight Systems-style SQLite traces from the documented schema (no GPU, no nsys).

The column names follow the Nsight Systems SQLite schema reference (StringIds, NVTX_EVENTS,
CUPTI_ACTIVITY_KIND_RUNTIME / KERNEL / MEMCPY / MEMSET, ENUM_*, TARGET_INFO_GPU, META_DATA_EXPORT).
`build_trace` lays out a perflab-style run whose GPU times are known and returns them, so tests
compare the importer's projection with numbers fixed here, not computed by the importer.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PID = 4242
MAIN_TID = 4242
WORKER_TID = 4250
PERFLAB_DOMAIN_ID = 1
RUN_LABEL = "synthetic resnet18 bs4 fp32"

SCHEMA = """
CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE ENUM_NSYS_EVENT_TYPE (id INTEGER PRIMARY KEY, name TEXT, label TEXT);
CREATE TABLE ENUM_CUDA_MEMCPY_OPER (id INTEGER PRIMARY KEY, name TEXT, label TEXT);
CREATE TABLE META_DATA_EXPORT (name TEXT, value TEXT);
CREATE TABLE TARGET_INFO_SESSION_START_TIME (utcEpochNs INTEGER, utcTime TEXT, localTime TEXT);
CREATE TABLE TARGET_INFO_GPU (vmId INTEGER, id INTEGER, name TEXT, busLocation TEXT,
    isDiscrete INTEGER, l2CacheSize INTEGER, totalMemory INTEGER, memoryBandwidth INTEGER,
    clockRate INTEGER, smCount INTEGER, pwGpuId INTEGER, uuid TEXT, luid INTEGER, chipName TEXT,
    cuDevice INTEGER, computeMajor INTEGER, computeMinor INTEGER, smMajor INTEGER, smMinor INTEGER);
CREATE TABLE NVTX_EVENTS (start INTEGER NOT NULL, end INTEGER, eventType INTEGER NOT NULL,
    rangeId INTEGER, category INTEGER, color INTEGER, text TEXT, globalTid INTEGER,
    endGlobalTid INTEGER, textId INTEGER REFERENCES StringIds(id), domainId INTEGER,
    uint64Value INTEGER, int64Value INTEGER, doubleValue REAL, uint32Value INTEGER,
    int32Value INTEGER, floatValue REAL, jsonTextId INTEGER, jsonText TEXT, binaryData TEXT,
    eventId INTEGER PRIMARY KEY);
CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (start INTEGER NOT NULL, end INTEGER NOT NULL,
    eventClass INTEGER NOT NULL, globalTid INTEGER, correlationId INTEGER,
    nameId INTEGER NOT NULL REFERENCES StringIds(id), returnValue INTEGER NOT NULL, callchainId INTEGER);
CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INTEGER NOT NULL, end INTEGER NOT NULL,
    deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, greenContextId INTEGER,
    streamId INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER,
    demangledName INTEGER NOT NULL, shortName INTEGER NOT NULL, mangledName INTEGER,
    launchType INTEGER, cacheConfig INTEGER, registersPerThread INTEGER NOT NULL,
    gridX INTEGER NOT NULL, gridY INTEGER NOT NULL, gridZ INTEGER NOT NULL,
    blockX INTEGER NOT NULL, blockY INTEGER NOT NULL, blockZ INTEGER NOT NULL,
    staticSharedMemory INTEGER NOT NULL, dynamicSharedMemory INTEGER NOT NULL,
    localMemoryPerThread INTEGER NOT NULL, localMemoryTotal INTEGER NOT NULL,
    gridId INTEGER NOT NULL, sharedMemoryExecuted INTEGER, graphNodeId INTEGER,
    sharedMemoryLimitConfig INTEGER);
CREATE TABLE CUPTI_ACTIVITY_KIND_MEMCPY (start INTEGER NOT NULL, end INTEGER NOT NULL,
    deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, greenContextId INTEGER,
    streamId INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER, bytes INTEGER NOT NULL,
    copyKind INTEGER NOT NULL, deprecatedSrcId INTEGER, srcKind INTEGER, dstKind INTEGER,
    srcDeviceId INTEGER, srcContextId INTEGER, dstDeviceId INTEGER, dstContextId INTEGER,
    migrationCause INTEGER, graphNodeId INTEGER, virtualAddress INTEGER);
CREATE TABLE CUPTI_ACTIVITY_KIND_MEMSET (start INTEGER NOT NULL, end INTEGER NOT NULL,
    deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, greenContextId INTEGER,
    streamId INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER, value INTEGER NOT NULL,
    bytes INTEGER NOT NULL, graphNodeId INTEGER, memKind INTEGER);
"""

EVENT_TYPES = [
    (33, "NvtxCategory"),
    (34, "NvtxMark"),
    (59, "NvtxPushPopRange"),
    (60, "NvtxStartEndRange"),
    (75, "NvtxDomainCreate"),
]
MEMCPY_KINDS = [
    (0, "CUDA_MEMCPY_KIND_UNKNOWN"),
    (1, "CUDA_MEMCPY_KIND_HTOD"),
    (2, "CUDA_MEMCPY_KIND_DTOH"),
    (8, "CUDA_MEMCPY_KIND_DTOD"),
]
STAGE_CATEGORIES = {"h2d": 1, "compute": 2, "d2h": 3, "postprocess": 4}
ITERATION_CATEGORY = 5


def global_tid(pid: int, tid: int) -> int:
    """<hw:8><vm:8><pid:24><tid:24>, hardware and VM ids 1 to show the bits above PID are kept apart."""
    return (1 << 56) | (1 << 48) | (pid << 24) | tid


def global_pid(pid: int) -> int:
    return (1 << 56) | (1 << 48) | (pid << 24)


@dataclass
class Expected:
    """Known answers of a built trace."""

    iterations: int
    # (iteration, stage) -> (gpu_duration_ns, n_gpu_ops, range duration_ns)
    stages: dict[tuple[int, str], tuple[int | None, int, int]] = field(default_factory=dict)
    n_kernels: int = 0
    n_kernels_in_ranges: int = 0
    outside_kernel_corr: int = 0
    worker_kernel_corr: int = 0
    kernel_ranges: dict[int, str | None] = field(default_factory=dict)  # correlationId -> range
    worker_range_ops: int = 0
    run_range_ops: int = 0
    iteration_gpu_span: dict[int, int] = field(default_factory=dict)


class _Builder:
    def __init__(self, con: sqlite3.Connection):
        self.con = con
        self.strings: dict[str, int] = {}
        self.corr = 0

    def sid(self, text: str) -> int:
        if text not in self.strings:
            self.strings[text] = len(self.strings) + 1
            self.con.execute("insert into StringIds values (?, ?)", (self.strings[text], text))
        return self.strings[text]

    def nvtx(
        self,
        start,
        end,
        text=None,
        *,
        registered=None,
        event_type=59,
        tid=MAIN_TID,
        end_tid=None,
        domain=0,
        category=None,
        payload=None,
        payload_col="int64Value",
    ):
        cols = {
            "start": start,
            "end": end,
            "eventType": event_type,
            "text": text,
            "textId": self.sid(registered) if registered else None,
            "globalTid": global_tid(PID, tid),
            "endGlobalTid": global_tid(PID, end_tid) if end_tid else None,
            "domainId": domain,
            "category": category,
        }
        if payload is not None:
            cols[payload_col] = payload
        names = ", ".join(f'"{k}"' for k in cols)
        self.con.execute(
            f"insert into NVTX_EVENTS ({names}) values ({', '.join('?' * len(cols))})",
            tuple(cols.values()),
        )

    def api(self, start, end, name, tid=MAIN_TID) -> int:
        self.corr += 1
        self.con.execute(
            "insert into CUPTI_ACTIVITY_KIND_RUNTIME values (?, ?, 0, ?, ?, ?, 0, NULL)",
            (start, end, global_tid(PID, tid), self.corr, self.sid(name)),
        )
        return self.corr

    def kernel(self, start, end, corr, name, short):
        self.con.execute(
            "insert into CUPTI_ACTIVITY_KIND_KERNEL (start, end, deviceId, contextId, streamId, "
            "correlationId, globalPid, demangledName, shortName, registersPerThread, gridX, gridY, "
            "gridZ, blockX, blockY, blockZ, staticSharedMemory, dynamicSharedMemory, "
            "localMemoryPerThread, localMemoryTotal, gridId) "
            "values (?, ?, 0, 1, 7, ?, ?, ?, ?, 32, 1, 1, 1, 128, 1, 1, 0, 0, 0, 0, 1)",
            (start, end, corr, global_pid(PID), self.sid(name), self.sid(short)),
        )

    def memcpy(self, start, end, corr, kind, nbytes):
        self.con.execute(
            "insert into CUPTI_ACTIVITY_KIND_MEMCPY (start, end, deviceId, contextId, streamId, "
            "correlationId, globalPid, bytes, copyKind) values (?, ?, 0, 1, 7, ?, ?, ?, ?)",
            (start, end, corr, global_pid(PID), nbytes, kind),
        )

    def memset(self, start, end, corr, nbytes):
        self.con.execute(
            "insert into CUPTI_ACTIVITY_KIND_MEMSET (start, end, deviceId, contextId, streamId, "
            "correlationId, globalPid, value, bytes) values (?, ?, 0, 1, 7, ?, ?, 0, ?)",
            (start, end, corr, global_pid(PID), nbytes),
        )


def _base(con: sqlite3.Connection, *, enums: bool) -> _Builder:
    con.executescript(SCHEMA)
    if enums:
        con.executemany(
            "insert into ENUM_NSYS_EVENT_TYPE values (?, ?, ?)", [(i, n, n) for i, n in EVENT_TYPES]
        )
        con.executemany(
            "insert into ENUM_CUDA_MEMCPY_OPER values (?, ?, ?)",
            [(i, n, n) for i, n in MEMCPY_KINDS],
        )
    con.executemany(
        "insert into META_DATA_EXPORT values (?, ?)",
        [
            ("EXPORT_PRODUCT_NAME", "NVIDIA Nsight Systems"),
            ("EXPORT_PRODUCT_VERSION", "2099.1.0.1"),
            ("EXPORT_SCHEMA_VERSION", "3.99.0"),
        ],
    )
    con.execute("insert into TARGET_INFO_SESSION_START_TIME values (1700000000000000000, '', '')")
    con.execute(
        "insert into TARGET_INFO_GPU (vmId, id, name, totalMemory, smCount, computeMajor, "
        "computeMinor) values (0, 0, 'Test GPU 9000', 80000000000, 132, 9, 0)"
    )
    return _Builder(con)


def build_trace(path: Path, n_iterations: int = 3, *, enums: bool = True) -> Expected:
    """A perflab-style run: run range > iteration ranges > stage ranges, with known GPU work.

    Per iteration i (base = 100_000 * (i + 1) ns):
      h2d     [base+1_000, base+11_000]: cudaMemcpyAsync -> HtoD copy of 4_000 + 100 i ns
      compute [base+20_000, base+60_000]: cudaMemsetAsync + 2 cudaLaunchKernel ->
              memset [base+25_000, +1_000], kernel A [base+30_000, +10_000 + 1_000 i],
              kernel B starting 2_000 after A ends, 5_000 long
      d2h     [base+65_000, base+80_000]: cudaMemcpyAsync -> DtoH copy of 3_000 ns
      postprocess [base+81_000, base+89_000]: no GPU work
    Also: a kernel launched before any range; a worker-thread range whose own kernel is launched
    while the main thread's compute stage of iteration 0 is open (it must not count there); a
    range that ends on another thread; a range that never ends.
    """
    path = Path(path)
    con = sqlite3.connect(path)
    b = _base(con, enums=enums)
    exp = Expected(iterations=n_iterations)
    b.nvtx(-5_000, None, "perflab", event_type=75, domain=PERFLAB_DOMAIN_ID)
    for stage, cat in [*STAGE_CATEGORIES.items(), ("iteration", ITERATION_CATEGORY)]:
        b.nvtx(-4_000, None, stage, event_type=33, domain=PERFLAB_DOMAIN_ID, category=cat)

    corr = b.api(1_000, 1_500, "cudaLaunchKernel_v7000")
    b.kernel(2_000, 3_000, corr, "void outside_kernel<float>(float*)", "outside_kernel")
    exp.outside_kernel_corr = corr
    exp.kernel_ranges[corr] = None
    exp.n_kernels += 1

    run_end = 100_000 * (n_iterations + 1) + 95_000
    b.nvtx(10_000, run_end, RUN_LABEL, domain=PERFLAB_DOMAIN_ID)  # inline text, no category
    run_ops = 0
    for i in range(n_iterations):
        base = 100_000 * (i + 1)
        if i == 1:  # iteration number only in the text, as a fallback
            b.nvtx(base, base + 90_000, registered=f"iteration {i}", domain=PERFLAB_DOMAIN_ID)
        else:  # as perflab.nvtx writes it: category "iteration", payload = the iteration
            b.nvtx(
                base,
                base + 90_000,
                registered=f"iteration {i}",
                domain=PERFLAB_DOMAIN_ID,
                category=ITERATION_CATEGORY,
                payload=i,
                payload_col="uint64Value" if i == 2 else "int64Value",
            )
        stage_ranges = {
            "h2d": (base + 1_000, base + 11_000),
            "compute": (base + 20_000, base + 60_000),
            "d2h": (base + 65_000, base + 80_000),
            "postprocess": (base + 81_000, base + 89_000),
        }
        for stage, (s, e) in stage_ranges.items():
            # iteration 1's stages carry no payload: their iteration comes from the enclosing range
            b.nvtx(
                s,
                e,
                registered=stage,
                domain=PERFLAB_DOMAIN_ID,
                category=STAGE_CATEGORIES[stage],
                payload=None if i == 1 else i,
            )
        # h2d
        c = b.api(base + 2_000, base + 3_000, "cudaMemcpyAsync_v3020")
        h2d_ns = 4_000 + 100 * i
        b.memcpy(base + 5_000, base + 5_000 + h2d_ns, c, 1, 602_112)
        exp.stages[(i, "h2d")] = (h2d_ns, 1, 10_000)
        # compute
        c = b.api(base + 20_500, base + 20_800, "cudaMemsetAsync_v3020")
        b.memset(base + 25_000, base + 26_000, c, 4096)
        a_start, a_end = base + 30_000, base + 30_000 + 10_000 + 1_000 * i
        c = b.api(base + 21_000, base + 21_500, "cudaLaunchKernel_v7000")
        b.kernel(a_start, a_end, c, "void conv_kernel<float>(float const*, float*)", "conv_kernel")
        exp.kernel_ranges[c] = "compute"
        b_start, b_end = a_end + 2_000, a_end + 7_000
        c = b.api(base + 22_000, base + 22_500, "cudaLaunchKernel_v7000")
        b.kernel(b_start, b_end, c, "void relu_kernel<float>(float*)", "relu_kernel")
        exp.kernel_ranges[c] = "compute"
        exp.n_kernels += 2
        exp.n_kernels_in_ranges += 2
        exp.stages[(i, "compute")] = (b_end - (base + 25_000), 3, 40_000)
        # d2h
        c = b.api(base + 66_000, base + 66_500, "cudaMemcpyAsync_v3020")
        b.memcpy(base + 70_000, base + 73_000, c, 2, 4_000)
        exp.stages[(i, "d2h")] = (3_000, 1, 15_000)
        exp.stages[(i, "postprocess")] = (None, 0, 8_000)
        exp.iteration_gpu_span[i] = base + 73_000 - (base + 5_000)
        run_ops += 5

    # Worker thread: its kernel is launched while the main thread's iteration-0 compute is open.
    b.nvtx(100_000, 400_000, "worker loop", event_type=60, tid=WORKER_TID)
    c = b.api(130_000, 131_000, "cudaLaunchKernel_v7000", tid=WORKER_TID)
    b.kernel(140_000, 141_000, c, "void worker_kernel(int)", "worker_kernel")
    exp.worker_kernel_corr = c
    exp.kernel_ranges[c] = "worker loop"
    exp.n_kernels += 1
    exp.n_kernels_in_ranges += 1
    exp.worker_range_ops = 1
    exp.run_range_ops = run_ops
    # A start/end range that ends on another thread, and one never closed: neither is projected.
    b.nvtx(150_000, 160_000, "handoff", event_type=60, tid=MAIN_TID, end_tid=WORKER_TID)
    b.nvtx(run_end + 1_000, None, "never closed", tid=MAIN_TID)
    con.commit()
    con.close()
    return exp


def build_without_nvtx(path: Path) -> None:
    """GPU activity only, like `nsys profile -t cuda` (no NVTX_EVENTS table at all)."""
    con = sqlite3.connect(path)
    b = _base(con, enums=False)
    con.execute("drop table NVTX_EVENTS")
    c = b.api(1_000, 2_000, "cudaLaunchKernel_v7000")
    b.kernel(3_000, 4_000, c, "k()", "k")
    c = b.api(5_000, 6_000, "cudaMemcpy_v3020")
    b.memcpy(7_000, 9_000, c, 2, 64)
    con.commit()
    con.close()


def build_without_gpu(path: Path) -> None:
    """NVTX only, like `nsys profile -t nvtx` (no CUPTI tables)."""
    con = sqlite3.connect(path)
    b = _base(con, enums=True)
    for t in (
        "CUPTI_ACTIVITY_KIND_RUNTIME",
        "CUPTI_ACTIVITY_KIND_KERNEL",
        "CUPTI_ACTIVITY_KIND_MEMCPY",
        "CUPTI_ACTIVITY_KIND_MEMSET",
    ):
        con.execute(f"drop table {t}")
    b.nvtx(0, 100, "outer")
    b.nvtx(10, 20, "inner")
    con.commit()
    con.close()


def build_large(path: Path, n_iterations: int) -> int:
    """A trace with 4 * n_iterations + 1 ranges (a run, iterations, 3 stages each) and one kernel
    per stage; returns the number of ranges. Inserted in bulk so building stays fast."""
    con = sqlite3.connect(path)
    b = _base(con, enums=True)
    b.nvtx(-5_000, None, "perflab", event_type=75, domain=PERFLAB_DOMAIN_ID)
    stage_ids = {s: b.sid(s) for s in ("h2d", "compute", "d2h")}
    it_ids = [b.sid(f"iteration {i}") for i in range(n_iterations)]
    g = global_tid(PID, MAIN_TID)
    step = 10_000
    base = np.arange(n_iterations, dtype=np.int64) * step + 1_000_000

    def push_pop(start: int, end: int, text=None, text_id=None, iteration=None) -> tuple:
        """A push/pop range (eventType 59) of the main thread in perflab's domain, in the
        column order of the insert below."""
        return (
            start,
            end,
            59,
            None,
            None,
            None,
            text,
            g,
            None,
            text_id,
            PERFLAB_DOMAIN_ID,
            None,
            iteration,
        )

    rows = [push_pop(0, int(base[-1] + 2 * step), text=RUN_LABEL)]
    for i in range(n_iterations):
        s = int(base[i])
        rows.append(push_pop(s, s + 9_000, text_id=it_ids[i], iteration=i))
        for k, stage in enumerate(("h2d", "compute", "d2h")):
            start = s + 100 + 3_000 * k
            rows.append(push_pop(start, start + 2_800, text_id=stage_ids[stage], iteration=i))
    con.executemany(
        "insert into NVTX_EVENTS (start, end, eventType, rangeId, category, color, text, globalTid, "
        "endGlobalTid, textId, domainId, uint64Value, int64Value) values "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    name = b.sid("cudaLaunchKernel_v7000")
    kname = b.sid("kernel")
    api, kern = [], []
    corr = 0
    for i in range(n_iterations):
        s = int(base[i])
        for k in range(3):
            corr += 1
            a = s + 200 + 3_000 * k
            api.append((a, a + 100, 0, g, corr, name, 0, None))
            kern.append(
                (
                    a + 500,
                    a + 1_500,
                    0,
                    1,
                    7,
                    corr,
                    global_pid(PID),
                    kname,
                    kname,
                    32,
                    1,
                    1,
                    1,
                    1,
                    1,
                    1,
                    0,
                    0,
                    0,
                    0,
                    1,
                )
            )
    con.executemany("insert into CUPTI_ACTIVITY_KIND_RUNTIME values (?, ?, ?, ?, ?, ?, ?, ?)", api)
    con.executemany(
        "insert into CUPTI_ACTIVITY_KIND_KERNEL (start, end, deviceId, contextId, streamId, "
        "correlationId, globalPid, demangledName, shortName, registersPerThread, gridX, gridY, gridZ, "
        "blockX, blockY, blockZ, staticSharedMemory, dynamicSharedMemory, localMemoryPerThread, "
        "localMemoryTotal, gridId) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        kern,
    )
    con.commit()
    con.close()
    return len(rows)
