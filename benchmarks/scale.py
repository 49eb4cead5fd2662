"""Scale: a study of many synthetic configs, and what the harness costs around the measured loops.

Runs N synthetic configs of ITER iterations each (stages of a few microseconds, so the harness,
not the "model", dominates), then times `perflab show` and `Results.summary()` on the result.
Prints: total wall time, harness time per config outside the measured loop (worker start,
setup, storage), and the show / summary times. Usage:
    python benchmarks/scale.py [--configs 500] [--iterations 200] [--no-isolation] [-o DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=500)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--no-isolation", action="store_true")
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="perflab-scale-"))
    out = args.output or work / "out"
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
    cmd = [sys.executable, "-m", "perflab.cli", "run", str(spec_path), "-o", str(out), "--yes"]
    if args.no_isolation:
        cmd.append("--no-isolation")
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    run_s = time.perf_counter() - t

    from perflab.results import open as open_results

    res = open_results(out)
    runs = res.runs
    loops_s = runs["measure_wall_s"].sum()
    samples = len(res.samples)
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "perflab.cli", "show", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    show_s = time.perf_counter() - t
    t = time.perf_counter()
    res2 = open_results(out)
    res2.summary()
    summary_s = time.perf_counter() - t
    n = len(runs)
    print(
        f"configs: {n} ({(runs['status'] == 'ok').sum()} ok), {samples:,} samples, "
        f"{'in-process' if args.no_isolation else 'one worker process per config'}"
    )
    print(f"perflab run:            {run_s:8.1f} s total, measured loops {loops_s:.1f} s")
    print(
        f"harness per config:     {(run_s - loops_s) / n * 1e3:8.1f} ms outside the measured loop"
    )
    print(f"perflab show:           {show_s:8.2f} s")
    print(f"open + summary():       {summary_s:8.2f} s")
    if args.output is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
