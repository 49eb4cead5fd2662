"""perflab.results: open() folders written with the store, Results accessors, selection, repr."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments import experiment
from perflab import results, store
from perflab.errors import PerflabError, StoreError

STAGES_MS = {"preprocess": 0.5, "compute": 2.0, "postprocess": 0.3}


def _samples(run_id: str, n: int, batch: int, seed: int, scale: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for it in range(n):
        total = 0
        for stage, ms in STAGES_MS.items():
            ns = int(
                ms
                * scale
                * (batch if stage == "compute" else 1)
                * 1e6
                * (1 + 0.01 * rng.standard_normal())
            )
            rows.append((stage, it, ns))
            total += ns
        rows.append(("e2e", it, total + 20_000))
    frame = pd.DataFrame(rows, columns=["stage", "iteration", "host_ns"])
    return frame.assign(
        run_id=run_id,
        phase=np.where(frame["iteration"] < 5, "warmup", "measure"),
        start_ns=0,
        device_ns=np.nan,
        items=batch,
    )


def _write(out, run_id, *, n=60, batch=1, seed=0, scale=1.0, status="ok", **cols):
    run = {
        "run_id": run_id,
        "status": status,
        "label": f"{run_id} label",
        "model": "resnet18",
        "backend": "ort-cpu",
        "precision": "fp32",
        "batch_size": batch,
        "pipeline": "raw",
        "study": "s",
        "host": "box-a",
        "device_name": "cpu",
        "device": "cpu",
        "measure_wall_s": 1.0,
        "n_measure": n - 5,
        "env_id": "env-a",
        **cols,
    }
    tables = {"samples": _samples(run_id, n, batch, seed, scale)} if status == "ok" else {}
    store.write_run(out, run, tables)


@pytest.fixture
def study(tmp_path):
    out = tmp_path / "study"
    _write(out, "r1", batch=1, seed=1)
    _write(out, "r2", batch=4, seed=2, backend="openvino")
    _write(out, "r3", status="failed", error="boom")
    store.write(out, "env", "env-a", {"env_id": "env-a", "host": "box-a"})
    store.write(out, "env", "env-z", {"env_id": "env-z", "host": "elsewhere"})
    store.write(
        out,
        "telemetry",
        "r1",
        pd.DataFrame({"run_id": ["r1", "r1"], "t_ns": [0, 1], "throttled": [False, True]}),
    )
    return out


def test_open_reads_tables(study):
    res = results.open(study)
    assert sorted(res.runs["run_id"]) == ["r1", "r2", "r3"]
    assert set(res.samples["run_id"].astype(str)) == {"r1", "r2"}
    assert len(res.samples) == 2 * 60 * 4
    assert res.env["env_id"].tolist() == ["env-a"]
    assert len(res.telemetry) == 2
    assert res.layers.empty and res.reported.empty and res.calibration.empty
    assert res.paths == (study,)


def test_leftover_samples_without_runs_row_are_ignored(study):
    store.write(study, "samples", "orphan", _samples("orphan", 20, 1, 9))
    res = results.open(study)
    assert "orphan" not in set(res.samples["run_id"].astype(str))
    assert "orphan" not in res.summary()["run_id"].tolist()


def test_two_folders_together(tmp_path):
    a, b = tmp_path / "box-a", tmp_path / "box-b"
    _write(a, "a1", seed=1, host="box-a", study="monday", n=200)
    _write(b, "b1", seed=2, host="box-b", study="tuesday", scale=0.5, n=200)
    res = results.open([a, b])
    assert sorted(res.runs["run_id"]) == ["a1", "b1"]
    cmp = res.compare(by="host", baseline="box-a")
    # One run per machine: half the time, but only indicative without repetitions.
    assert len(cmp) == 1 and cmp.iloc[0]["verdict"] == "indicative"
    assert cmp.iloc[0]["ci_high"] < 1
    assert res.paths == (a, b)


def test_corrupt_file_is_skipped_with_a_warning_naming_it(study):
    (study / "samples" / "broken.parquet").write_bytes(b"not a parquet file")
    res = results.open(study)
    with pytest.warns(UserWarning, match="broken.parquet"):
        samples = res.samples
    assert set(samples["run_id"].astype(str)) == {"r1", "r2"}


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        results.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="no perflab results"):
        results.open(tmp_path / "empty")
    with pytest.raises(PerflabError):
        results.open([])


def test_select_returns_a_new_results(study):
    res = results.open(study)
    sel = res.select(backend="openvino")
    assert sel is not res and isinstance(sel, results.Results)
    assert sel.runs["run_id"].tolist() == ["r2"]
    assert set(sel.samples["run_id"].astype(str)) == {"r2"}
    assert len(res.runs) == 3  # the original is untouched
    assert sorted(res.select(batch_size=[1, 4]).runs["run_id"]) == ["r1", "r2", "r3"]
    assert res.select(batch_size=4).runs["run_id"].tolist() == ["r2"]
    assert sorted(res.ok().runs["run_id"]) == ["r1", "r2"]
    assert res.select(status="failed").select(model="resnet18").runs["run_id"].tolist() == ["r3"]
    with pytest.raises(PerflabError, match="gpu"):
        res.select(gpu="x")


def test_returned_frames_do_not_change_later_results(study):
    res = results.open(study)
    runs = res.runs
    runs["model"] = "changed"
    runs.loc[0, "status"] = "skipped"
    assert (res.runs["model"] == "resnet18").all()
    assert res.runs["status"].tolist().count("ok") == 2
    summ = res.summary()
    summ.loc[:, "p50_ms"] = -1.0
    assert (res.summary()["p50_ms"] > 0).all()


def test_summary_and_analyses(study):
    res = results.open(study)
    summ = res.summary()
    assert list(summ.columns[:6]) == [
        "run_id",
        "label",
        "model",
        "backend",
        "precision",
        "batch_size",
    ]
    assert set(summ["run_id"]) == {"r1", "r2"}
    e2e = summ[summ["stage"] == "e2e"].set_index("run_id")
    assert e2e.loc["r1", "n"] == 55  # measured iterations only
    assert not res.breakdown().empty
    assert set(res.warmup()["run_id"]) == {"r1", "r2"}
    assert not res.harness_gap().empty
    assert not res.batching_curve().empty
    assert not res.batching(stage="compute").empty
    warn = res.warnings()
    assert ("r1", "throttled") in set(zip(warn["run_id"], warn["warning"]))


def test_roofline_and_project_are_wired(study):
    pytest.importorskip("perflab.analysis.roofline")
    res = results.open(study)
    roof = res.roofline()
    assert {"run_id", "stage"} <= set(roof.columns)
    assert set(roof["run_id"]) <= {"r1", "r2"}


def test_repr_and_html_repr_escape(tmp_path):
    out = tmp_path / "evil"
    _write(out, "x1", model="<script>alert(1)</script>", label="<b>run</b>", n=30)
    res = results.open(out)
    page = res._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>run</b>" not in page
    text = repr(res)
    assert "1 runs (1 ok)" in text and "<script>alert(1)</script>" in text
    assert "where" in repr(res.select(backend="ort-cpu"))


def test_open_what_the_runner_wrote(tmp_path):
    from perflab import runner, spec

    options = {"compute_ms": 0.5, "warmup_iterations": 5, "warmup_extra_ms": 1.0}
    config = spec.parse(experiment("t", warmup=5, iterations=40, options=options)).configs[0]
    row = runner.execute(config, tmp_path)
    res = results.open(tmp_path)
    summ = res.summary()
    assert set(summ["run_id"]) == {row["run_id"]}
    assert (summ["n"] == 40).all()
    assert summ.set_index("stage").loc["e2e", "wall_throughput_items_s"] > 0
    assert len(res.warmup()) == 1 and len(res.breakdown()) > 0
    assert "1 runs (1 ok)" in repr(res)


def test_cpu_runs_are_projected_from_the_host_fingerprint(tmp_path):
    """With one CPU fingerprint stored, project() and roofline() need no source device."""
    import perflab
    from perflab import env, runner, spec
    from perflab import store as st

    study = spec.parse({"study": "p", "backend": "synthetic", "measure": {"iterations": 5}})
    runner.run_study(study, tmp_path, isolate=False)
    runs = st.read(tmp_path, "runs")
    row = runs.iloc[0].to_dict()
    row.update(
        model_flops_per_sample=1e9, model_param_bytes=4e6, model_activation_bytes_per_sample=1e6
    )
    st.write_run(tmp_path, row)
    fp = env.fingerprint(gpu=False, providers=False)
    fp.update(cpu_flags=["avx2", "fma"], cpu_cores_physical=2, cpu_mhz_max=3000.0)
    st.write(tmp_path, "env", env.env_id(fp), env.row(fp))
    res = perflab.open(tmp_path)
    assert res.host_fingerprint()["cpu_mhz_max"] == 3000.0
    projected = res.project(device="RTX 3070")
    compute = projected.loc[projected["stage"] == "compute"].iloc[0]
    assert compute["predicted_ms"] > 0 and compute["kind"] == "predicted"


def test_tables_for_people_from_known_stage_times(study):
    res = results.open(study)
    assert res.status_counts().to_dict("records") == [
        {"status": "ok", "runs": 2},
        {"status": "failed", "runs": 1},
    ]
    failed = res.failures()
    assert failed[["label", "status", "reason"]].to_dict("records") == [
        {"label": "r3 label", "status": "failed", "reason": "boom"}
    ]
    ok = res.ok()
    # e2e = the stages (compute scales with the batch) + the 20 us the samples add; 1 % jitter
    head = ok.summary_table().set_index("batch_size")
    assert head.loc[1, "p50 ms"] == pytest.approx(0.5 + 2.0 + 0.3 + 0.02, rel=0.01)
    assert head.loc[4, "p50 ms"] == pytest.approx(0.5 + 8.0 + 0.3 + 0.02, rel=0.01)
    wide = ok.stage_table(value="p50_ms").set_index("label")
    assert wide.loc["r2 label", "compute"] == pytest.approx(8.0, rel=0.01)
    assert list(wide.columns)[-1] == "e2e"
    assert ok.pick_run() in {"r1", "r2"}


def test_speedups_between_two_devices(tmp_path):
    out = tmp_path / "devices"
    _write(out, "slow", seed=1, device_name="GTX 1070", device="cuda:0")
    _write(out, "fast", seed=2, scale=0.5, device_name="RTX 3090", device="cuda:0")
    res = results.open(out).ok()
    assert res.device_column() == "device_name" and res.comparison_axes() == ["device_name"]
    measured = res.speedups("device_name").set_index("stage")
    assert set(measured["pair"]) == {"RTX 3090 vs GTX 1070"}
    assert measured.loc["compute", "speedup"] == pytest.approx(2.0, rel=0.01)
    assert measured.loc["e2e", "speedup"] == pytest.approx(2.82 / 1.42, rel=0.01)
    assert measured.loc["e2e", "ci_low"] <= measured.loc["e2e", "speedup"]
    table = res.speedup_table("device_name").set_index("stage")
    assert table.loc["compute", "measured"] == pytest.approx(2.0, rel=0.01)
    # Predicted: host stages unchanged on another device (1.0); compute unknown without the
    # model's cost (NaN, never a made-up number).
    predicted = res.speedup_chart("device_name")
    predicted = predicted[predicted["kind"] == "predicted"].set_index("stage")["speedup"]
    assert predicted["preprocess"] == 1.0 and np.isnan(predicted["compute"])
