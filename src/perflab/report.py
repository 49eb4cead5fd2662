"""Notebooks -> one self-contained HTML report.

`build` executes the notebooks in order on one kernel (so pandas, matplotlib and perflab are
imported once, not once per notebook), with the result folders injected as papermill parameters,
and exports them together as one HTML file: figures embedded as base64 PNG, CSS inlined, no script
or stylesheet fetched from the network, a table of contents linking the sections. Code cells are
hidden unless `with_code`.

A notebook that fails does not cost the others: its section keeps the cells run up to the failure,
the traceback and a box saying so; the remaining notebooks still run, the file is written, and
`build` logs one warning line per failed notebook (or raises after writing, with ``strict=True``).

What the notebooks show is built elsewhere: tables by `Results` methods, figures by `plots`,
and displayed through `perflab.display` (which escapes every string from the data).
"""

from __future__ import annotations

import html
import logging
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from perflab import __version__
from perflab.errors import PerflabError
from perflab.store import check_writable
from perflab.untrusted import file_kind

log = logging.getLogger(__name__)

# Report order. Each name is a notebook file `<name>.ipynb` and the id of its report section.
NOTEBOOKS: tuple[str, ...] = (
    "01_overview",
    "02_stage_breakdown",
    "03_warmup",
    "04_batching",
    "05_device_comparison",
    "06_trace_correlation",
)
KERNEL_NAME = "python3"
# Per cell; generous because a cell's cost grows with the study, and a hung cell still ends.
CELL_TIMEOUT_S = 600
# Tags: papermill's; and ours for the cells `build` adds to run between notebooks.
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
INTERNAL_TAG = "perflab-internal"
# Run before each notebook on the shared kernel: a notebook must not see another one's names, and
# figures left open by a failed notebook must not leak into the next one's output.
RESET_SOURCE = "%reset -f\nimport matplotlib.pyplot as _plt\n_plt.close('all')\ndel _plt"


# --------------------------------------------------------------------------------------------
# Where the notebooks are


def notebook_dir() -> Path:
    """The folder holding the report notebooks.

    Installed from a wheel they are package data (``perflab/notebooks``). In a source checkout
    that folder is a link to the repository's ``notebooks/``, which is also used directly when the
    link is missing (a checkout on a file system without symbolic links).
    """
    packaged = Path(str(resources.files("perflab"))) / "notebooks"
    if (packaged / f"{NOTEBOOKS[0]}.ipynb").is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "notebooks"
    if (checkout / f"{NOTEBOOKS[0]}.ipynb").is_file():
        return checkout
    raise PerflabError(
        f"the report notebooks are missing: neither {packaged} nor {checkout} holds "
        f"{NOTEBOOKS[0]}.ipynb; reinstall perflab"
    )


def notebook_paths(names: Iterable[str] | None = None) -> list[Path]:
    """Paths of the named notebooks (default: all, in report order)."""
    folder = notebook_dir()
    names = list(NOTEBOOKS if names is None else names)
    unknown = [n for n in names if n not in NOTEBOOKS]
    if unknown:
        raise PerflabError(f"unknown notebook {unknown[0]!r}; notebooks: {', '.join(NOTEBOOKS)}")
    return [folder / f"{n}.ipynb" for n in names]


# --------------------------------------------------------------------------------------------
# Building the report


@dataclass
class Section:
    """One notebook's part of the report."""

    name: str
    title: str
    nb: Any  # nbformat.NotebookNode, executed in place
    error: str | None = None
    failed_index: int | None = None  # the combined notebook's cell where it failed
    seconds: float = 0.0
    cells: list[int] = field(default_factory=list)  # indices into the combined notebook

    @property
    def anchor(self) -> str:
        return f"section-{self.name}"


def _check_folders(folders: Sequence[Path | str]) -> list[Path]:
    """Absolute paths of result folders, refused as `perflab.open` would refuse them, before
    minutes are spent executing notebooks on them."""
    from perflab import store

    out = []
    for folder in folders:
        store.read_study_check(folder)
        out.append(Path(folder).resolve())
    return out


def study_name(folders: Sequence[Path]) -> str:
    """The study name of the runs in `folders` (joined with '+' when several), else folder names."""
    from perflab import store

    names: list[str] = []
    if folders:
        try:
            runs = store.read(folders, "runs")
        except PerflabError:
            runs = None
        if runs is not None and len(runs):
            names = sorted({str(s) for s in runs["study"].dropna()})
    if not names:
        names = [Path(f).name for f in folders] or ["empty"]
    return "+".join(dict.fromkeys(names))


