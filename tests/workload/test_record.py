"""perflab.record(): an existing loop, timed, stored as an ordinary study."""

from __future__ import annotations

import subprocess
import sys

import pytest

import perflab
from perflab import store
from perflab.recording import RecordError
from perflab.timing import VirtualClock, busy_wait_ns, use_clock

MS = {"preprocess": 1.0, "compute": 3.0, "postprocess": 0.5}


def loop(rec, n, fail_at=None):
    for i in range(n):
        with rec.iteration():
            for stage, ms in MS.items():
                with rec.stage(stage):
                    if i == fail_at and stage == "compute":
                        raise KeyError("model lost")
                    busy_wait_ns(int(ms * 1e6))


def test_a_recorded_loop_reads_back_through_open_and_show(tmp_path):
    out = tmp_path / "rec"
    with (
        use_clock(VirtualClock()),
        perflab.record("my-yolo", out=out, backend="fastdeploy", warmup=5, threads=2) as rec,
    ):
        loop(rec, 105)
    res = perflab.open(out)
    run = res.runs.iloc[0]
    assert (run["status"], run["backend"], run["n_warmup"], run["n_measure"]) == (
        "ok", "fastdeploy", 5, 100,
    )  # fmt: skip
    assert run["options"] == '{"threads": 2}'
    summary = res.summary().set_index("stage")
    for stage, ms in MS.items():
        assert summary.loc[stage, "p50_ms"] == pytest.approx(ms, rel=0.01)
        assert summary.loc[stage, "n"] == 100
    assert summary.loc["e2e", "p50_ms"] == pytest.approx(sum(MS.values()), rel=0.01)
    assert set(store.read(out, "calibration")["what"]) >= {"timer", "stage_overhead"}
    assert len(store.read(out, "env")) == 1
    shown = subprocess.run(
        [sys.executable, "-m", "perflab.cli", "show", str(out)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert "my-yolo fastdeploy fp32 b1" in shown.stdout
    row = next(line for line in shown.stdout.splitlines() if " compute " in line)
    assert "3.0000" in row


def test_warmup_by_call_and_the_decorator_form(tmp_path):
    with use_clock(VirtualClock()), perflab.record("deco", out=tmp_path, warmup=0) as rec:

        @rec.stage("compute")
        def infer(ms):
            busy_wait_ns(int(ms * 1e6))
            return ms

        for i in range(20):
            if i == 4:
                rec.end_warmup()
            with rec.iteration():
                assert infer(2.0) == 2.0
    run = perflab.open(tmp_path).runs.iloc[0]
    # warmup=0 with end_warmup(): the block starts measured; the call has nothing to end
    assert (run["n_warmup"], run["n_measure"]) == (0, 20)
    samples = store.read(tmp_path, "samples")
    assert set(samples["stage"]) == {"compute", "e2e"}


def test_an_exception_in_the_block_keeps_what_was_recorded(tmp_path):
    with pytest.raises(KeyError, match="model lost"), perflab.record("crash", out=tmp_path) as rec:
        loop(rec, 10, fail_at=7)
    run = perflab.open(tmp_path).runs.iloc[0]
    assert run["status"] == "failed"
    assert "KeyError: 'model lost'" in run["error"]
    samples = store.read(tmp_path, "samples")
    # 7 whole iterations plus the failed one's preprocess, compute (ended by `with`) and e2e
    assert (samples["stage"] == "e2e").sum() == 8


def test_misuse_is_a_clear_error(tmp_path):
    with perflab.record("misuse", out=tmp_path) as rec:
        with rec.iteration(), rec.stage("compute"):
            pass
        with pytest.raises(RecordError, match="unknown stage 'inference'; stages: preprocess"):
            rec.stage("inference")
        with (
            pytest.raises(RecordError, match="iteration began inside an open stage"),
            rec.stage("compute"),
            rec.iteration(),
        ):
            pass
    with pytest.raises(RecordError, match="used after its block ended"), rec.iteration():
        pass
    assert perflab.open(tmp_path).runs.iloc[0]["n_measure"] == 1  # kept


def test_stage_left_open_when_the_iteration_ends(tmp_path):
    with perflab.record("open", out=tmp_path) as rec:
        stage = rec.stage("compute")
        with (
            pytest.raises(RecordError, match="ended with stage .compute. still open"),
            rec.iteration(),
        ):
            stage.__enter__()  # entered by hand, never left
    assert perflab.open(tmp_path).runs.iloc[0]["n_measure"] == 1
