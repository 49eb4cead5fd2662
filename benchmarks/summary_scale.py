"""How long the analyses take on a study stored on disk, and how much memory they need.

Writes a seeded synthetic study as `perflab run` would (one samples file and one runs file per
run, through the store's schema), then runs each step in a fresh child process that does only
that step, and prints one line per step with its time and the child's peak RSS:

- summary():  perflab.open(folder).summary() (grouped DuckDB queries over the files);
- warmup():   perflab.open(folder).warmup();
- compare():  perflab.open(folder).compare(by="backend") (pairs of runs differing in backend);
- in-memory summarize(): the whole samples table read into pandas, then stats.summarize() on it
  (the path every analysis took before; skipped above --in-memory-max samples, as it needs
  about 15 bytes per sample several times over).

    python benchmarks/summary_scale.py --samples 1e8 [--runs 500] [--folder DIR] [--keep]
        [--baseline-src OLD/src] [--repeat N]

--baseline-src runs every step a second time with another perflab's sources first on the path
(a checkout of an earlier commit: `git worktree add /tmp/before REV`, then
`--baseline-src /tmp/before/src`), interleaved with this one's, and prints the ratio: "today's
path" measured in the same run. --repeat runs each pair N times and prints the medians.

Samples = runs x iterations x 6 stages (preprocess, h2d, compute, d2h, postprocess, e2e); the
first 10 iterations of each run are warmup. The folder is generated once and reused while its
recorded shape matches (pass --folder to keep it between invocations).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

STAGES_MS = {"preprocess": 0.4, "h2d": 0.15, "compute": 2.0, "d2h": 0.05, "postprocess": 0.2}
STAGES = [*STAGES_MS, "e2e"]
N_WARMUP = 10


def run_samples(i: int, run_id: str, n_iter: int, rng: np.random.Generator) -> pa.Table:
    """One run's samples as the store's arrow table: e2e is the sum of the stages + 20 us, runs
    differ in speed, even runs have device times on the GPU stages, a short warmup decays."""
    from perflab import store

    k = len(STAGES)
    n_rows = n_iter * k
    it = np.repeat(np.arange(n_iter, dtype=np.int32), k)
    stage = np.tile(np.arange(k, dtype=np.int32), n_iter)
    base = np.array([*STAGES_MS.values(), 0.0])[stage] * rng.uniform(0.5, 4.0)
    warm = 1 + 2.0 * np.exp(-it / 5.0)  # the first iterations are slower
    host_ms = base * warm * np.maximum(1 + 0.02 * rng.standard_normal(n_rows), 0.1)
    per_iter = host_ms.reshape(-1, k)
    per_iter[:, -1] = per_iter[:, :-1].sum(axis=1) + 0.02
    host_ns = np.round(host_ms * 1e6).astype(np.int64)
    gpu = i % 2 == 0
    device = pa.array(
        np.round(host_ns * 0.97).astype(np.int64),
        mask=~(np.isin(stage, [1, 2, 3]) & gpu),
    )
    sch = store.schema("samples")

    def dict_col(codes: np.ndarray, values: list[str]) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(values))

    arrays = {
        "run_id": dict_col(np.zeros(n_rows, dtype=np.int32), [run_id]),
        "iteration": pa.array(it),
        "phase": dict_col((it >= N_WARMUP).astype(np.int32), ["warmup", "measure"]),
        "stage": dict_col(stage, STAGES),
        "start_ns": pa.array(np.zeros(n_rows, dtype=np.int64)),
        "host_ns": pa.array(host_ns),
        "device_ns": device,
        "items": pa.array(np.ones(n_rows, dtype=np.int32)),
    }
    return pa.Table.from_arrays([arrays[f.name] for f in sch], schema=sch)


def generate(folder: Path, n_runs: int, n_iter: int, seed: int = 0) -> None:
    from perflab import store

    shape = {"runs": n_runs, "iterations": n_iter, "seed": seed}
    marker = folder / "benchmark-shape.json"
    if marker.exists() and json.loads(marker.read_text()) == shape:
        return
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for i in range(n_runs):
        run_id = f"20250101T000000{i:06d}-{i:08x}"
        store.write(folder, "samples", run_id, run_samples(i, run_id, n_iter, rng))
        store.write(
            folder,
            "runs",
            run_id,
            {
                "run_id": run_id,
                "status": "ok",
                "label": f"m{i // 2} · {'synthetic' if i % 2 else 'ort-cpu'}",
                "model": f"m{i // 2}",
                "backend": "synthetic" if i % 2 else "ort-cpu",
                "precision": "fp32",
                "batch_size": 1,
                "measure_wall_s": float(n_iter * 0.003),
            },
        )
    marker.write_text(json.dumps(shape))


def child(step: str, folder: str) -> None:
    """One step, timed from perflab.open() on; prints a JSON line with seconds and peak RSS."""
    import perflab

    t0 = time.perf_counter()
    res = perflab.open(folder)
    if step == "summary":
        out = res.summary()
    elif step == "warmup":
        out = res.warmup()
    elif step == "compare":
        out = res.compare(by="backend")
    elif step == "in-memory":
        from perflab.analysis.stats import summarize

        out = summarize(res.samples, res.runs)
    else:
        raise SystemExit(f"unknown step {step}")
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps({"seconds": seconds, "peak_bytes": peak, "rows": len(out)}))


def run_child(step: str, folder: Path, src: str | None) -> dict | None:
    """One step in a fresh process (with `src` first on the path when given)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, __file__, "--child", step, "--folder", str(folder)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode:
        print(f"{STEP_NAMES[step]} failed\n{proc.stderr[-2000:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


STEP_NAMES = {
    "summary": "summary()",
    "warmup": "warmup()",
    "compare": "compare()",
    "in-memory": "in-memory summarize()",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=float, default=1e7, help="total samples (1e8 allowed)")
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--folder", type=Path, help="study folder (default: a temporary one)")
    parser.add_argument("--steps", default="summary,warmup,compare,in-memory")
    parser.add_argument("--in-memory-max", type=float, default=2e7)
    parser.add_argument("--baseline-src", type=Path, help="another perflab's src folder")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, str(args.folder))
        return

    n_iter = max(1, round(args.samples / (args.runs * len(STAGES))))
    n = args.runs * n_iter * len(STAGES)
    tmp = None
    folder = args.folder
    if folder is None:
        tmp = tempfile.TemporaryDirectory(prefix="perflab-summary-scale-")
        folder = Path(tmp.name) / "study"
    try:
        t0 = time.perf_counter()
        generate(folder, args.runs, n_iter)
        size = sum(p.stat().st_size for p in folder.rglob("*.parquet"))
        print(
            f"study of {n} samples ({args.runs} runs x {n_iter} iterations x 6 stages, "
            f"{size / 2**30:.2f} GiB parquet) ready in {time.perf_counter() - t0:.1f} s"
        )
        builds = [("", None)]
        if args.baseline_src:
            builds.append((" [baseline]", str(args.baseline_src.resolve())))
        for step in args.steps.split(","):
            if step == "in-memory" and n > args.in_memory_max:
                print(f"{STEP_NAMES[step]} of {n} samples: skipped (over --in-memory-max)")
                continue
            seconds: dict[str, list[float]] = {tag: [] for tag, _ in builds}
            for _ in range(args.repeat):
                for tag, src in builds:  # interleaved: the same load for both
                    got = run_child(step, folder, src)
                    if got is None:
                        continue
                    seconds[tag].append(got["seconds"])
                    print(
                        f"{STEP_NAMES[step]}{tag} of {n} samples: {got['seconds']:.1f} s, "
                        f"peak RSS {got['peak_bytes'] / 2**30:.2f} GiB ({got['rows']} rows out)"
                    )
            if args.baseline_src and all(seconds.values()):
                now, before = (statistics.median(v) for v in seconds.values())
                print(
                    f"{STEP_NAMES[step]}: median {now:.1f} s vs {before:.1f} s baseline "
                    f"({before / now:.1f}x faster)"
                )
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
