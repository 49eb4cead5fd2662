"""Declared options of backends and pipelines: name, type, default, meaning.

Every backend and pipeline declares the options it reads, so that the experiment file is checked
against them when it is read (a typo is one error line before anything runs) and so that
`perflab backends NAME` and `perflab pipelines` can list them. The values themselves are checked
by the code that reads them (each backend's `parse_options`, each pipeline's constructor).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from perflab.errors import SpecError


@dataclass(frozen=True)
class Option:
    name: str  # a trailing ".NAME" (as in "cuda.NAME") stands for a family of keys
    type: str  # as a user writes it: "int >= 0", "basic | extended | all", "path", ...
    default: Any
    meaning: str

    def matches(self, key: str) -> bool:
        if self.name.endswith(".NAME"):
            return key.startswith(self.name[: -len("NAME")])
        return key == self.name


def check_keys(owner: str, given: Iterable[str], declared: Iterable[Option]) -> None:
    """SpecError naming `owner`, the first unknown key and the valid keys."""
    declared = tuple(declared)
    for key in given:
        if not any(o.matches(key) for o in declared):
            valid = ", ".join(o.name for o in declared) or "(none)"
            raise SpecError(f"{owner}: unknown option {key!r}; valid options: {valid}")


def rows(declared: Iterable[Option]) -> list[dict[str, str]]:
    """The declarations as table rows (option, type, default, meaning) for the CLI and the docs."""
    return [
        {"option": o.name, "type": o.type, "default": _text(o.default), "meaning": o.meaning}
        for o in declared
    ]


def markdown(declared: Iterable[Option]) -> str:
    """The declarations as a Markdown table (the README's option tables are these, verbatim)."""
    lines = ["| option | type | default | meaning |", "|---|---|---|---|"]
    for r in rows(declared):
        lines.append(
            "| "
            + " | ".join(
                f"`{r['option']}`" if k == "option" else r[k].replace("|", "\\|")
                for k in ("option", "type", "default", "meaning")
            )
            + " |"
        )
    return "\n".join(lines)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)
