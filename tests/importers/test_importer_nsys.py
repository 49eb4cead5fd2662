"""Nsight Systems importer: projection on a hand-built trace with known answers, and real traces."""

from __future__ import annotations

import json
import sqlite3
import stat
import sys
import time

import numpy as np
import pandas as pd
import pytest
from importer_helpers import files_under
from nsys_fixture import (
    MAIN_TID,
    PID,
    RUN_LABEL,
    WORKER_TID,
    build_large,
    build_trace,
    build_without_gpu,
    build_without_nvtx,
    global_tid,
)

from perflab import profiling, store
from perflab.analysis import traces
from perflab.errors import BackendUnavailable, ImportFormatError
from perflab.importers import nsys


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("trace")
    path = tmp_path / "trace.sqlite"
    expected = build_trace(path, n_iterations=3)
    out = tmp_path / "out"
    run_id = nsys.import_nsys(path, out)
    return {
        "path": path,
        "out": out,
        "run_id": run_id,
        "expected": expected,
        "ranges": store.read(out, "trace_ranges"),
        "kernels": store.read(out, "trace_kernels"),
        "memcpy": store.read(out, "trace_memcpy"),
        "runs": store.read(out, "runs"),
    }


def stage_rows(ranges: pd.DataFrame) -> pd.DataFrame:
    """Stage ranges by (iteration, stage), leaving out the iteration (= e2e) ranges."""
    stages = ranges[ranges["stage"].notna() & (ranges["stage"] != "e2e")]
    return stages.set_index(["iteration", "stage"]).sort_index()


def test_projection_per_iteration_and_stage(trace):
    rows = stage_rows(trace["ranges"])
    assert len(rows) == 12
    for (iteration, stage), (gpu_ns, n_ops, dur_ns) in trace["expected"].stages.items():
        row = rows.loc[(iteration, stage)]
        assert row["n_gpu_ops"] == n_ops, (iteration, stage)
        assert row["duration_ns"] == dur_ns
        if gpu_ns is None:
            assert pd.isna(row["gpu_duration_ns"]) and pd.isna(row["gpu_start_ns"])
        else:
            assert row["gpu_duration_ns"] == gpu_ns, (iteration, stage)
            assert row["gpu_end_ns"] - row["gpu_start_ns"] == gpu_ns


def test_parents_project_their_childrens_work(trace):
    r = trace["ranges"]
    its = r[(r["domain"] == "perflab") & r["name"].str.startswith("iteration")].set_index(
        "iteration"
    )
    for i, span in trace["expected"].iteration_gpu_span.items():
        assert its.loc[i, "gpu_duration_ns"] == span
        assert its.loc[i, "n_gpu_ops"] == 5
    run = r[r["name"] == RUN_LABEL].iloc[0]
    assert run["n_gpu_ops"] == trace["expected"].run_range_ops
    assert run["depth"] == 0
    assert set(its["depth"]) == {1}
    assert set(stage_rows(r)["depth"]) == {2}


def test_perflab_fields(trace):
    r = trace["ranges"]
    perflab = r[r["domain"] == "perflab"]
    assert set(perflab["perflab_run"]) == {RUN_LABEL}
    # payload in int64Value (it 0), none (it 1: "iteration 1" text), uint64Value (it 2)
    its = perflab[perflab["name"].str.startswith("iteration")]
    assert sorted(its["iteration"]) == [0, 1, 2]
    assert set(its["stage"]) == {"e2e"}  # perflab's iteration range is the e2e stage range
    # iteration 1's stage ranges carry no payload: their iteration comes from the enclosing range
    assert sorted(stage_rows(r).index.get_level_values(0).unique()) == [0, 1, 2]
    others = r[r["domain"] != "perflab"]
    assert others["perflab_run"].isna().all() and others["stage"].isna().all()


