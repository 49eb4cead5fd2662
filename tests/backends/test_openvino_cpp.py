"""openvino-cpp: the C++ runner's build and cache, its timing checked against known busy-waits,
the run through the harness, and its errors."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from perflab import runner, spec, store
from perflab.backends import openvino_cpp
from perflab.backends.openvino_cpp import RunnerProcess, parse_options, runner_binary
from perflab.backends.registry import unavailable_reason
from perflab.errors import BackendUnavailable, SpecError

pytest.importorskip("openvino")
if openvino_cpp.find_compiler() is None:
    pytest.skip("no C++ compiler on this machine", allow_module_level=True)


@pytest.fixture(scope="module")
def binary():
    return runner_binary()


def test_binary_is_cached_by_source_version_and_compiler(binary):
    assert binary.is_file() and os.access(binary, os.X_OK)
    assert runner_binary() == binary  # a second call finds it, builds nothing
    assert binary.parent.name == "openvino-cpp"


def test_no_compiler_is_unavailable_with_the_reason(monkeypatch):
    monkeypatch.setenv("CXX", "")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert unavailable_reason("openvino-cpp") == "no C++ compiler found (install g++)"
    with pytest.raises(BackendUnavailable, match=r"no C\+\+ compiler found \(install g\+\+\)"):
        runner_binary()


def test_busy_waits_come_back_over_the_pipe_in_order(binary):
    # Distinct, increasing targets: each answer must be at least its own request (the busy-wait
    # never stops early) and less than the next one's, so a swapped or shifted reply fails.
    targets_ns = [300_000, 3_000_000, 30_000_000]
    proc = RunnerProcess([str(binary), "--calibrate"])
    try:
        measured = [proc.busy_wait(t) for t in targets_ns]
    finally:
        proc.close()
    assert all(m >= t for m, t in zip(measured, targets_ns, strict=True))
    assert measured[0] < targets_ns[1] and measured[1] < targets_ns[2]


def test_calibration_mode_through_the_harness(tmp_path):
    study = spec.parse(
        {
            "study": "ovcpp-calibration",
            "model": "mlp",
            "pipeline": "raw",
            "backend": "openvino-cpp",
            "options": {"calibration_us": 2000},
            "warmup": {"iterations": 3},
            "measure": {"iterations": 60},
        }
    )
    out = tmp_path / "cal"
    result = runner.run_study(study, out, isolate=False)
    (row,) = result.rows
    assert row["status"] == "ok", row.get("error")
    samples = store.read(out, "samples")
    compute = samples[(samples["stage"].astype(str) == "compute") & (samples["phase"] == "measure")]
    assert len(compute) == 60
    # Each stored sample is the runner's own measurement of a 2 ms busy-wait: never shorter.
    # How close to 2 ms it comes is a figure of the machine (benchmarks/ovcpp_calibration.py).
    assert (compute["host_ns"] >= 2_000_000).all()
    e2e = samples[(samples["stage"].astype(str) == "e2e") & (samples["phase"] == "measure")]
    # e2e is timed in Python around the pipe round trip, so it holds the C++ duration.
    merged = compute.merge(e2e, on="iteration", suffixes=("_compute", "_e2e"))
    assert len(merged) == 60
    assert (merged["host_ns_e2e"] >= merged["host_ns_compute"]).all()


def test_runs_the_model_like_the_python_binding(tmp_path):
    study = spec.parse(
        {
            "study": "ovcpp",
            "model": "mobilenetv2",
            "pipeline": "raw",
            "sweep": {"backend": ["openvino", "openvino-cpp"]},
            "options": {"threads": 1},
            "warmup": {"iterations": 2},
            "measure": {"iterations": 5},
        }
    )
    result = runner.run_study(study, tmp_path / "ov", isolate=False)
    rows = {r["backend"]: r for r in result.rows}
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row.get("error"))
        assert row["precision_effective"] == "fp32"
        assert row["output_cosine"] >= 0.999
    assert rows["openvino-cpp"]["device_name"] == rows["openvino"]["device_name"]
    meta = json.loads(rows["openvino-cpp"]["meta"])
    assert meta["threads"] == 1 and meta["inference_precision_hint"] == "f32"


def test_a_model_openvino_cannot_read_is_unsupported_with_its_message(
    tmp_path, make_config, resolved
):
    from perflab.backends.base import create
    from perflab.errors import Unsupported
    from perflab.timing import SetupTimer

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx model")
    info = dataclasses.replace(resolved("mlp", 1), path=bad)
    backend = create(make_config("mlp", "openvino-cpp"))
    try:
        with pytest.raises(Unsupported, match=r"C\+\+ runner stopped during setup \(exit 1\): .+"):
            backend.setup(info, None, SetupTimer())
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"thread": 1}, "unknown option 'thread'"),
        ({"threads": -1}, "openvino-cpp: option 'threads'"),
        ({"hint": "fast"}, "openvino-cpp: option 'hint'"),
        ({"calibration_us": 0}, "'calibration_us'"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(SpecError, match=match):
        parse_options(options)
