"""Executors: where and how the configs of a study run.

- `inline`: in this process, one after another (debugging; no crash isolation, no timeout).
- `local` (the default): each config in its own child process, forked from a warm template
  process (`executors.local`), so a crash, a hang or leaked engine state never touches another
  config, without paying interpreter start and imports per config.
- `dask`: configs sent to the machines of a Dask cluster, each one still run by the `local`
  executor on its machine (`executors.cluster`, needs `perflab[dask]`).

Every executor runs a config with the runner's `execute` (handed in, so this package never
imports the runner above it), commits each run through `store.write_run`, and yields its `runs`
row as soon as the run is stored; the study loop (`runner.run_study`) collects them.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from perflab import store
from perflab.errors import PerflabError

if TYPE_CHECKING:
    from perflab.spec import RunConfig

NAMES = ("inline", "local", "dask")

# execute(config, out, *, run_id, env_id, machine, progress) -> runs row (runner.execute)
Execute = Callable[..., dict[str, Any]]


@dataclass
class Hooks:
    """What the study loop wants to hear while configs run. `machine` is None for this machine."""

    on_start: Callable[[int, int, RunConfig, str | None], None] | None = None
    on_progress: Callable[[int, float, str | None], None] | None = None

    def start(self, k: int, total: int, config: RunConfig, machine: str | None) -> None:
        if self.on_start:
            self.on_start(k, total, config, machine)

    def progress(self, n: int, median_ms: float, machine: str | None) -> None:
        if self.on_progress:
            self.on_progress(n, median_ms, machine)


class Interrupt:
    """Turns SIGINT / SIGTERM into a flag the executors check between configs; `kill`, set by an
    executor while a config runs, stops that config at once."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.kill: Callable[[], None] | None = None

    def __enter__(self) -> Interrupt:  # noqa: PYI034 - final class
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame: object) -> None:
        self.signal = signum
        if self.kill is not None:
            self.kill()


class Executor(Protocol):
    name: str

    def check(self, configs: Sequence[RunConfig]) -> None:
        """Refuse, before anything runs, configs this executor cannot run (PerflabError)."""

    def run(
        self,
        execute: Execute,
        configs: Sequence[RunConfig],
        out: Path,
        env_id: str | None,
        hooks: Hooks,
        interrupt: Interrupt,
    ) -> Iterator[dict[str, Any]]:
        """Run the configs, store each run in `out`, yield each `runs` row once it is stored.
        Stops early (without a row for the config cut short) once `interrupt.signal` is set."""

    def close(self) -> None: ...


def refuse_pinned(configs: Sequence[RunConfig], executor: str) -> None:
    """Configs pinned to a machine run only on a cluster, never silently on this machine."""
    pinned = sorted({c.machine for c in configs if c.machine})
    if pinned:
        raise PerflabError(
            f"configs ask for machine(s) {', '.join(pinned)}; the {executor} executor runs on "
            "this machine only: run them with --cluster tcp://SCHEDULER:8786 (or drop the "
            "`machine` key)"
        )


class InlineExecutor:
    """Every config in this process, one after another."""

    name = "inline"

    def check(self, configs: Sequence[RunConfig]) -> None:
        refuse_pinned(configs, self.name)

    def run(self, execute, configs, out, env_id, hooks, interrupt):
        for k, config in enumerate(configs, 1):
            if interrupt.signal is not None:
                return
            hooks.start(k, len(configs), config, None)
            run_id = store.new_run_id()
            store.begin_run(out, run_id)
            row = execute(
                config,
                out,
                run_id=run_id,
                env_id=env_id,
                progress=lambda n, med: hooks.progress(n, med, None),
            )
            store.end_run(out, run_id)
            yield row

    def close(self) -> None:
        pass
