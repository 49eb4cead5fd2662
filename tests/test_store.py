"""Parquet tables: declared schema, atomic files, versions, and reading without perflab."""

from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from experiments import experiment
from perflab import runner, spec, store
from perflab.errors import StoreError, StoreVersionError


@pytest.fixture
def study_dir(tmp_path):
    st = spec.parse(experiment("s", warmup=2, iterations=10, sweep={"batch_size": [1, 2]}))
    runner.run_study(st, tmp_path, isolate=False)
    return tmp_path


def test_one_file_per_run_and_table(study_dir):
    runs = sorted(p.stem for p in (study_dir / "runs").glob("*.parquet"))
    samples = sorted(p.stem for p in (study_dir / "samples").glob("*.parquet"))
    assert len(runs) == 2 and runs == samples


def test_round_trip_keeps_types_and_values(study_dir):
    runs = store.read(study_dir, "runs")
    samples = store.read(study_dir, "samples")
    assert list(runs.columns) == [c.name for c in store.TABLES["runs"]]
    assert list(samples.columns) == [c.name for c in store.TABLES["samples"]]
    assert str(runs["created_at"].dt.tz) == "UTC"
    assert samples["host_ns"].dtype == "int64"
    assert len(samples) == 2 * 12 * 4  # runs x iterations x stages (no h2d/d2h configured)
    assert set(samples["run_id"]) == set(runs["run_id"])


def test_pandas_and_duckdb_read_the_tables_without_perflab(study_dir):
    by_pandas = pd.read_parquet(study_dir / "samples")
    assert len(by_pandas) == 96
    n, stages = duckdb.sql(
        f"select count(*), count(distinct stage) from '{study_dir}/samples/*.parquet'"
    ).fetchall()[0]
    assert (n, stages) == (96, 4)
    statuses = duckdb.sql(f"select status from '{study_dir}/runs/*.parquet'").fetchall()
    assert statuses == [("ok",), ("ok",)]


def test_schema_version_is_in_each_file(study_dir):
    path = next((study_dir / "samples").glob("*.parquet"))
    meta = pq.read_schema(path).metadata
    assert meta[store.VERSION_KEY] == str(store.SCHEMA_VERSION).encode()
    assert store.file_version(path) == store.SCHEMA_VERSION


def test_newer_schema_is_refused_with_a_clear_message(study_dir):
    path = next((study_dir / "runs").glob("*.parquet"))
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[store.VERSION_KEY] = str(store.SCHEMA_VERSION + 1).encode()
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(
        StoreVersionError,
        match=r"schema version 2; this perflab reads up to version 1: upgrade perflab",
    ):
        store.read(study_dir, "runs")


def test_corrupt_file_among_good_ones_is_skipped_with_a_warning(study_dir):
    bad = study_dir / "samples" / "corrupt.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.warns(UserWarning, match="skipping unreadable file .*corrupt.parquet"):
        samples = store.read(study_dir, "samples")
    assert len(samples) == 96


def test_unknown_columns_are_refused():
    with pytest.raises(StoreError, match=r"table 'runs' has no column\(s\) \['colour'\]"):
        store.to_arrow("runs", {"run_id": "x", "colour": "red"})


def test_output_under_a_file_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is not writable"):
        store.check_writable(tmp_path / "file" / "out")


