"""A user pipeline with known stage durations, written to a file or an importable package."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

# Busy-waits on perflab's harness clock. With virtual_clock the worker process switches to the
# deterministic clock in setup() (before the recorder exists), so stage durations are exact even
# in isolated workers on a busy machine, as in the synthetic truth tests.
PIPELINE_SOURCE = textwrap.dedent(
    '''
    from perflab import timing

    class Timed:
        """Stages that busy-wait known milliseconds."""

        def __init__(self, preprocess_ms=0.5, h2d_ms=0.0, compute_ms=2.0, d2h_ms=0.0,
                     postprocess_ms=0.25, virtual_clock=True, fail_at=-1):
            self.ms = dict(preprocess=preprocess_ms, h2d=h2d_ms, compute=compute_ms,
                           d2h=d2h_ms, postprocess=postprocess_ms)
            self.virtual_clock = virtual_clock
            self.fail_at = fail_at
            self.calls = 0
            self.synced = 0

        def setup(self):
            if self.virtual_clock:
                timing._clock = timing.VirtualClock()

        def make_inputs(self):
            return [1, 2, 3]

        def _wait(self, stage):
            timing.busy_wait_ns(int(self.ms[stage] * 1e6))

        def preprocess(self, raw):
            self._wait("preprocess")
            return raw

        def h2d(self, x):
            self._wait("h2d")
            return x

        def compute(self, x):
            self.calls += 1
            if self.calls == self.fail_at:
                raise ZeroDivisionError("user code failed in compute")
            self._wait("compute")
            return x

        def d2h(self, y):
            self._wait("d2h")
            return y

        def sync(self):
            self.synced += 1

        def postprocess(self, y):
            self._wait("postprocess")
            return y


    class PreAndPost(Timed):
        """Only pre- and postprocessing: runs on a perflab backend, which computes."""

        compute = None
        h2d = None
        d2h = None


    class NoCompute:
        def preprocess(self, raw):
            return raw
    '''
)


@pytest.fixture
def pipeline_file(tmp_path: Path) -> Path:
    path = tmp_path / "pipes" / "timed.py"
    path.parent.mkdir()
    path.write_text(PIPELINE_SOURCE)
    return path


@pytest.fixture
def pipeline_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable package `userpipes.timed`, on the path of this process and its workers."""
    root = tmp_path / "site"
    (root / "userpipes").mkdir(parents=True)
    (root / "userpipes" / "__init__.py").write_text("")
    (root / "userpipes" / "timed.py").write_text(PIPELINE_SOURCE)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    return "userpipes.timed"
