"""compare(): ratios of medians, bootstrap CIs, verdicts, matching, imported rows."""

from __future__ import annotations

import numpy as np
import pytest

from perflab.analysis.compare import compare, verdict
from perflab.analysis.repeats import bootstrap_medians
from perflab.errors import PerflabError

STAGES_MS = {"preprocess": 0.5, "compute": 10.0, "postprocess": 0.3}


def _run(make_samples, run_id, factor=1.0, seed=0, n=1000, jitter=0.01):
    stages = {**STAGES_MS, "compute": STAGES_MS["compute"] * factor}
    return make_samples(run_id, n_measure=n, stages_ms=stages, gpu=False, seed=seed, jitter=jitter)


LEVELS = {"base": 1.0, "tiny": 1.001, "slow": 1.05, "fast": 0.95}  # compute factor per backend


@pytest.fixture
def backends(make_samples, concat_samples, make_runs):
    """Two runs (repetitions) per backend: 0.1% slower, 5% slower and 5% faster compute."""
    frames, ids, names = [], [], []
    for i, (name, factor) in enumerate(LEVELS.items()):
        for rep in range(2):
            ids.append(f"{name}{rep}")
            names.append(name)
            frames.append(_run(make_samples, ids[-1], factor, seed=10 * i + rep))
    return concat_samples(*frames), make_runs(ids, backend=names)


def test_verdicts_with_default_threshold(backends):
    samples, runs = backends
    out = compare(samples, runs, by="backend", baseline="base").set_index("b")
    assert out.loc["tiny", "verdict"] == "same"  # 0.1%: inside the 1% band
    assert out.loc["slow", "verdict"] == "slower"  # 5% with 1% jitter
    assert out.loc["fast", "verdict"] == "faster"
    for level in ("tiny", "slow", "fast"):
        row = out.loc[level]
        assert row["ci_low"] <= row["ratio"] <= row["ci_high"]
        assert row["ratio"] == pytest.approx(row["median_b_ms"] / row["median_a_ms"])
        assert row["n_a"] == row["n_b"] == 2000 and row["n_runs_a"] == row["n_runs_b"] == 2
    assert out.loc["slow", "p_value"] < 1e-6
    assert (out["threshold"] == 0.01).all() and out["comparable"].all()


def test_one_run_per_side_is_only_indicative(backends):
    samples, runs = backends
    first = runs[runs["run_id"].str.endswith("0")]
    out = compare(samples, first, by="backend", baseline="base").set_index("b")
    assert (out["verdict"] == "indicative").all()
    # The numbers stay: the ratio and the within-run CI still point the right way.
    assert out.loc["slow", "ci_low"] > 1.01 and out.loc["fast", "ci_high"] < 0.99


def test_centre_is_the_mean_of_run_medians(make_samples, concat_samples, make_runs):
    # Two runs of one config, 10% apart; the centre weighs each run once, not each iteration.
    a = [_run(make_samples, "a0", 1.0, seed=1, n=100), _run(make_samples, "a1", 1.1, seed=2, n=900)]
    b = [_run(make_samples, "b0", 1.0, seed=3, n=300), _run(make_samples, "b1", 1.0, seed=4, n=300)]
    samples = concat_samples(*a, *b)
    runs = make_runs(["a0", "a1", "b0", "b1"], backend=["x", "x", "y", "y"])
    row = compare(samples, runs, by="backend", baseline="x").iloc[0]
    e2e = samples[(samples["stage"] == "e2e") & (samples["phase"] == "measure")]
    med = e2e.groupby(e2e["run_id"].astype(str))["host_ns"].median() / 1e6
    assert row["median_a_ms"] == pytest.approx((med["a0"] + med["a1"]) / 2)
    assert row["median_b_ms"] == pytest.approx((med["b0"] + med["b1"]) / 2)


def test_too_few_iterations_give_no_ci(make_samples, concat_samples, make_runs):
    # Three iterations (like a torch run that stopped early): no CI, and no verdict from it.
    samples = concat_samples(
        _run(make_samples, "a", 1.0, seed=1, n=3), _run(make_samples, "b", 2.0, seed=2, n=300)
    )
    row = compare(samples, make_runs(["a", "b"], backend=["x", "y"]), by="backend").iloc[0]
    assert row["verdict"] == "too few samples"
    assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"]) and row["ratio"] > 1