def test_threads_and_unprojected_ranges(trace):
    r = trace["ranges"].set_index("name")
    assert r.loc["worker loop", "tid"] == WORKER_TID and r.loc["worker loop", "pid"] == PID
    assert r.loc["worker loop", "n_gpu_ops"] == trace["expected"].worker_range_ops
    assert pd.isna(r.loc["worker loop", "domain"])
    # the worker's kernel was launched while iteration 0's compute stage was open on the main
    # thread; it is not that stage's work
    assert stage_rows(trace["ranges"]).loc[(0, "compute"), "n_gpu_ops"] == 3
    assert pd.isna(r.loc["handoff", "n_gpu_ops"])  # ends on another thread
    assert pd.isna(r.loc["never closed", "n_gpu_ops"]) and pd.isna(r.loc["never closed", "end_ns"])
    assert r.loc[RUN_LABEL, "tid"] == MAIN_TID


def test_kernels_and_copies(trace):
    exp = trace["expected"]
    k = trace["kernels"]
    assert len(k) == exp.n_kernels
    got = {c: (None if pd.isna(r) else r) for c, r in zip(k["correlation_id"], k["range"])}
    assert got == exp.kernel_ranges
    assert k.loc[k["correlation_id"] == exp.outside_kernel_corr, "name"].iloc[0] == (
        "void outside_kernel<float>(float*)"
    )
    assert (k["duration_ns"] == k["end_ns"] - k["start_ns"]).all()
    m = trace["memcpy"]
    assert sorted(m["copy_kind"].value_counts().items()) == [
        ("DtoH", 3),
        ("HtoD", 3),
        ("memset", 3),
    ]
    assert set(m.loc[m["copy_kind"] == "HtoD", "range"]) == {"h2d"}
    assert set(m.loc[m["copy_kind"] == "memset", "range"]) == {"compute"}
    assert set(m.loc[m["copy_kind"] == "HtoD", "bytes"]) == {602_112}


def test_runs_row(trace):
    row = trace["runs"].iloc[0]
    assert row["run_id"] == trace["run_id"] and row["backend"] == "nsys" and row["status"] == "ok"
    assert row["device_name"] == "Test GPU 9000" and row["device"] == "cuda:0"
    meta = json.loads(row["meta"])
    assert meta["nsys_version"] == "2099.1.0.1" and meta["schema_version"] == "3.99.0"
    assert meta["perflab_runs"] == [RUN_LABEL]
    assert meta["n_kernels_in_ranges"] == trace["expected"].n_kernels_in_ranges


def test_without_enum_tables_gives_the_same_answers(tmp_path, trace):
    path = tmp_path / "noenum.sqlite"
    build_trace(path, n_iterations=3, enums=False)
    t = nsys.load_trace(path)
    a = t.ranges.set_index(["name", "start_ns"])["gpu_duration_ns"]
    b = trace["ranges"].set_index(["name", "start_ns"])["gpu_duration_ns"]
    assert a.astype("Float64").equals(b.astype("Float64").reindex(a.index))
    assert sorted(t.memcpy["copy_kind"]) == sorted(trace["memcpy"]["copy_kind"])


def test_missing_tables(tmp_path):
    build_without_nvtx(tmp_path / "cuda.sqlite")
    t = nsys.load_trace(tmp_path / "cuda.sqlite")
    assert t.ranges.empty and len(t.kernels) == 1 and t.kernels["range"].isna().all()
    assert list(t.memcpy["copy_kind"]) == ["DtoH"]
    build_without_gpu(tmp_path / "nvtx.sqlite")
    t = nsys.load_trace(tmp_path / "nvtx.sqlite")
    assert list(t.ranges["depth"]) == [0, 1]
    assert t.ranges["n_gpu_ops"].isna().all()  # GPU work not traced: unknown, not zero
    out = tmp_path / "out"
    nsys.import_nsys(tmp_path / "nvtx.sqlite", out)
    assert len(store.read(out, "trace_ranges")) == 2


