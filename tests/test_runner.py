"""The measurement loop, checked against the synthetic backend whose stage durations are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments import experiment
from perflab import runner, spec, store
from perflab.errors import SpecError, StoreError
from perflab.timing import VirtualClock, use_clock

STAGES_MS = {"preprocess": 0.3, "h2d": 0.2, "compute": 2.0, "d2h": 0.4, "postprocess": 0.5}


def config(measure=None, warmup=None, **options):
    data = {
        "study": "t",
        "backend": "synthetic",
        "options": options,
        "measure": measure or {"iterations": 50},
        "warmup": warmup or {"iterations": 2},
    }
    return spec.parse(data).configs[0]


def measured(out):
    samples = store.read(out, "samples")
    return samples.loc[samples["phase"] == "measure"]


def test_stage_medians_match_configured_durations(tmp_path):
    opts = {f"{k}_ms": v for k, v in STAGES_MS.items()}
    row = runner.execute(config(measure={"iterations": 150}, **opts), tmp_path)
    assert row["status"] == "ok", row.get("error")
    med = measured(tmp_path).groupby("stage", observed=True)["host_ns"].median() / 1e6
    # On the real clock a stage also holds the few microseconds of its own entry and exit, more
    # on a loaded machine; the exact arithmetic is checked on VirtualClock in test_synthetic_truth.
    for stage, expected in STAGES_MS.items():
        assert med[stage] == pytest.approx(expected, rel=0.01, abs=0.01), stage
    gap = med["e2e"] - sum(med[s] for s in STAGES_MS)
    assert 0 <= gap < 0.05 * med["e2e"]


def test_every_iteration_and_stage_is_recorded_with_phases(tmp_path):
    row = runner.execute(config(measure={"iterations": 20}, warmup={"iterations": 3}), tmp_path)
    samples = store.read(tmp_path, "samples")
    assert row["n_warmup"] == 3 and row["n_measure"] == 20 and row["stop_reason"] == "iterations"
    per_iteration = samples.groupby("iteration")["stage"].apply(lambda s: sorted(map(str, s)))
    assert len(per_iteration) == 23
    assert all(
        stages == ["compute", "e2e", "postprocess", "preprocess"] for stages in per_iteration
    )
    phases = samples.drop_duplicates("iteration").set_index("iteration")["phase"].astype(str)
    assert list(phases[:3]) == ["warmup"] * 3 and set(phases[3:]) == {"measure"}
    assert (samples["items"] == 1).all()
    # start_ns grows within an iteration and across iterations
    e2e = samples.loc[samples["stage"] == "e2e"].sort_values("iteration")
    assert np.all(np.diff(e2e["start_ns"].to_numpy()) > 0)


def test_zero_warmup_measures_the_cold_start(tmp_path):
    row = runner.execute(
        config(
            measure={"iterations": 5},
            warmup={"iterations": 0},
            warmup_iterations=1,
            warmup_extra_ms=5.0,
        ),
        tmp_path,
    )
    samples = measured(tmp_path)
    assert row["n_warmup"] == 0
    first = (
        samples.loc[(samples["iteration"] == 0) & (samples["stage"] == "e2e"), "host_ns"].iloc[0]
        / 1e6
    )
    assert row["first_ms"] == pytest.approx(first)
    assert first > 5.0  # the extra warmup cost of iteration 0 is in the measured phase


def test_batch_scales_compute_and_items(tmp_path):
    options = {"compute_ms": 1.0, "compute_ms_per_item": 0.25}
    c = spec.parse(experiment("t", iterations=40, batch_size=8, options=options)).configs[0]
    runner.execute(c, tmp_path)
    s = measured(tmp_path)
    assert s.loc[s["stage"] == "compute", "host_ns"].median() / 1e6 == pytest.approx(3.0, rel=0.01)
    assert (s["items"] == 8).all()


def test_seconds_rule(tmp_path):
    with use_clock(VirtualClock()):
        row = runner.execute(config(measure={"seconds": 0.2}, compute_ms=5.0), tmp_path)
    assert row["stop_reason"] == "seconds"
    assert row["measure_wall_s"] >= 0.2
    # it stops at the first iteration boundary past the limit: the last iteration began before it
    e2e = measured(tmp_path).query("stage == 'e2e'").sort_values("iteration")
    last_start_s = (e2e["start_ns"].iloc[-1] - e2e["start_ns"].iloc[0]) / 1e9
    assert last_start_s < 0.2 <= last_start_s + e2e["host_ns"].iloc[-1] / 1e9 + 1e-6
    assert row["n_measure"] == len(e2e) == math.ceil(0.2 / (e2e["host_ns"].median() / 1e9))


def test_adaptive_rule_stops_when_the_ci_is_tight(tmp_path):
    row = runner.execute(
        config(measure={"target_rel_ci": 0.01, "max_seconds": 20}, jitter=0.02), tmp_path
    )
    assert row["stop_reason"] == "ci_reached"
    e2e = measured(tmp_path).query("stage == 'e2e'")["host_ns"].to_numpy()
    med, lo, hi = runner.median_ci(e2e)
    assert (hi - lo) / 2 <= 0.01 * med
    assert runner.MIN_ADAPTIVE_ITERATIONS <= row["n_measure"] < 2000


def test_adaptive_rule_is_bounded_by_max_seconds(tmp_path):
    with use_clock(VirtualClock()):
        row = runner.execute(
            config(measure={"target_rel_ci": 0.0001, "max_seconds": 0.3}, jitter=0.3), tmp_path
        )
    assert row["stop_reason"] == "max_seconds"
    e2e = measured(tmp_path).query("stage == 'e2e'")
    assert 0.3 <= row["measure_wall_s"] <= 0.3 + e2e["host_ns"].max() / 1e9 + 1e-3


def test_median_ci_covers_the_median_of_a_known_distribution():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        _, lo, hi = runner.median_ci(rng.exponential(size=101))
        hits += lo <= np.log(2) <= hi
    assert 0.92 <= hits / 400 <= 0.99


def test_jitter_is_seeded(tmp_path):
    # On the deterministic clock the drawn durations are what is compared, not the machine's load.
    with use_clock(VirtualClock()):
        a = runner.execute(config(jitter=0.05), tmp_path / "a")
        b = runner.execute(config(jitter=0.05), tmp_path / "b")
    assert a["status"] == b["status"] == "ok"
    # same seed: same drawn durations, so the medians agree far closer than the 5% jitter
    ma = measured(tmp_path / "a").query("stage == 'compute'")["host_ns"].to_numpy()
    mb = measured(tmp_path / "b").query("stage == 'compute'")["host_ns"].to_numpy()
    assert np.median(np.abs(ma - mb) / ma) < 0.01


def test_in_process_exception_keeps_the_samples_measured_before_it(tmp_path):
    row = runner.execute(
        config(measure={"iterations": 50}, crash="exception", crash_at=10), tmp_path
    )
    assert row["status"] == "failed"
    assert "synthetic failure injected at iteration 10" in row["error"]
    samples = store.read(tmp_path, "samples")
    assert samples["iteration"].max() == 10  # iterations 0..9 complete, 10 partly
    assert store.read(tmp_path, "runs")["status"].tolist() == ["failed"]


def test_unknown_option_is_refused_when_the_file_is_read(tmp_path):
    with pytest.raises(SpecError, match=r"unknown option 'compute_msec'; valid: preprocess_ms"):
        config(compute_msec=1)


def test_unavailable_backend_is_unsupported_not_a_crash(tmp_path):
    c = spec.parse({"study": "t", "backend": "trt", "model": "mlp"}).configs[0]
    row = runner.execute(c, tmp_path)
    assert row["status"] == "unsupported"
    assert row["error"].startswith("trt unavailable: ")


def test_calibration_is_stored_with_each_run(tmp_path):
    row = runner.execute(config(), tmp_path)
    cal = store.read(tmp_path, "calibration")
    assert set(cal["what"]) == {"timer", "nvtx_push_pop", "stage_overhead"}
    assert (cal["run_id"] == row["run_id"]).all()
    assert (cal.set_index("what")["median_ns"] < 50_000).all()


# ----------------------------------------------------------------------------- studies, isolation


def study(tmp_path, configs):
    return spec.parse(
        experiment(
            "iso",
            warmup=1,
            iterations=20,
            timeout_s=8,
            sweep={"options.crash": configs},
            options={"crash_at": 3, "compute_ms": 0.5},
        )
    )


@pytest.mark.slow
def test_isolated_study_survives_segfault_abort_and_hang(tmp_path):
    st = study(tmp_path, ["none", "segfault", "hang", "abort", "exception"])
    st = spec.Study(
        st.name,
        st.source,
        tuple(
            c if c.option_dict["crash"] != "hang" else spec.replace(c, timeout_s=3.0)
            for c in st.configs
        ),
    )
    result = runner.run_study(st, tmp_path)
    status = {r["label"].split("crash=")[1]: r for r in result.rows}
    assert status["none"]["status"] == "ok"
    assert status["segfault"]["status"] == "failed" and "SIGSEGV" in status["segfault"]["error"]
    assert status["abort"]["status"] == "failed" and "SIGABRT" in status["abort"]["error"]
    assert status["hang"]["status"] == "timeout" and "timeout_s=3" in status["hang"]["error"]
    assert status["exception"]["status"] == "failed"
    runs = store.read(tmp_path, "runs")
    assert len(runs) == 5 and runs["status"].value_counts().to_dict() == {
        "ok": 1,
        "failed": 3,
        "timeout": 1,
    }


def test_resume_skips_configs_with_an_ok_run(tmp_path):
    st = spec.parse(experiment("r", iterations=5, sweep={"batch_size": [1, 2, 3]}))
    first = runner.run_study(st, tmp_path, configs=st.configs[:2], isolate=False)
    assert len(first.rows) == 2
    with pytest.raises(StoreError, match="already holds results of this study; use --resume"):
        runner.plan(st, tmp_path, resume=False, append=False)
    todo = runner.plan(st, tmp_path, resume=True, append=False)
    assert [c.batch_size for c in todo] == [3]
    runner.run_study(st, tmp_path, configs=todo, isolate=False)
    runs = store.read(tmp_path, "runs")
    assert sorted(runs["batch_size"]) == [1, 2, 3] and (runs["status"] == "ok").all()
    other = spec.parse({"study": "r", "backend": "synthetic", "batch_size": 9})
    with pytest.raises(StoreError, match="different spec .* --append"):
        runner.plan(other, tmp_path, resume=True, append=False)
    assert runner.plan(other, tmp_path, resume=False, append=True) == list(other.configs)


def test_leftovers_of_an_interrupted_run_are_cleaned_and_never_read(tmp_path):
    runner.execute(config(), tmp_path)
    some = next((tmp_path / "samples").glob("*.parquet"))
    # A run marked pending that wrote its samples but never its runs row (killed mid-run).
    dead = "20990101T000000000000-deadbeef"
    store.begin_run(tmp_path, dead)
    orphan = store.table_file(tmp_path, "samples", dead)
    orphan.write_bytes(some.read_bytes())
    store.log_file(tmp_path, dead).write_text("worker output")
    tmp = store.temporary_name(store.run_file(tmp_path, dead))
    tmp.write_bytes(b"half a file")
    # Files perflab did not write: a user's own parquet, and a name that only looks temporary.
    mine = tmp_path / "samples" / "mine.parquet"
    mine.write_bytes(some.read_bytes())
    notes = tmp_path / "runs" / ".notes.tmp-draft"
    notes.write_text("keep me")
    assert len(store.read(tmp_path, "runs")) == 1  # the temporary file is never read
    removed = store.sweep_leftovers(tmp_path)
    assert set(removed) == {orphan, tmp, tmp_path / ".logs" / f"{dead}.log"}
    assert mine.exists() and notes.exists() and some.exists()
    assert not (tmp_path / ".pending").exists() and not (tmp_path / ".logs").exists()


def test_throughput_mode_overlaps_host_and_device_work(tmp_path):
    st = spec.parse(
        {
            "study": "tp",
            "backend": "synthetic",
            "measure": {"iterations": 120},
            "options": {"preprocess_ms": 2.0, "compute_ms": 2.0, "postprocess_ms": 0.1},
            "sweep": {"mode": ["latency", "throughput"]},
        }
    )
    rows = {r["mode"]: r for r in runner.run_study(st, tmp_path, isolate=False).rows}
    assert all(r["status"] == "ok" for r in rows.values())
    assert rows["throughput"]["n_measure"] == rows["latency"]["n_measure"] == 120
    samples = measured(tmp_path).merge(
        store.read(tmp_path, "runs")[["run_id", "mode"]], on="run_id"
    )
    counts = samples.groupby(["mode", "stage"], observed=True).size()
    assert counts["throughput", "enqueue"] == 120 and counts["throughput", "e2e"] == 120
    assert ("latency", "enqueue") not in counts.index
    # overlapped: wall time per iteration well under preprocess + compute (4 ms) in one run
    per_it = {m: r["measure_wall_s"] / r["n_measure"] * 1e3 for m, r in rows.items()}
    assert per_it["throughput"] < 0.8 * per_it["latency"]


def test_throughput_mode_needs_a_backend_that_can_overlap(tmp_path, monkeypatch):
    from perflab.backends.synthetic import SyntheticBackend

    monkeypatch.setattr(SyntheticBackend, "supports_throughput", False)
    c = spec.parse({"study": "t", "backend": "synthetic", "mode": "throughput"}).configs[0]
    row = runner.execute(c, tmp_path)
    assert row["status"] == "unsupported" and "has no throughput mode" in row["error"]


def test_resume_and_append_count_repetitions(tmp_path):
    data = {
        "backend": "synthetic",
        "sweep": {"seed": [1, 2]},
        "repeat": 2,
        "measure": {"iterations": 10},
        "warmup": {"iterations": 0},
    }
    study = spec.parse(data)
    out = tmp_path / "out"
    todo = runner.plan(study, out, resume=False, append=False)
    with use_clock(VirtualClock()):
        runner.run_study(study, out, configs=todo[:3], isolate=False)
        # --resume makes the one repetition that has no ok run yet.
        left = runner.plan(study, out, resume=True, append=False)
        assert [(c.spec_id, c.repetition) for c in left] == [(todo[3].spec_id, todo[3].repetition)]
        runner.run_study(study, out, configs=left, isolate=False)
        # --append adds `repeat` more, numbered after those the folder holds.
        more = runner.plan(study, out, resume=False, append=True)
    assert sorted(c.repetition for c in more) == [2, 2, 3, 3]


def test_median_ci_gives_no_bounds_from_too_few_values():
    _, lo, hi = runner.median_ci(np.array([3.0, 1.0, 2.0]))
    assert np.isnan(lo) and np.isnan(hi)
    med, lo, hi = runner.median_ci(np.arange(100.0))
    assert lo < med < hi
