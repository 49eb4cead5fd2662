"""What the notebooks display: escaped HTML blocks, notes, tables, and `load` (result folders
opened for a notebook, or a note saying why there is nothing to show).

Every string that comes from the data (model names, paths, error messages) is escaped, because
the report is HTML and those strings are not ours.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

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
