"""The command line: the README's bad-input table, run end to end, and study-level behaviour."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from experiments import experiment, write_spec
from perflab import cli, store

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = experiment("cli", warmup=1, iterations=5, options={"compute_ms": 0.2})


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
    if case == "spec-backend-option":
        return ["run", spec({**SYNTHETIC, "options": {"compute_ms": 1, "sead": 3}})]
    if case == "spec-pipeline-option":
        return ["run", spec({"model": "mlp", "pipeline_options": {"image_sz": 720}})]
    if case.startswith("pipeline-"):
        (tmp_path / "pipes.py").write_text(
            "class NoCompute:\n    def preprocess(self, raw):\n        return raw\n\n"
            "class Timed:\n    def __init__(self, ms=1.0):\n        self.ms = ms\n"
            "    def compute(self, x):\n        return x\n"
        )
        target = {
            "pipeline-file-missing": "nope.py:Timed",
            "pipeline-class-missing": "pipes.py:Nope",
            "pipeline-module-missing": "no_such_pkg:Timed",
            "pipeline-no-compute": "pipes.py:NoCompute",
            "pipeline-constructor": "pipes.py:Timed",
        }[case]
        options = {"msec": 2} if case == "pipeline-constructor" else {}
        data = {"backend": "custom", "pipeline": target, "pipeline_options": options}
        return ["run", spec(data), "-o", out]
    if case.startswith("images-"):
        folder = tmp_path / "imgs"
        folder.mkdir()
        if case == "images-not-image":
            (folder / "notes.txt").write_text("not an image")
        data = {"model": "mlp", "pipeline": "classify", "pipeline_options": {"images": str(folder)}}
        return ["run", spec(data), "-o", out]
    if case == "backends-unknown":
        return ["backends", "onnx"]
    if case == "models-unknown":
        return ["models", "export", "resnet1000", "-o", str(tmp_path / "m.onnx")]
    hostile = hostile_scenario(case, tmp_path, spec, out)
    if hostile is not None:
        return hostile
    if case == "run-machine-local":
        return ["run", spec({**SYNTHETIC, "sweep": {"machine": ["box-1050ti", "box-3070"]}})]
    if case in ("cluster-unreachable", "cluster-address"):
        pytest.importorskip("distributed")
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        address = address if case == "cluster-unreachable" else "box-3070:8786"
        return ["run", spec(SYNTHETIC), "-o", out, "--cluster", address]
    if case == "merge-other-spec":
        for name, options in (("a", {"compute_ms": 0.2}), ("b", {"compute_ms": 0.3})):
            data = {**SYNTHETIC, "options": options}
            folder = str(tmp_path / name)
            assert cli.main(["run", spec(data), "-o", folder, "--no-isolation"]) == 0
        return ["merge", str(tmp_path / "a"), str(tmp_path / "b"), "-o", out]
    if case in ("explain-selector", "explain-folder"):
        data = {**SYNTHETIC, "sweep": {"batch_size": [1, 2]}}
        assert cli.main(["run", spec(data), "-o", out, "--no-isolation"]) == 0
        if case == "explain-selector":
            return ["explain", "no-such-run", "batch_size=2", "-d", out]
        return ["explain", out, f"{out}:batch_size=2"]
    raise AssertionError(f"README case {case!r} has no scenario in this test")


# Locks that a scenario holds while the command under test runs (released after it).
HELD: list[contextlib.ExitStack] = []


def _fifo(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    os.mkfifo(path)
    return str(path)


def _outside_model(tmp_path: Path) -> Path:
    """The mlp with one initializer's data "external", at a path outside the model's folder."""
    import onnx
    from onnx import TensorProto

    model = onnx.load(str(_mlp_file(tmp_path)))
    init = next(i for i in model.graph.initializer if i.raw_data)
    length = len(init.raw_data)
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"s" * length)
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", str(length))):
        entry = init.external_data.add()
        entry.key, entry.value = key, value
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / "outside.onnx"
    onnx.save(model, str(path))
    return path


def _result_folder(tmp_path: Path, name: str = "res") -> Path:
    folder = tmp_path / name
    assert (
        cli.main(
            [
                "run",
                str(write_spec(tmp_path, SYNTHETIC, f"{name}.yaml")),
                "-o",
                str(folder),
                "--no-isolation",
            ]
        )
        == 0
    )
    return folder


def _trtexec_log(tmp_path: Path, old: str, new: str) -> str:
    sys.path.insert(0, str(REPO / "tests" / "importers"))
    import trtexec_logs

    text = trtexec_logs.trt86_summary()
    assert old in text
    path = tmp_path / "bad.log"
    path.write_text(text.replace(old, new))
    return str(path)


def _nsys_trace(tmp_path: Path, sql: str) -> str:
    sys.path.insert(0, str(REPO / "tests" / "importers"))
    from nsys_fixture import build_trace

    path = tmp_path / "t.sqlite"
    build_trace(path)
    db = sqlite3.connect(path)
    db.execute(sql)
    db.commit()
    db.close()
    return str(path)


ORT_RUN = {"cat": "Session", "name": "model_run", "ts": 200, "dur": 50, "ph": "X"}


def hostile_scenario(case: str, tmp_path: Path, spec, out: str) -> list[str] | None:
    """The argv of the cases a hostile user finds beyond ordinary typos."""
    if case == "spec-sweep-bomb":
        axes = {"seed": list(range(1000)), "batch_size": list(range(1, 1001))}
        axes["options.compute_ms"] = [0.1 * k for k in range(1, 1001)]
        return ["run", spec({**SYNTHETIC, "sweep": axes}), "-o", out, "--yes"]
    if case == "spec-alias-bomb":
        lines = ["study: bomb", "a: &a [x, x, x, x, x, x, x, x, x]"]
        for k in range(1, 10):
            prev = chr(ord("a") + k - 1)
            name = chr(ord("a") + k)
            lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
        return ["run", spec("\n".join(lines) + "\n"), "-o", out]
    if case == "spec-recursive-alias":
        return ["run", spec("study: r\nmodel: &m [*m]\n"), "-o", out]
    if case == "spec-deep":
        return ["run", spec("study: d\nmodel: " + "[" * 5000 + "]" * 5000 + "\n"), "-o", out]
    if case == "spec-duplicate-key":
        return ["run", spec("study: d\nmodel: mlp\nmodel: resnet18\n"), "-o", out]
    if case == "spec-nan":
        return ["run", spec("study: n\nbackend: synthetic\ntimeout_s: .nan\n"), "-o", out]
    if case == "spec-nan-measure":
        return ["run", spec("study: n\nbackend: synthetic\nmeasure: {seconds: .nan}\n"), "-o", out]
    if case == "spec-study-dots":
        return ["run", spec({**SYNTHETIC, "study": ".."})]
    if case == "spec-study-control":
        return ["run", spec({**SYNTHETIC, "study": "a\x1b[31mb"}), "-o", out]
    if case == "spec-long-value":
        return ["run", spec({**SYNTHETIC, "precision": "x" * 1_000_000}), "-o", out]
    if case == "spec-fifo":
        return ["run", _fifo(tmp_path, "spec.yaml"), "-o", out]
    if case == "spec-device":
        return ["run", "/dev/zero", "-o", out]
    if case == "spec-folder":
        return ["run", str(tmp_path), "-o", out]
    if case == "model-fifo":
        return ["run", spec({"model": _fifo(tmp_path, "m.onnx")}), "-o", out]
    if case == "model-external-outside":
        return ["run", spec({"model": str(_outside_model(tmp_path))}), "-o", out]
    if case == "out-locked":
        holder = contextlib.ExitStack()
        holder.enter_context(store.locked(Path(out), "run other.yaml"))
        HELD.append(holder)
        return ["run", spec(SYNTHETIC), "-o", out]
    if case == "env-any-object":
        (tmp_path / "a.json").write_text(json.dumps({"hello": 1}))
        return ["env", "diff", str(tmp_path / "a.json"), str(tmp_path / "a.json")]
    if case == "env-nested":
        (tmp_path / "a.json").write_text("[" * 100_000 + "]" * 100_000)
        return ["env", "diff", str(tmp_path / "a.json"), str(tmp_path / "a.json")]
    if case == "env-fifo":
        return ["env", "diff", _fifo(tmp_path, "a.json"), _fifo(tmp_path, "b.json")]
    if case in ("env-stored-not-json", "env-several"):
        folder = _result_folder(tmp_path)
        path = next((folder / "env").glob("*.parquet"))
        row = store.read(folder, "env").iloc[0].to_dict()
        if case == "env-stored-not-json":
            store.write(folder, "env", path.stem, {**row, "fingerprint": "{not json"})
        else:
            store.write(folder, "env", "other", {**row, "env_id": "other"})
        return ["env", "diff", str(folder), str(folder)]
    if case == "import-fifo":
        return ["import", "trtexec", _fifo(tmp_path, "x.log"), "-o", out]
    if case == "import-negative":
        return [
            "import",
            "trtexec",
            _trtexec_log(tmp_path, "min = 4.44141 ms", "min = -4.44141 ms"),
            "-o",
            out,
        ]
    if case == "import-nan":
        return [
            "import",
            "trtexec",
            _trtexec_log(tmp_path, "mean = 4.51515 ms", "mean = nan ms"),
            "-o",
            out,
        ]
    if case == "import-ort-nested":
        (tmp_path / "p.json").write_text("[" * 100_000 + "]" * 100_000)
        return ["import", "ort-profile", str(tmp_path / "p.json"), "-o", out]
    if case == "import-ort-huge":
        node = {"cat": "Node", "name": "n_kernel_time", "ts": 201, "dur": 1e308, "ph": "X",
                "args": {"op_name": "Relu", "provider": "CPUExecutionProvider"}}  # fmt: skip
        (tmp_path / "p.json").write_text(json.dumps([ORT_RUN, node]))
        return ["import", "ort-profile", str(tmp_path / "p.json"), "-o", out]
    if case == "import-nsys-text":
        sql = "update CUPTI_ACTIVITY_KIND_KERNEL set deviceId = 'gpu zero'"
        return ["import", "nsys", _nsys_trace(tmp_path, sql), "-o", out]
    if case == "import-nsys-renamed":
        sql = "alter table CUPTI_ACTIVITY_KIND_KERNEL rename column start to begin"
        return ["import", "nsys", _nsys_trace(tmp_path, sql), "-o", out]
    if case == "models-export-folder":
        (tmp_path / "m.onnx").mkdir()
        return ["models", "export", "mlp", "-o", str(tmp_path / "m.onnx")]
    if case == "models-export-below-file":
        (tmp_path / "file").write_text("x")
        return ["models", "export", "mlp", "-o", str(tmp_path / "file" / "m.onnx")]
    if case == "lab-missing":
        return ["lab", str(tmp_path / "no-such-results")]
    if case == "lab-no-results":
        return ["lab"]  # in tmp_path, which has no data/ folder
    if case == "report-out-folder":
        return ["report", str(_result_folder(tmp_path)), "-o", str(tmp_path)]
    if case == "report-out-unwritable":
        (tmp_path / "file").write_text("x")
        return ["report", str(_result_folder(tmp_path)), "-o", str(tmp_path / "file" / "r.html")]
    if case == "report-unknown-device":
        return ["report", str(_result_folder(tmp_path)), "--devices", "GTX 1050 Ti,RTX 3070 Ti"]
    return None


CASES = readme_cases()


def test_the_readme_table_is_read():
    assert len(CASES) >= 20


@pytest.mark.parametrize("case, excerpt", CASES, ids=[c for c, _ in CASES])
def test_bad_input_gives_one_line_and_exit_2(case, excerpt, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    argv = scenario(case, tmp_path)
    capsys.readouterr()
    try:
        code = cli.main(argv)
    finally:
        while HELD:
            HELD.pop().close()
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
    # A file perflab did not write, in every table folder: --resume must leave each one alone.
    foreign = []
    for table in store.TABLES:
        (out / table).mkdir(exist_ok=True)
        foreign.append(out / table / "mine.parquet")
        foreign[-1].write_bytes(b"not perflab's")
    resumed = subprocess.run(
        [*cmd, "--resume"], capture_output=True, text=True, timeout=300, check=False
    )
    assert resumed.returncode == 0, resumed.stderr
    runs = store.read(out, "runs")
    assert len(runs) == 20 and (runs["status"] == "ok").all()
    assert runs["spec_id"].nunique() == 20
    assert all(path.read_bytes() == b"not perflab's" for path in foreign)
    for table in ("runs", "samples", "calibration"):
        for path in (out / table).iterdir():
            assert not path.name.startswith("."), f"temporary file left: {path}"
            if path.name != "mine.parquet":
                pq.read_table(path)  # every file is whole
    assert set(store.read(out, "samples")["run_id"]) == set(runs["run_id"])
    assert not (out / ".pending").exists() and not (out / ".logs").exists()


@pytest.mark.slow
def test_a_second_writer_is_refused_and_a_killed_ones_lock_does_not_block(tmp_path):
    spec, out = _twenty_configs(tmp_path), tmp_path / "out"
    cmd = [sys.executable, "-m", "perflab.cli", "run", str(spec), "-o", str(out)]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_runs(out, 1, first)
    for second in (cmd, [*cmd, "--resume"]):
        refused = subprocess.run(second, capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == 2, refused.stderr
        expected = (
            f"perflab: error: {out} is in use by perflab run {spec} (process {first.pid}); "
            "wait for it to finish, or use -o NEW_FOLDER"
        )
        assert refused.stderr.strip().splitlines() == [expected]
    log = _trtexec_log(tmp_path, "min = ", "min = ")
    importing = subprocess.run(
        [sys.executable, "-m", "perflab.cli", "import", "trtexec", log, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert importing.returncode == 2 and "is in use by perflab run" in importing.stderr
    first.kill()  # SIGKILL: the lock goes with the process
    first.wait()
    resumed = subprocess.run(
        [*cmd, "--resume"], capture_output=True, text=True, timeout=300, check=False
    )
    assert resumed.returncode == 0, resumed.stderr
    runs = store.read(out, "runs")
    assert len(runs) == 20 and runs["spec_id"].nunique() == 20  # exactly one run per config


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
    from perflab.backends.registry import BACKENDS, unavailable_reason

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


def test_control_characters_reach_the_terminal_escaped(tmp_path, capsys):
    out = tmp_path / "out"
    hostile = {**SYNTHETIC, "model": "syn\x1b[2Jthetic"}
    assert (
        cli.main(["run", str(write_spec(tmp_path, hostile)), "-o", str(out), "--no-isolation"]) == 0
    )
    assert cli.main(["show", str(out)]) == 0
    fp = {"host": "a\x1b]0;owned\x07", "python": "3", "os": "linux"}
    (tmp_path / "a.json").write_text(json.dumps(fp))
    (tmp_path / "b.json").write_text(json.dumps({**fp, "host": "b"}))
    assert cli.main(["env", "diff", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    assert cli.main(["run", str(write_spec(tmp_path, {"study": "x\x1b[31m"}, "bad.yaml"))]) == 2
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert "\x1b" not in text and "\x07" not in text
    assert "syn\\x1b[2Jthetic" in text and "a\\x1b]0;owned\\x07" in text
    assert "'x\\x1b[31m' must be a name" in printed.err