def test_correlate_with_samples(trace):
    run_id = "run-1"
    rows = []
    for (iteration, stage), (_, _, dur_ns) in trace["expected"].stages.items():
        rows.append(
            {
                "run_id": run_id,
                "iteration": iteration,
                "phase": "measure",
                "stage": stage,
                "start_ns": 0,
                "host_ns": dur_ns + 500,
                "device_ns": None,
                "items": 4,
            }
        )
    for iteration, span in trace["expected"].iteration_gpu_span.items():
        rows.append(
            {
                "run_id": run_id,
                "iteration": iteration,
                "phase": "measure",
                "stage": "e2e",
                "start_ns": 0,
                "host_ns": 95_000,
                "device_ns": None,
                "items": 4,
            }
        )
    samples = pd.DataFrame(rows)
    c = traces.correlate(trace["ranges"], samples).set_index(["iteration", "stage"])
    assert len(c) == 15
    for iteration, span in trace["expected"].iteration_gpu_span.items():
        row = c.loc[(iteration, "e2e")]
        assert row["trace_host_ms"] == pytest.approx(0.09) and row["gpu_ms"] == pytest.approx(
            span / 1e6
        )
        assert row["n_gpu_ops"] == 5 and row["gap_ms"] == pytest.approx(0.095 - span / 1e6)
    for (iteration, stage), (gpu_ns, n_ops, dur_ns) in trace["expected"].stages.items():
        row = c.loc[(iteration, stage)]
        assert row["host_ms"] == pytest.approx((dur_ns + 500) / 1e6)
        assert row["trace_host_ms"] == pytest.approx(dur_ns / 1e6)
        assert row["gpu_ms"] == pytest.approx((gpu_ns or 0) / 1e6)
        assert row["n_gpu_ops"] == n_ops
        assert row["gap_ms"] == pytest.approx((dur_ns + 500 - (gpu_ns or 0)) / 1e6)
    assert set(c["run_id"]) == {run_id} and set(c["perflab_run"]) == {RUN_LABEL}
    # with several runs on the sample side, labels must be paired through the runs table
    two = pd.concat([samples, samples.assign(run_id="run-2")])
    runs = pd.DataFrame({"run_id": ["run-1", "run-2"], "label": [RUN_LABEL, "another config"]})
    paired = traces.correlate(trace["ranges"], two, runs=runs)
    assert set(paired["run_id"]) == {"run-1"} and len(paired) == 15


def test_given_run_id_keeps_an_existing_runs_row(tmp_path):
    path = tmp_path / "t.sqlite"
    build_trace(path, n_iterations=1)
    out = tmp_path / "out"
    store.write(out, "runs", "r1", {"run_id": "r1", "backend": "synthetic", "status": "ok"})
    assert nsys.import_nsys(path, out, run_id="r1") == "r1"
    runs = store.read(out, "runs")
    assert list(runs["backend"]) == ["synthetic"]
    assert set(store.read(out, "trace_ranges")["run_id"]) == {"r1"}


# --- malformed input ------------------------------------------------------------------------


def _not_nsight(path):
    con = sqlite3.connect(path)
    con.execute("create table people (name text)")
    con.execute("insert into people values ('ada')")
    con.commit()
    con.close()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("this is not a database\n"), "not a SQLite database"),
        (_not_nsight, "not an Nsight Systems export"),
        (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200), "unreadable SQLite"),
    ],
)
def test_malformed_files(tmp_path, make, message):
    path = tmp_path / "bad.sqlite"
    make(path)
    out = tmp_path / "out"
    with pytest.raises(ImportFormatError, match=message) as err:
        nsys.import_nsys(path, out)
    assert "\n" not in str(err.value)
    assert files_under(out) == []


def test_nsys_rep_needs_nsys(tmp_path, monkeypatch):
    rep = tmp_path / "trace.nsys-rep"
    rep.write_bytes(b"not really a report")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ImportFormatError, match="install Nsight Systems"):
        nsys.import_nsys(rep, tmp_path / "out")
    assert files_under(tmp_path / "out") == []


def fake_nsys(tmp_path, monkeypatch, body: str) -> None:
    """An `nsys` first on PATH: a Python script that runs `body` with `args` (its arguments) and
    `fixture` (the path of a two-iteration trace built here)."""
    fixture = tmp_path / "fixture.sqlite"
    build_trace(fixture, n_iterations=2)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "nsys"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, shutil, sys\n"
        "args = sys.argv[1:]\n"
        f"fixture = {str(fixture)!r}\n" + body
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bindir))


def test_nsys_rep_goes_through_nsys_export(tmp_path, monkeypatch):
    # A stand-in for `nsys export --type sqlite --output OUT REP`: copies the fixture to OUT.
    fake_nsys(tmp_path, monkeypatch, "shutil.copy(fixture, args[args.index('--output') + 1])\n")
    rep = tmp_path / "trace.nsys-rep"
    rep.write_bytes(b"report bytes")
    out = tmp_path / "out"
    nsys.import_nsys(rep, out)
    assert len(stage_rows(store.read(out, "trace_ranges"))) == 8
    assert json.loads(store.read(out, "runs").iloc[0]["meta"])["source"] == str(rep)


