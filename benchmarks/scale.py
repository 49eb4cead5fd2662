"""Scale: a study of many synthetic configs, and what the harness costs around the measured loops.

Runs N synthetic configs of ITER iterations each (stages of a few microseconds, so the harness,
not the "model", dominates) twice in one go: isolated (the default `local` executor, a child
process per config forked from a warm template) and in-process (`--no-isolation`). Prints, for
each, the total wall time of `perflab run` and the harness time per config outside the measured
loops (process start, setup, storage), then their ratio; then times `perflab show` (five times,
then once without the statistics the folder index keeps) and `Results.summary()` on the isolated
result. Usage:
    python benchmarks/scale.py [--configs 500] [--iterations 200] [-o DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml


def run_study(
    spec_path: Path, out: Path, *, isolated: bool
) -> tuple[float, float, int, int, float]:
    """One `perflab run`: (wall s, measured-loop s, configs, ok configs, steady ms per config).

    Steady: the median, over consecutive configs, of the time from one config's start to the
    next one's minus the first one's measured loop; it leaves out what a study pays once (the
    command's start, the template's start, the summary table at the end)."""
    from perflab.results import open as open_results

    cmd = [sys.executable, "-m", "perflab.cli", "run", str(spec_path), "-o", str(out), "--yes"]
    if not isolated:
        cmd.append("--no-isolation")
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall_s = time.perf_counter() - t
    runs = open_results(out).runs.sort_values("created_at")
    starts = (runs["created_at"] - runs["created_at"].iloc[0]).dt.total_seconds().to_numpy()
    gaps = starts[1:] - starts[:-1] - runs["measure_wall_s"].to_numpy()[:-1]
    steady_ms = float(np.median(gaps)) * 1e3 if len(gaps) else float("nan")
    ok = int((runs["status"] == "ok").sum())
    return wall_s, float(runs["measure_wall_s"].sum()), len(runs), ok, steady_ms


def time_show(out: Path) -> float:
    """Wall seconds of one `perflab show` in a fresh process (its imports included)."""
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "perflab.cli", "show", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=500)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="perflab-scale-"))
    base = args.output or work
    spec_path = work / "scale.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "study": "scale",
                "backend": "synthetic",
                "warmup": {"iterations": 5},
                "measure": {"iterations": args.iterations},
                "options": {"preprocess_ms": 0.005, "compute_ms": 0.01, "postprocess_ms": 0.005},
                "sweep": {"seed": list(range(args.configs))},
            }
        )
    )
    per_config, steady = {}, {}
    for name, isolated in (("isolated", True), ("in-process", False)):
        out = base / name
        wall_s, loops_s, n, ok, steady[name] = run_study(spec_path, out, isolated=isolated)
        per_config[name] = (wall_s - loops_s) / n * 1e3
        print(
            f"{name + ':':<12} {n} configs ({ok} ok), perflab run {wall_s:7.1f} s, measured "
            f"loops {loops_s:5.1f} s, harness {per_config[name]:7.1f} ms per config outside "
            f"the measured loop ({steady[name]:.1f} ms in the steady state)"
        )
    print(
        f"isolated / in-process: {per_config['isolated'] / per_config['in-process']:.2f}x per "
        f"config ({steady['isolated'] / steady['in-process']:.2f}x in the steady state)"
    )

    from perflab.results import open as open_results

    out = base / "isolated"
    samples = len(open_results(out).samples)
    shows = sorted(time_show(out) for _ in range(5))
    print(
        f"perflab show:           {shows[2]:8.2f} s median of 5 (min {shows[0]:.2f}, max "
        f"{shows[-1]:.2f}; {samples:,} samples)"
    )
    # What a show costs where the statistics kept in the index are not there (or not current).
    for kept in ("summary", "harness-gap"):
        (out / ".index" / f"samples-{kept}.parquet").unlink(missing_ok=True)
    print(f"perflab show, computing: {time_show(out):7.2f} s (the index's statistics rebuilt)")
    t = time.perf_counter()
    open_results(out).summary()
    summary_s = time.perf_counter() - t
    print(f"open + summary():       {summary_s:8.2f} s")
    if args.output is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
