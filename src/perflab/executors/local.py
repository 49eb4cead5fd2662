"""The `local` executor: each config in a fresh child process, forked from a warm template.

The template is multiprocessing's fork server, started once per study process with perflab's
runner, numpy, pyarrow and pandas imported and warmed up by one tiny synthetic run
(`executors.template`), and no engine and no CUDA context: engines are only imported by the child
that runs them. Each config is a child forked from it, so a crash, a hang
or leaked engine or GPU state stays in that child, while interpreter start and imports are paid
once. As with any multiprocessing code, a script that runs studies from Python needs the
`if __name__ == "__main__":` guard, because each child imports the script's main module (the
command line and notebooks need nothing). The child runs in its own session (so a timeout kills it with whatever it started) and dies
with its parent; the template itself ends when the study process does, so an orphaned child can
never commit a result behind a later `--resume`.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from perflab import run_row, store
from perflab.executors import Execute, Hooks, Interrupt, refuse_pinned
from perflab.spec import RunConfig

# Imported once by the template, so children start with them. No engine module belongs here.
PRELOAD = (
    "numpy",
    "pandas",
    "pyarrow",
    "pyarrow.parquet",
    "perflab.runner",
    "perflab.backends.synthetic",
    "perflab.models",
    "perflab.pipelines",
    "perflab.executors.template",  # last: runs one tiny synthetic config in the template
)
STDERR_TAIL_CHARS = 2000

_context_lock = threading.Lock()
_context: Any = None


def context() -> Any:
    """The fork-server context, with perflab's preload set before the server first starts."""
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload([*_main_module(), *PRELOAD])
            _context = ctx
        return _context


def _main_module() -> list[str]:
    """The package of this process's main module when it runs as `python -m PACKAGE.MODULE` (a
    Dask worker does): each child runs that module again, which is cheap once the template has
    imported its package (the module itself is not preloaded: running an imported module again
    warns)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    package = getattr(spec, "name", "").rpartition(".")[0]
    return [package] if package and not spec.name.endswith("__main__") else []


class LocalExecutor:
    """Configs one after another, each in its own child process of the template."""

    name = "local"

    def __init__(self, machine: str | None = None) -> None:
        self.machine = machine  # the name runs record (a Dask worker's); None: the host name

    def check(self, configs) -> None:
        refuse_pinned(configs, self.name)

    def run(self, execute, configs, out, env_id, hooks: Hooks, interrupt: Interrupt):
        for k, config in enumerate(configs, 1):
            if interrupt.signal is not None:
                return
            hooks.start(k, len(configs), config, None)
            row = self.run_one(
                execute,
                config,
                Path(out),
                store.new_run_id(),
                env_id,
                lambda n, med: hooks.progress(n, med, None),
                interrupt,
            )
            if row is None:
                return
            yield row

    def close(self) -> None:
        pass

    def run_one(
        self,
        execute: Execute,
        config: RunConfig,
        out: Path,
        run_id: str,
        env_id: str | None,
        progress=None,
        interrupt: Interrupt | None = None,
    ) -> dict[str, Any] | None:
        """Run one config in a child; returns its runs row (None when interrupted).

        The parent writes the row of a child that died or ran past its timeout.
        """
        log_path = store.log_file(out, run_id)
        runs_file = store.run_file(out, run_id)
        store.begin_run(out, run_id)
        ctx = context()
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(
            target=_child,
            args=(
                execute,
                config.to_json(),
                str(out),
                run_id,
                env_id,
                self.machine,
                str(log_path),
                send,
                os.getpid(),
                dict(os.environ),  # the template's environment is the one of its start
            ),
            name=f"perflab-run-{run_id}",
        )
        last = {"n": 0, "median_ms": float("nan")}

        def read_progress() -> None:
            while True:
                try:
                    n, med = receive.recv()
                except (EOFError, OSError):
                    return
                last.update(n=n, median_ms=med)
                if progress:
                    progress(n, med)

        started = time.monotonic()
        child.start()
        send.close()
        reader = threading.Thread(target=read_progress, daemon=True)
        reader.start()
        if interrupt:
            interrupt.kill = lambda: _kill(child)
        try:
            child.join(timeout=config.timeout_s)
            timed_out = child.exitcode is None
            if timed_out:
                _kill(child)
                child.join()
        except BaseException:
            _kill(child)  # never leave a child measuring behind a failing parent
            raise
        finally:
            if interrupt:
                interrupt.kill = None
        code = child.exitcode
        reader.join(timeout=2)
        receive.close()
        child.close()
        if interrupt and interrupt.signal is not None and not store.is_committed(out, run_id):
            store.discard_run(out, run_id)  # the child was killed mid-run: nothing of it stays
            return None
        if runs_file.exists():
            log_path.unlink(missing_ok=True)
            store.end_run(out, run_id)
            return store.read_run(runs_file)
        # No log: the child died before its own start (its output went to this process's stderr).
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        tail = text[-STDERR_TAIL_CHARS:].strip()
        if timed_out:
            status = "timeout"
            error = (
                f"exceeded timeout_s={config.timeout_s:g} after {time.monotonic() - started:.1f} s "
                f"({last['n']} measured iterations reported); worker killed"
            )
        else:
            status, error = "failed", _exit_text(code)
        if tail:
            error += f"; output tail: {tail}"
        row = run_row.for_config(config, run_id, env_id=env_id, machine=self.machine)
        row.update(status=status, error=error, notes="[]")
        store.write_run(out, row)
        store.end_run(out, run_id)
        return row


def _child(
    execute: Execute,
    config_json: str,
    out: str,
    run_id: str,
    env_id: str | None,
    machine: str | None,
    log_path: str,
    progress_pipe: Any,
    parent_pid: int,
    environ: dict[str, str],
) -> None:
    """The child process: own session, dies with its parent, output to the run's log, one run."""
    os.setsid()
    _die_with_parent(parent_pid)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.clear()
    os.environ.update(environ)

    def progress(n: int, median_ms: float) -> None:
        try:
            progress_pipe.send((n, median_ms))
        except OSError:
            pass  # the parent stopped listening; the run goes on and is stored

    execute(
        RunConfig.from_json(config_json),
        Path(out),
        run_id=run_id,
        env_id=env_id,
        machine=machine,
        progress=progress,
    )


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to kill this child when the template dies (it dies with the study process), and
    stop now if the study process is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    try:
        os.kill(parent_pid, 0)
    except ProcessLookupError:
        os._exit(1)
    if os.getppid() == 1:
        os._exit(1)


def _kill(child: Any) -> None:
    """SIGKILL the child's session (it and what it started), or the child before its setsid."""
    pid = child.pid
    if pid is None:
        return
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"worker killed by signal {signal.Signals(-code).name} (exit {code})"
        except ValueError:
            return f"worker killed by signal {-code}"
    return f"worker exited with code {code} without writing its results"