def test_ci_spanning_one_is_same_even_with_a_zero_threshold(
    make_samples, concat_samples, make_runs
):
    samples = concat_samples(
        *[_run(make_samples, f"r{i}", seed=i, n=200, jitter=0.05) for i in range(4)]
    )
    runs = make_runs([f"r{i}" for i in range(4)], backend=["x", "x", "y", "y"])
    row = compare(samples, runs, by="backend", threshold=0.0).iloc[0]
    assert row["ci_low"] < 1 < row["ci_high"] and row["verdict"] == "same"


def test_verdict_rules():
    assert verdict(0.99, 1.02, 0.0) == "same"
    assert verdict(1.002, 1.004, 0.01) == "same"
    assert verdict(1.005, 1.015, 0.01) == "slower"
    assert verdict(0.90, 0.95, 0.01) == "faster"
    assert verdict(float("nan"), 1.0, 0.01) == "no data"
    assert verdict(0.90, 0.95, 0.01, n_runs=1) == "indicative"
    assert verdict(0.99, 1.02, 0.0, n_runs=1) == "indicative"


def test_default_baseline_is_first_level_and_seeded(backends):
    samples, runs = backends
    first = compare(samples, runs, by="backend")
    assert set(first["a"]) == {"base"}
    again = compare(samples, runs, by="backend")
    assert first["ci_low"].tolist() == again["ci_low"].tolist()


def test_bootstrap_medians_match_resampling():
    rng = np.random.default_rng(3)
    for n in (101, 100):
        x = np.sort(rng.gamma(3.0, 1.0, n))
        fast = bootstrap_medians(x, 20000, np.random.default_rng(1))
        slow = np.median(x[np.random.default_rng(2).integers(0, n, (20000, n))], axis=1)
        np.testing.assert_allclose(
            np.quantile(fast, [0.025, 0.5, 0.975]),
            np.quantile(slow, [0.025, 0.5, 0.975]),
            rtol=0.01,
        )


def test_matches_like_with_like(make_samples, concat_samples, make_runs):
    # Two precisions x two batch sizes: each precision pair is compared at equal batch size.
    frames, ids = [], []
    for i, (p, b, f) in enumerate(
        [("fp32", 1, 1.0), ("fp16", 1, 0.6), ("fp32", 8, 3.0), ("fp16", 8, 1.5)]
    ):
        frames.append(_run(make_samples, f"r{i}", f, seed=i, n=300))
        ids.append(f"r{i}")
    runs = make_runs(ids, precision=["fp32", "fp16", "fp32", "fp16"], batch_size=[1, 1, 8, 8])
    out = compare(concat_samples(*frames), runs, by="precision", baseline="fp32")
    assert sorted(out["batch_size"].astype(int)) == [1, 8]
    assert (out["verdict"] == "indicative").all()  # one run per side
    ratio = out.set_index(out["batch_size"].astype(int))["ratio"]
    assert ratio[1] == pytest.approx(0.61, abs=0.03) and ratio[8] == pytest.approx(0.51, abs=0.03)


def test_two_machines_compared_by_host(make_samples, concat_samples, make_runs):
    # Runs opened from two folders: other host, other device_name, other study.
    samples = concat_samples(
        _run(make_samples, "m1", 1.0, seed=1, n=300), _run(make_samples, "m2", 0.5, seed=2, n=300)
    )
    runs = make_runs(
        ["m1", "m2"],
        host=["box-a", "box-b"],
        device_name=["GTX 1050 Ti", "RTX 3070"],
        study=["mon", "tue"],
    )
    out = compare(samples, runs, by="host", baseline="box-a")
    assert len(out) == 1 and out.iloc[0]["verdict"] == "indicative"
    assert out.iloc[0]["ci_high"] < 1
    assert "device_name" not in out.columns  # where-columns are not matched across machines
    by_backend = compare(samples, runs, by="study")
    assert len(by_backend) == 1
    # Compared by something else, runs on different machines never pair up.
    runs2 = runs.assign(backend=["x", "y"])
    assert compare(samples, runs2, by="backend").empty