def test_profile_study_runs_perflab_under_nsys_and_imports(tmp_path, monkeypatch):
    argv_file = tmp_path / "argv.json"
    # A stand-in for `nsys profile ... --output BASE APP...`: records its argv, writes BASE.sqlite.
    fake_nsys(
        tmp_path,
        monkeypatch,
        f"json.dump(args, open({str(argv_file)!r}, 'w'))\n"
        "shutil.copy(fixture, args[args.index('--output') + 1] + '.sqlite')\n",
    )
    out = tmp_path / "out"
    assert profiling.profile_study(tmp_path / "spec.yaml", output=out) == 0
    argv = json.loads(argv_file.read_text())
    assert argv[0] == "profile" and "--trace=cuda,nvtx,osrt" in argv
    # the spec comes after "--", so a spec named like an option (-evil.yaml) stays a path
    assert argv[-6:] == ["perflab.cli", "run", "-o", str(out), "--", str(tmp_path / "spec.yaml")]
    assert len(stage_rows(store.read(out, "trace_ranges"))) == 8
    assert list(store.read(out, "runs")["backend"]) == ["nsys"]


def test_profile_study_without_nsys(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendUnavailable, match="install Nsight Systems"):
        profiling.profile_study(tmp_path / "spec.yaml", output=tmp_path / "out")


# --- scale ----------------------------------------------------------------------------------


def test_projection_scales_to_1e5_ranges():
    """10^5 nested ranges and 7.5 x 10^4 GPU ops through `project` (time printed, not asserted)."""
    rng = np.random.default_rng(0)
    n_it = 25_000
    base = np.arange(n_it, dtype=np.int64) * 10_000
    starts = [np.array([0]), base, base + 100, base + 3_100, base + 6_100]
    ends = [np.array([n_it * 10_000]), base + 9_000, base + 2_900, base + 5_900, base + 8_900]
    r_start, r_end = np.concatenate(starts), np.concatenate(ends)
    r_tid = np.full(len(r_start), 7, dtype=np.int64)
    launch = np.sort(np.concatenate([base + 200 + 3_000 * k for k in range(3)]))
    g_start = launch + rng.integers(300, 600, len(launch))
    g_end = g_start + 1_000
    t0 = time.perf_counter()
    gs, ge, n, inner = nsys.project(
        r_tid, r_start, r_end, np.full(len(launch), 7), launch, g_start, g_end
    )
    elapsed = time.perf_counter() - t0
    print(f"\nproject(): {len(r_start):,} ranges x {len(launch):,} GPU ops in {elapsed:.3f} s")
    assert len(r_start) == 100_001
    assert n[0] == len(launch) and (n[1 : n_it + 1] == 3).all() and (n[n_it + 1 :] == 1).all()
    assert (inner >= n_it + 1).all()  # every op's innermost range is a stage range
    assert gs[0] == g_start.min() and ge[0] == g_end.max()


def test_import_of_1e5_ranges(tmp_path):
    path = tmp_path / "large.sqlite"
    n_ranges = build_large(path, 25_000)
    t0 = time.perf_counter()
    trace = nsys.load_trace(path)
    elapsed = time.perf_counter() - t0
    print(f"\nload_trace(): {n_ranges:,} ranges, {len(trace.kernels):,} kernels in {elapsed:.2f} s")
    assert len(trace.ranges) == n_ranges == 100_001
    stages = trace.ranges[trace.ranges["stage"].isin(["h2d", "compute", "d2h"])]
    assert len(stages) == 75_000 and (stages["n_gpu_ops"] == 1).all()
    assert (stages["gpu_duration_ns"] == 1_000).all()
    assert trace.kernels["range"].isin(["h2d", "compute", "d2h"]).all()
    its = trace.ranges[trace.ranges["stage"] == "e2e"]
    assert len(its) == 25_000 and (its["n_gpu_ops"] == 3).all()


# --- real traces ----------------------------------------------------------------------------

