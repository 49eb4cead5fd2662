"""Backend plugins: a distribution with a `perflab.backends` entry point, found like a built-in."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import yaml

import perflab
from perflab.backends import registry as backends

PLUGIN = textwrap.dedent(
    '''
    from perflab.backends.base import Backend
    from perflab.options import Option
    from perflab import timing
    from perflab.timing import COMPUTE, busy_wait_ns

    class SleepyBackend(Backend):
        """busy-waits compute_ms per iteration"""

        name = "sleepy"
        options = (Option("compute_ms", "ms >= 0", 1.0, "busy-wait of compute"),)

        def setup(self, model, pipeline, timer):
            # the deterministic clock from here on (the recorder is made after setup), so the
            # stage takes exactly compute_ms on a busy machine too
            timing._clock = timing.VirtualClock()
            self.ns = int(self.config.option_dict.get("compute_ms", 1.0) * 1e6)

        def run(self, inputs, rec):
            t = rec.begin(COMPUTE)
            busy_wait_ns(self.ns, t)
            rec.end(COMPUTE, t)
            return {"y": next(iter(inputs.values()))}
    '''
)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder holding two installed distributions (dist-info with entry points, as pip leaves
    them): one working plugin, one whose module fails to import."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "sleepy_plugin.py").write_text(PLUGIN)
    (root / "broken_plugin.py").write_text("import no_such_engine_module\n")
    for dist, name, target in (
        ("sleepy_plugin", "sleepy", "sleepy_plugin:SleepyBackend"),
        ("broken_plugin", "broken", "broken_plugin:Backend"),
    ):
        info = root / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[perflab.backends]\n{name} = {target}\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    backends.plugins.cache_clear()
    yield root
    backends.plugins.cache_clear()


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "perflab.cli", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_plugins_are_listed_with_their_availability(site):
    assert backends.names()[: len(backends.BACKENDS)] == list(backends.BACKENDS)
    assert set(backends.names()[len(backends.BACKENDS) :]) == {"sleepy", "broken"}
    assert backends.unavailable_reason("sleepy") is None
    reason = backends.unavailable_reason("broken")
    assert "broken_plugin:Backend failed to import: ModuleNotFoundError" in reason
    listed = cli("backends")
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[1]: line for line in listed.stdout.splitlines() if line.count("│") > 2}
    assert "available" in lines["sleepy"] and "plugin from sleepy_plugin" in lines["sleepy"]
    assert "unavailable" in lines["broken"] and "no_such_engine_module" in lines["broken"]
    assert "available" in lines["synthetic"]  # the others still work
    one = cli("backends", "sleepy")
    assert one.returncode == 0 and "compute_ms" in one.stdout


def test_a_plugin_runs_like_a_built_in(site, tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "study": "plug",
                "model": "mlp",
                "backend": "sleepy",
                "options": {"compute_ms": 2.0},
                "measure": {"iterations": 40},
            }
        )
    )
    out = tmp_path / "out"
    proc = cli("run", str(path), "-o", str(out))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    res = perflab.open(out)
    assert res.runs["status"].tolist() == ["ok"] and res.runs["backend"].tolist() == ["sleepy"]
    compute = res.summary().set_index("stage").loc["compute", "p50_ms"]
    assert compute == pytest.approx(2.0, rel=0.01)
    typo = path.with_name("typo.yaml")
    typo.write_text(path.read_text().replace("compute_ms", "compute_msec"))
    bad = cli("run", str(typo), "-o", str(tmp_path / "out2"))
    assert bad.returncode == 2
    assert (
        "backend 'sleepy': unknown option 'compute_msec'; valid options: compute_ms" in bad.stderr
    )


def test_a_broken_plugin_is_named_when_used(site, tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"study": "b", "model": "mlp", "backend": "broken"}))
    proc = cli("run", str(path), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "backend 'broken': plugin broken_plugin:Backend failed to import" in proc.stderr