def test_several_by_columns(make_samples, concat_samples, make_runs):
    samples = concat_samples(
        *[_run(make_samples, f"r{i}", f, seed=i, n=200) for i, f in enumerate([1.0, 0.8, 0.5])]
    )
    runs = make_runs(
        ["r0", "r1", "r2"], backend=["ort", "trt", "trt"], precision=["fp32", "fp32", "fp16"]
    )
    out = compare(samples, runs, by=["backend", "precision"], baseline=("ort", "fp32"))
    assert set(out["b"]) == {"trt / fp32", "trt / fp16"} and (out["a"] == "ort / fp32").all()
    assert (out["by"] == "backend/precision").all()


def test_imported_trtexec_rows_are_not_comparable_unless_allowed(
    make_samples, concat_samples, make_runs
):
    samples = concat_samples(
        _run(make_samples, "ours", 1.0, seed=1, n=200),
        _run(make_samples, "imp", 0.5, seed=2, n=200),
    )
    runs = make_runs(["ours", "imp"], backend=["trt", "trtexec"])
    row = compare(samples, runs, by="backend", baseline="trt").iloc[0]
    assert not row["comparable"] and row["verdict"] == "not comparable"
    assert row["ratio"] < 1  # the numbers stay visible
    allowed = compare(samples, runs, by="backend", baseline="trt", allow_imported=True).iloc[0]
    assert allowed["comparable"] and allowed["verdict"] == "indicative"


def test_missing_stage_on_one_side_is_no_data(make_samples, concat_samples, make_runs):
    a = _run(make_samples, "a", seed=1, n=100)
    b = _run(make_samples, "b", seed=2, n=100)
    b = b[b["stage"] == "compute"]
    runs = make_runs(["a", "b"], backend=["x", "y"])
    row = compare(concat_samples(a, b), runs, by="backend").iloc[0]
    assert row["verdict"] == "no data" and row["n_b"] == 0


def test_errors(backends):
    samples, runs = backends
    with pytest.raises(PerflabError, match="levels"):
        compare(samples, runs, by="backend", baseline="nope")
    with pytest.raises(PerflabError, match="gpu_model"):
        compare(samples, runs, by="gpu_model")


def test_compare_by_an_option_matches_on_the_other_options(make_samples, concat_samples, make_runs):
    # compute_ms swept at two values for each of two thread counts: compare by one option, matched
    # on the other, as the experiment file's sweep axis `options.compute_ms` names it.
    frames, ids, options = [], [], []
    for i, (compute, threads) in enumerate([(10, 1), (20, 1), (10, 2), (20, 2)]):
        frames.append(_run(make_samples, f"r{i}", compute / 10 * (1 if threads == 1 else 0.5)))
        ids.append(f"r{i}")
        options.append(f'{{"compute_ms": {compute}, "threads": {threads}}}')
    runs = make_runs(ids, options=options)
    out = compare(concat_samples(*frames), runs, by="options.compute_ms", baseline="10")
    assert list(out["b"]) == ["20", "20"]
    assert sorted(out["options.threads"]) == ["1", "2"]
    assert "options" not in out.columns
    ratio = out.set_index("options.threads")["ratio"]
    # e2e = 0.8 ms of host stages + compute: (0.8 + 20) / (0.8 + 10) and (0.8 + 10) / (0.8 + 5)
    assert ratio["1"] == pytest.approx(20.8 / 10.8, rel=0.02)
    assert ratio["2"] == pytest.approx(10.8 / 5.8, rel=0.02)


def test_compare_by_seed_and_pipeline_option(make_samples, concat_samples, make_runs):
    samples = concat_samples(
        _run(make_samples, "a", 1.0, seed=1), _run(make_samples, "b", 1.05, seed=2)
    )
    runs = make_runs(
        ["a", "b"],
        seed=[0, 1],
        pipeline_options=['{"image_size": 224}', '{"image_size": 320}'],
    )
    # One run per side: the verdict is only indicative; the CI still says which way.
    by_seed = compare(samples, runs, by="seed", match=["model"])
    assert list(by_seed["a"]) == ["0"] and list(by_seed["verdict"]) == ["indicative"]
    assert by_seed["ci_low"].iloc[0] > 1.01
    by_size = compare(samples, runs, by="pipeline_options.image_size", match=["model"])
    assert list(by_size["b"]) == ["320"] and list(by_size["verdict"]) == ["indicative"]


def test_compare_by_an_option_no_run_has(backends):
    samples, runs = backends
    with pytest.raises(PerflabError, match=r"cannot compare by \['options.sead'\]"):
        compare(samples, runs, by="options.sead")
