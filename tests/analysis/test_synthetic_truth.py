"""The analysis checked end to end against the synthetic backend, on a deterministic clock.

The runner, the recorder and the synthetic backend's busy-waits run on `VirtualClock`, so each
stage takes exactly its configured (seeded, jittered) time whatever else the machine is doing.
"""

from __future__ import annotations

import pytest

import perflab
from experiments import experiment
from perflab import runner, spec
from perflab.timing import VirtualClock, use_clock

BASE = experiment("truth", warmup=0, iterations=300)


def run(tmp_path, **data):
    study = spec.parse({**BASE, **data})
    with use_clock(VirtualClock()):
        result = runner.run_study(study, tmp_path, isolate=False)
    assert all(r["status"] == "ok" for r in result.rows), [r.get("error") for r in result.rows]
    return perflab.open(tmp_path)


def test_stage_medians_are_exact_and_the_gap_is_the_harness_own(tmp_path):
    stages = {"preprocess": 0.3, "h2d": 0.2, "compute": 2.0, "d2h": 0.4, "postprocess": 0.5}
    res = run(tmp_path, options={f"{k}_ms": v for k, v in stages.items()})
    summary = res.summary().set_index("stage")
    for stage, ms in stages.items():
        assert summary.loc[stage, "p50_ms"] == pytest.approx(ms, abs=1e-3)
    gap = res.harness_gap()
    # the only time outside the stages is the clock reads themselves (50 ns ticks)
    assert 0 < gap["gap_p50_ms"].iloc[0] < 1e-3


def test_breakdown_matches_configured_shares(tmp_path):
    stages = {"preprocess": 0.5, "h2d": 0.25, "compute": 2.0, "d2h": 0.25, "postprocess": 1.0}
    res = run(tmp_path, options={**{f"{k}_ms": v for k, v in stages.items()}, "jitter": 0.02})
    shares = res.breakdown().set_index("stage")["share"]
    total = sum(stages.values())
    for stage, ms in stages.items():
        assert shares[stage] == pytest.approx(ms / total, abs=0.01), stage
    assert res.breakdown().set_index("stage").loc["compute", "bottleneck"]


def test_warmup_pattern_is_found_and_flat_runs_are_flat(tmp_path):
    res = run(
        tmp_path,
        options={"compute_ms": 1.0, "jitter": 0.01},
        sweep={"options.warmup_iterations": [0, 30], "options.warmup_extra_ms": [2.0]},
        warmup={"iterations": 0},
        measure={"iterations": 400},
    )
    table = res.warmup().set_index("label")
    flat = table.loc[table.index.str.contains("warmup_iterations=0")].iloc[0]
    warm = table.loc[table.index.str.contains("warmup_iterations=30")].iloc[0]
    assert flat["classification"] == "flat"
    assert warm["classification"] == "warmup"
    assert 24 <= warm["steady_iteration"] <= 36


def test_batching_fit_recovers_fixed_and_per_item_cost(tmp_path):
    res = run(
        tmp_path,
        options={"compute_ms": 1.0, "compute_ms_per_item": 0.5, "jitter": 0.01},
        sweep={"batch_size": [1, 2, 4, 8, 16, 32]},
        measure={"iterations": 100},
    )
    fit = res.batching().set_index("stage").loc["compute"]
    assert fit["a_ms"] == pytest.approx(1.0, rel=0.03)
    assert fit["b_ms_per_item"] == pytest.approx(0.5, rel=0.03)
    assert fit["r2"] > 0.999


@pytest.mark.parametrize(
    "difference, repeat, expected",
    [(0.05, 3, "slower"), (0.001, 3, "same"), (0.05, 1, "indicative")],
)
def test_compare_tells_real_differences_from_noise(tmp_path, difference, repeat, expected):
    # Confident verdicts need repetitions (the between-run spread); one run is only indicative.
    res = run(
        tmp_path,
        options={"jitter": 0.01, "preprocess_ms": 0, "postprocess_ms": 0},
        sweep={"options.compute_ms": [1.0, 1.0 + difference]},
        measure={"iterations": 300},
        repeat=repeat,
    )
    table = res.compare(by="options")  # the runs differ only in their options: compute_ms
    assert len(table) == 1
    row = table.iloc[0]
    assert '"compute_ms": 1.0,' in row["a"]
    assert row["verdict"] == expected
    assert row["ratio"] == pytest.approx(1 + difference, abs=0.005)
