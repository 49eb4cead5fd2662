"""`perflab report`: one self-contained HTML file, sections and contents, code hidden unless asked,
data escaped, failures contained, and a page a browser renders without errors."""

from __future__ import annotations

import os

os.environ["MPLBACKEND"] = "Agg"

import html
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from experiments import experiment
from perflab import cli, env, report, runner, spec, store
from perflab.errors import PerflabError, StoreError

EVIL_MODEL = "<script>alert('model')</script>"
EVIL_ERROR = 'engine said <img src=x onerror="alert(2)"> & quit'


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A tiny synthetic study whose model name and one error message are HTML."""
    out = tmp_path_factory.mktemp("report") / "study"
    options = {
        "preprocess_ms": 0.1,
        "compute_ms": 0.3,
        "compute_ms_per_item": 0.1,
        "postprocess_ms": 0.1,
        "jitter": 0.01,
    }
    study = spec.parse(
        experiment(
            "tiny-report",
            warmup=5,
            iterations=30,
            model=EVIL_MODEL,
            sweep={"batch_size": [1, 2]},
            options=options,
        )
    )
    runner.run_study(study, out, isolate=False)
    row = store.read(out, "runs").iloc[0].to_dict()
    row.update(
        run_id=store.new_run_id(),
        status="failed",
        error=EVIL_ERROR,
        batch_size=8,
        label=f"{EVIL_MODEL} synthetic fp32 b8",
    )
    store.write_run(out, row)
    fp = env.row(env.fingerprint(gpu=False, providers=False))
    store.write(out, "env", fp["env_id"], fp)
    return out


@pytest.fixture(scope="module")
def executed(folder) -> report.Executed:
    return report.execute([folder])


@pytest.fixture(scope="module")
def page(executed) -> str:
    return report.render(executed)


@pytest.fixture(scope="module")
def page_with_code(executed) -> str:
    return report.render(executed, with_code=True)


def _visible_text(markup: str) -> str:
    markup = re.sub(r"<(script|style)\b.*?</\1>", "", markup, flags=re.DOTALL | re.IGNORECASE)
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


# ---------------------------------------------------------------------------- structure


def test_every_notebook_ran(executed):
    assert [s.name for s in executed.sections] == list(report.NOTEBOOKS)
    assert not executed.failed, [(s.name, s.error) for s in executed.failed]


def test_sections_and_table_of_contents(page):
    assert page.count("<html") == 1 and page.rstrip().endswith("</html>")
    toc = re.search(r'<nav class="perflab-toc">(.*?)</nav>', page, re.DOTALL).group(1)
    for name in report.NOTEBOOKS:
        assert f'id="section-{name}"' in page
        assert f'href="#section-{name}"' in toc
    titles = re.findall(r'<a href="#section-[^"]+">([^<]+)</a>', toc)
    assert titles == [
        "Overview",
        "Stage breakdown",
        "Warmup",
        "Batching",
        "Device comparison",
        "Traces and imported profiles",
    ]
    # Sections appear in report order.
    where = [page.index(f'id="section-{name}"') for name in report.NOTEBOOKS]
    assert where == sorted(where)


def test_nothing_needs_the_network(page, page_with_code):
    for markup in (page, page_with_code):
        assert not re.search(r"<script\b[^>]*\bsrc\s*=", markup, re.IGNORECASE)
        assert not re.search(
            r"<link\b[^>]*\bhref\s*=\s*[\"']?\s*(https?:)?//", markup, re.IGNORECASE
        )
        assert not re.search(r"\b(src|href)\s*=\s*[\"']?\s*(https?:)?//", markup, re.IGNORECASE)
        assert not re.search(r"url\(\s*[\"']?\s*(https?:)?//", markup, re.IGNORECASE)
        assert not re.search(r"@import", markup, re.IGNORECASE)
        assert not re.search(r"\bimport\(\s*[\"']https?:", markup)  # ES module loaders


def test_every_figure_is_embedded_png(page):
    images = re.findall(r"<img\b[^>]*>", page)
    assert len(images) >= 6
    for tag in images:
        assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', tag), tag[:120]


def test_code_hidden_by_default_and_shown_with_code(page, page_with_code):
    assert 'class="jp-CodeMirrorEditor' not in page
    assert "= load(results" not in _visible_text(page)
    assert 'class="jp-CodeMirrorEditor' in page_with_code
    shown = _visible_text(page_with_code)
    assert "= load(results" in shown and "plots.stage_breakdown(" in shown
    # The same outputs either way.
    assert page.count("data:image/png;base64") == page_with_code.count("data:image/png;base64")


def test_data_strings_are_escaped(page, page_with_code):
    for markup in (page, page_with_code):
        assert EVIL_MODEL not in markup
        assert "<img src=x" not in markup
        assert html.escape(EVIL_MODEL, quote=False) in markup
        assert "&lt;img src=x onerror=" in markup
        for body in re.findall(r"<script\b[^>]*>(.*?)</script>", markup, re.DOTALL | re.IGNORECASE):
            assert "alert(" not in body
    assert EVIL_MODEL in _visible_text(page)  # shown as text
    assert EVIL_ERROR in _visible_text(page)


# ---------------------------------------------------------------------------- build()


def test_build_writes_the_default_file(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = report.build([folder], notebooks=["01_overview"])
    assert path == Path("reports") / "tiny-report.html"
    text = path.read_text(encoding="utf-8")
    assert 'id="section-01_overview"' in text and "section-02_stage_breakdown" not in text
    assert list((tmp_path / "reports").iterdir()) == [tmp_path / "reports" / "tiny-report.html"]


def test_build_refuses_missing_folders_before_running_anything(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        report.build([tmp_path / "nope"], output=tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
    assert cli.main(["report", str(tmp_path / "nope")]) == 2


def test_default_output_names_are_safe(tmp_path):
    assert report.default_output([]) == Path("reports/empty.html")
    folder = tmp_path / "a b<c>"
    folder.mkdir()
    assert report.default_output([folder]) == Path("reports/a_b_c.html")


def _notebook(path: Path, *code: str) -> None:
    nb = new_notebook(cells=[new_markdown_cell(f"# {path.stem}"), new_code_cell("results = []")])
    nb.cells[1].metadata["tags"] = ["parameters"]
    nb.cells += [new_code_cell(c) for c in code]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def test_a_failing_notebook_costs_only_its_own_section(tmp_path, monkeypatch, caplog):
    books = tmp_path / "notebooks"
    books.mkdir()
    names = list(report.NOTEBOOKS[:4])
    _notebook(books / f"{names[0]}.ipynb", "print('first ran')")
    _notebook(
        books / f"{names[1]}.ipynb",
        "print('before')",
        "raise ValueError('broken <b>')",
        "print('never')",
    )
    _notebook(books / f"{names[2]}.ipynb", "import os\nos._exit(3)")  # the kernel dies
    _notebook(books / f"{names[3]}.ipynb", "print('still ran', results)")
    monkeypatch.setattr(report, "notebook_dir", lambda: books)
    out = tmp_path / "r.html"
    with caplog.at_level(logging.WARNING, logger="perflab.report"):
        path = report.build([], output=out, notebooks=names)
    assert path == out
    text = out.read_text()
    shown = _visible_text(text)
    assert "first ran" in shown and "still ran []" in shown
    assert "before" in shown and "never" not in shown
    assert "ValueError: broken <b>" in shown and "broken <b>" not in text
    assert text.count("This section could not be completed.") == 2
    assert "the kernel died" in shown
    assert text.count('class="perflab-failed"') == 2
    failed = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(failed) == 2 and names[1] in failed[0] and names[2] in failed[1]
    with pytest.raises(PerflabError, match=f"{names[1]}.*written to"):
        report.build([], output=tmp_path / "strict.html", notebooks=names[:2], strict=True)
    assert (tmp_path / "strict.html").exists()


# ---------------------------------------------------------------------------- in a browser


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # any network request would fail loudly
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    return subprocess.run(
        [browser, *flags, *args], capture_output=True, text=True, timeout=120, check=False
    )  # the caller reads the logs and the files it wrote


def test_the_page_renders_in_a_browser_without_console_errors(page, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on PATH (chromium, chromium-browser, google-chrome)")
    from PIL import Image

    html_file = tmp_path / "report.html"
    html_file.write_text(page, encoding="utf-8")
    shot = tmp_path / "shot.png"
    run = _headless(
        browser,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1280,2400",
        "--hide-scrollbars",
        html_file.as_uri(),
    )
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    assert shot.exists(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10  # not a blank page
    assert (pixels < 128).mean() > 0.005  # text and figures, not just a background
    dom = _headless(browser, tmp_path / "profile2", "--dump-dom", html_file.as_uri())
    for name in report.NOTEBOOKS:
        assert f'id="section-{name}"' in dom.stdout
    assert "<img" in dom.stdout


def test_a_failed_write_leaves_the_previous_report_whole(folder, tmp_path, monkeypatch):
    out = tmp_path / "r.html"
    out.write_text("the previous report")
    monkeypatch.setattr(report, "execute", lambda folders, notebooks=None, devices=None: None)
    monkeypatch.setattr(report, "render", lambda executed, with_code=False: "x" * 10_000)
    real_write = Path.write_text

    def disk_full(self, text, *args, **kwargs):
        real_write(self, text[:100], *args, **kwargs)  # half a page, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(PerflabError, match="cannot write the report .*No space left"):
        report.build([folder], output=out)
    assert out.read_text() == "the previous report"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_report_killed_while_written_leaves_the_previous_one(folder, tmp_path):
    out = tmp_path / "r.html"
    out.write_text("the previous report")
    script = f"""
