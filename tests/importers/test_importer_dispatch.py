"""importers.import_file: dispatch by kind, and nothing written when any input is bad."""

from __future__ import annotations

import json

import pytest
import trtexec_logs as logs
from importer_helpers import files_under
from nsys_fixture import build_trace

from perflab import store
from perflab.errors import ImportFormatError
from perflab.importers import KINDS, import_file


def ort_events():
    return [
        {"cat": "Session", "name": "session_initialization", "ts": 1, "dur": 100, "ph": "X"},
        {"cat": "Session", "name": "model_run", "ts": 200, "dur": 50, "ph": "X"},
        {
            "cat": "Node",
            "name": "n_kernel_time",
            "ts": 201,
            "dur": 40,
            "ph": "X",
            "args": {"op_name": "Relu", "provider": "CPUExecutionProvider"},
        },
    ]


def test_kinds():
    assert KINDS == ("trtexec", "ort-profile", "nsys")


def test_each_kind(tmp_path):
    out = tmp_path / "out"
    log = tmp_path / "a.log"
    log.write_text(logs.trt7_two_runs())
    assert len(import_file("trtexec", log, out)) == 2
    prof = tmp_path / "p.json"
    prof.write_text(json.dumps(ort_events()))
    assert len(import_file("ort-profile", [prof, prof], out)) == 2
    build_trace(tmp_path / "t.sqlite", 1)
    assert len(import_file("nsys", [tmp_path / "t.sqlite"], out)) == 1
    runs = store.read(out, "runs")
    assert sorted(runs["backend"]) == ["nsys", "ort-cpu", "ort-cpu", "trtexec", "trtexec"]


def test_unknown_kind_lists_the_valid_ones(tmp_path):
    with pytest.raises(ImportFormatError, match="trtexec, ort-profile, nsys"):
        import_file("tensorboard", tmp_path / "x", tmp_path / "out")


@pytest.mark.parametrize("kind", KINDS)
def test_empty_file(tmp_path, kind):
    path = tmp_path / "empty.dat"
    path.write_bytes(b"")
    out = tmp_path / "out"
    with pytest.raises(ImportFormatError, match="empty") as err:
        import_file(kind, path, out)
    assert "\n" not in str(err.value)
    assert files_under(out) == []


@pytest.mark.parametrize("kind", KINDS)
def test_missing_file(tmp_path, kind):
    with pytest.raises(ImportFormatError, match="no such file"):
        import_file(kind, tmp_path / "nope", tmp_path / "out")


def test_one_bad_file_writes_nothing(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(ort_events()))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"traceEvents": "nope"}))
    out = tmp_path / "out"
    with pytest.raises(ImportFormatError):
        import_file("ort-profile", [good, bad], out)
    assert files_under(out) == []
    log = tmp_path / "good.log"
    log.write_text(logs.trt86_summary())
    cut = tmp_path / "cut.log"
    cut.write_text(logs.truncated())
    with pytest.raises(ImportFormatError, match="truncated"):
        import_file("trtexec", [log, cut], out)
    assert files_under(out) == []
