"""ranking(): engines per configuration, fastest first, with CIs, verdicts and what did not run."""

from __future__ import annotations

import numpy as np
import pytest

from perflab.analysis.compare import compare
from perflab.analysis.ranking import ranking
from perflab.errors import PerflabError

STAGES_MS = {"preprocess": 0.5, "compute": 10.0, "postprocess": 0.3}


def _run(make_samples, run_id, factor, seed, n=600):
    stages = {**STAGES_MS, "compute": STAGES_MS["compute"] * factor}
    return make_samples(run_id, n_measure=n, stages_ms=stages, gpu=False, seed=seed, jitter=0.01)


ENGINES = [
    # run, backend, model, compute factor (None: no samples), device name, status, error
    ("a", "ort-cpu", "m1", 1.20, "AMD EPYC", "ok", None),
    ("b", "openvino", "m1", 1.00, "AMD EPYC 7B13", "ok", None),
    ("c", "openvino-cpp", "m1", 1.001, "AMD EPYC 7B13", "ok", None),
    ("d", "torch-cpu", "m1", 1.50, "AMD EPYC", "ok", None),
    ("e", "mnn", "m1", None, "x", "unsupported", "mnn: the converter rejected m1"),
    ("f", "ort-cpu", "m2", 2.00, "y", "ok", None),
    ("g", "mnn", "m2", 1.00, "y", "ok", None),
]


@pytest.fixture
def study(make_samples, concat_samples, make_runs):
    """Two models; on m1 four engines (one 0.1% off the fastest: a tie) and one unsupported.
    Every engine that ran ran twice (two repetitions: verdicts need the between-run spread)."""
    frames, rows = [], []
    for i, (run, backend, model, factor, device, status, error) in enumerate(ENGINES):
        for rep in range(2 if factor is not None else 1):
            rows.append((f"{run}{rep}", backend, model, device, status, error))
            if factor is not None:
                frames.append(_run(make_samples, f"{run}{rep}", factor, 10 * i + rep))
    ids, backends, models, devices, statuses, errors = map(list, zip(*rows))
    runs = make_runs(
        ids,
        backend=backends,
        model=models,
        # Engines name one CPU differently: the ranking still puts them in one configuration.
        device_name=devices,
        status=statuses,
        error=errors,
    )
    return concat_samples(*frames), runs


def test_fastest_first_with_ratios_and_ties(study):
    samples, runs = study
    out = ranking(samples, runs)
    m1 = out[out["model"] == "m1"]
    assert list(m1["backend"]) == ["openvino", "openvino-cpp", "ort-cpu", "torch-cpu", "mnn"]
    ranked = m1[m1["status"] == "ok"]
    assert list(ranked["rank"]) == [1, 2, 3, 4]
    # e2e = 0.5 + compute + 0.3 ms plus the 0.02 ms gap between stages: the ratios follow from
    # the known stage durations.
    expected = [(0.82 + 10.0 * f) / 10.82 for f in (1.0, 1.001, 1.2, 1.5)]
    np.testing.assert_allclose(ranked["ratio_to_fastest"], expected, rtol=2e-3)
    np.testing.assert_allclose(
        ranked["median_ms"], [0.82 + 10.0 * f for f in (1, 1.001, 1.2, 1.5)], rtol=2e-3
    )
    assert list(ranked["vs_fastest"]) == ["fastest", "same", "slower", "slower"]
    assert list(ranked["vs_next_faster"]) == ["fastest", "same", "slower", "slower"]
    assert (ranked["median_ci_low_ms"] <= ranked["median_ms"]).all()
    assert (ranked["median_ms"] <= ranked["median_ci_high_ms"]).all()
    assert (ranked["ratio_ci_low"] <= ranked["ratio_to_fastest"] + 1e-12).all()
    assert (ranked["n_runs"] == 2).all() and (ranked["n"] == 1200).all()


def test_one_run_per_engine_is_only_indicative(study):
    samples, runs = study
    first = runs[~runs["run_id"].str.endswith("1")]
    ranked = ranking(samples, first).query("model == 'm1' and status == 'ok'")
    assert list(ranked["vs_fastest"]) == ["fastest", "indicative", "indicative", "indicative"]
    assert ranked["ratio_ci_low"].iloc[3] > 1.3  # the numbers still point the right way


def test_engines_that_did_not_run_are_listed_last_with_the_reason(study):
    samples, runs = study
    out = ranking(samples, runs)
    last = out[out["model"] == "m1"].iloc[-1]
    assert last["backend"] == "mnn" and last["status"] == "unsupported"
    assert np.isnan(last["rank"]) and last["n"] == 0
    assert "converter rejected" in last["reason"]


def test_each_configuration_ranks_on_its_own(study):
    samples, runs = study
    m2 = ranking(samples, runs).query("model == 'm2'")
    assert list(m2["backend"]) == ["mnn", "ort-cpu"]
    assert list(m2["rank"]) == [1, 2]
    assert m2["vs_fastest"].iloc[1] == "slower"
    assert m2["ratio_to_fastest"].iloc[1] == pytest.approx((0.82 + 20.0) / 10.82, rel=2e-3)


def test_ratio_agrees_with_compare(study):
    samples, runs = study
    same_place = runs.assign(device_name="cpu0")
    ranked = ranking(samples, same_place).query("model == 'm1' and status == 'ok'")
    pair = compare(samples, same_place, by="backend", baseline="openvino")
    for _, row in ranked.iloc[1:].iterrows():
        c = pair[(pair["b"] == row["backend"]) & (pair["model"] == "m1")].iloc[0]
        assert row["ratio_to_fastest"] == pytest.approx(c["ratio"], rel=1e-12)


def test_unknown_column_is_an_error(study):
    samples, runs = study
    with pytest.raises(PerflabError, match="cannot rank by 'engine'"):
        ranking(samples, runs, by="engine")


def test_too_few_samples_give_no_ratio_ci(make_samples, concat_samples, make_runs):
    samples = concat_samples(
        _run(make_samples, "a", 1.0, 1, n=400), _run(make_samples, "b", 1.5, 2, n=3)
    )
    runs = make_runs(["a", "b"], backend=["openvino", "ncnn"])
    out = ranking(samples, runs)
    slow = out.iloc[1]
    assert slow["backend"] == "ncnn" and slow["ratio_to_fastest"] > 1.4
    assert np.isnan(slow["ratio_ci_low"]) and np.isnan(slow["median_ci_low_ms"])
    assert slow["vs_fastest"] == "no data"
