"""Fixtures for the importer tests: the real-data folder, and the fixture builders on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The suite runs with --import-mode=importlib, which does not put test folders on sys.path; the
# fixture builders (nsys_fixture, trtexec_logs, importer_helpers) are plain modules beside the tests.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# Third-party files, read in place (never copied into the repository).
REALDATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata"


@pytest.fixture
def realdata_dir() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real-data folder {REALDATA} is absent")
    return REALDATA