def default_output(folders: Sequence[Path]) -> Path:
    """reports/<study>.html, with characters that are unsafe in file names replaced."""
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", study_name(folders)).strip("._") or "report"
    return Path("reports") / f"{safe[:120]}.html"


def _title(nb: Any, name: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return name


def _load_sections(
    names: Sequence[str] | None, folders: Sequence[Path], devices: Sequence[str] | None = None
) -> list[Section]:
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    sections = []
    for path in notebook_paths(names):
        # papermill's loader adds the metadata its parameterization expects (tags on every cell).
        nb = load_notebook_node(str(path))
        # Static figures and no selectors: the page has no kernel to drive widgets.
        parameters: dict[str, Any] = {"results": [str(f) for f in folders], "interactive": False}
        if devices:
            parameters["devices"] = list(devices)
        nb = parameterize_notebook(nb, parameters, kernel_name=KERNEL_NAME, language="python")
        sections.append(Section(name=path.stem, title=_title(nb, path.stem), nb=nb))
    return sections


def _combine(sections: list[Section]) -> Any:
    """One notebook holding every section's cells, each section opened by a reset cell."""
    import nbformat

    combined = nbformat.v4.new_notebook()
    combined.metadata["kernelspec"] = {
        "name": KERNEL_NAME,
        "display_name": "Python 3",
        "language": "python",
    }
    combined.metadata["language_info"] = {"name": "python"}
    for sec in sections:
        reset = nbformat.v4.new_code_cell(RESET_SOURCE)
        reset.metadata["tags"] = [INTERNAL_TAG]
        combined.cells.append(reset)
        sec.cells.append(len(combined.cells) - 1)
        for cell in sec.nb.cells:
            combined.cells.append(cell)
            sec.cells.append(len(combined.cells) - 1)
    return combined


def _error_text(exc: BaseException) -> str:
    from nbclient.exceptions import CellExecutionError

    if isinstance(exc, CellExecutionError):
        name = getattr(exc, "ename", "") or type(exc).__name__
        value = getattr(exc, "evalue", "") or ""
        return f"{name}: {value}".strip().rstrip(":")
    return f"{type(exc).__name__}: {exc}".strip()


def _execute(combined: Any, sections: list[Section], *, cwd: Path, on_section: Any = None) -> None:
    """Run the sections' cells in order on one kernel; a failure ends only its own section.

    A dead kernel (a crash in native code) is replaced by a fresh one for the next section.
    """
    import subprocess

    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    pending = list(sections)
    while pending:
        client = NotebookClient(
            combined,
            timeout=CELL_TIMEOUT_S,
            kernel_name=KERNEL_NAME,
            allow_errors=False,
            record_timing=False,
        )
        dead = False
        try:
            # The kernel's stderr carries only start-up chatter (transport and debugger notices);
            # what a notebook prints goes to its cell outputs, not to this stream.
            with client.setup_kernel(cwd=str(cwd), stderr=subprocess.DEVNULL):
                while pending and not dead:
                    sec = pending.pop(0)
                    if on_section:
                        on_section(sec, "start")
                    start = time.perf_counter()
                    for index in sec.cells:
                        cell = combined.cells[index]
                        if cell.cell_type != "code":
                            continue
                        try:
                            client.execute_cell(cell, index)
                        except (CellExecutionError, CellTimeoutError) as exc:
                            sec.error, sec.failed_index = _error_text(exc), index
                            break
                        except DeadKernelError as exc:
                            sec.error = f"the kernel died ({exc}); later sections use a new kernel"
                            sec.failed_index, dead = index, True
                            break
                    sec.seconds = time.perf_counter() - start
                    if on_section:
                        on_section(sec, "done")
        except DeadKernelError:
            if not dead:
                raise
        except RuntimeError as exc:
            # A kernel that cannot start fails every section the same way.
            for sec in pending:
                sec.error = f"kernel {KERNEL_NAME!r} could not start: {exc}"
            raise PerflabError(
                f"cannot start the Jupyter kernel {KERNEL_NAME!r} to execute the notebooks: {exc}; "
                "is ipykernel installed in this environment?"
            ) from None


def _prune(combined: Any, sections: list[Section]) -> Any:
    """The notebook to export: each section opened by its anchor, internal cells dropped, and in
    a failed section an error box first and no cells after the failing one (they never ran, so
    their explanations would describe figures that are not there)."""
    import nbformat

    def raw_html(markup: str) -> Any:
        cell = nbformat.v4.new_raw_cell(markup)
        cell.metadata["raw_mimetype"] = "text/html"
        return cell

    keep = []
    for sec in sections:
        keep.append(raw_html(f'<div id="{sec.anchor}" class="perflab-section"></div>'))
        box = raw_html(
            '<div class="perflab-error"><strong>This section could not be completed.'
            f"</strong> <code>{html.escape(sec.error or '')}</code></div>"
        )
        for index in sec.cells:
            if sec.failed_index is not None and index > sec.failed_index:
                break
            cell = combined.cells[index]
            if INTERNAL_TAG in cell.metadata.get("tags", []):
                continue
            keep.append(cell)
            if sec.error and box is not None and not cell.source.startswith("# "):
                # Right under the section's title (or first, when it has none).
                keep.insert(len(keep) - 1, box)
                box = None
        if sec.error and box is not None:
            keep.append(box)
    return nbformat.v4.new_notebook(cells=keep, metadata=combined.metadata)


REPORT_CSS = """
main { max-width: 1180px; margin: 0 auto; padding: 0 16px 48px 16px; }
.perflab-header { border-bottom: 1px solid #ddd; margin: 24px 0 8px 0; padding-bottom: 12px;
  font-family: var(--jp-content-font-family); }
.perflab-header h1 { margin: 0 0 6px 0; font-size: 1.7em; }
.perflab-header .perflab-meta { color: #555; font-size: 0.9em; margin: 2px 0; }
.perflab-header code { font-size: 0.95em; }
nav.perflab-toc { margin: 12px 0 4px 0; font-family: var(--jp-content-font-family); }
nav.perflab-toc ol { margin: 4px 0; padding-left: 1.6em; }
nav.perflab-toc li { margin: 2px 0; }
nav.perflab-toc .perflab-failed { color: #b00020; font-weight: 600; }
div.perflab-section { border-top: 2px solid #4e79a7; margin-top: 36px; padding-top: 4px; }
div.perflab-error { background: #fdecea; border-left: 4px solid #b00020; padding: 8px 12px;
  margin: 8px 0; font-family: var(--jp-content-font-family); }
div.perflab-note { background: #eef4fb; border-left: 4px solid #4e79a7; padding: 6px 12px;
  margin: 6px 0; }
div.perflab-note.perflab-warning { background: #fff6e0; border-left-color: #e0a000; }
.jp-RenderedHTMLCommon table.perflab-table { font-size: 12px; margin-left: 0; }
.jp-RenderedHTMLCommon table.perflab-table td { white-space: nowrap; max-width: 60em;
  overflow: hidden; text-overflow: ellipsis; }
.jp-RenderedHTMLCommon table.perflab-table .text { text-align: left; }
.jp-RenderedHTMLCommon table.perflab-table .num { text-align: right; }
p.perflab-caption { font-weight: 600; margin: 12px 0 4px 0; }
.jp-OutputArea-output img { max-width: 100%; height: auto; }
"""

# Extends nbconvert's "lab" template without its network-loaded scripts: require.js and MathJax
# (the notebooks use no LaTeX and no widgets), and the mermaid loader. Figures are PNG outputs, so
# nothing else is needed to display the page offline.
_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block extra_css %}
<style type="text/css">{{ resources.perflab_css }}</style>
{% endblock extra_css %}
{%- block body_header -%}
{{ super() }}
{{ resources.perflab_header }}
{%- endblock body_header -%}
"""


def _header_html(study: str, folders: Sequence[Path], sections: list[Section]) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    items = []
    for sec in sections:
        status = ' <span class="perflab-failed">(failed)</span>' if sec.error else ""
        items.append(f'<li><a href="#{sec.anchor}">{html.escape(sec.title)}</a>{status}</li>')
    folder_list = ", ".join(f"<code>{html.escape(str(f))}</code>" for f in folders) or "none"
    return (
        '<header class="perflab-header">'
        f"<h1>perflab report: {html.escape(study)}</h1>"
        f'<p class="perflab-meta">Results: {folder_list}</p>'
        f'<p class="perflab-meta">Generated {now} by perflab {html.escape(__version__)}</p>'
        f'<nav class="perflab-toc"><strong>Contents</strong><ol>{"".join(items)}</ol></nav>'
        "</header>"
    )


def export_html(nb: Any, *, title: str, header_html: str, with_code: bool = False) -> str:
    """Render an executed notebook as self-contained HTML (see `_TEMPLATE`)."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        template_file="perflab_report.html.j2",
        extra_loaders=[DictLoader({"perflab_report.html.j2": _TEMPLATE})],
        exclude_input=not with_code,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
        mathjax_url="",
        require_js_url="",
        mermaid_js_url="",
        mermaid_layout_elk_js_url="",
        anchor_link_text="",
    )
    body, _ = exporter.from_notebook_node(
        nb,
        resources={
            "metadata": {"name": title},
            "perflab_css": REPORT_CSS,
            "perflab_header": header_html,
        },
    )
    return body


