"""What several benchmarks share: perflab's command line run as a user runs it, and timed.

Benchmarks run as scripts (`python benchmarks/NAME.py`), so Python puts this folder first on
sys.path and they import this module by its name.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time


def perflab_cli(
    *args: str, timeout: float | None = None
) -> tuple[float, subprocess.CompletedProcess]:
    """`python -m perflab.cli ARGS` (Python's start and perflab's imports included): the wall
    seconds it took and the finished process, its output captured as text."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "perflab.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return time.perf_counter() - start, proc


def report_resources(what: str, seconds: float, proc: subprocess.CompletedProcess) -> None:
    """One line for a command that has just finished: its wall time, CPU time and peak RSS (of
    this script's children, so the benchmark runs no other child before it), or its failure."""
    if proc.returncode:
        print(f"{what}: failed\n{(proc.stderr or proc.stdout)[-2000:]}")
        return
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU time beside wall time: on a shared machine the wall time also counts waiting.
    print(
        f"{what}: {seconds:.1f} s, CPU {usage.ru_utime + usage.ru_stime:.1f} s, "
        f"peak RSS {usage.ru_maxrss / 2**20:.2f} GiB"  # Linux: ru_maxrss in KiB
    )
