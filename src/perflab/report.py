"""Notebooks -> one self-contained HTML report, and the small display helpers the notebooks use.

`build` executes the notebooks in order on one kernel (so pandas, matplotlib and perflab are
imported once, not once per notebook), with the result folders injected as papermill parameters,
and exports them together as one HTML file: figures embedded as base64 PNG, CSS inlined, no script
or stylesheet fetched from the network, a table of contents linking the sections. Code cells are
hidden unless `with_code`.

A notebook that fails does not cost the others: its section keeps the cells run up to the failure,
the traceback and a box saying so; the remaining notebooks still run, the file is written, and
`build` logs one warning line per failed notebook (or raises after writing, with ``strict=True``).

The display helpers (`load`, `table`, `note`, `nothing_to_show`) escape every string that comes
from the data (model names, paths, error messages), because the report is HTML and those strings
are not ours.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perflab import __version__
from perflab.errors import PerflabError

if TYPE_CHECKING:
    import pandas as pd

    from perflab.results import Results

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
TABLE_MAX_ROWS = 60


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


def _load_sections(names: Sequence[str] | None, folders: Sequence[Path]) -> list[Section]:
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    sections = []
    for path in notebook_paths(names):
        # papermill's loader adds the metadata its parameterization expects (tags on every cell).
        nb = load_notebook_node(str(path))
        nb = parameterize_notebook(
            nb, {"results": [str(f) for f in folders]}, kernel_name=KERNEL_NAME, language="python"
        )
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


def execute(folders: Sequence[Path | str], *, notebooks: Sequence[str] | None = None) -> Executed:
    """Execute the notebooks (default: all, in report order) on result `folders`, on one kernel,
    with a progress bar. A failing notebook is recorded in its section, never raised."""
    paths = _check_folders(list(folders))
    study = study_name(paths)
    sections = _load_sections(notebooks, paths)
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


def build(
    folders: Sequence[Path | str],
    output: Path | str | None = None,
    with_code: bool = False,
    *,
    notebooks: Sequence[str] | None = None,
    strict: bool = False,
) -> Path:
    """Execute the notebooks on result `folders` and write one self-contained HTML file.

    - `output`: the HTML file (default ``reports/<study>.html``; its folder is created).
    - `with_code`: show the code cells (hidden by default).
    - `notebooks`: names from `NOTEBOOKS` to include (default: all, in report order).
    - `strict`: after writing the file, raise `PerflabError` if any notebook failed. By default a
      failed notebook is a section with its traceback and a red box, a warning line is logged
      (logger "perflab.report"), and the path is returned: one broken analysis should not cost
      the reader the others.

    Returns the path written. Folders that do not exist or hold no perflab results raise
    `StoreError` before anything runs; an empty list gives a report whose sections say there
    is nothing to show.
    """
    executed = execute(folders, notebooks=notebooks)
    out = Path(output) if output is not None else default_output(executed.folders)
    page = render(executed, with_code=with_code)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
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


# --------------------------------------------------------------------------------------------
# Display helpers for the notebooks: every data string is escaped.


class HTMLBlock:
    """Already-escaped HTML that Jupyter and nbconvert display as rich output."""

    def __init__(self, markup: str, text: str):
        self._markup = markup
        self._text = text

    def _repr_html_(self) -> str:
        return self._markup

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return self._text


def note(text: str, *, warning: bool = False) -> HTMLBlock:
    """A short paragraph of plain text (escaped), for facts computed from the data."""
    cls = "perflab-note perflab-warning" if warning else "perflab-note"
    return HTMLBlock(f'<div class="{cls}">{html.escape(str(text))}</div>', str(text))


def nothing_to_show(reason: str) -> HTMLBlock:
    """The note a section shows instead of its figures when the data cannot support them."""
    return note(f"Nothing to show: {reason}")


def _format_cell(value: Any, digits: int) -> str:
    import math

    import pandas as pd

    if isinstance(value, (list, tuple)):
        return ", ".join(_format_cell(v, digits) for v in value)
    if value is None or (
        not isinstance(value, str) and pd.api.types.is_scalar(value) and pd.isna(value)
    ):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        value = float(value)
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"
    return str(value)


def table(
    frame: pd.DataFrame,
    *,
    caption: str | None = None,
    digits: int = 4,
    max_rows: int = TABLE_MAX_ROWS,
    index: bool = False,
) -> HTMLBlock:
    """A DataFrame as an HTML table with every cell escaped and numbers to `digits` significant
    digits (numbers right-aligned, text left-aligned); rows past `max_rows` are left out with a
    line that says how many."""
    import pandas as pd

    shown = frame.reset_index() if index else frame
    extra = max(0, len(shown) - max_rows)
    shown = shown.head(max_rows)
    numeric = [
        pd.api.types.is_numeric_dtype(shown[c]) and not pd.api.types.is_bool_dtype(shown[c])
        for c in shown.columns
    ]
    head = "".join(
        f'<th class="{"num" if num else "text"}">{html.escape(str(c))}</th>'
        for c, num in zip(shown.columns, numeric, strict=True)
    )
    body = []
    for row in shown.itertuples(index=False, name=None):
        cells = "".join(
            f'<td class="{"num" if num else "text"}">{html.escape(_format_cell(v, digits))}</td>'
            for v, num in zip(row, numeric, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    markup = (
        f'<table class="perflab-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )
    if caption:
        markup = f'<p class="perflab-caption">{html.escape(caption)}</p>' + markup
    if extra:
        markup += f"<p><em>{extra} more row(s) not shown.</em></p>"
    text_frame = shown.map(lambda v: _format_cell(v, digits)) if len(shown) else shown
    text = (f"{caption}\n" if caption else "") + text_frame.to_string(index=False)
    return HTMLBlock(markup, text)


def load(results: Sequence[str | Path] | str | Path, *, need: str = "ok") -> Results | None:
    """Open result folders for a notebook, or say why there is nothing to show.

    Returns the `Results` when the folders hold what the notebook needs, else displays a note
    and returns None, so that the notebook's later cells can skip their work:

    - need="runs": at least one run of any status (the overview shows failed runs too);
    - need="ok": at least one run with status ok (the measured sections).
    """
    from IPython.display import display

    if need not in ("runs", "ok"):
        raise PerflabError(f"unknown need {need!r}; valid: runs, ok")
    if isinstance(results, (str, Path)):
        results = [results]
    folders = [Path(f) for f in results]
    if not folders:
        display(nothing_to_show("no result folders were given."))
        return None
    from perflab.results import open as open_results

    res = open_results(folders)
    runs = res.runs
    if runs.empty:
        display(nothing_to_show("the result folders hold no runs."))
        return None
    if need == "ok":
        ok = runs["status"].astype(str) == "ok"
        if not ok.any():
            counts = runs["status"].astype(str).value_counts()
            summary = ", ".join(f"{n} {s}" for s, n in counts.items())
            display(nothing_to_show(f"no run completed ({summary}); see the overview for why."))
            return None
    return res


# --------------------------------------------------------------------------------------------
# Tables the notebooks show. Each returns a DataFrame (to inspect or reuse); `table` renders it.

RUN_LIST_COLUMNS: tuple[str, ...] = (
    "label",
    "status",
    "backend",
    "precision",
    "precision_effective",
    "batch_size",
    "device_name",
    "n_warmup",
    "n_measure",
    "stop_reason",
    "load_ms",
    "build_ms",
    "first_ms",
)
SUMMARY_TABLE_COLUMNS: dict[str, str] = {
    "n": "n",
    "p50_ms": "p50 ms",
    "p90_ms": "p90 ms",
    "p99_ms": "p99 ms",
    "mean_ms": "mean ms",
    "cv_pct": "CV %",
    "throughput_items_s": "items/s",
}
ENV_ROWS: tuple[str, ...] = (
    "host",
    "cpu_model",
    "cpu_cores",
    "cpu_threads",
    "memory_gib",
    "os",
    "python",
    "gpu_name",
    "gpu_compute_capability",
    "cuda_driver",
    "cuda_runtime",
)


def _labels(runs: pd.DataFrame) -> dict[str, str]:
    from perflab.labels import run_labels

    return run_labels(runs, runs["run_id"].astype(str))


def run_list(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: what ran, how it ended, and its setup costs."""
    import pandas as pd

    if runs.empty:
        return pd.DataFrame(columns=list(RUN_LIST_COLUMNS))
    labels = _labels(runs)
    out = runs.assign(label=runs["run_id"].astype(str).map(labels))
    cols = [c for c in RUN_LIST_COLUMNS if c in out.columns]
    return _natural_sort(out[cols], ["status", "label"])


