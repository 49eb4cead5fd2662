"""perflab lab: where notebooks find their results, the workspace of notebook copies, the kernel,
the server command, the selectors, and the notebooks run from notebooks/ as JupyterLab runs them.
"""

from __future__ import annotations

import os

os.environ["MPLBACKEND"] = "Agg"

import ast
import hashlib
import json
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest

from perflab import display, lab, report
from perflab.errors import PerflabError

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"


@pytest.fixture
def shown(monkeypatch) -> list:
    """What the code under test hands to IPython's display(), in order."""
    objs: list = []
    monkeypatch.setattr("IPython.display.display", lambda *o, **_: objs.extend(o))
    return objs


@pytest.fixture(scope="module")
def study(tmp_path_factory, run_synthetic) -> Path:
    return run_synthetic(tmp_path_factory.mktemp("lab") / "tiny", batch_sizes=(1, 2))


def _project(tmp_path: Path) -> Path:
    """A project folder: pyproject.toml, notebooks/ and data/demo/runs/."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "data" / "demo" / "runs").mkdir(parents=True)
    return tmp_path


# -- where results are ------------------------------------------------------------------------


def test_a_relative_folder_is_found_from_the_notebooks_folder(tmp_path, monkeypatch):
    project = _project(tmp_path)
    monkeypatch.delenv(lab.RESULTS_ENV, raising=False)
    found, missing = lab.resolve_results(["data/demo"], cwd=project / "notebooks")
    assert found == [(project / "data" / "demo").resolve()] and missing == []


def test_the_working_directory_comes_before_the_project_root(tmp_path):
    project = _project(tmp_path)
    (project / "notebooks" / "data" / "demo").mkdir(parents=True)
    found, _ = lab.resolve_results(["data/demo"], cwd=project / "notebooks")
    assert found == [(project / "notebooks" / "data" / "demo").resolve()]


def test_none_takes_the_environment_variable_then_the_demo(tmp_path, monkeypatch):
    project = _project(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    monkeypatch.setenv(lab.RESULTS_ENV, f"{a}{os.pathsep}{b}")
    assert lab.resolve_results(None, cwd=project / "notebooks") == ([a, b], [])
    monkeypatch.delenv(lab.RESULTS_ENV)
    found, _ = lab.resolve_results(None, cwd=project / "notebooks")
    assert found == [(project / "data" / "demo").resolve()]


def test_a_missing_folder_is_named_with_where_it_was_looked_for(tmp_path):
    project = _project(tmp_path)
    found, missing = lab.resolve_results(["data/nope", str(tmp_path / "abs")], cwd=project)
    assert found == []
    assert missing[0].startswith("result folder data/nope does not exist (looked in ")
    assert str(project) in missing[0]
    assert missing[1] == f"result folder {tmp_path / 'abs'} does not exist"


def test_load_shows_one_note_instead_of_a_traceback(tmp_path, monkeypatch, shown):
    monkeypatch.chdir(tmp_path)
    assert display.load(["no/such/folder"]) is None
    assert len(shown) == 1
    text = str(shown[0])
    assert text.startswith("Nothing to show: result folder no/such/folder does not exist")
    assert lab.RESULTS_ENV in text
    # A folder that exists but holds no results: the store's refusal, as a note.
    (tmp_path / "empty").mkdir()
    shown.clear()
    assert display.load([str(tmp_path / "empty")]) is None
    assert "holds no perflab results" in str(shown[0])


def test_load_opens_relative_folders_from_the_project_root(study, tmp_path, monkeypatch):
    project = _project(tmp_path)
    (project / "data" / "demo" / "runs").rmdir()
    (project / "data" / "demo").rmdir()
    (project / "data" / "demo").symlink_to(study)
    monkeypatch.chdir(project / "notebooks")
    res = display.load(["data/demo"], need="ok")
    assert res is not None and len(res.runs) == 2


def test_the_newest_study_under_data(tmp_path):
    data = tmp_path / "data"
    for name, age in (("old", 100), ("new", 10)):
        (data / name / "runs").mkdir(parents=True)
        then = time.time() - age
        os.utime(data / name / "runs", (then, then))
    (data / "notes").mkdir()  # not a study
    assert lab.latest_study(data) == data / "new"
    with pytest.raises(PerflabError, match="no results under"):
        lab.latest_study(tmp_path / "nothing")


# -- the workspace -----------------------------------------------------------------------------


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.ipynb")}


def test_the_workspace_holds_copies_set_to_the_folders(tmp_path, study):
    before = _digest(NOTEBOOK_DIR)
    workspace = lab.workspace_for([study], tmp_path / "lab")
    written = lab.write_workspace([study], workspace, "perflab-test")
    assert [p.name for p in written] == [f"{n}.ipynb" for n in report.NOTEBOOKS]
    for path in written:
        nb = nbformat.read(path, as_version=4)
        params = [c for c in nb.cells if report.PARAMETERS_TAG in c.metadata.get("tags", [])]
        namespace = {
            node.targets[0].id: ast.literal_eval(node.value)
            for node in ast.parse(params[0].source).body
        }
        assert namespace["results"] == [str(study)]
        assert namespace["interactive"] is True
        assert nb.metadata["kernelspec"]["name"] == "perflab-test"
    assert _digest(NOTEBOOK_DIR) == before  # the originals stay as they were
    # A copy the user edited is kept; a second set of folders gets its own workspace.
    edited = written[0].read_text().replace("Overview", "My overview")
    written[0].write_text(edited)
    lab.write_workspace([study], workspace, "perflab-test")
    assert written[0].read_text() == edited
    assert lab.workspace_for([study, tmp_path], tmp_path / "lab") != workspace


def test_the_kernel_is_this_python_under_a_name_of_its_own(tmp_path):
    name = lab.install_kernel(prefix=str(tmp_path))
    spec = json.loads(
        (tmp_path / "share" / "jupyter" / "kernels" / name / "kernel.json").read_text()
    )
    assert spec["argv"][0] == sys.executable
    assert name.startswith("perflab-") and name != "python3"
    assert lab.kernel_name("/some/other/venv") != name
    assert "perflab" in spec["display_name"] and sys.prefix in spec["display_name"]


def test_the_server_listens_on_localhost_with_a_token(tmp_path):
    command = lab.server_command(tmp_path, port=8765, token="secret")
    assert command[:3] == [sys.executable, "-m", "jupyterlab"]
    assert "--ServerApp.ip=127.0.0.1" in command
    assert "--ServerApp.port=8765" in command and "--ServerApp.port_retries=0" in command
    assert "--IdentityProvider.token=secret" in command
    assert f"--ServerApp.root_dir={tmp_path.resolve()}" in command
    assert "--no-browser" in command


# -- selectors ---------------------------------------------------------------------------------


def test_explore_draws_the_defaults_and_no_widget_in_the_report(shown):
    calls = []
    display.explore(
        lambda stage, run: calls.append((stage, run)),
        interactive=False,
        stage=["e2e", "compute"],
        run=[("run a", "id-a"), ("run b", "id-b")],
    )
    assert calls == [("e2e", "id-a")]
    assert shown == []


def test_explore_redraws_when_a_selector_changes(shown):
    pytest.importorskip("ipywidgets")
    calls = []
    display.explore(
        lambda stage, first: calls.append((stage, first)),
        interactive=True,
        stage=["e2e", "compute"],
        first=range(0, 20, 2),
    )
    import ipywidgets

    controls = next(o for o in shown if isinstance(o, ipywidgets.HBox))
    dropdown, slider = controls.children
    assert list(dropdown.options) == ["e2e", "compute"]
    assert (slider.min, slider.max, slider.step) == (0, 18, 2)
    dropdown.value = "compute"
    slider.value = 6
    assert calls == [("e2e", 0), ("compute", 0), ("compute", 6)]


def test_a_redraw_closes_only_its_own_figures(shown):
    pytest.importorskip("ipywidgets")
    import matplotlib.pyplot as plt

    plt.close("all")
    other = plt.figure()  # another cell's figure
    mine = []
    display.explore(lambda stage: mine.append(plt.figure()), interactive=True, stage=["a", "b"])
    import ipywidgets

    controls = next(o for o in shown if isinstance(o, ipywidgets.HBox))
    controls.children[0].value = "b"
    assert plt.fignum_exists(other.number)
    assert len(mine) == 2
    # The first drawing's figure was closed before the second was drawn (which then may reuse
    # its number); another cell's figure never is.
    assert mine[0].number not in plt.get_fignums() or mine[0].number == mine[1].number
    assert mine[0] is not mine[1]
    plt.close("all")


def test_figures_are_static_unless_interactive():
    assert display.figures(False) == "inline"
    pytest.importorskip("ipympl")
    assert display.figures(True) == "widget"


def test_selector_options_come_from_results(study):
    from perflab.results import open as open_results

    res = open_results(study).ok()
    stages = res.stages_measured()
    assert stages[0] == "e2e" and "compute" in stages
    picked = str(res.runs["run_id"].iloc[-1])
    choices = res.run_choices(first=picked)
    assert choices[0][1] == picked and len(choices) == 2
    iterations = res.measured_iterations(picked)
    assert iterations == list(range(10, 50))  # 10 warmup, then 40 measured
    wide = res.iteration_table(picked, iterations[:3])
    assert wide["iteration"].tolist() == iterations[:3]
    samples = res.samples
    one = samples[(samples["run_id"] == picked) & (samples["iteration"] == iterations[0])]
    e2e_ms = one.loc[one["stage"] == "e2e", "host_ns"].iloc[0] / 1e6
    assert wide["e2e"].iloc[0] == pytest.approx(e2e_ms)
    assert list(wide.columns)[-1] == "e2e"


# -- the notebooks as JupyterLab runs them -----------------------------------------------------


@pytest.mark.slow
def test_every_notebook_runs_from_the_notebooks_folder(study, monkeypatch):
    """Their defaults (results None, interactive True), the kernel started in notebooks/, the
    results from PERFLAB_RESULTS as perflab lab sets it: no error output, and widgets shown."""
    from nbclient import NotebookClient

    monkeypatch.setenv(lab.RESULTS_ENV, str(study))
    widget_outputs = 0
    for name in report.NOTEBOOKS:
        nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
        NotebookClient(nb, kernel_name="python3", timeout=300, allow_errors=True).execute(
            cwd=str(NOTEBOOK_DIR)
        )
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        errors = [f"{o.ename}: {o.evalue}" for o in outputs if o.output_type == "error"]
        assert errors == [], name
        widget_outputs += sum(
            "application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs
        )
    assert widget_outputs >= 4  # selectors and ipympl canvases


@pytest.mark.slow
def test_the_report_keeps_static_figures_and_no_widgets(study, tmp_path):
    out = report.build(
        [study], tmp_path / "r.html", notebooks=["01_overview", "02_stage_breakdown"]
    )
    page = out.read_text()
    assert page.count("data:image/png;base64,") >= 3
    body = re.sub(r"<style\b.*?</style>", "", page, flags=re.DOTALL | re.IGNORECASE)
    for debris in ("widget-view", "application/vnd.jupyter.widget", "jupyter-widgets", "ipympl"):
        assert debris not in body


def test_the_readme_draws_each_figure_from_results(study):
    """The README's one way to draw the report figures in your own notebook runs as written."""
    import subprocess

    section = (REPO / "README.md").read_text().split("## Exploring in JupyterLab", 1)[1]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    figures = sum(line.startswith("plots.") for line in block.splitlines())
    assert figures >= 8
    script = (
        block.replace('"data/demo"', repr(str(study)))
        + "\nimport matplotlib.pyplot as plt\n"
        + f"assert len(plt.get_fignums()) == {figures}, plt.get_fignums()\n"
        + "assert 'runs' in res._repr_html_()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, MPLBACKEND="Agg"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_perflab_lab_prints_a_url_that_serves_the_overview(study, tmp_path):
    """The command as a user runs it: the URL it prints answers with the token (and not without
    it), the workspace holds the copies, and SIGTERM stops the server with it."""
    import signal
    import subprocess
    import urllib.error
    import urllib.request

    proc = subprocess.Popen(
        [sys.executable, "-m", "perflab.cli", "lab", str(study), "--workspace", str(tmp_path)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "MPLBACKEND"},
    )
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[0] == f"results: {study.resolve()}\n"
        url = lines[2].removeprefix("JupyterLab: ").strip()
        assert url.startswith("http://127.0.0.1:") and "/lab/tree/01_overview.ipynb?token=" in url
        base, token = url.split("/lab/tree/")[0], url.split("token=")[1]
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/contents/01_overview.ipynb?token={token}",
                                            timeout=2) as reply:  # fmt: skip
                    model = json.load(reply)
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.5)
        assert model["name"] == "01_overview.ipynb"
        assert str(study.resolve()) in json.dumps(model["content"]["cells"][1]["source"])
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(f"{base}/api/contents/01_overview.ipynb", timeout=5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) is not None
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
