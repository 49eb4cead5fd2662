"""The local executor: a child per config forked from a warm template that holds no engine."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from experiments import experiment
from perflab import runner, spec, store
from perflab.errors import PerflabError
from perflab.executors import InlineExecutor
from perflab.executors.local import PRELOAD, LocalExecutor

ENGINES = ("onnxruntime", "tensorrt", "openvino", "torch", "cupy", "pynvml")


def test_the_template_imports_no_engine():
    code = (
        f"import sys\nfor m in {list(PRELOAD)!r}: __import__(m)\n"
        f"print(sorted(m for m in {list(ENGINES)!r} if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert proc.stdout.strip() == "[]"


def _study(**extra):
    return spec.parse(experiment("loc", warmup=1, iterations=10, sweep={"seed": [1, 2]}, **extra))


def test_each_config_runs_in_its_own_child_of_the_template(tmp_path):
    st = _study(options={"crash": "exception", "crash_at": 3})
    result = runner.run_study(st, tmp_path, executor=LocalExecutor())
    assert [r["status"] for r in result.rows] == ["failed", "failed"]
    # the exception text comes from the child's own run; the parent survived both
    assert all("synthetic failure injected at iteration 3" in r["error"] for r in result.rows)
    st_ok = _study()
    rows = runner.run_study(st_ok, tmp_path / "ok", executor=LocalExecutor()).rows
    samples = store.read(tmp_path / "ok", "samples")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert set(samples["run_id"]) == {r["run_id"] for r in rows}
    assert all(r["machine"] == r["host"] for r in rows)  # on this machine: the host name


def test_the_child_sees_the_environment_of_the_moment_it_starts(tmp_path, monkeypatch):
    # The template is already running; the model cache named by a variable set only now must
    # still be the one the child builds its model in.
    runner.run_study(_study(), tmp_path / "first", executor=LocalExecutor())
    cache = tmp_path / "cache-set-later"
    monkeypatch.setenv("PERFLAB_CACHE", str(cache))
    st = spec.parse(
        {"study": "env", "backend": "ort-cpu", "model": "mlp", "measure": {"iterations": 5}}
    )
    rows = runner.run_study(st, tmp_path / "out", executor=LocalExecutor()).rows
    assert rows[0]["status"] == "ok", rows[0].get("error")
    assert list((cache / "models").glob("*.onnx"))


@pytest.mark.parametrize("executor", [InlineExecutor(), LocalExecutor()], ids=["inline", "local"])
def test_a_config_pinned_to_a_machine_needs_a_cluster(tmp_path, executor):
    st = _study(machine="box-3070")
    with pytest.raises(PerflabError, match="ask for machine.*box-3070.*--cluster"):
        runner.run_study(st, tmp_path, executor=executor)
    assert not (tmp_path / "runs").exists()
