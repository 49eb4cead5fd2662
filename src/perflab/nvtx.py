"""NVTX ranges in the `perflab` domain: one per run, per iteration and per stage.

With no profiler attached, the `nvtx` package hands out a dummy domain whose calls do nothing, so
the ranges stay on by default. Attributes are built once per stage (registered strings, cached
categories); only while a profiler is attached are per-iteration attributes built, so that each
stage range carries its iteration number as payload, and that work happens between iterations,
outside every timed region.
"""

from __future__ import annotations

from collections.abc import Sequence


class _Off:
    """Stand-in used where the nvtx package is missing or disabled: every call is a no-op."""

    enabled = False

    def push(self, attrs: object) -> None:
        pass

    def pop(self) -> None:
        pass


class Annotator:
    """Pushes and pops perflab ranges; `stage_attrs[i]` are the attributes for stage code i."""

    stage_attrs: list[object]

    def __init__(self, stages: Sequence[str]):
        self.stages = tuple(stages)
        self.domain = _domain()
        self.enabled = self.domain is not None
        if self.enabled:
            self.push = self.domain.push_range
            self.pop = self.domain.pop_range
        else:
            off = _Off()
            self.push, self.pop = off.push, off.pop
        self.set_iteration(0)

    def _attrs(self, message: str, category: str, payload: int | None = None) -> object:
        if not self.enabled:
            return None
        return self.domain.get_event_attributes(message=message, category=category, payload=payload)

    def set_iteration(self, iteration: int) -> None:
        """Rebuild the attributes so the next iteration's ranges carry its number (profiling only).

        The `e2e` stage range is the iteration range: message "iteration N", payload N.
        """
        if self.enabled or not hasattr(self, "stage_attrs"):
            self.stage_attrs = [
                self._attrs(f"iteration {iteration}", "iteration", iteration)
                if s == "e2e"
                else self._attrs(s, s, iteration)
                for s in self.stages
            ]

    def run_range(self, label: str) -> _RunRange:
        return _RunRange(self, label)


class _RunRange:
    def __init__(self, annotator: Annotator, label: str):
        self.annotator, self.label = annotator, label

    def __enter__(self) -> None:
        self.annotator.push(self.annotator._attrs(self.label, "run"))

    def __exit__(self, *exc: object) -> None:
        self.annotator.pop()


def _domain() -> object | None:
    """The real perflab domain when a tool is attached; None when nvtx is absent or inactive."""
    try:
        import nvtx
        from nvtx._lib.lib import DummyDomain
    except ImportError:
        return None
    domain = nvtx.get_domain("perflab")
    return None if isinstance(domain, DummyDomain) else domain