def _progress(total: int):
    """A progress bar over notebooks on stderr (silent when stderr is not a terminal)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    console = Console(stderr=True, highlight=False)
    return Progress(
        TextColumn("report"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


@dataclass
class Executed:
    """Notebooks executed on result folders, ready to render (see `execute` and `render`)."""

    folders: list[Path]
    study: str
    sections: list[Section]
    combined: Any  # the combined notebook the sections' cells live in
    seconds: float

    @property
    def failed(self) -> list[Section]:
        return [s for s in self.sections if s.error]


def execute(
    folders: Sequence[Path | str],
    *,
    notebooks: Sequence[str] | None = None,
    devices: Sequence[str] | None = None,
) -> Executed:
    """Execute the notebooks (default: all, in report order) on result `folders`, on one kernel,
    with a progress bar. `devices` are the projection targets (table names, checked first). A
    failing notebook is recorded in its section, never raised."""
    from perflab.analysis.roofline import check_devices

    devices = check_devices(devices) if devices else None  # an unknown name fails before any work
    paths = _check_folders(list(folders))
    study = study_name(paths)
    sections = _load_sections(notebooks, paths, devices)
    combined = _combine(sections)
    started = time.perf_counter()
    with _progress(len(sections)) as bar:
        task = bar.add_task("", total=len(sections))

        def on_section(sec: Section, event: str) -> None:
            if event == "start":
                bar.update(task, description=sec.title)
            else:
                bar.advance(task)

        _execute(combined, sections, cwd=Path.cwd(), on_section=on_section)
    return Executed(paths, study, sections, combined, time.perf_counter() - started)


def render(executed: Executed, *, with_code: bool = False) -> str:
    """The self-contained HTML page of executed notebooks (code cells shown with `with_code`)."""
    return export_html(
        _prune(executed.combined, executed.sections),
        title=f"perflab report: {executed.study}",
        header_html=_header_html(executed.study, executed.folders, executed.sections),
        with_code=with_code,
    )


def _check_target(out: Path) -> None:
    """PerflabError unless `out` can be written as the report file."""
    if out.exists() and not out.is_file():
        raise PerflabError(f"cannot write the report {out}: it is {file_kind(out.stat().st_mode)}")
    try:
        check_writable(out.parent)
    except PerflabError as exc:
        raise PerflabError(f"cannot write the report {out}: {exc}") from None


def build(
    folders: Sequence[Path | str],
    output: Path | str | None = None,
    with_code: bool = False,
    *,
    notebooks: Sequence[str] | None = None,
    strict: bool = False,
    devices: Sequence[str] | None = None,
) -> Path:
    """Execute the notebooks on result `folders` and write one self-contained HTML file.

    - `output`: the HTML file (default ``reports/<study>.html``; its folder is created).
    - `with_code`: show the code cells (hidden by default).
    - `notebooks`: names from `NOTEBOOKS` to include (default: all, in report order).
    - `devices`: projection targets, names from the device table (default: one per generation);
      an unknown name raises `PerflabError` with the close matches before anything runs.
    - `strict`: after writing the file, raise `PerflabError` if any notebook failed. By default a
      failed notebook is a section with its traceback and a red box, a warning line is logged
      (logger "perflab.report"), and the path is returned: one broken analysis should not cost
      the reader the others.

    Returns the path written. Folders that do not exist or hold no perflab results raise
    `StoreError` before anything runs; an empty list gives a report whose sections say there
    is nothing to show.
    """
    if output is not None:
        _check_target(Path(output))  # before the notebooks run, not after their work
    executed = execute(folders, notebooks=notebooks, devices=devices)
    out = Path(output) if output is not None else default_output(executed.folders)
    _check_target(out)
    page = render(executed, with_code=with_code)
    # A temporary name in the same folder, then a rename: a crash or a full disk mid-write
    # leaves the previous report whole, never a truncated one.
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PerflabError(f"cannot write the report {out}: {exc.strerror or exc}") from None
    log.debug(
        "report %s: notebooks executed in %.1f s (%s)",
        out,
        executed.seconds,
        ", ".join(f"{s.name} {s.seconds:.1f} s" for s in executed.sections),
    )
    for sec in executed.failed:
        log.warning("report %s: notebook %s failed: %s", out, sec.name, sec.error)
    if executed.failed and strict:
        names = ", ".join(f"{s.name} ({s.error})" for s in executed.failed)
        raise PerflabError(
            f"{len(executed.failed)} notebook(s) failed: {names}; the report with "
            f"their errors was written to {out}"
        )
    return out