REAL = [
    "nvfuser_h200_nvtx_nsys2025.1.sqlite",
    "darknet_yolov3_rtx3070ti_cuda_only_nsys2022.1.sqlite",
    "centerformer_tensorrt_nvtx_only_titanrtx_nsys2022.4.sqlite",
]


@pytest.mark.realdata
@pytest.mark.parametrize("name", REAL)
def test_real_traces_import(realdata_dir, tmp_path, name):
    out = tmp_path / "out"
    run_id = nsys.import_nsys(realdata_dir / "nsys" / name, out)
    row = store.read(out, "runs").iloc[0]
    assert row["run_id"] == run_id and row["backend"] == "nsys" and row["status"] == "ok"
    assert row["device_name"] in {"NVIDIA H200", "NVIDIA GeForce RTX 3070 Ti", "NVIDIA TITAN RTX"}


def _kernels_launched_in_ranges(path, rule):
    """Correlation ids of kernels whose launching runtime call (same correlationId and process)
    lies in an NVTX push/pop or start/end range on the same thread: plain SQL, no importer code.
    rule "start": the call starts inside the range (API_NOTES 5.2); "within": start and end inside.
    """
    inside = {
        "start": 'a.start BETWEEN n.start AND n."end"',
        "within": 'n.start <= a.start AND n."end" >= a."end"',
    }[rule]
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {
            r[0]
            for r in con.execute(
                f"""
                SELECT DISTINCT k.correlationId
                FROM CUPTI_ACTIVITY_KIND_KERNEL k
                JOIN CUPTI_ACTIVITY_KIND_RUNTIME a
                  ON a.correlationId = k.correlationId
                 AND a.globalTid / 16777216 = k.globalPid / 16777216
                JOIN NVTX_EVENTS n
                  ON n.globalTid = a.globalTid AND n.eventType IN (59, 60) AND {inside}
                """
            )
        }
    finally:
        con.close()


@pytest.mark.realdata
def test_real_nvfuser_projection(realdata_dir, tmp_path):
    path = realdata_dir / "nsys" / "nvfuser_h200_nvtx_nsys2025.1.sqlite"
    expected = _kernels_launched_in_ranges(path, "start")
    assert len(expected) == 8  # as the file's README says
    assert _kernels_launched_in_ranges(path, "within") == expected
    out = tmp_path / "out"
    nsys.import_nsys(path, out)
    k = store.read(out, "trace_kernels")
    assert len(k) == 18
    assert set(k.loc[k["range"].notna(), "correlation_id"]) == expected
    r = store.read(out, "trace_ranges")
    assert len(r) == 13_513 and (r["domain"].isna()).all()
    top = r[r["depth"] == 0]
    # the two outermost ranges that hold GPU work together hold every kernel, copy and memset
    # launched inside any range
    assert top["n_gpu_ops"].sum() == 8
    assert r["n_gpu_ops"].notna().all()


@pytest.mark.realdata
def test_real_cuda_only_and_nvtx_only(realdata_dir, tmp_path):
    out = tmp_path / "a"
    nsys.import_nsys(
        realdata_dir / "nsys" / "darknet_yolov3_rtx3070ti_cuda_only_nsys2022.1.sqlite", out
    )
    assert len(store.read(out, "trace_kernels")) == 406
    m = store.read(out, "trace_memcpy")
    assert (m["name"] == "memcpy").sum() == 924 and (m["name"] == "memset").sum() == 5
    assert len(store.read(out, "trace_ranges")) == 0
    out = tmp_path / "b"
    nsys.import_nsys(
        realdata_dir / "nsys" / "centerformer_tensorrt_nvtx_only_titanrtx_nsys2022.4.sqlite", out
    )
    r = store.read(out, "trace_ranges")
    assert len(r) == 19_552 + 2_444
    assert set(r["domain"].dropna()) == {"TensorRT", "myelin-exec"}
    assert r["n_gpu_ops"].isna().all()


def test_split_global_tid():
    pid, tid = nsys.split_global_tid(global_tid(PID, WORKER_TID))
    assert (int(pid), int(tid)) == (PID, WORKER_TID)


# --- streaming --------------------------------------------------------------------------------


def _tables(out):
    tables = {}
    for name in ("trace_ranges", "trace_kernels", "trace_memcpy"):
        df = store.read(out, name).drop(columns="run_id")
        tables[name] = df.sort_values(list(df.columns), na_position="first").reset_index(drop=True)
    return tables