import os, signal
from pathlib import Path
from perflab import report
report.execute = lambda folders, notebooks=None, devices=None: None
report.render = lambda executed, with_code=False: "x" * 10_000
real = Path.write_text
def killed(self, text, *a, **k):
    real(self, text[:100], *a, **k)
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of the write
Path.write_text = killed
report.build([{str(folder)!r}], output={str(out)!r})
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, check=False)
    assert proc.returncode == -9, proc.stderr
    assert out.read_text() == "the previous report"


def test_an_output_that_cannot_be_written_is_refused_before_the_notebooks_run(
    folder, tmp_path, monkeypatch
):
    ran = []
    monkeypatch.setattr(report, "execute", lambda *a, **k: ran.append(1))
    with pytest.raises(PerflabError, match="it is a folder"):
        report.build([folder], output=tmp_path)
    assert ran == []


# ---------------------------------------------------------------------------- devices section


def _with_model_cost(folder: Path, out: Path) -> Path:
    """A copy of the synthetic study whose runs carry a model's cost and a host bandwidth, so
    the roofline and the projections have numbers to work with."""
    shutil.copytree(folder, out)
    for row in store.read(out, "runs").to_dict("records"):
        if row["status"] != "ok":
            continue
        row.update(
            model_flops_per_sample=2e9,
            model_param_bytes=20e6,
            model_activation_bytes_per_sample=5e6,
            model_input_bytes_per_sample=602112.0,
            model_output_bytes_per_sample=4000.0,
            model_kernels=60.0,
        )
        for key in ("created_at",):
            row[key] = row[key].to_pydatetime() if hasattr(row[key], "to_pydatetime") else row[key]
        store.write_run(out, row)
    return out