def _natural_sort(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    from perflab.labels import natural_key

    key = frame[columns].astype(str).agg(" \x00 ".join, axis=1).map(natural_key)
    order = sorted(range(len(frame)), key=lambda i: key.iloc[i])
    return frame.iloc[order].reset_index(drop=True)


def status_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs per status, ok first."""
    import pandas as pd

    order = ("ok", "failed", "timeout", "unsupported", "skipped")
    counts = runs["status"].astype(str).value_counts() if len(runs) else pd.Series(dtype=int)
    rows = [(s, int(counts[s])) for s in order if s in counts.index]
    rows += [(s, int(n)) for s, n in counts.items() if s not in order]
    return pd.DataFrame(rows, columns=["status", "runs"])


def failures(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that are not ok, with the first line of their error (full text in `error`)."""
    import pandas as pd

    bad = runs[runs["status"].astype(str) != "ok"] if len(runs) else runs
    if bad.empty:
        return pd.DataFrame(columns=["label", "status", "reason", "error"])
    labels = _labels(runs)
    error = bad["error"].astype(object).where(bad["error"].notna(), "").astype(str)
    first = error.map(lambda e: (e.strip().splitlines() or [""])[0][:200])
    return pd.DataFrame(
        {
            "label": bad["run_id"].astype(str).map(labels).to_numpy(),
            "status": bad["status"].astype(str).to_numpy(),
            "reason": first.to_numpy(),
            "error": error.to_numpy(),
        }
    ).pipe(_natural_sort, ["status", "label"])


def failure_details(failed: pd.DataFrame, *, max_chars: int = 4000) -> HTMLBlock:
    """Each failure's full error text, folded (HTML <details>), escaped."""
    parts = []
    for r in failed.itertuples(index=False):
        text = str(r.error)[-max_chars:]
        parts.append(
            f"<details><summary>{html.escape(str(r.status))}: {html.escape(str(r.label))}"
            f"</summary><pre>{html.escape(text)}</pre></details>"
        )
    plain = "\n".join(f"{r.status}: {r.label}: {r.reason}" for r in failed.itertuples(index=False))
    return HTMLBlock("".join(parts), plain)


def env_table(env: pd.DataFrame) -> pd.DataFrame:
    """The environment fingerprints side by side (one column per environment), with the package
    versions and the variables recorded; a `differs` column marks rows that are not all equal."""
    import json

    import pandas as pd

    if env.empty:
        return pd.DataFrame(columns=["key"])
    columns: dict[str, dict[str, str]] = {}
    for r in env.to_dict("records"):
        values = {k: _format_cell(r.get(k), 6) for k in ENV_ROWS if k in r}
        try:
            fp = json.loads(r.get("fingerprint") or "{}")
        except ValueError:
            fp = {}
        for name, version in sorted((fp.get("packages") or {}).items()):
            values[f"package {name}"] = str(version)
        if fp.get("ort_providers"):
            values["ORT providers"] = ", ".join(map(str, fp["ort_providers"]))
        for name, value in sorted((fp.get("env_vars") or {}).items()):
            values[f"${name}"] = str(value)
        head = f"{r.get('host') or '?'} ({str(r.get('env_id') or '')[:8]})"
        columns[head] = values
    keys = list(dict.fromkeys(k for v in columns.values() for k in v))
    out = pd.DataFrame(
        {"key": keys, **{h: [v.get(k, "") for k in keys] for h, v in columns.items()}}
    )
    out = out[(out[list(columns)] != "").any(axis=1)].reset_index(drop=True)
    if len(columns) > 1:
        out["differs"] = out[list(columns)].nunique(axis=1).gt(1).map({True: "yes", False: ""})
    return out


def summary_table(summary: pd.DataFrame, *, stage: str = "e2e") -> pd.DataFrame:
    """One row per run for one stage: label, batch size and the headline statistics."""
    import pandas as pd

    rows = summary[summary["stage"].astype(str) == stage] if len(summary) else summary
    if rows.empty:
        return pd.DataFrame(columns=["label", *SUMMARY_TABLE_COLUMNS.values()])
    lead = [c for c in ("label", "batch_size") if c in rows.columns]
    cols = [c for c in SUMMARY_TABLE_COLUMNS if c in rows.columns]
    out = rows[lead + cols].rename(columns=SUMMARY_TABLE_COLUMNS)
    return _natural_sort(out, lead) if lead else out.reset_index(drop=True)


def warnings_table(warnings: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Warnings, one row per run: for each kind of warning the stages and values that triggered
    it (high_cv "e2e 13.2, compute 15.3" in %, few_samples_p99 the sample count, ...)."""
    import pandas as pd

    if warnings.empty:
        return pd.DataFrame(columns=["label"])
    labels = _labels(runs)
    cells: dict[str, dict[str, list[str]]] = {}
    for r in warnings.itertuples(index=False):
        value = _format_cell(r.value, 3)
        text = str(r.stage) if r.warning.startswith("few_samples") else f"{r.stage} {value}".strip()
        if r.warning.startswith("few_samples"):
            text = f"{value} < {_format_cell(r.threshold, 4)}"
        cells.setdefault(str(r.run_id), {}).setdefault(r.warning, []).append(text)
    kinds = list(dict.fromkeys(warnings["warning"].astype(str)))
    rows = [
        {"label": labels.get(run, run), **{k: ", ".join(v.get(k, [])) for k in kinds}}
        for run, v in cells.items()
    ]
    return _natural_sort(pd.DataFrame(rows, columns=["label", *kinds]), ["label"])


def warning_kinds(warnings: pd.DataFrame) -> pd.DataFrame:
    """One row per kind of warning: how many runs it concerns and one of its messages."""
    import pandas as pd

    if warnings.empty:
        return pd.DataFrame(columns=["warning", "runs", "example"])
    g = warnings.groupby("warning", sort=False)
    return pd.DataFrame(
        {
            "warning": list(g.groups),
            "runs": g["run_id"].nunique().to_numpy(),
            "example": g["message"].first().to_numpy(),
        }
    )


def stage_table(
    breakdown: pd.DataFrame, *, value: str = "p50_ms", e2e: bool = True
) -> pd.DataFrame:
    """Stages as columns (pipeline order, gap and e2e last), one row per run, of `value`
    (p50_ms, share, speedup_if_free, ...); `e2e=False` leaves the e2e column out."""
    import pandas as pd

    from perflab.labels import run_labels
    from perflab.stages import stage_rank

    if breakdown.empty:
        return pd.DataFrame(columns=["label"])
    d = breakdown.assign(
        run_id=breakdown["run_id"].astype(str), stage=breakdown["stage"].astype(str)
    )
    if not e2e:
        d = d[d["stage"] != "e2e"]
    wide = d.pivot_table(index="run_id", columns="stage", values=value, aggfunc="first")
    stages = sorted(wide.columns, key=lambda s: (s == "e2e", s == "gap", stage_rank(s)))
    labels = run_labels(d.drop_duplicates("run_id") if "label" in d.columns else None, wide.index)
    out = wide[stages].reset_index()
    out.insert(0, "label", out["run_id"].map(labels))
    out.columns.name = None
    return _natural_sort(out.drop(columns="run_id"), ["label"])


# --------------------------------------------------------------------------------------------
# Device comparison

# Projection targets for a study measured on one device: one GPU per generation the design names,
# from a GTX 10-series part to H100.
DEFAULT_TARGETS: tuple[str, ...] = ("GTX 1070", "RTX 3070", "A100 SXM4 80GB", "H100 SXM")
SPEEDUP_STAGES: tuple[str, ...] = ("preprocess", "h2d", "compute", "d2h", "postprocess", "e2e")


def device_column(runs: pd.DataFrame) -> str | None:
    """The runs column that tells the devices of ok runs apart (device_name, else host), or None
    when they all ran on one device."""
    ok = runs[runs["status"].astype(str) == "ok"] if len(runs) else runs
    for col in ("device_name", "host"):
        if col in ok.columns and ok[col].dropna().astype(str).nunique() > 1:
            return col
    return None


def device_names(runs: pd.DataFrame) -> str:
    """The distinct device names of the ok runs, comma-separated ("unknown device" if none)."""
    ok = runs[runs["status"].astype(str) == "ok"] if len(runs) else runs
    names = sorted(ok["device_name"].dropna().astype(str).unique()) if len(ok) else []
    return ", ".join(names) or "unknown device"


def _geomean(values: Any) -> float:
    import numpy as np

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.exp(np.log(v).mean())) if len(v) else float("nan")


def measured_speedups(
    res: Results, by: str, *, stages: Sequence[str] = SPEEDUP_STAGES
) -> pd.DataFrame:
    """Per stage and matched config: how much faster each `by` level is than the baseline level
    (speedup = 1 / compare's time ratio, CI inverted likewise). Columns: pair, config, stage,
    speedup, ci_low, ci_high, verdict, kind ("measured")."""
    import pandas as pd

    parts = []
    for stage in stages:
        c = res.compare(by=by, stage=stage)
        if c.empty:
            continue
        parts.append(
            pd.DataFrame(
                {
                    "pair": (c["b"].astype(str) + " vs " + c["a"].astype(str)).to_numpy(),
                    "a": c["a"].astype(str).to_numpy(),
                    "b": c["b"].astype(str).to_numpy(),
                    "config": c["config"].astype(str).to_numpy(),
                    "stage": stage,
                    "speedup": (1.0 / c["ratio"].astype(float)).to_numpy(),
                    "ci_low": (1.0 / c["ci_high"].astype(float)).to_numpy(),
                    "ci_high": (1.0 / c["ci_low"].astype(float)).to_numpy(),
                    "verdict": c["verdict"].astype(str).to_numpy(),
                }
            )
        )
    if not parts:
        return pd.DataFrame(
            columns=[
                "pair",
                "a",
                "b",
                "config",
                "stage",
                "speedup",
                "ci_low",
                "ci_high",
                "verdict",
                "kind",
            ]
        )
    return pd.concat(parts, ignore_index=True).assign(kind="measured")


def predicted_speedups(
    res: Results, measured: pd.DataFrame, by: str
) -> tuple[pd.DataFrame, list[str]]:
    """What the rooflines predict for the same pairs: the baseline level's runs projected onto
    the other level's device. Returns (rows with pair, stage, speedup, basis, kind="predicted",
    and a list of reasons for pairs that could not be predicted)."""
    import pandas as pd

    rows, problems = [], []
    if measured.empty or by != "device_name":
        if not measured.empty:
            problems.append(
                f"the runs differ by {by}, not by a named device: no roofline prediction"
            )
        return pd.DataFrame(columns=["pair", "stage", "speedup", "basis", "kind"]), problems
    for (a, b), _ in measured.groupby(["a", "b"], sort=False):
        base = res.ok().select(device_name=a)
        try:
            p = base.project(device=b)
        except PerflabError as exc:
            problems.append(f"{b} vs {a}: {exc}")
            continue
        for stage, g in p.groupby("stage", sort=False):
            # e2e bases differ per run only by the gap they add; the stages' bases are shared.
            basis = (
                "sum of the predicted stages and the measured harness gap"
                if stage == "e2e"
                else "; ".join(dict.fromkeys(g["basis"].astype(str)))
            )
            rows.append(
                {
                    "pair": f"{b} vs {a}",
                    "stage": stage,
                    "speedup": _geomean(g["speedup"]),
                    "basis": basis,
                }
            )
    out = pd.DataFrame(rows, columns=["pair", "stage", "speedup", "basis"]).assign(kind="predicted")
    return out, problems


def speedup_chart_data(measured: pd.DataFrame, predicted: pd.DataFrame) -> pd.DataFrame:
    """Measured speedups reduced to one value per pair and stage (the geometric mean over the
    matched configs; with one config its CI is kept) beside the predicted ones, for
    `plots.speedups`."""
    import pandas as pd

    rows = []
    for (pair, stage), g in measured.groupby(["pair", "stage"], sort=False):
        one = len(g) == 1
        rows.append(
            {
                "pair": pair,
                "stage": stage,
                "kind": "measured",
                "speedup": _geomean(g["speedup"]),
                "ci_low": float(g["ci_low"].iloc[0]) if one else float("nan"),
                "ci_high": float(g["ci_high"].iloc[0]) if one else float("nan"),
            }
        )
    for r in predicted.itertuples(index=False):
        rows.append(
            {
                "pair": r.pair,
                "stage": r.stage,
                "kind": "predicted",
                "speedup": r.speedup,
                "ci_low": float("nan"),
                "ci_high": float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["pair", "stage", "kind", "speedup", "ci_low", "ci_high"])


def speedup_table(chart: pd.DataFrame, predicted: pd.DataFrame) -> pd.DataFrame:
    """`speedup_chart_data` as a table: per pair and stage, the measured speedup (with its CI
    where there is one), the predicted one and what the prediction rests on."""
    import pandas as pd

    from perflab.stages import stage_rank

    if chart.empty:
        return pd.DataFrame(columns=["pair", "stage", "measured", "predicted", "basis"])
    m = chart[chart["kind"] == "measured"].set_index(["pair", "stage"])
    p = chart[chart["kind"] == "predicted"].set_index(["pair", "stage"])
    basis = predicted.set_index(["pair", "stage"])["basis"] if len(predicted) else {}
    rows = []
    for key in dict.fromkeys([*m.index, *p.index]):
        rows.append(
            {
                "pair": key[0],
                "stage": key[1],
                "measured": m["speedup"].get(key, float("nan")),
                "CI low": m["ci_low"].get(key, float("nan")),
                "CI high": m["ci_high"].get(key, float("nan")),
                "predicted": p["speedup"].get(key, float("nan")),
                "basis": basis.get(key, "") if len(predicted) else "",
            }
        )
    out = pd.DataFrame(rows)
    out["_rank"] = out["stage"].map(lambda s: stage_rank(s)[0])
    return out.sort_values(["pair", "_rank"]).drop(columns="_rank").reset_index(drop=True)


def projections(
    res: Results, targets: Sequence[str] = DEFAULT_TARGETS
) -> tuple[pd.DataFrame, list[str]]:
    """The ok runs' stage times predicted on each target device (kind = "predicted"), with run
    labels; CPU runs use the host's estimated peaks as their source. Returns (frame, problems)."""
    import pandas as pd

    labels = _labels(res.runs)
    parts, problems = [], []
    for target in targets:
        try:
            p = res.project(device=target)
        except PerflabError as exc:
            problems.append(f"{target}: {exc}")
            continue
        parts.append(p.assign(label=p["run_id"].astype(str).map(labels)))
    if not parts:
        return pd.DataFrame(
            columns=[
                "label",
                "to_device",
                "stage",
                "measured_ms",
                "predicted_ms",
                "speedup",
                "basis",
                "kind",
            ]
        ), problems
    out = pd.concat(parts, ignore_index=True)
    return out, problems


def projection_chart_data(proj: pd.DataFrame) -> pd.DataFrame:
    """Predicted speedups per target and stage (geometric mean over runs), for `plots.speedups`."""
    import pandas as pd

    if proj.empty:
        return pd.DataFrame(columns=["pair", "stage", "kind", "speedup"])
    rows = [
        {"pair": t, "stage": s, "kind": "predicted", "speedup": _geomean(g["speedup"])}
        for (t, s), g in proj.groupby(["to_device", "stage"], sort=False)
    ]
    return pd.DataFrame(rows)


def projection_table(proj: pd.DataFrame, *, stage: str = "e2e") -> pd.DataFrame:
    """Measured and predicted time of one stage per run and target, wide by target."""
    import pandas as pd

    d = proj[proj["stage"].astype(str) == stage]
    if d.empty:
        return pd.DataFrame(columns=["label", "measured ms"])
    wide = d.pivot_table(
        index="label", columns="to_device", values="predicted_ms", aggfunc="first", dropna=False
    )
    wide.columns = [f"{c} (predicted ms)" for c in wide.columns]
    measured = d.groupby("label")["measured_ms"].first().rename("measured ms")
    out = wide.join(measured, how="outer")
    out = out[["measured ms", *wide.columns]]
    out.index.name = "label"
    return out.reset_index()


def projected_anything(proj: pd.DataFrame) -> bool:
    """Whether a projection predicted the compute or e2e time of any run (host stages are
    always "predicted" unchanged, which alone says nothing)."""
    if proj.empty:
        return False
    key = proj["stage"].astype(str).isin(["compute", "e2e"])
    return bool(proj.loc[key, "predicted_ms"].notna().any())


def projection_problems(proj: pd.DataFrame) -> str:
    """Why stages could not be projected (the distinct "unknown: ..." bases), as one line."""
    if proj.empty or "basis" not in proj.columns:
        return ""
    bases = proj.loc[proj["predicted_ms"].isna(), "basis"].astype(str)
    return "; ".join(sorted({b.removeprefix("unknown: ") for b in bases}))


def predicted_roofline(res: Results, target: str) -> pd.DataFrame:
    """Roofline rows of the ok runs' stage times as predicted on `target`: the projection's
    predicted medians placed on the target's roofline (for `plots.roofline(predicted=...)`)."""
    from perflab.analysis.roofline import roofline

    runs = res.ok().runs
    p = res.project(device=target)
    predicted = p[["run_id", "stage", "predicted_ms"]].rename(columns={"predicted_ms": "p50_ms"})
    predicted = predicted[predicted["p50_ms"].notna()]
    return roofline(runs, predicted, device=target)


# --------------------------------------------------------------------------------------------
# Traces and imported profiles

TRACE_TABLES: tuple[str, ...] = (
    "trace_ranges",
    "trace_kernels",
    "trace_memcpy",
    "layers",
    "reported",
)


def trace_inventory(res: Results) -> pd.DataFrame:
    """Rows per trace or imported-profile table (zero where absent)."""
    import pandas as pd

    return pd.DataFrame(
        {"table": list(TRACE_TABLES), "rows": [len(res.table(t)) for t in TRACE_TABLES]}
    )


def reported_vs_measured(res: Results) -> pd.DataFrame:
    """What another tool printed (`reported`) beside perflab's own median and mean for the same
    run and stage where perflab measured it."""
    import pandas as pd

    rep = res.reported
    if rep.empty:
        return pd.DataFrame(columns=["label", "stage", "statistic", "reported ms"])
    labels = _labels(res.runs)
    out = rep.assign(label=rep["run_id"].astype(str).map(labels).fillna(rep["run_id"].astype(str)))
    out = out.rename(columns={"value_ms": "reported ms"})
    summ = res.summary(ci=None)
    if len(summ):
        m = summ[["run_id", "stage", "p50_ms", "mean_ms"]].rename(
            columns={"p50_ms": "perflab p50 ms", "mean_ms": "perflab mean ms"}
        )
        out = out.assign(run_id=out["run_id"].astype(str), stage=out["stage"].astype(str)).merge(
            m, on=["run_id", "stage"], how="left"
        )
    cols = [
        c
        for c in ("label", "stage", "statistic", "reported ms", "perflab p50 ms", "perflab mean ms")
        if c in out.columns
    ]
    return out[cols].reset_index(drop=True)


def trace_vs_harness(res: Results) -> pd.DataFrame:
    """Per run and stage: the harness's median host time beside the median NVTX range time and
    its GPU projection from the trace (ranges that carry a perflab stage)."""
    import pandas as pd

    ranges = res.table("trace_ranges")
    cols = ["label", "stage", "harness p50 ms", "range p50 ms", "GPU p50 ms", "GPU ops p50"]
    if ranges.empty or "stage" not in ranges.columns:
        return pd.DataFrame(columns=cols)
    r = ranges[ranges["stage"].notna()]
    if r.empty:
        return pd.DataFrame(columns=cols)
    g = r.groupby([r["run_id"].astype(str), r["stage"].astype(str)])
    agg = pd.DataFrame(
        {
            "range p50 ms": g["duration_ns"].median() / 1e6,
            "GPU p50 ms": g["gpu_duration_ns"].median() / 1e6,
            "GPU ops p50": g["n_gpu_ops"].median(),
        }
    ).reset_index()
    agg.columns = ["run_id", "stage", *agg.columns[2:]]
    summ = res.summary(ci=None)
    if len(summ):
        agg = agg.merge(
            summ[["run_id", "stage", "p50_ms"]].rename(columns={"p50_ms": "harness p50 ms"}),
            on=["run_id", "stage"],
            how="left",
        )
    else:
        agg["harness p50 ms"] = float("nan")
    labels = _labels(res.runs)
    agg["label"] = agg["run_id"].map(labels).fillna(agg["run_id"])
    from perflab.stages import stage_rank

    agg = agg.sort_values(
        ["label", "stage"], key=lambda s: s.map(stage_rank) if s.name == "stage" else s
    )
    return agg[cols].reset_index(drop=True)


def top_kernels(res: Results, *, top: int = 15) -> pd.DataFrame:
    """The kernels with the most total time in the traces: count, total and share."""
    import pandas as pd

    k = res.table("trace_kernels")
    if k.empty:
        return pd.DataFrame(columns=["kernel", "count", "total ms", "share"])
    g = k.groupby(k["name"].astype(str))["duration_ns"].agg(["count", "sum"])
    g = g.sort_values("sum", ascending=False)
    total = float(g["sum"].sum()) or float("nan")
    out = pd.DataFrame(
        {
            "kernel": g.index,
            "count": g["count"].to_numpy(),
            "total ms": g["sum"].to_numpy() / 1e6,
            "share": g["sum"].to_numpy() / total,
        }
    )
    return out.head(top).reset_index(drop=True)


def layer_precisions(res: Results) -> pd.DataFrame:
    """Per profiled run: how many layers ran in each precision on each provider (engines report
    this even without layer times; an int8 run with many fp32 layers did not run as int8)."""
    import pandas as pd

    layers = res.layers
    if layers.empty:
        return pd.DataFrame(columns=["label"])
    labels = _labels(res.runs)
    key = (
        layers["provider"].astype(object).fillna("?").astype(str)
        + " "
        + layers["precision"].astype(object).fillna("?").astype(str)
    )
    wide = pd.crosstab(layers["run_id"].astype(str), key)
    wide.columns.name = None
    out = wide.reset_index()
    out.insert(0, "label", out["run_id"].map(labels).fillna(out["run_id"]))
    return _natural_sort(out.drop(columns="run_id"), ["label"])


def timed_layer_runs(res: Results) -> list[str]:
    """Runs whose layer profile has times (some engines report placement and precision only)."""
    layers = res.layers
    if layers.empty:
        return []
    timed = layers[layers["total_ms"].notna()]
    return sorted(timed["run_id"].astype(str).unique())


def runs_with(res: Results, table: str) -> list[str]:
    """Run ids that have rows in `table` and are ok runs with samples when `table` is samples."""
    frame = res.table(table)
    if frame.empty or "run_id" not in frame.columns:
        return []
    return sorted(frame["run_id"].astype(str).unique())


# --------------------------------------------------------------------------------------------
# Small choices the notebooks make


def pick_run(breakdown: pd.DataFrame, *, stage: str = "gap", value: str = "share") -> str | None:
    """The run with the largest `value` of `stage` in a breakdown (default: the largest harness
    gap share, the run whose timeline has most to explain); None when there is none."""
    rows = breakdown[breakdown["stage"].astype(str) == stage] if len(breakdown) else breakdown
    rows = rows[rows[value].notna()] if len(rows) else rows
    if rows.empty:
        return None if breakdown.empty else str(breakdown["run_id"].iloc[0])
    return str(rows.loc[rows[value].astype(float).idxmax(), "run_id"])


def warmup_table(warmup: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Warmup classification per run, with whether the run's own warmup phase was long enough
    (its n_warmup against the recommended number of warmup iterations)."""
    import pandas as pd

    cols = [
        "label",
        "classification",
        "steady_iteration",
        "n_warmup",
        "recommended_warmup",
        "warmup enough",
        "steady_p50_ms",
        "cold_start_ratio",
        "n_changepoints",
    ]
    if warmup.empty:
        return pd.DataFrame(columns=cols)
    labels = _labels(runs)
    n_warm = (
        dict(zip(runs["run_id"].astype(str), runs["n_warmup"], strict=True))
        if "n_warmup" in runs.columns
        else {}
    )
    out = warmup.assign(
        label=warmup["run_id"].astype(str).map(labels),
        n_warmup=warmup["run_id"].astype(str).map(n_warm),
    )

    def enough(r: Any) -> str:
        if pd.isna(r["recommended_warmup"]) or pd.isna(r["n_warmup"]):
            return ""
        return "yes" if int(r["n_warmup"]) >= int(r["recommended_warmup"]) else "no"

    out["warmup enough"] = out.apply(enough, axis=1) if len(out) else []
    return out[[c for c in cols if c in out.columns]].sort_values("label").reset_index(drop=True)


def batch_groups(curve: pd.DataFrame, *, stage: str = "e2e") -> list[str]:
    """Config groups measured at two or more batch sizes (the ones a fit says something about)."""
    d = curve[curve["stage"].astype(str) == stage] if len(curve) else curve
    if d.empty:
        return []
    n = d.groupby(d["group"].astype(str))["batch_size"].nunique()
    return sorted(n[n >= 2].index)


def comparison_axes(runs: pd.DataFrame) -> list[str]:
    """The settings worth a comparison: the device column when several devices ran, else every
    setting of the experiment file (backend, precision, options.threads, seed, ...) that takes
    more than one value among ok runs; batch size has the batching section of its own."""
    from perflab.labels import varying_settings

    by = device_column(runs)
    if by:
        return [by]
    ok = runs[runs["status"].astype(str) == "ok"] if len(runs) else runs
    return [c for c in varying_settings(ok) if c != "batch_size"]
