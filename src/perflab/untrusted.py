"""Text and files that come from outside: printed safely, quoted briefly, opened only when regular.

Names, labels, error texts and fingerprints come from experiment files and from other tools'
files. Printed raw, an ESC sequence in them drives the terminal; quoted whole, a huge value makes
a one-line error megabytes long; opened blindly, a FIFO blocks forever and /dev/zero never ends.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

# C0 and C1 control characters and DEL, except newline and tab (kept: messages span lines).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
QUOTE_CHARS = 80


def printable(text: Any) -> str:
    """`text` with every control character written as an escape (ESC -> \\x1b), newlines kept."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """A value as an error message shows it: its repr, control characters escaped, cut to
    `limit` characters with the full length said, so a megabyte value stays one short line."""
    text = printable(repr(value)).replace("\n", "\\n")
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def file_kind(mode: int) -> str:
    """What a path is, in words, from its st_mode."""
    for test, word in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return word
    return "not a regular file"


def check_regular_file(path: str | Path, what: str, error: type[Exception]) -> Path:
    """`path` if it is a regular file (links followed); else `error` naming what it is instead.

    Checked with stat, which never opens the file: opening a FIFO would block until a writer came.
    """
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise error(f"{p}: {what} not found") from None
    except OSError as exc:
        raise error(f"{p}: cannot read {what} ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise error(f"{p} is {file_kind(mode)}, not a regular file (the {what} must be one)")
    return p
