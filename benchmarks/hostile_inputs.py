"""How fast perflab refuses hostile inputs, and how long its messages are.

Each case runs the real command line (`python -m perflab.cli ...`, so the time includes Python's
start and perflab's imports, as a user sees it) and prints the wall time, the exit status and the
length of the error line. Cases: a YAML alias bomb, a sweep of 10^9 configs with --yes, and a
second `perflab run` into a folder another run holds. Usage: python benchmarks/hostile_inputs.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import perflab_cli


def billion_laughs() -> str:
    lines = ["study: bomb", "a: &a [x, x, x, x, x, x, x, x, x]"]
    for k in range(1, 10):
        refs = ", ".join([f"*{chr(96 + k)}"] * 9)
        lines.append(f"{chr(97 + k)}: &{chr(97 + k)} [{refs}]")
    return "\n".join(lines) + "\n"


def billion_configs() -> str:
    axes = {"seed": list(range(1000)), "batch_size": list(range(1, 1001))}
    axes["options.compute_ms"] = [round(0.1 * k, 1) for k in range(1, 1001)]
    return yaml.safe_dump({"study": "big", "backend": "synthetic", "sweep": axes})


def cli(*args: str, timeout: float = 120) -> tuple[float, int, str]:
    seconds, proc = perflab_cli(*args, timeout=timeout)
    return seconds, proc.returncode, proc.stderr.strip()


def report(name: str, seconds: float, code: int, err: str) -> None:
    print(f"{name:<28} {seconds:6.2f} s  exit {code}  message {len(err):4d} chars: {err[:110]}")


def in_process(name: str, call) -> None:
    """The refusal itself, without Python's start: the median of 5 calls."""
    from perflab.errors import PerflabError

    times, message = [], ""
    for _ in range(5):
        start = time.perf_counter()
        try:
            call()
        except PerflabError as exc:
            message = str(exc)
        times.append(time.perf_counter() - start)
    times.sort()
    print(f"{name:<28} {times[2] * 1e3:7.1f} ms in process  message {len(message):4d} chars")


def main() -> None:
    from perflab import spec, store

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bomb = folder / "bomb.yaml"
        bomb.write_text(billion_laughs())
        big = folder / "big.yaml"
        big.write_text(billion_configs())
        print(
            f"alias bomb file {bomb.stat().st_size} bytes, 10^9 sweep file {big.stat().st_size} bytes"
        )
        in_process("alias bomb", lambda: spec.load(bomb))
        in_process("10^9 configs", lambda: spec.load(big))
        held = folder / "held"
        with store.locked(held, "run held.yaml"):
            in_process("second writer (lock only)", lambda: store.locked(held, "x").__enter__())
        report("perflab --version (start)", *cli("--version"))
        report("alias bomb", *cli("run", str(bomb), "-o", str(folder / "o1")))
        report("10^9 configs, --yes", *cli("run", str(big), "-o", str(folder / "o2"), "--yes"))
        spec = folder / "slow.yaml"
        spec.write_text(
            yaml.safe_dump(
                {
                    "study": "slow",
                    "backend": "synthetic",
                    "options": {"compute_ms": 5.0},
                    "measure": {"iterations": 200},
                    "sweep": {"seed": [1, 2, 3]},
                }
            )
        )
        out = folder / "shared"
        first = subprocess.Popen(
            [sys.executable, "-m", "perflab.cli", "run", str(spec), "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while not (out / ".pending").exists() and first.poll() is None:
                time.sleep(0.05)
            report("second writer", *cli("run", str(spec), "-o", str(out)))
        finally:
            first.wait(timeout=300)
        runs = len(list((out / "runs").glob("*.parquet")))
        print(f"first writer: exit {first.returncode}, {runs} runs for 3 configs")


if __name__ == "__main__":
    main()
