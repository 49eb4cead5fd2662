"""Imported by the local executor's template process (the fork server) before it forks a child.

It runs one tiny synthetic config into a scratch folder, so that every child starts with what a
first run loads lazily (modules, the parquet writer, numpy's first-call setup) already in place:
a child then costs what a second config in one process costs. The synthetic backend starts no
thread in latency mode and touches no device, so the template stays safe to fork.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from perflab import runner, spec


def _warm_up() -> None:
    data = {
        "study": "template-warm-up",
        "backend": "synthetic",
        "warmup": {"iterations": 1},
        "measure": {"iterations": 5},
    }
    with tempfile.TemporaryDirectory(prefix="perflab-template-") as tmp:
        runner.execute(spec.parse(data).configs[0], Path(tmp))


try:
    _warm_up()
except Exception:  # noqa: BLE001, S110 - a warm-up that fails costs speed, never a run
    pass
