"""User pipelines from the experiment file: file and module targets, backend custom and a perflab
backend, isolated workers, option checks against the constructor, failures in user code."""

from __future__ import annotations

import pytest

import perflab
from experiments import write_spec
from perflab import runner, spec
from perflab.errors import SpecError

STAGES_MS = {"preprocess": 0.5, "h2d": 0.2, "compute": 2.0, "d2h": 0.3, "postprocess": 0.25}


def user_spec(tmp_path, **data):
    """An experiment file of study "user"; without a backend key it runs on the default one."""
    base = {"study": "user", "warmup": {"iterations": 3}, "measure": {"iterations": 60}}
    return write_spec(tmp_path, {**base, **data}, "exp.yaml")


def medians(out):
    return perflab.open(out).summary().set_index("stage")["p50_ms"]


def run_ok(path, out, isolate=True):
    result = runner.run_study(spec.load(path), out, isolate=isolate)
    assert [r["status"] for r in result.rows] == ["ok"], [r.get("error") for r in result.rows]
    return result.rows[0]


@pytest.mark.parametrize("target", ["file", "module"])
def test_custom_backend_times_every_stage_of_the_user_pipeline_in_workers(
    tmp_path, pipeline_file, pipeline_package, target
):
    name = "pipes/timed.py:Timed" if target == "file" else f"{pipeline_package}:Timed"
    path = user_spec(
        tmp_path,
        backend="custom",
        pipeline=name,
        pipeline_options={f"{k}_ms": v for k, v in STAGES_MS.items()},
    )
    row = run_ok(path, tmp_path / "out", isolate=True)
    assert row["model"] == "Timed" and row["backend"] == "custom"
    got = medians(tmp_path / "out")
    for stage, ms in STAGES_MS.items():
        assert got[stage] == pytest.approx(ms, rel=0.01), stage
    assert got["e2e"] == pytest.approx(sum(STAGES_MS.values()), rel=0.01)


def test_a_pipeline_without_device_stages_records_only_its_own(tmp_path, pipeline_file):
    path = user_spec(
        tmp_path,
        backend="custom",
        pipeline="pipes/timed.py:Timed",
        pipeline_options={"preprocess_ms": 0.0, "compute_ms": 1.0, "postprocess_ms": 0.5},
    )
    run_ok(path, tmp_path / "out", isolate=False)
    # h2d / d2h methods exist, so their (zero-length) stages are recorded; the others keep theirs
    got = medians(tmp_path / "out")
    assert got["compute"] == pytest.approx(1.0, rel=0.01)
    assert got["postprocess"] == pytest.approx(0.5, rel=0.01)


def test_pre_and_postprocessing_on_a_perflab_backend(tmp_path, pipeline_file):
    path = user_spec(
        tmp_path,
        backend="synthetic",
        pipeline="pipes/timed.py:PreAndPost",
        options={"compute_ms": 1.5, "preprocess_ms": 9.0, "postprocess_ms": 9.0},
        pipeline_options={"preprocess_ms": 0.4, "postprocess_ms": 0.6},
    )
    run_ok(path, tmp_path / "out", isolate=True)
    got = medians(tmp_path / "out")
    # the user's pre/post (not the synthetic pipeline's 9 ms), the backend's compute
    assert got["preprocess"] == pytest.approx(0.4, rel=0.01)
    assert got["postprocess"] == pytest.approx(0.6, rel=0.01)
    assert got["compute"] == pytest.approx(1.5, rel=0.01)
    assert "h2d" not in got.index


def test_an_exception_in_user_code_fails_that_config_with_its_traceback(tmp_path, pipeline_file):
    path = user_spec(
        tmp_path,
        backend="custom",
        pipeline="pipes/timed.py:Timed",
        sweep={"pipeline_options.fail_at": [5, -1]},
    )
    result = runner.run_study(spec.load(path), tmp_path / "out", isolate=True)
    statuses = sorted((r["status"], r.get("error") or "") for r in result.rows)
    assert [s for s, _ in statuses] == ["failed", "ok"]
    error = statuses[0][1]
    assert "ZeroDivisionError: user code failed in compute" in error
    assert "timed.py" in error  # the user's own traceback tail


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"pipeline": "pipes/missing.py:Timed"}, "missing.py does not exist"),
        ({"pipeline": "pipes/timed.py:Nope"}, "has no attribute 'Nope'"),
        ({"pipeline": "no_such_pkg.pipes:Timed"}, "module 'no_such_pkg.pipes' not found"),
        ({"pipeline": "pipes/timed.py:NoCompute"}, "class NoCompute has no compute(inputs)"),
        (
            {"pipeline": "pipes/timed.py:Timed", "pipeline_options": {"compute_msec": 1}},
            "unexpected keyword argument 'compute_msec'; its options: preprocess_ms",
        ),
        ({"pipeline": "classify"}, "backend 'custom' runs a pipeline that owns its engine"),
    ],
)
def test_bad_targets_are_refused_when_the_file_is_read(tmp_path, pipeline_file, data, fragment):
    path = user_spec(tmp_path, backend="custom", **data)
    with pytest.raises(SpecError) as err:
        spec.load(path)
    assert fragment in str(err.value)
    assert str(path) in str(err.value)


def test_a_pipeline_with_its_own_compute_on_a_perflab_backend_is_refused(tmp_path, pipeline_file):
    path = user_spec(tmp_path, backend="synthetic", pipeline="pipes/timed.py:Timed")
    with pytest.raises(SpecError, match="has its own compute; run it with backend: custom"):
        spec.load(path)


@pytest.mark.parametrize(
    "data, fragment",
    [
        (
            {"backend": "synthetic", "options": {"compute_ms": 1, "sead": 3}},
            "synthetic backend: unknown option 'sead'; valid: preprocess_ms",
        ),
        (
            {"model": "mlp", "pipeline_options": {"image_sz": 720}},
            "pipeline 'raw': unknown option 'image_sz'; valid options: vocab_size",
        ),
        (
            {"model": "mlp", "options": {"graph_optimisation": "all"}},
            "ort-cpu: unknown option 'graph_optimisation'; valid: threads",
        ),
        (
            {"model": "mlp", "backend": "trt", "options": {"max_batch": 1}, "batch_size": 4},
            "'max_batch': 1 is smaller than the batch size 4",
        ),
    ],
)
def test_backend_and_pipeline_option_typos_fail_before_anything_runs(tmp_path, data, fragment):
    """A typo is one error when the file is read, not a failed worker per config."""
    path = user_spec(tmp_path, sweep={"seed": [1, 2, 3]}, **data)
    with pytest.raises(SpecError) as err:
        spec.load(path)
    assert fragment in str(err.value)
