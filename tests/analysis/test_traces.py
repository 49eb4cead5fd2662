"""analysis.traces: NVTX ranges joined to samples, and their per-run medians, on hand-built frames
with known answers."""

from __future__ import annotations

import pandas as pd
import pytest

from perflab.analysis import traces
from perflab.errors import PerflabError


def _samples(run_id: str, host_ns: dict[int, int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": run_id,
            "iteration": list(host_ns),
            "phase": ["warmup", *["measure"] * (len(host_ns) - 1)],
            "stage": "compute",
            "start_ns": 0,
            "host_ns": list(host_ns.values()),
            "device_ns": None,
            "items": 1,
        }
    )


def _ranges(filed_under: str, perflab_run, durations_ns: dict[int, int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": filed_under,
            "perflab_run": perflab_run,
            "iteration": list(durations_ns),
            "stage": "compute",
            "duration_ns": list(durations_ns.values()),
            # the GPU span is always 100 us shorter than the range
            "gpu_duration_ns": [d - 100_000 for d in durations_ns.values()],
            "n_gpu_ops": 3,
        }
    )


RUNS = pd.DataFrame({"run_id": ["r1", "r2"], "label": ["m b1", "m b2"]})


def test_ranges_filed_under_a_perflab_run_pair_with_its_samples():
    samples = pd.concat(
        [_samples("r1", {0: 9e6, 1: 1e6, 2: 2e6, 3: 3e6}), _samples("r2", {0: 5e6, 1: 5e6})]
    )
    ranges = _ranges("r1", None, {0: 8e6, 1: 0.9e6, 2: 1.9e6, 3: 2.9e6})
    c = traces.correlate(ranges, samples, runs=RUNS)
    assert list(c["run_id"]) == ["r1"] * 4
    assert c["gap_ms"].tolist() == pytest.approx([1.1, 0.2, 0.2, 0.2])
    summary = traces.trace_vs_harness(c, RUNS)
    # medians over the measured iterations 1-3 only (iteration 0 is warmup)
    assert summary.to_dict("records") == [
        {
            "label": "m b1",
            "stage": "compute",
            "harness p50 ms": pytest.approx(2.0),
            "range p50 ms": pytest.approx(1.9),
            "GPU p50 ms": pytest.approx(1.8),
            "GPU ops p50": 3.0,
        }
    ]


def test_ranges_of_a_profiled_study_pair_by_run_label():
    samples = pd.concat([_samples("r1", {0: 1e6, 1: 1e6}), _samples("r2", {0: 4e6, 1: 6e6})])
    ranges = _ranges("nsys-run", "m b2", {0: 3e6, 1: 5e6})
    c = traces.correlate(ranges, samples, runs=RUNS)
    assert set(c["run_id"]) == {"r2"} and c["host_ms"].tolist() == [4.0, 6.0]
    with pytest.raises(PerflabError, match="pass runs="):
        traces.correlate(ranges.assign(perflab_run=["m b1", "m b2"]), samples)


def test_no_stage_ranges_give_an_empty_frame_with_the_columns():
    empty = traces.trace_vs_harness(
        traces.correlate(_ranges("r1", None, {}), _samples("r1", {0: 1})), RUNS
    )
    assert empty.empty and list(empty.columns) == traces.TRACE_VS_HARNESS_COLUMNS
