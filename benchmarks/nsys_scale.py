"""How long `perflab import nsys` takes on a large Nsight Systems export, and its peak memory.

Generates an Nsight-shaped SQLite (the tables and columns the importer reads, as in the Nsight
Systems SQLite schema reference): one perflab run range, then per iteration an iteration range
and three stage ranges (h2d, compute, d2h), each stage launching its share of the kernels from
the main thread through cudaLaunchKernel runtime calls. Then runs `perflab import nsys` in a
fresh child process and prints one line with its time and peak RSS:

    python benchmarks/nsys_scale.py [--kernels 1e7] [--ranges 1e6] [--file PATH]

--ranges counts the iteration and stage ranges (4 per iteration); kernels are spread evenly over
the stage ranges. The export is generated once and reused while its recorded shape matches.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import perflab_cli, report_resources

SCHEMA = """
CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE ENUM_NSYS_EVENT_TYPE (id INTEGER PRIMARY KEY, name TEXT, label TEXT);
CREATE TABLE META_DATA_EXPORT (name TEXT, value TEXT);
CREATE TABLE TARGET_INFO_GPU (vmId INTEGER, id INTEGER, name TEXT, busLocation TEXT,
    totalMemory INTEGER, smCount INTEGER, computeMajor INTEGER, computeMinor INTEGER);
CREATE TABLE NVTX_EVENTS (start INTEGER NOT NULL, end INTEGER, eventType INTEGER NOT NULL,
    rangeId INTEGER, category INTEGER, color INTEGER, text TEXT, globalTid INTEGER,
    endGlobalTid INTEGER, textId INTEGER, domainId INTEGER, uint64Value INTEGER,
    int64Value INTEGER, doubleValue REAL, uint32Value INTEGER, int32Value INTEGER,
    floatValue REAL, jsonTextId INTEGER, jsonText TEXT, binaryData TEXT,
    eventId INTEGER PRIMARY KEY);
CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (start INTEGER NOT NULL, end INTEGER NOT NULL,
    eventClass INTEGER NOT NULL, globalTid INTEGER, correlationId INTEGER,
    nameId INTEGER NOT NULL, returnValue INTEGER NOT NULL, callchainId INTEGER);
CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INTEGER NOT NULL, end INTEGER NOT NULL,
    deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, streamId INTEGER NOT NULL,
    correlationId INTEGER, globalPid INTEGER, demangledName INTEGER NOT NULL,
    shortName INTEGER NOT NULL, mangledName INTEGER);