def test_report_projects_onto_exactly_the_devices_asked_for(folder, tmp_path):
    study = _with_model_cost(folder, tmp_path / "costed")
    executed = report.execute(
        [study], notebooks=["05_device_comparison"], devices=["GTX 1050 Ti", "RTX 3070"]
    )
    assert not executed.failed, executed.failed[0].error
    text = _visible_text(report.render(executed))
    assert "What each compute projection assumed" in text
    assert "GTX 1050 Ti" in text and "RTX 3070" in text
    assert "A100" not in text and "H100" not in text and "GTX 1070" not in text
    # Every run has a bound in words, CPU runs included (the host's measured bandwidth and
    # estimated peak give them a roofline verdict).
    assert "What limits each run" in text
    bounds = __import__("perflab").open(study).bounds()
    assert len(bounds) == 2 and "unknown" not in set(bounds["bound"])
    for sentence in bounds["text"]:
        assert sentence in text


def test_report_devices_are_checked_before_anything_runs(folder):
    with pytest.raises(
        PerflabError, match=r"unknown device 'RTX 3070 Ti'; close matches: RTX 3070"
    ):
        report.execute([folder], devices=["RTX 3070 Ti"])


@pytest.mark.realdata
def test_two_imported_gpu_logs_show_measured_and_predicted_side_by_side(realdata, tmp_path):
    from perflab import importers

    out = tmp_path / "two-gpus"
    for name in (
        "trt8.0.3_gtx1070_mnist_build_fp32_verbose.txt",
        "trt8.6.0_rtx3090_mnist_load_fp32_verbose.log",
    ):
        importers.import_file(
            "trtexec",
            [realdata / "trtexec" / name],
            out,
            model=realdata / "models" / "mnist-8.onnx",
        )
    executed = report.execute([out], notebooks=["05_device_comparison"])
    assert not executed.failed, executed.failed[0].error
    text = _visible_text(report.render(executed))
    assert "Projected onto a measured device: predicted against measured" in text
    check = __import__("perflab").open(out).projection_check(stages=("compute",))
    assert set(zip(check["from_device"], check["to_device"])) == {
        ("GTX 1070", "RTX 3090"),
        ("RTX 3090", "GTX 1070"),
    }
    assert check["measured_speedup"].notna().all() and check["predicted_speedup"].notna().all()
