"""perflab: measure where deep-learning inference time goes, stage by stage."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # `perflab.open` and `perflab.record` are resolved on first use so that `import perflab`
    # stays light.
    if name == "open":
        from perflab.results import open as open_results

        return open_results
    if name == "record":
        from perflab.recording import record

        return record
    raise AttributeError(f"module 'perflab' has no attribute {name!r}")
