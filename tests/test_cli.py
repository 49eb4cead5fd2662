"""The command line: the README's bad-input table, run end to end, and study-level behaviour."""

from __future__ import annotations

import io
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from perflab import cli, store

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = {
    "study": "cli",
    "backend": "synthetic",
    "measure": {"iterations": 5},
    "warmup": {"iterations": 1},
    "options": {"compute_ms": 0.2},
}


def write_spec(tmp_path: Path, data, name="spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def readme_cases() -> list[tuple[str, str]]:
    text = (REPO / "README.md").read_text()
    section = text.split("### What each command does with bad input", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("case", "---") and not cells[0].startswith("-"):
            rows.append((cells[0], cells[3].strip("`")))
    return rows


def _mlp_file(tmp_path: Path) -> Path:
    from perflab import models

    return models.export("mlp", tmp_path / "mlp.onnx")


def scenario(case: str, tmp_path: Path) -> list[str]:
    """The argv that provokes each README case."""
    spec = lambda data: str(write_spec(tmp_path, data))
    out = str(tmp_path / "out")
    if case == "spec-missing":
        return ["run", str(tmp_path / "missing.yaml")]
    if case == "spec-yaml":
        return ["run", spec("study: x\nsweep: [unclosed\n")]
    if case == "spec-unknown-key":
        return ["run", spec({"modle": "mlp"})]
    if case == "spec-wrong-type":
        return ["run", spec({"model": "mlp", "batch_size": "four"})]
    if case == "spec-batch":
        return ["run", spec({"model": "mlp", "batch_size": 0})]
    if case == "spec-backend":
        return ["run", spec({"model": "mlp", "backend": "onnx"})]
    if case == "spec-policy":
        return ["run", spec({"model": "mlp", "measure": {"iterations": 10, "seconds": 2}})]
    if case == "spec-empty-sweep":
        return ["run", spec({"model": "mlp", "sweep": {"batch_size": []}})]
    if case == "spec-huge-sweep":
        return ["run", spec({**SYNTHETIC, "sweep": {"seed": list(range(1001))}}), "-o", out]
    if case == "spec-repeat":
        return ["run", spec({**SYNTHETIC, "repeat": 0}), "-o", out]
    if case == "cli-repeat":
        return ["run", spec(SYNTHETIC), "-o", out, "--repeat", "0"]
    if case == "spec-quiet":
        return ["run", spec({**SYNTHETIC, "quiet": {"max_load": 0.5, "then": "wait"}}), "-o", out]
    if case == "model-missing":
        return ["run", spec({"model": str(tmp_path / "nowhere.onnx")}), "-o", out]
    if case == "model-not-onnx":
        (tmp_path / "text.onnx").write_text("this is not a model\n" * 10)
        return ["run", spec({"model": str(tmp_path / "text.onnx")}), "-o", out]
    if case == "model-truncated":
        data = _mlp_file(tmp_path).read_bytes()
        (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
        return ["run", spec({"model": str(tmp_path / "cut.onnx")}), "-o", out]
    if case == "model-input-name":
        return ["run", spec({"model": "mlp", "input_shapes": {"nope": ["N", 4]}}), "-o", out]
    if case == "out-unwritable":
        (tmp_path / "file").write_text("x")
        return ["run", spec(SYNTHETIC), "-o", str(tmp_path / "file" / "out")]
    if case in ("out-other-spec", "out-same-study"):
        assert (
            cli.main(
                [
                    "run",
                    str(write_spec(tmp_path, SYNTHETIC, "first.yaml")),
                    "-o",
                    out,
                    "--no-isolation",
                ]
            )
            == 0
        )
        other = (
            {**SYNTHETIC, "options": {"compute_ms": 0.3}} if case == "out-other-spec" else SYNTHETIC
        )
        return ["run", spec(other), "-o", out]
    if case in ("results-missing", "results-empty", "results-newer"):
        folder = tmp_path / "res"
        if case == "results-empty":
            folder.mkdir()
        if case == "results-newer":
            assert cli.main(["run", spec(SYNTHETIC), "-o", str(folder), "--no-isolation"]) == 0
            for path in (folder / "runs").glob("*.parquet"):
                table = pq.read_table(path)
                meta = {**table.schema.metadata, store.VERSION_KEY: b"99"}
                pq.write_table(table.replace_schema_metadata(meta), path)
        return ["show", str(folder)]
    if case == "env-missing":
        return ["env", "diff", str(tmp_path / "a.json"), str(tmp_path / "b.json")]
    if case == "env-not-json":
        (tmp_path / "a.json").write_text("not json")
        return ["env", "diff", str(tmp_path / "a.json"), str(tmp_path / "a.json")]
    if case == "import-empty":
        (tmp_path / "empty.log").write_text("")
        return ["import", "trtexec", str(tmp_path / "empty.log"), "-o", out]
    if case == "import-not-profile":
        (tmp_path / "p.json").write_text(json.dumps({"hello": [1, 2, 3]}))
        return ["import", "ort-profile", str(tmp_path / "p.json"), "-o", out]
    if case == "import-not-nsys":
        db = sqlite3.connect(tmp_path / "x.sqlite")
        db.execute("create table people (name text)")
        db.commit()
        db.close()
        return ["import", "nsys", str(tmp_path / "x.sqlite"), "-o", out]
    if case == "import-truncated":
        (tmp_path / "cut.log").write_text(
            "&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # trtexec --onnx=model.onnx\n"
            "[11/21/2026-10:00:00] [I] === Model Options ===\n[11/21/2026-10:00:00] [I] Format: ONNX\n"
        )
        return ["import", "trtexec", str(tmp_path / "cut.log"), "-o", out]
    if case == "models-unknown":
        return ["models", "export", "resnet1000", "-o", str(tmp_path / "m.onnx")]
    raise AssertionError(f"README case {case!r} has no scenario in this test")


CASES = readme_cases()


def test_the_readme_table_is_read():
    assert len(CASES) >= 20


@pytest.mark.parametrize("case, excerpt", CASES, ids=[c for c, _ in CASES])
def test_bad_input_gives_one_line_and_exit_2(case, excerpt, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    argv = scenario(case, tmp_path)
    capsys.readouterr()
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    errors = [line for line in err if line.startswith("perflab: error: ")]
    assert len(errors) == 1, err
    assert excerpt in errors[0]
    if case.startswith(("spec-", "model-", "out-unwritable")):
        assert not (tmp_path / "out").exists() or case == "out-unwritable"


def test_no_traceback_reaches_the_user(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "perflab.cli", "run", str(tmp_path / "x.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == f"perflab: error: {tmp_path / 'x.yaml'}: experiment file not found"
    )


# ----------------------------------------------------------------------------- studies


@pytest.mark.slow
def test_six_configs_with_a_segfault_and_a_hang(tmp_path):
    """Config 3 segfaults and config 5 hangs past its timeout; the other four finish."""
    crash = ["none", "none", "segfault", "none", "hang", "none"]
    spec = write_spec(
        tmp_path,
        {
            **SYNTHETIC,
            "timeout_s": 4,
            "measure": {"iterations": 10},
            "options": {"compute_ms": 0.2, "crash_at": 2},
            "sweep": [{"seed": [k], "options.crash": [c]} for k, c in enumerate(crash, 1)],
        },
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "perflab.cli", "run", str(spec), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr + proc.stdout
    runs = store.read(out, "runs").sort_values("created_at")
    assert runs["status"].tolist() == ["ok", "ok", "failed", "ok", "timeout", "ok"]
    assert "SIGSEGV" in runs["error"].iloc[2]
    assert re.search(
        r"2 config\(s\) did not complete: .*crash=segfault seed=3 \(failed\); "
        r".*crash=hang seed=5 \(timeout\)",
        " ".join(proc.stdout.split()),
    )


def _wait_for_runs(out: Path, n: int, proc: subprocess.Popen, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if len(list((out / "runs").glob("*.parquet"))) >= n:
            return
        assert proc.poll() is None, "perflab run ended before it was interrupted"
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} runs after {limit_s} s")


def _twenty_configs(tmp_path: Path) -> Path:
    return write_spec(
        tmp_path,
        {
            **SYNTHETIC,
            "measure": {"iterations": 30},
            "options": {"compute_ms": 5.0},
            "sweep": {"seed": list(range(20))},
        },
    )


@pytest.mark.slow
def test_kill_9_then_resume_gives_one_ok_run_per_config(tmp_path):
    spec, out = _twenty_configs(tmp_path), tmp_path / "out"
    cmd = [sys.executable, "-m", "perflab.cli", "run", str(spec), "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_runs(out, 6, proc)
    proc.kill()  # SIGKILL: no handler runs, a worker may be mid-write
    proc.wait()
    done = store.read(out, "runs")
    assert 6 <= len(done) < 20 and (done["status"] == "ok").all()
    resumed = subprocess.run(
        [*cmd, "--resume"], capture_output=True, text=True, timeout=300, check=False
    )
    assert resumed.returncode == 0, resumed.stderr
    runs = store.read(out, "runs")
    assert len(runs) == 20 and (runs["status"] == "ok").all()
    assert runs["spec_id"].nunique() == 20
    for table in ("runs", "samples", "calibration"):
        for path in (out / table).iterdir():
            assert not path.name.startswith("."), f"temporary file left: {path}"
            pq.read_table(path)  # every file is whole
    assert set(store.read(out, "samples")["run_id"]) == set(runs["run_id"])


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_stops_cleanly_and_says_how_to_resume(tmp_path, signum, code):
    spec, out = _twenty_configs(tmp_path), tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "perflab.cli", "run", str(spec), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_runs(out, 3, proc)
    proc.send_signal(signum)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == code
    text = " ".join(stdout.split())
    finished = len(store.read(out, "runs"))
    assert f"{finished} of 20 configs finished and stored" in text
    assert f"perflab run {spec} -o {out} --resume" in text
    assert finished < 20 and not list((out / "runs").glob(".*"))


def test_backends_explains_every_unavailable_backend(capsys):
    from perflab.backends import BACKENDS, unavailable_reason

    assert cli.main(["backends"]) == 0
    out = capsys.readouterr().out
    for name in BACKENDS:
        reason = unavailable_reason(name)
        line = next(line for line in out.splitlines() if f" {name} " in line)
        if reason is None:
            assert "available" in line and "unavailable" not in line
        else:
            assert "unavailable" in line and reason[:40] in line
    assert "pip install 'perflab'" not in out  # the extra's brackets are printed, not eaten
