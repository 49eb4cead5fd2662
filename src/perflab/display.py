"""What the notebooks display: escaped HTML blocks, notes, tables, and `load` (result folders
opened for a notebook, or a note saying why there is nothing to show).

Every string that comes from the data (model names, paths, error messages) is escaped, because
the report is HTML and those strings are not ours.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perflab.analysis.overview import format_value
from perflab.errors import PerflabError

if TYPE_CHECKING:
    import pandas as pd

    from perflab.results import Results

TABLE_MAX_ROWS = 60


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
            f'<td class="{"num" if num else "text"}">{html.escape(format_value(v, digits))}</td>'
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
    text_frame = shown.map(lambda v: format_value(v, digits)) if len(shown) else shown
    text = (f"{caption}\n" if caption else "") + text_frame.to_string(index=False)
    return HTMLBlock(markup, text)


def load(
    results: Sequence[str | Path] | str | Path | None = None, *, need: str = "ok"
) -> Results | None:
    """Open result folders for a notebook, or say why there is nothing to show.

    Folders are found as `perflab.lab.resolve_results` says (None: $PERFLAB_RESULTS, else
    data/demo; a relative folder from the working directory, else from the project root), so a
    notebook runs from any working directory. Returns the `Results` when the folders hold what the
    notebook needs, else displays a note and returns None, so that the notebook's later cells can
    skip their work:

    - need="runs": at least one run of any status (the overview shows failed runs too);
    - need="ok": at least one run with status ok (the measured sections);
    - need="samples": an ok run with per-iteration samples (imported runs hold summaries only).
    """
    from IPython.display import display

    from perflab.errors import StoreError
    from perflab.lab import RESULTS_ENV, resolve_results

    if need not in ("runs", "ok", "samples"):
        raise PerflabError(f"unknown need {need!r}; valid: runs, ok, samples")
    if results is not None and not isinstance(results, (str, Path)) and not list(results):
        display(nothing_to_show("no result folders were given."))
        return None
    folders, missing = resolve_results(results)
    if missing:
        display(
            nothing_to_show(
                f"{'; '.join(missing)}. Set `results` in the notebook's first cell, or "
                f"${RESULTS_ENV}, to result folders."
            )
        )
        return None
    from perflab.results import open as open_results

    try:
        res = open_results(folders)
    except StoreError as exc:
        display(nothing_to_show(f"{exc}."))
        return None
    runs = res.runs
    if runs.empty:
        display(nothing_to_show("the result folders hold no runs."))
        return None
    if need in ("ok", "samples"):
        ok = runs["status"].astype(str) == "ok"
        if not ok.any():
            counts = runs["status"].astype(str).value_counts()
            summary = ", ".join(f"{n} {s}" for s, n in counts.items())
            display(nothing_to_show(f"no run completed ({summary}); see the overview for why."))
            return None
    if need == "samples" and res.ok().samples.empty:
        display(
            nothing_to_show(
                "the runs hold no per-iteration samples (imported tools' summaries: see "
                "the section on other tools' numbers)."
            )
        )
        return None
    return res


def figures(interactive: bool) -> str:
    """Set how the notebook's figures are drawn, and return the matplotlib backend chosen.

    `interactive`: zoomable figures (ipympl's widget backend) when ipympl is installed and a kernel
    runs the notebook; else, and in the HTML report (which passes False), static PNG images.
    """
    from IPython import get_ipython

    shell = get_ipython()
    backend = "widget" if interactive and _has_widgets() else "inline"
    if shell is not None:
        shell.run_line_magic("matplotlib", backend)
    if backend == "widget":
        import matplotlib

        # A canvas shows the whole figure, not the tight crop the inline backend saves: lay the
        # figures out so that long tick labels stay inside them.
        matplotlib.rcParams["figure.constrained_layout.use"] = True
    return backend


def _has_widgets() -> bool:
    try:
        import ipympl  # noqa: F401
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def explore(draw: Callable[..., Any], *, interactive: bool, **choices: Any) -> None:
    """Call `draw(**values)` with each choice's default, and, when `interactive`, show a
    selector per choice above what `draw` displays, which redraws its figure and tables on change.

    Each choice is a list of values or of (label, value) pairs (a dropdown; the first is the
    default), or a `range` (a slider; its start is the default). Without `interactive` (the HTML
    report) or without ipywidgets the defaults are drawn and no widget is shown, so an exported
    page holds no widget boxes.
    """
    from IPython.display import display

    defaults = {name: _default(choice) for name, choice in choices.items()}
    if not interactive or not _has_widgets():
        draw(**defaults)
        _show_figures()
        return
    import ipywidgets as widgets

    controls = {}
    for name, choice in choices.items():
        label = name.replace("_", " ")
        if isinstance(choice, range):
            controls[name] = widgets.IntSlider(
                value=choice.start,
                min=choice.start,
                max=max(choice.start, choice[-1]) if len(choice) else choice.start,
                step=choice.step,
                description=label,
                continuous_update=False,
            )
        else:
            controls[name] = widgets.Dropdown(
                options=list(choice),
                value=defaults[name],
                description=label,
                layout=widgets.Layout(width="max-content"),
            )

    drawn: list[int] = []  # the figure numbers of the last drawing

    def redraw(**values: Any) -> None:
        import matplotlib.pyplot as plt

        # Only this selector's previous figures are closed (so they do not pile up in memory);
        # the other cells' figures stay live.
        for number in drawn:
            plt.close(number)
        before = set(plt.get_fignums())
        draw(**values)
        drawn[:] = sorted(set(plt.get_fignums()) - before)
        _show_figures()

    output = widgets.interactive_output(redraw, controls)
    display(widgets.HBox(list(controls.values())), output)


def _default(choice: Any) -> Any:
    if isinstance(choice, range):
        return choice.start
    first = next(iter(choice))
    return first[1] if isinstance(first, tuple) else first


def _show_figures() -> None:
    import matplotlib.pyplot as plt

    plt.show()


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
