"""The dask executor against a real scheduler and two named workers on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from experiments import experiment, write_spec
from perflab import cli, env, runner, spec, store
from perflab.executors import InlineExecutor
from perflab.executors.cluster import DaskExecutor
from perflab.executors.local import LocalExecutor

pytestmark = pytest.mark.slow
BASE = experiment("cluster", warmup=1, iterations=20, options={"compute_ms": 0.2}, timeout_s=120)


def test_a_machine_no_worker_has_is_one_error_before_anything_runs(cluster, tmp_path, capsys):
    path = write_spec(tmp_path, {**BASE, "study": "z", "sweep": {"machine": ["box-a", "box-z"]}})
    code = cli.main(["run", str(path), "-o", str(tmp_path / "out"), "--cluster", cluster.address])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("perflab: error: ")
    assert "box-z" in err[0] and "machines the scheduler knows: box-a, box-b" in err[0]
    assert not (tmp_path / "out").exists()


def test_every_executor_stores_the_same_rows_and_files(cluster, tmp_path):
    study = spec.parse({**BASE, "study": "same", "sweep": {"batch_size": [1, 2]}})
    here = env.row(env.fingerprint(gpu=False, providers=False))
    with DaskExecutor(cluster.address) as dask:
        executors = {"inline": InlineExecutor(), "local": LocalExecutor(), "dask": dask}
        results = {}
        for name, ex in executors.items():
            if name != "dask":  # as `perflab run` does; on a cluster each machine sends its own
                store.write(tmp_path / name, "env", here["env_id"], here)
            env_id = None if name == "dask" else here["env_id"]
            results[name] = runner.run_study(study, tmp_path / name, executor=ex, env_id=env_id)
    shapes = {}
    for name, result in results.items():
        runs = store.read(tmp_path / name, "runs").sort_values("batch_size")
        assert (runs["status"] == "ok").all(), runs["error"].tolist()
        tables = sorted(p.name for p in (tmp_path / name).iterdir() if p.is_dir())
        filled = sorted(c for c in runs.columns if runs[c].notna().all())
        shapes[name] = (runs["spec_id"].tolist(), runs["n_measure"].tolist(), tables, filled)
        assert len(result.rows) == 2
    assert shapes["inline"] == shapes["local"] == shapes["dask"]
    dask_runs = store.read(tmp_path / "dask", "runs")
    assert set(dask_runs["machine"]) <= {"box-a", "box-b"}
    fingerprints = store.read(tmp_path / "dask", "env")
    assert set(dask_runs["env_id"]) <= set(fingerprints["env_id"])  # each machine's came along


def _wait(condition, what: str, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {limit_s} s")


def test_pinned_configs_a_lost_worker_and_resume(cluster, tmp_path):
    # box-a's config measures for at least 10 s (20 x 500 ms) and is killed 1 s after it was sent;
    # box-b runs two short ones.
    path = write_spec(
        tmp_path,
        {
            **BASE,
            "study": "fleet",
            "sweep": [
                {"machine": ["box-a"], "options.compute_ms": [500.0]},
                {"machine": ["box-b"], "seed": [1, 2]},
            ],
        },
    )
    pinned = {c.spec_id: c.machine for c in spec.load(path).configs}
    out, log = tmp_path / "out", tmp_path / "stdout.txt"
    cmd = [sys.executable, "-m", "perflab.cli", "run", str(path), "-o", str(out)]
    cmd += ["--cluster", cluster.address]
    with open(log, "w") as stdout:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, env=cluster.env)
    try:
        _wait(lambda: "on box-a" in log.read_text() or proc.poll() is not None, "box-a started")
        time.sleep(1.0)
        cluster.kill_worker("box-a")
        assert proc.wait(timeout=120) == 1, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    runs = store.read(out, "runs")
    assert (runs["machine"] == runs["spec_id"].map(pinned)).all()  # each ran where it was pinned
    lost = runs.loc[runs["machine"] == "box-a"]
    assert lost["status"].tolist() == ["failed"] and "worker lost" in lost["error"].iloc[0]
    assert runs.loc[runs["machine"] == "box-b", "status"].tolist() == ["ok", "ok"]

    cluster.start_worker("box-a")
    resumed = subprocess.run(
        [*cmd, "--resume"],
        capture_output=True,
        text=True,
        timeout=180,
        env=cluster.env,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    runs = store.read(out, "runs")
    ok = runs.loc[runs["status"] == "ok"]
    assert sorted(ok["spec_id"]) == sorted(pinned) and len(runs) == 4
    assert (ok["machine"] == ok["spec_id"].map(pinned)).all()
    assert set(ok["env_id"]) <= set(store.read(out, "env")["env_id"])


def test_configs_of_a_machine_that_stays_away_are_skipped(cluster, tmp_path):
    # Two configs pinned to box-a, which is killed during the first (20 x 500 ms): that one is
    # failed, the second one skipped once box-a has been away for the grace period.
    st = spec.parse(
        {
            **BASE,
            "study": "away",
            "options": {"compute_ms": 500.0},
            "sweep": {"machine": ["box-a"], "seed": [1, 2]},
        }
    )
    started = threading.Event()

    def kill_when_started() -> None:
        if started.wait(timeout=120):
            time.sleep(1.0)
            cluster.kill_worker("box-a")

    killer = threading.Thread(target=kill_when_started)
    killer.start()
    try:
        with DaskExecutor(cluster.address, lost_machine_grace_s=1.0) as dask:
            result = runner.run_study(
                st, tmp_path, executor=dask, on_start=lambda *args: started.set()
            )
    finally:
        started.set()
        killer.join()
        cluster.start_worker("box-a")
    status = [r["status"] for r in result.rows]
    assert status == ["failed", "skipped"], [r["error"] for r in result.rows]
    assert "worker lost" in result.rows[0]["error"]
    assert "box-a left the cluster before this config started" in result.rows[1]["error"]
    assert sorted(store.read(tmp_path, "runs")["status"]) == ["failed", "skipped"]
