"""perflab.scan and the Results analyses that read through it: the out-of-core path (DuckDB, a
chunk of whole runs at a time) gives exactly the numbers of the in-memory path on the whole frame."""

from __future__ import annotations

import functools
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from perflab import results, scan, store
from perflab.analysis.batching import batching, batching_curve
from perflab.analysis.breakdown import breakdown
from perflab.analysis.compare import compare
from perflab.analysis.stats import harness_gap, summarize
from perflab.analysis.warmup import warmup

STAGES_MS = {"preprocess": 0.4, "h2d": 0.15, "compute": 2.0, "d2h": 0.05, "postprocess": 0.2}
STAGES = [*STAGES_MS, "e2e"]
N_RUNS = 20
N_ITER = 8334  # 20 runs x 8334 iterations x 6 stages: 1,000,080 samples before trimming


def _run_frame(i: int, run_id: str, n_iter: int, rng: np.random.Generator) -> pd.DataFrame:
    k = len(STAGES)
    it = np.repeat(np.arange(n_iter), k)
    stage = np.tile(np.arange(k), n_iter)
    warm = 1 + 2.0 * np.exp(-it / 20.0)
    ms = np.array([*STAGES_MS.values(), 0.0])[stage] * rng.uniform(0.5, 4.0) * warm
    ms = ms * np.maximum(1 + 0.02 * rng.standard_normal(len(it)), 0.1)
    per_iter = ms.reshape(-1, k)
    per_iter[:, -1] = per_iter[:, :-1].sum(axis=1) + 0.02
    host = np.round(ms * 1e6).astype(np.int64)
    device = np.where(np.isin(stage, [1, 2, 3]) & (i % 2 == 0), np.round(host * 0.97), np.nan)
    items = np.full(len(it), 1 + i % 3)
    if i == 3:  # one run whose batch size varies from iteration to iteration
        items = 1 + np.repeat(np.arange(n_iter) % 4, k)
    return pd.DataFrame(
        {
            "run_id": run_id,
            "iteration": it,
            "phase": np.where(it < 10, "warmup", "measure"),
            "stage": np.array(STAGES)[stage],
            "start_ns": 0,
            "host_ns": host,
            "device_ns": device,
            "items": items,
        }
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> list:
    """Two folders: 20 runs of different lengths (one failed, one with its samples split over two
    files, one re-run id in the second folder), plus leftover samples without a runs row."""
    a = tmp_path_factory.mktemp("box-a")
    b = tmp_path_factory.mktemp("box-b")
    rng = np.random.default_rng(7)
    for i in range(N_RUNS):
        run_id = f"r{i:02d}"
        n_iter = int(rng.integers(N_ITER // 2, N_ITER + 1))
        frame = _run_frame(i, run_id, n_iter, rng)
        folder = b if i >= 15 else a
        if i == 5:
            half = len(frame) // 2
            store.write(a, "samples", run_id, frame.iloc[:half])
            store.write(a, "samples", run_id + "-part2", frame.iloc[half:])
        else:
            store.write(folder, "samples", run_id, frame)
        store.write(
            folder,
            "runs",
            run_id,
            {
                "run_id": run_id,
                "status": "failed" if i == 7 else "ok",
                "label": f"m{i // 2} {'b' if i % 2 else 'a'}",
                "model": f"m{i // 4}",
                "backend": "synthetic" if i % 2 else "ort-cpu",
                "precision": "fp32",
                "batch_size": 1 + (i // 2) % 2,
                "measure_wall_s": 10.0 + i,
                "first_ms": 30.0,
            },
        )
    store.write(a, "samples", "leftover", _run_frame(99, "leftover", 50, rng))
    return [a, b]


@pytest.fixture(scope="module")
def opened(study) -> results.Results:
    return results.open(study)


@pytest.fixture(scope="module")
def in_memory(study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The whole samples table as store.read gives it (leftovers included), and the runs."""
    return store.read(study, "samples"), results.open(study).runs


def test_the_study_is_a_million_samples(in_memory):
    samples, _ = in_memory
    assert len(samples) > 600_000
    assert set(samples["run_id"].astype(str)) >= {"r00", "r19", "leftover"}


@pytest.fixture(params=[scan.CHUNK_ROWS, 150_000], ids=["default-chunks", "small-chunks"])
def chunk_rows(request, monkeypatch):
    monkeypatch.setattr(scan, "CHUNK_ROWS", request.param)
    return request.param


def test_summary_equals_in_memory_summarize_exactly(study, in_memory, chunk_rows):
    samples, runs = in_memory
    got = results.open(study).summary().drop(columns=list(results.RUN_INFO_COLUMNS))
    want = summarize(samples, runs)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert set(got["run_id"]) == {f"r{i:02d}" for i in range(N_RUNS)} - {"r07"}


def test_summary_groups_against_numpy(opened, in_memory):
    """A few groups recomputed from the raw rows with numpy: count, mean, percentiles, devices."""
    samples, _ = in_memory
    summ = opened.summary().set_index(["run_id", "stage"])
    for run_id, stage in (("r00", "compute"), ("r05", "e2e"), ("r16", "h2d"), ("r03", "e2e")):
        sel = samples[
            (samples["run_id"] == run_id)
            & (samples["stage"] == stage)
            & (samples["phase"] == "measure")
        ]
        x = sel["host_ns"].to_numpy() / 1e6
        row = summ.loc[(run_id, stage)]
        assert row["n"] == len(x)
        assert row["mean_ms"] == pytest.approx(x.mean(), rel=1e-12)
        assert row["std_ms"] == pytest.approx(x.std(ddof=1), rel=1e-9)
        for q in (50, 90, 95, 99):
            assert row[f"p{q}_ms"] == pytest.approx(np.percentile(x, q), rel=1e-12)
        if stage in ("e2e", "compute"):  # throughput is only given on these stages
            tput = np.median(sel["items"].to_numpy() * 1e3 / x)
            assert row["throughput_items_s"] == pytest.approx(tput, rel=1e-12)
        dev = sel["device_ns"].dropna().to_numpy() / 1e6
        assert row["device_n"] == len(dev)
        if len(dev):
            assert row["device_p99_ms"] == pytest.approx(np.percentile(dev, 99), rel=1e-12)


def test_summary_options_equal_in_memory(study, in_memory, chunk_rows):
    samples, runs = in_memory
    res = results.open(study)
    for kw in (
        {"phase": None, "stages": ["e2e", "compute"], "ci": 0.9},
        {"phase": "warmup", "ci": None},
        {"ci_method": "bootstrap", "n_boot": 50, "stages": "e2e"},
    ):
        got = res.summary(**kw).drop(columns=list(results.RUN_INFO_COLUMNS))
        pd.testing.assert_frame_equal(got, summarize(samples, runs, **kw), check_exact=True)


def test_bootstrap_of_a_group_does_not_depend_on_the_others(in_memory):
    samples, runs = in_memory
    kw = {"ci_method": "bootstrap", "n_boot": 50, "stages": "e2e"}
    alone = summarize(samples[samples["run_id"] == "r04"], runs, **kw)
    together = summarize(samples, runs, **kw)
    pd.testing.assert_frame_equal(
        alone.reset_index(drop=True),
        together[together["run_id"] == "r04"].reset_index(drop=True),
        check_exact=True,
    )


def test_other_analyses_equal_in_memory(study, in_memory, chunk_rows):
    samples, runs = in_memory
    res = results.open(study)
    info = list(results.RUN_INFO_COLUMNS)
    pd.testing.assert_frame_equal(
        res.harness_gap().drop(columns=info), harness_gap(samples, runs), check_exact=True
    )
    pd.testing.assert_frame_equal(
        res.warmup().drop(columns=info), warmup(samples, runs=runs), check_exact=True
    )
    pd.testing.assert_frame_equal(res.breakdown(), breakdown(samples, runs), check_exact=True)
    pd.testing.assert_frame_equal(
        res.compare(by="backend"), compare(samples, runs, by="backend"), check_exact=True
    )
    pd.testing.assert_frame_equal(
        res.compare(by="backend", stage="compute", n_boot=200),
        compare(samples, runs, by="backend", stage="compute", n_boot=200),
        check_exact=True,
    )
    pd.testing.assert_frame_equal(res.batching(), batching(samples, runs), check_exact=True)
    pd.testing.assert_frame_equal(
        res.batching_curve(), batching_curve(samples, runs), check_exact=True
    )


@pytest.fixture
def computed(monkeypatch) -> dict[str, set[str]]:
    """The runs whose kept statistics (summary without CIs, harness gap) Results computes rather
    than reads from the folder index, per statistic, recorded as it asks."""
    asked: dict[str, set[str]] = {"summary": set(), "harness-gap": set()}
    for name, attr in (("summary", "_summary_without_ci"), ("harness-gap", "_harness_gap")):
        real = getattr(results, attr)

        @functools.wraps(real)  # the signature Results checks its arguments against
        def record(catalog, runs, *a, real=real, name=name, **kw):
            asked[name] |= set(runs["run_id"].astype(str))
            return real(catalog, runs, *a, **kw)

        monkeypatch.setattr(results, attr, record)
    return asked


def _kept_views(folders) -> tuple[pd.DataFrame, pd.DataFrame]:
    res = results.open(folders)
    info = list(results.RUN_INFO_COLUMNS)
    return res.summary(ci=None).drop(columns=info), res.harness_gap().drop(columns=info)


def test_kept_statistics_equal_computed_ones_and_are_read_back(study, tmp_path, computed):
    """The summary without CIs and the harness gap are kept per samples file in the folder's
    index: read back, they equal the in-memory statistics to the bit; only runs whose samples
    lie in several files (r05) are computed again, and a rewritten file is computed anew."""
    folders = [tmp_path / "a", tmp_path / "b"]
    for src, dst in zip(study, folders, strict=True):
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(store.INDEX))
    samples, runs = store.read(folders, "samples"), results.open(folders).runs
    ok = set(runs.loc[runs["status"] == "ok", "run_id"])
    for attempt in ("first", "kept"):
        summary, gap = _kept_views(folders)
        pd.testing.assert_frame_equal(summary, summarize(samples, runs, ci=None), check_exact=True)
        pd.testing.assert_frame_equal(gap, harness_gap(samples, runs), check_exact=True)
        want = ok if attempt == "first" else {"r05"}
        assert computed == {"summary": want, "harness-gap": want}, attempt
        computed["summary"].clear(), computed["harness-gap"].clear()
    assert (folders[0] / store.INDEX / "samples-summary.parquet").is_file()

    # A samples file written again (other values) is read and computed again; the rest is kept.
    changed = samples[samples["run_id"] == "r01"].assign(host_ns=lambda f: f["host_ns"] * 3)
    store.write(folders[0], "samples", "r01", changed.reset_index(drop=True))
    samples = store.read(folders, "samples")
    summary, gap = _kept_views(folders)
    pd.testing.assert_frame_equal(summary, summarize(samples, runs, ci=None), check_exact=True)
    pd.testing.assert_frame_equal(gap, harness_gap(samples, runs), check_exact=True)
    assert computed == {"summary": {"r01", "r05"}, "harness-gap": {"r01", "r05"}}


def test_kept_statistics_of_a_selection_read_only_its_files(study, tmp_path, computed):
    folder = tmp_path / "a"
    shutil.copytree(study[0], folder, ignore=shutil.ignore_patterns(store.INDEX))
    samples = store.read(folder, "samples")
    sub = results.open(folder).select(run_id=["r02", "r03"])
    pd.testing.assert_frame_equal(
        sub.summary(ci=None).drop(columns=list(results.RUN_INFO_COLUMNS)),
        summarize(samples, sub.runs, ci=None),
        check_exact=True,
    )
    assert computed["summary"] == {"r02", "r03"}
    kept = pq.read_table(folder / store.INDEX / "samples-summary.parquet")
    assert set(kept.column("run_id").to_pylist()) == {"r02", "r03"}
    computed["summary"].clear()
    everything = results.open(folder)
    pd.testing.assert_frame_equal(
        everything.summary(ci=None).drop(columns=list(results.RUN_INFO_COLUMNS)),
        summarize(samples, everything.runs, ci=None),
        check_exact=True,
    )
    ok = set(everything.ok().runs["run_id"])
    assert computed["summary"] == ok - {"r02", "r03"}


def test_a_run_without_measured_samples_keeps_no_rows(tmp_path):
    """A file whose run has no measured rows keeps an empty part, which later parts join."""
    rng = np.random.default_rng(3)
    for i, run_id in enumerate(("full", "warm-only")):
        frame = _run_frame(i, run_id, 40, rng)
        if run_id == "warm-only":
            frame = frame[frame["phase"] == "warmup"]
        store.write(tmp_path, "samples", run_id, frame.reset_index(drop=True))
        store.write(tmp_path, "runs", run_id, {"run_id": run_id, "status": "ok"})
    assert results.open(tmp_path).select(run_id="warm-only").summary(ci=None).empty
    for _ in range(2):
        res = results.open(tmp_path)
        samples, runs = store.read(tmp_path, "samples"), res.runs
        summary = res.summary(ci=None).drop(columns=list(results.RUN_INFO_COLUMNS), errors="ignore")
        pd.testing.assert_frame_equal(summary, summarize(samples, runs, ci=None), check_exact=True)
        assert set(summary["run_id"]) == {"full"}


def test_only_the_default_summary_is_kept(study, tmp_path, computed):
    """Other options (CIs, another phase, some stages) are computed every time, and a kept
    summary made by another perflab version is not used."""
    folder = tmp_path / "a"
    shutil.copytree(study[0], folder, ignore=shutil.ignore_patterns(store.INDEX))
    res = results.open(folder)
    res.summary(ci=0.9), res.summary(phase="warmup", ci=None), res.summary(stages="e2e", ci=None)
    assert computed["summary"] == set()
    assert not (folder / store.INDEX / "samples-summary.parquet").exists()
    results.open(folder).summary(ci=None)
    n_ok = len(computed["summary"])
    computed["summary"].clear()
    results.open(folder).summary(ci=None)
    assert computed["summary"] == {"r05"}
    computed["summary"].clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(results, "KEPT_STATISTICS_VERSION", "another")
        results.open(folder).summary(ci=None)
    assert len(computed["summary"]) == n_ok


def test_analyses_never_load_the_whole_samples_frame(study, in_memory, monkeypatch):
    samples, runs = in_memory
    real_read = store.read

    def read(folders, table):
        assert table != "samples", "an analysis loaded the whole samples table"
        return real_read(folders, table)

    monkeypatch.setattr(store, "read", read)
    sub = results.open(study).select(backend="synthetic")
    got = sub.summary().drop(columns=list(results.RUN_INFO_COLUMNS))
    want = summarize(samples, runs[runs["backend"] == "synthetic"])
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    for analysis in (sub.warmup, sub.harness_gap, sub.breakdown, sub.warnings, sub.batching):
        assert len(analysis())
    with pytest.raises(AssertionError, match="whole samples"):
        sub.samples  # noqa: B018  (the frame itself is still there, read when asked for)


def test_chunks_hold_whole_runs_in_id_order(study):
    flt = scan.Filter(run_ids=None, phase="measure", stages=["e2e"])
    cat = scan.catalog(study)
    parts = list(scan.chunks(cat, flt, ("run_id", "stage", "host_ns"), max_rows=10_000))
    ids = [sorted(set(p["run_id"].astype(str))) for p in parts]
    flat = [r for chunk in ids for r in chunk]
    assert flat == sorted(flat) and len(flat) == len(set(flat))  # no run in two chunks
    assert "leftover" in flat  # no runs filter: every run's rows
    assert all(len(p) <= 10_000 or len(i) == 1 for p, i in zip(parts, ids))
    assert all(set(p["stage"].astype(str)) == {"e2e"} for p in parts)
    assert isinstance(parts[0]["run_id"].dtype, pd.CategoricalDtype)


def test_chunks_fill_missing_columns_and_yield_nothing_when_nothing_matches(tmp_path):
    frame = pa.table({"run_id": ["r"], "stage": ["e2e"], "host_ns": [5]})
    (tmp_path / "samples").mkdir()
    import pyarrow.parquet as pq

    meta = store.schema("samples").metadata
    pq.write_table(frame.replace_schema_metadata(meta), tmp_path / "samples" / "r.parquet")
    cat = scan.catalog([tmp_path])
    (part,) = scan.chunks(cat, scan.Filter(), ("run_id", "stage", "host_ns", "device_ns"))
    assert part["host_ns"].tolist() == [5] and part["device_ns"].isna().all()
    assert list(scan.chunks(cat, scan.Filter(run_ids=["other"]), ("run_id",))) == []
    assert scan.catalog([tmp_path / "nothing"]) is None
