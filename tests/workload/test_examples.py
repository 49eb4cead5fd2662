"""The README's "Your own pipeline" examples, run as a user would; the option tables match the
declarations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import perflab
from perflab import pipelines
from perflab.backends import registry as backends
from perflab.options import markdown

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "custom_pipeline"
README = (REPO / "README.md").read_text()


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "perflab.cli", *args],
        capture_output=True, text=True, timeout=600, check=False, cwd=cwd,
    )  # fmt: skip


def test_the_readme_shows_the_example_files_as_they_are():
    yaml_text = (EXAMPLE / "yolo_ort.yaml").read_text().split("\n", 2)[2]  # minus the comment
    assert yaml_text.strip() in README
    loop = (EXAMPLE / "record_loop.py").read_text()
    block = README.split("with perflab.record(", 1)[1].split("```", 1)[0]
    assert "with perflab.record(" + block.strip() in loop


def test_the_custom_pipeline_example_runs(tmp_path):
    out = tmp_path / "out"
    proc = cli("run", str(EXAMPLE / "yolo_ort.yaml"), "-o", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    res = perflab.open(out)
    assert res.runs["status"].tolist() == ["ok"]
    assert set(res.summary()["stage"]) == {"preprocess", "compute", "postprocess", "e2e"}


def test_the_record_example_runs_and_reads_back(tmp_path):
    out = tmp_path / "rec"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE / "record_loop.py"), str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    runs = perflab.open(out).runs
    assert (runs["status"].tolist(), runs["n_warmup"].tolist(), runs["n_measure"].tolist()) == (
        ["ok"], [5], [30],
    )  # fmt: skip
    shown = cli("show", str(out))
    assert shown.returncode == 0 and "record-yolo ort-session" in shown.stdout


def test_the_readme_option_tables_are_the_declarations():
    for name in pipelines.PIPELINES:
        assert markdown(pipelines.declared_options(name)) in README, name
    for name in ("synthetic", "ort-cpu", "openvino", "torch-cpu", "trt"):
        assert markdown(backends.backend_class(name).options) in README, name


def test_the_cli_lists_pipeline_and_backend_options():
    listed = cli("pipelines")
    assert listed.returncode == 0
    for name in ("raw", "classify", "detect", "box_decode", "channel_order", "images", "video"):
        assert name in listed.stdout
    ort = cli("backends", "ort-cpu")
    assert ort.returncode == 0 and "graph_optimization" in ort.stdout and "basic" in ort.stdout
