"""Where perflab keeps what it builds or measures once per machine: $PERFLAB_CACHE."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """`cache_dir`, else $PERFLAB_CACHE, else ~/.cache/perflab. Built and converted models go
    to its `models/` subfolder, host measurements to `host/`, compiled runners to their own."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("PERFLAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "perflab"
