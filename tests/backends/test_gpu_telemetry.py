"""The GPU backends' telemetry pieces: the note when nothing can be sampled, and the table."""

from __future__ import annotations

import shutil
from glob import glob

import pandas as pd
import pytest

from perflab.backends.gpu_telemetry import start_sampler, telemetry_tables


class _Sampler:
    def __init__(self, rows: int):
        self.rows, self.stopped, self.t0 = rows, 0, None

    def stop(self) -> None:
        self.stopped += 1

    def frame(self, t0_ns: int) -> pd.DataFrame:
        self.t0 = t0_ns
        return pd.DataFrame({"t_ns": range(self.rows)})


def test_tables_stop_the_sampler_and_time_rows_from_the_first_iteration():
    sampler = _Sampler(3)
    out = telemetry_tables(sampler, 1234)
    assert list(out) == ["telemetry"] and len(out["telemetry"]) == 3
    assert sampler.stopped == 1 and sampler.t0 == 1234


def test_no_samples_and_no_sampler_give_no_table():
    empty = _Sampler(0)
    assert telemetry_tables(empty, None) == {} and empty.t0 == 0 and empty.stopped == 1
    assert telemetry_tables(None, 5) == {}


def test_start_without_a_gpu_is_a_note_not_a_failure():
    if glob("/dev/nvidia[0-9]*") or shutil.which("nvidia-smi"):
        pytest.skip("a GPU is visible here: the sampler would sample it")
    notes: list[str] = []
    sampler = start_sampler(0, 100.0, None, notes)
    sampler.stop()
    assert len(notes) == 1 and notes[0].startswith("no GPU telemetry")
