"""The workbench in a real browser: JupyterLab as `perflab lab` starts it, driven by Debian's
chromium through Playwright (no browser download). One notebook is run on a synthetic study; its
figures must render, a selector must redraw its figure, and a screenshot is saved.

Skips with the reason where chromium or Playwright is missing (`make test` installs chromium when
it runs as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from perflab import lab

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SERVER_START_S = 90
PAGE_TIMEOUT_MS = 180_000
NOTEBOOK = "01_overview.ipynb"
# Where the screenshot goes: the test's folder, or PERFLAB_LAB_SCREENSHOT (docs/lab.png is one).
SCREENSHOT_ENV = "PERFLAB_LAB_SCREENSHOT"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
    ),
]


def _wait_for_server(base: str, token: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"JupyterLab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"JupyterLab did not answer within {SERVER_START_S} s")


@pytest.fixture
def server(tmp_path, run_synthetic):
    """JupyterLab on a workspace of a synthetic study, its kernel installed into a folder of the
    test's own (JUPYTER_PATH), so nothing outside tmp_path is written; stopped at the end."""
    study = run_synthetic(tmp_path / "tiny", batch_sizes=(1, 2))
    kernel = lab.install_kernel(prefix=str(tmp_path / "prefix"))
    workspace = lab.workspace_for([study.resolve()], tmp_path / "lab")
    lab.write_workspace([study.resolve()], workspace, kernel)
    port, token = lab.free_port(), "perflab-test-token"
    env = dict(
        os.environ,
        JUPYTER_PATH=str(tmp_path / "prefix" / "share" / "jupyter"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
    )
    # JupyterLab asks once whether to fetch its news; answered here, it stays out of the screenshot.
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env.pop("MPLBACKEND", None)  # the kernel picks its own (ipympl's widget backend)
    env[lab.RESULTS_ENV] = str(study.resolve())
    # The test reads the notebook's state through the app object the page exposes.
    command = [
        *lab.server_command(workspace, port=port, token=token),
        "--LabApp.expose_app_in_browser=True",
    ]
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_server(base, token, proc)
        yield base, token, tmp_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# In the page: the open notebook's code cells, their outputs and the kernel's state.
STATE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  return {
    kernel: kernel ? kernel.status : 'none',
    kernelName: kernel ? kernel.name : '',
    pending: cells.filter(c => c.model.executionCount === null).length,
    errors: cells.flatMap(c => c.model.outputs.toJSON())
                 .filter(o => o.output_type === 'error')
                 .map(o => o.ename + ': ' + o.evalue),
  };
}"""

# The figure's image when something is drawn on it (over 2 % of its pixels not white), else ''.
CANVAS_JS = """(output) => {
  const canvas = output.querySelector('canvas');
  if (!canvas || !canvas.width || !canvas.height) return '';
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let ink = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 0 && (data[i] < 240 || data[i + 1] < 240 || data[i + 2] < 240)) ink++;
  }
  return ink > 0.02 * canvas.width * canvas.height ? canvas.toDataURL() : '';
}"""


def test_a_notebook_runs_and_its_selector_redraws_in_jupyterlab(server):
    playwright = pytest.importorskip("playwright.sync_api")
    base, token, tmp_path = server
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                " && window.jupyterapp.shell.currentWidget.sessionContext"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                ".status === 'idle'"
            )
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_function(
                f"() => {{ const s = ({STATE_JS})(); return s && s.pending === 0"
                " && s.kernel === 'idle'; }"
            )
            state = page.evaluate(STATE_JS)
            assert state["kernelName"].startswith("perflab-")
            assert state["errors"] == []

            # The figures rendered: ipympl canvases with something drawn on them.
            figures = page.locator(".jupyter-matplotlib-figure")
            figures.first.wait_for(state="visible")
            assert figures.count() >= 1
            # The stage selector above the latency distributions, and the figure under it.
            selector = page.locator(".widget-dropdown select").first
            output = page.locator(".widget-output").filter(has=page.locator("canvas")).first
            output.scroll_into_view_if_needed()
            page.wait_for_function(f"(o) => ({CANVAS_JS})(o) !== ''", arg=output.element_handle())
            before = output.evaluate(CANVAS_JS)
            output.evaluate("(o) => o.querySelector('.jupyter-matplotlib-figure').dataset.old = 1")
            options = selector.locator("option").all_inner_texts()
            assert options[0] == "e2e" and "compute" in options
            selector.select_option(label="compute")
            # A new figure replaces the old one, and what it shows differs.
            page.wait_for_function(
                "(o) => { const f = o.querySelector('.jupyter-matplotlib-figure');"
                " return f && !f.dataset.old; }",
                arg=output.element_handle(),
            )
            page.wait_for_function(
                f"() => {{ const s = ({STATE_JS})(); return s && s.kernel === 'idle'; }}"
            )
            page.wait_for_function(
                f"([o, old]) => {{ const now = ({CANVAS_JS})(o); return now !== ''"
                " && now !== old; }",
                arg=[output.element_handle(), before],
            )
            assert output.evaluate(CANVAS_JS) != before
            assert page.evaluate(STATE_JS)["errors"] == []

            selector.scroll_into_view_if_needed()
            page.mouse.wheel(0, -150)
            page.wait_for_function(f"(o) => ({CANVAS_JS})(o) !== ''", arg=output.element_handle())
            page.wait_for_timeout(500)  # the frame after the last draw
            shot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "lab.png")
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 20_000
        finally:
            browser.close()