def test_unwritable_output_is_refused_before_anything_runs(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        import os

        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(StoreError, match="not writable"):
            store.check_writable(locked / "out")
    finally:
        locked.chmod(0o700)


def test_write_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(StoreError, match="cannot write .*No space left on device"):
        store.write(tmp_path, "runs", "r1", {"run_id": "r1"})
    assert list((tmp_path / "runs").iterdir()) == []


def test_rows_with_missing_values_from_pandas_round_trip(tmp_path):
    row = {
        "run_id": "r1",
        "status": "failed",
        "error": float("nan"),
        "batch_size": pd.NA,
        "created_at": pd.NaT,
        "load_ms": float("nan"),
        "study": "s",
    }
    store.write(tmp_path, "runs", "r1", row)
    back = store.read(tmp_path, "runs").iloc[0]
    assert back["status"] == "failed" and back["study"] == "s"
    assert back[["error", "batch_size", "created_at", "load_ms"]].isna().all()


def test_a_file_of_another_table_or_tool_in_runs_is_skipped_not_read_as_runs(study_dir):
    sample = next((study_dir / "samples").glob("*.parquet"))
    (study_dir / "runs" / "phantom.parquet").write_bytes(sample.read_bytes())
    other_tool = study_dir / "runs" / "other.parquet"
    pq.write_table(pq.read_table(sample).replace_schema_metadata({}), other_tool)
    with pytest.warns(UserWarning) as caught:
        runs = store.read(study_dir, "runs")
    messages = " ".join(str(w.message) for w in caught)
    assert "phantom.parquet is a perflab 'samples' table, not 'runs'" in messages
    assert "other.parquet is not a perflab table" in messages
    assert len(runs) == 2


def test_the_lock_refuses_a_second_holder_and_is_free_once_released(tmp_path):
    refused = pytest.raises(StoreError, match=r"in use by perflab run a.yaml \(process \d+\)")
    with store.locked(tmp_path, "run a.yaml"), refused, store.locked(tmp_path, "import"):
        pass
    with store.locked(tmp_path, "import"):  # released: the next writer gets it
        assert "perflab import" in (tmp_path / store.LOCK).read_text()


def test_a_run_in_progress_is_marked_until_it_ends(tmp_path):
    store.begin_run(tmp_path, "r1")
    assert (tmp_path / store.PENDING / "r1").exists()
    store.write_run(tmp_path, {"run_id": "r1", "status": "ok"})
    assert store.is_committed(tmp_path, "r1")
    store.end_run(tmp_path, "r1")
    assert not (tmp_path / store.PENDING).exists()
    assert store.sweep_leftovers(tmp_path) == [] and store.is_committed(tmp_path, "r1")


def _run_row(run_id: str, label: str) -> dict:
    return {"run_id": run_id, "status": "ok", "label": label, "backend": "synthetic"}


def test_the_runs_index_follows_new_changed_and_removed_files(tmp_path, monkeypatch):
    for i in range(3):
        store.write(tmp_path, "runs", f"r{i}", _run_row(f"r{i}", f"first {i}"))
    first = store.read(tmp_path, "runs")
    index = store.index_path(tmp_path, "runs", "rows")
    assert index.exists() and not any(p.name.startswith(".") for p in (tmp_path / "runs").iterdir())

    # Unchanged files come from the index: no footer of theirs is read again.
    checked = []
    real = store._check_footer
    monkeypatch.setattr(store, "_check_footer", lambda p, t: checked.append(p) or real(p, t))
    pd.testing.assert_frame_equal(store.read(tmp_path, "runs"), first)
    assert checked == []

    store.write(tmp_path, "runs", "r1", _run_row("r1", "rewritten"))  # changed
    store.write(tmp_path, "runs", "r3", _run_row("r3", "new"))  # added
    (tmp_path / "runs" / "r0.parquet").unlink()  # removed
    got = store.read(tmp_path, "runs")
    assert got["label"].tolist() == ["rewritten", "first 2", "new"]
    assert sorted(p.name for p in checked) == ["r1.parquet", "r3.parquet"]
    monkeypatch.undo()
    # The same table as reading every file without an index.
    index.unlink()
    pd.testing.assert_frame_equal(store.read(tmp_path, "runs"), got)


def test_a_damaged_index_is_rebuilt_and_a_read_only_folder_reads_without_one(tmp_path, monkeypatch):
    store.write(tmp_path, "runs", "r0", _run_row("r0", "a"))
    want = store.read(tmp_path, "runs")
    index = store.index_path(tmp_path, "runs", "rows")
    index.write_bytes(b"not parquet")
    pd.testing.assert_frame_equal(store.read(tmp_path, "runs"), want)
    assert pq.read_table(index).num_rows == 1  # rebuilt

    index.unlink()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(store.pq, "write_table", refuse)
    pd.testing.assert_frame_equal(store.read(tmp_path, "runs"), want)
    assert not index.exists()
