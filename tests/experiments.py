"""Experiment files for tests: a small study in one call, and one way to write it as YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def experiment(
    study: str,
    backend: str = "synthetic",
    *,
    warmup: int | None = None,
    iterations: int | None = None,
    **keys: Any,
) -> dict[str, Any]:
    """An experiment file's mapping. `warmup` and `iterations` are the iteration counts of the
    two policies, left out when None so that the file's defaults apply; every other key (options,
    sweep, model, ...) goes in as given."""
    data: dict[str, Any] = {"study": study, "backend": backend}
    if warmup is not None:
        data["warmup"] = {"iterations": warmup}
    if iterations is not None:
        data["measure"] = {"iterations": iterations}
    return {**data, **keys}


def write_spec(folder: Path, data: dict[str, Any] | str, name: str = "spec.yaml") -> Path:
    """`data` written to folder/name: a mapping as YAML, a text as it is (for hostile files)."""
    path = Path(folder) / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path
