"""Shared fixtures: synthetic studies with known stage durations, and the realdata folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = (REPO / ".." / "shared" / "realdata").resolve()


def pytest_configure(config: pytest.Config) -> None:
    # Built models and converted precisions are cached per test session, never in the user's home.
    os.environ.setdefault("PERFLAB_CACHE", str(Path(config.rootpath) / ".pytest_cache" / "perflab"))


@pytest.fixture
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real-data folder {REALDATA} is absent")
    return REALDATA


def synthetic_spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# The machines are shared and noisy: hypothesis's per-example deadline would test the machine.
from hypothesis import settings as _hypothesis_settings

_hypothesis_settings.register_profile("perflab", deadline=None)
_hypothesis_settings.load_profile("perflab")