"""
PID, TID = 4242, 4242
GLOBAL_TID = (PID << 24) | TID
GLOBAL_PID = PID << 24
DOMAIN = 1


def generate(path: Path, n_kernels: int, n_ranges: int) -> None:
    shape = {"kernels": n_kernels, "ranges": n_ranges}
    marker = path.with_suffix(".shape.json")
    if path.exists() and marker.exists() and json.loads(marker.read_text()) == shape:
        return
    path.unlink(missing_ok=True)
    n_iter = max(1, n_ranges // 4)
    per_stage = max(1, n_kernels // (3 * n_iter))
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    con.executemany(
        "insert into ENUM_NSYS_EVENT_TYPE values (?, ?, ?)",
        [(33, "NvtxCategory", ""), (59, "NvtxPushPopRange", ""), (75, "NvtxDomainCreate", "")],
    )
    con.executemany(
        "insert into META_DATA_EXPORT values (?, ?)",
        [("EXPORT_PRODUCT_NAME", "NVIDIA Nsight Systems"), ("EXPORT_PRODUCT_VERSION", "2099.1")],
    )
    con.execute("insert into TARGET_INFO_GPU values (0, 0, 'Test GPU', '', 8e10, 132, 9, 0)")
    names = ["perflab", "h2d", "compute", "d2h", "cudaLaunchKernel_v7000", "kernel_a", "kernel_b"]
    names += [f"iteration {i}" for i in range(n_iter)]
    con.executemany("insert into StringIds values (?, ?)", list(enumerate(names, 1)))
    sid = {name: i for i, name in enumerate(names, 1)}
    con.execute(
        "insert into NVTX_EVENTS (start, end, eventType, text, domainId) values (-5, NULL, 75, ?, ?)",
        ("perflab", DOMAIN),
    )
    stage_len = 1_000 * per_stage + 1_000  # each launch 1 us apart
    step = 3 * stage_len + 2_000
    base = np.arange(n_iter, dtype=np.int64) * step + 1_000_000
    end_all = int(base[-1] + 2 * step)
    con.execute(
        "insert into NVTX_EVENTS (start, end, eventType, text, globalTid, domainId) "
        "values (0, ?, 59, 'synthetic model bs1 fp32', ?, ?)",
        (end_all, GLOBAL_TID, DOMAIN),
    )
    # Ranges: iteration i, then its three stages.
    starts = np.empty((n_iter, 4), dtype=np.int64)
    ends = np.empty((n_iter, 4), dtype=np.int64)
    starts[:, 0], ends[:, 0] = base, base + step - 1_000
    for k in range(3):
        starts[:, k + 1] = base + 500 + k * stage_len
        ends[:, k + 1] = starts[:, k + 1] + stage_len - 100
    text_id = np.empty((n_iter, 4), dtype=np.int64)
    text_id[:, 0] = [sid[f"iteration {i}"] for i in range(n_iter)]
    text_id[:, 1:] = [sid["h2d"], sid["compute"], sid["d2h"]]
    payload = np.repeat(np.arange(n_iter), 4)
    con.executemany(
        "insert into NVTX_EVENTS (start, end, eventType, globalTid, textId, domainId, int64Value) "
        f"values (?, ?, 59, {GLOBAL_TID}, ?, {DOMAIN}, ?)",
        zip(
            starts.ravel().tolist(),
            ends.ravel().tolist(),
            text_id.ravel().tolist(),
            payload.tolist(),
        ),
    )
    # Kernels: per stage range, per_stage launches 1 us apart; each kernel runs 800 ns.
    launch = (starts[:, 1:].reshape(-1, 1) + 200 + 1_000 * np.arange(per_stage)).ravel()
    corr = np.arange(1, len(launch) + 1)
    batch = 1_000_000
    for a in range(0, len(launch), batch):
        sl = slice(a, a + batch)
        la, co = launch[sl].tolist(), corr[sl].tolist()
        con.executemany(
            f"insert into CUPTI_ACTIVITY_KIND_RUNTIME values (?, ?, 0, {GLOBAL_TID}, ?, "
            f"{sid['cudaLaunchKernel_v7000']}, 0, NULL)",
            zip(la, [x + 100 for x in la], co),
        )
        kname = [sid["kernel_a"] if c % 2 else sid["kernel_b"] for c in co]
        con.executemany(
            "insert into CUPTI_ACTIVITY_KIND_KERNEL values "
            f"(?, ?, 0, 1, 7, ?, {GLOBAL_PID}, ?, ?, NULL)",
            zip([x + 300 for x in la], [x + 1_100 for x in la], co, kname, kname),
        )
    con.commit()
    con.close()
    marker.write_text(json.dumps(shape))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=float, default=1e7)
    parser.add_argument("--ranges", type=float, default=1e6)
    parser.add_argument("--file", type=Path, help="export to build or reuse (default: temporary)")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="perflab-nsys-scale-")
    try:
        path = args.file or Path(tmp.name) / "trace.sqlite"
        t0 = time.perf_counter()
        generate(path, int(args.kernels), int(args.ranges))
        con = sqlite3.connect(path)
        n_k = con.execute("select count(*) from CUPTI_ACTIVITY_KIND_KERNEL").fetchone()[0]
        n_r = con.execute("select count(*) from NVTX_EVENTS where eventType = 59").fetchone()[0]
        con.close()
        print(
            f"export with {n_k} kernels, {n_r} NVTX ranges ready in {time.perf_counter() - t0:.1f} s"
        )
        out = Path(tmp.name) / "out"
        seconds, proc = perflab_cli("import", "nsys", str(path), "-o", str(out))
        report_resources(f"import nsys of {n_k} kernels", seconds, proc)
    finally:
        tmp.cleanup()


if __name__ == "__main__":
    main()