def test_small_batches_give_the_tables_of_one_batch(tmp_path, monkeypatch):
    """Streaming in batches of 3 rows (every batch boundary inside the ops of one range, and a
    second runtime call with a kernel's correlationId) gives exactly the one-batch import."""
    path = tmp_path / "trace.sqlite"
    expected = build_trace(path, n_iterations=3)
    con = sqlite3.connect(path)
    corr, tid = con.execute(
        "select correlationId, globalTid from CUPTI_ACTIVITY_KIND_RUNTIME "
        "where correlationId in (select correlationId from CUPTI_ACTIVITY_KIND_KERNEL) limit 1"
    ).fetchone()
    # A later call with the same correlationId, on the same thread, outside every range: the
    # first call (lowest rowid) stays the launch.
    con.execute(
        "insert into CUPTI_ACTIVITY_KIND_RUNTIME values (?, ?, 0, ?, ?, 1, 0, NULL)",
        (10**12, 10**12 + 10, tid, corr),
    )
    con.commit()
    con.close()
    nsys.import_nsys(path, tmp_path / "one")
    monkeypatch.setattr(nsys, "BATCH_ROWS", 3)
    nsys.import_nsys(path, tmp_path / "many")
    one, many = _tables(tmp_path / "one"), _tables(tmp_path / "many")
    for name in one:
        pd.testing.assert_frame_equal(one[name], many[name])
    k = many["trace_kernels"]
    assert len(k) == expected.n_kernels  # the second call adds no kernel row
    got = {c: (None if pd.isna(r) else r) for c, r in zip(k["correlation_id"], k["range"])}
    assert got == expected.kernel_ranges


def test_projection_in_batches_equals_one_pass():
    rng = np.random.default_rng(7)
    n_r, n_op = 400, 3_000
    r_tid = rng.integers(0, 3, n_r)
    r_start = rng.integers(0, 100_000, n_r)
    r_end = r_start + rng.integers(0, 20_000, n_r)  # overlapping, not only nested
    op_tid = rng.integers(0, 4, n_op)  # thread 3 has no ranges
    launch = rng.integers(0, 120_000, n_op)
    start = launch + rng.integers(0, 500, n_op)
    end = start + rng.integers(1, 5_000, n_op)
    one = nsys.project(r_tid, r_start, r_end, op_tid, launch, start, end)
    p = nsys.Projection(r_tid, r_start, r_end)
    order = rng.permutation(n_op)
    inner = np.full(n_op, -2)
    for chunk in np.array_split(order, 17):
        inner[chunk] = p.add(op_tid[chunk], launch[chunk], start[chunk], end[chunk])
    for a, b in zip(one[:3], p.spans()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(one[3], inner)
    # independent reference: a range's ops are those launched on its thread inside it
    for j in rng.choice(n_r, 40, replace=False):
        inside = (op_tid == r_tid[j]) & (launch >= r_start[j]) & (launch <= r_end[j])
        assert one[2][j] == inside.sum()
        if inside.any():
            assert one[0][j] == start[inside].min() and one[1][j] == end[inside].max()


def test_a_bad_value_late_in_the_trace_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "trace.sqlite"
    build_trace(path, n_iterations=3)
    con = sqlite3.connect(path)
    con.execute(
        "update CUPTI_ACTIVITY_KIND_KERNEL set deviceId = 'gpu zero' "
        "where rowid = (select max(rowid) from CUPTI_ACTIVITY_KIND_KERNEL)"
    )
    con.commit()
    con.close()
    monkeypatch.setattr(nsys, "BATCH_ROWS", 2)
    written = []
    original = store.TableWriter.write

    def counting(self, data):
        written.append(data.num_rows)
        return original(self, data)

    monkeypatch.setattr(store.TableWriter, "write", counting)
    out = tmp_path / "out"
    with pytest.raises(ImportFormatError, match="trace_kernels value does not fit its column"):
        nsys.import_nsys(path, out)
    assert written  # earlier batches were streamed to temporary files before the bad row
    # only the folder's lock file remains: no table file, no temporary file, no pending mark
    assert [p.name for p in files_under(out)] == [".lock"]
