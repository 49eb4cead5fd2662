"""A real Dask scheduler and named workers on 127.0.0.1, as subprocesses, stopped by the test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

SRC = str(Path(__file__).resolve().parents[2] / "src")
START_LIMIT_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
        }
        self.workers: dict[str, subprocess.Popen] = {}
        self.scheduler = self._start(
            "scheduler",
            [
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                self.address.rsplit(":", 1)[1],
                "--no-dashboard",
            ],
        )

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            stdout=log,
            stderr=log,
            env=self.env,
            start_new_session=True,
        )

    def start_worker(self, name: str, *, resources: str = "perflab=1") -> None:
        args = [
            "distributed.cli.dask_worker",
            self.address,
            "--name",
            name,
            "--nthreads",
            "1",
            "--no-dashboard",
            "--no-nanny",
        ]
        if resources:
            args += ["--resources", resources]
        self.workers[name] = self._start(f"worker-{name}", args)
        self.wait_for(lambda names: name in names, f"worker {name}")

    def names(self) -> set[str]:
        with distributed.Client(self.address, timeout=START_LIMIT_S, set_as_default=False) as c:
            return {str(w["name"]) for w in c.scheduler_info(n_workers=-1)["workers"].values()}

    def wait_for(self, ready, what: str) -> None:
        deadline = time.monotonic() + START_LIMIT_S
        while time.monotonic() < deadline:
            try:
                if ready(self.names()):
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{what} did not start within {START_LIMIT_S} s: {self.logs()}")

    def kill_worker(self, name: str) -> None:
        proc = self.workers.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and the run it is measuring
        proc.wait(timeout=30)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-1500:] for p in self.tmp.glob("*.log"))

    def stop(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:  # workers before the scheduler
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler with workers box-a and box-b (one thread, resource perflab=1 each), shared by
    a module's tests; a test that stops a worker starts it again."""
    c = Cluster(tmp_path_factory.mktemp("cluster-logs"))
    try:
        c.start_worker("box-a")
        c.start_worker("box-b")
        yield c
    finally:
        c.stop()
