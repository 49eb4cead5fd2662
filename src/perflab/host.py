"""How busy the host is: load average and CPU steal time from /proc, before, during and after a run.

A run measured while other work competes for the CPUs (a high load average) or while the
hypervisor hands the CPUs to other guests (steal time) is slower by an amount that has nothing
to do with the config, and differs from the next run. Such runs are flagged with their numbers.

`PERFLAB_PROC` names another folder to read `loadavg` and `stat` from (tests use fake readings).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# A run counts as measured on a busy host when, besides the run itself, other work kept more
# than half of the CPUs busy (1-minute load average per CPU), or when more than 10 % of the CPU
# time was stolen by the hypervisor during the run.
BUSY_LOAD_PER_CPU = 0.5
BUSY_STEAL_PCT = 10.0
SAMPLE_EVERY_S = 1.0


def proc_root() -> Path:
    return Path(os.environ.get("PERFLAB_PROC", "/proc"))


def cpus() -> int:
    return os.cpu_count() or 1


def load1() -> float:
    """The 1-minute load average (NaN when /proc/loadavg cannot be read)."""
    try:
        return float((proc_root() / "loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def cpu_times() -> tuple[int, int] | None:
    """(total, steal) jiffies of all CPUs from the `cpu` line of /proc/stat, None if unreadable.

    Fields: user nice system idle iowait irq softirq steal guest guest_nice; guest time is
    already counted in user, so the total is the sum of the first eight.
    """
    try:
        with open(proc_root() / "stat") as f:
            for line in f:
                if line.startswith("cpu "):
                    values = [int(v) for v in line.split()[1:9]]
                    values += [0] * (8 - len(values))
                    return sum(values), values[7]
    except (OSError, ValueError):
        return None
    return None


def steal_pct(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float:
    """Percentage of CPU time stolen between two cpu_times() readings (NaN when unknown)."""
    if before is None or after is None or after[0] <= before[0]:
        return float("nan")
    return 100.0 * (after[1] - before[1]) / (after[0] - before[0])


@dataclass
class HostSampler:
    """Samples the load average and steal time around a run: once at start(), every
    SAMPLE_EVERY_S while the run measures, once at stop(). The sampler thread reads two small
    /proc files once a second, which costs the measured loop nothing it could notice."""

    every_s: float = SAMPLE_EVERY_S
    loads: list[float] = field(default_factory=list)
    load_before: float = float("nan")
    load_after: float = float("nan")
    steal_pct: float = float("nan")
    _times: tuple[int, int] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> HostSampler:
        self.load_before = load1()
        self._times = cpu_times()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.loads.append(load1())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.every_s + 1)
        self.load_after = load1()
        self.steal_pct = steal_pct(self._times, cpu_times())

    def columns(self) -> dict[str, float | bool]:
        """The runs columns: host_load_before/during/after, host_steal_pct, host_busy."""
        during = max(self.loads) if self.loads else self.load_after
        return {
            "host_load_before": self.load_before,
            "host_load_during": during,
            "host_load_after": self.load_after,
            "host_steal_pct": self.steal_pct,
            "host_busy": busy(self.load_before, during, self.steal_pct),
        }


def busy(load_before: float, load_during: float, steal: float, n_cpus: int | None = None) -> bool:
    """Whether a run was measured on a busy host (see BUSY_LOAD_PER_CPU, BUSY_STEAL_PCT).

    The load during the run includes the run itself (one busy thread), so one is taken off it.
    """
    n = n_cpus or cpus()
    limit = BUSY_LOAD_PER_CPU * n
    loaded = load_before > limit or (load_during - 1.0) > limit
    return bool(loaded or steal > BUSY_STEAL_PCT)


def busy_note(columns: dict[str, float | bool]) -> str | None:
    """The one line that says a run was measured on a busy host, with the numbers."""
    if not columns.get("host_busy"):
        return None
    return (
        f"busy host: load average {columns['host_load_before']:.2f} before, "
        f"{columns['host_load_during']:.2f} during, {columns['host_load_after']:.2f} after "
        f"on {cpus()} CPUs; {columns['host_steal_pct']:.1f}% CPU time stolen"
    )


def wait_quiet(
    max_load_per_cpu: float, max_wait_s: float, poll_s: float = 1.0
) -> tuple[bool, float]:
    """Wait until the 1-minute load average per CPU is at most `max_load_per_cpu`, for at most
    `max_wait_s`. Returns (quiet, the last load average read)."""
    deadline = time.monotonic() + max_wait_s
    while True:
        load = load1()
        if not load > max_load_per_cpu * cpus():  # NaN (unreadable) counts as quiet
            return True, load
        if time.monotonic() >= deadline:
            return False, load
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
