"""Shared fixtures: synthetic studies with known stage durations, and the realdata folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = (REPO / ".." / "shared" / "realdata").resolve()
# The suite runs with --import-mode=importlib, which puts no test folder on sys.path; the shared
# helpers (tests/fakes.py, tests/experiments.py) are imported by name from it.
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))


def pytest_configure(config: pytest.Config) -> None:
    # Built models and converted precisions are cached per test session, never in the user's home.
    os.environ.setdefault("PERFLAB_CACHE", str(Path(config.rootpath) / ".pytest_cache" / "perflab"))


@pytest.fixture
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real-data folder {REALDATA} is absent")
    return REALDATA


# Stage durations of the small synthetic study the plot, notebook and report tests share:
# copies, jitter and a warmup pattern, so every section has something to show.
SYNTHETIC_OPTIONS = {
    "preprocess_ms": 0.1,
    "h2d_ms": 0.05,
    "compute_ms": 0.3,
    "compute_ms_per_item": 0.1,
    "d2h_ms": 0.05,
    "postprocess_ms": 0.1,
    "jitter": 0.01,
    "warmup_iterations": 8,
    "warmup_extra_ms": 1.0,
}


@pytest.fixture(scope="session")
def synthetic_options() -> dict:
    return dict(SYNTHETIC_OPTIONS)


@pytest.fixture(scope="session")
def run_synthetic():
    """run_synthetic(out, study=, batch_sizes=, **spec keys) -> out: runs the study in-process
    and stores this machine's fingerprint beside it."""
    from experiments import experiment
    from perflab import env, runner, spec, store

    def run(out: Path, *, study: str = "tiny", batch_sizes=(1, 2, 4), **extra) -> Path:
        data = experiment(
            study,
            warmup=10,
            iterations=40,
            sweep={"batch_size": list(batch_sizes)},
            options=dict(SYNTHETIC_OPTIONS),
        )
        runner.run_study(spec.parse({**data, **extra}), out, isolate=False)
        row = env.row(env.fingerprint(gpu=False, providers=False))
        store.write(out, "env", row["env_id"], row)
        return out

    return run


# The machines are shared and noisy: hypothesis's per-example deadline would test the machine.
from hypothesis import settings as _hypothesis_settings

_hypothesis_settings.register_profile("perflab", deadline=None)
_hypothesis_settings.load_profile("perflab")
