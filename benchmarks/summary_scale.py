"""How long summarize() takes on a whole study of ten million samples, against plain pandas.

Generates a seeded synthetic samples frame shaped like `store.read(..., "samples")` returns it
(categorical run_id/phase/stage, int64 nanoseconds, device_ns on the GPU stages of half the runs),
then times, in one process and on the same frame:

- perflab.analysis.stats.summarize(samples, runs): n, moments, p50/p90/p95/p99, order-statistic
  CIs of p50 and p99, throughput, wall throughput and device statistics;
- the baseline most notebooks would write: samples[measure].groupby(["run_id", "stage"])
  ["host_ns"].quantile([0.5, 0.9, 0.95, 0.99]) (percentiles only).

    python benchmarks/summary_scale.py [--runs 500] [--iterations 3334] [--repeat 3] [--ragged]

500 runs x 3334 iterations x 6 stages (preprocess, h2d, compute, d2h, postprocess, e2e) is
10,004,000 rows. Each timing is the best of --repeat runs, after one untimed warm call.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from perflab.analysis.stats import summarize

STAGES_MS = {"preprocess": 0.4, "h2d": 0.15, "compute": 2.0, "d2h": 0.05, "postprocess": 0.2}


def make_study(n_runs: int, n_iter: int, n_warmup: int = 10, seed: int = 0, ragged: bool = False):
    rng = np.random.default_rng(seed)
    stages = list(STAGES_MS) + ["e2e"]
    n_rows = n_runs * n_iter * len(stages)
    run = np.repeat(np.arange(n_runs, dtype=np.int32), n_iter * len(stages))
    it = np.tile(np.repeat(np.arange(n_iter, dtype=np.int32), len(stages)), n_runs)
    stage = np.tile(np.arange(len(stages), dtype=np.int8), n_runs * n_iter)
    scale = rng.uniform(0.5, 4.0, n_runs)[run]  # runs differ in speed
    base = np.array(list(STAGES_MS.values()) + [0.0])[stage] * scale
    host_ms = base * np.maximum(1 + 0.02 * rng.standard_normal(n_rows), 0.1)
    # e2e = sum of the five stages of the same iteration + a 20 us gap.
    per_iter = host_ms.reshape(-1, len(stages))
    per_iter[:, -1] = per_iter[:, :-1].sum(axis=1) + 0.02
    host_ns = np.round(host_ms * 1e6).astype(np.int64)
    gpu_run = (np.arange(n_runs) % 2 == 0)[run]
    gpu_stage = np.isin(stage, [1, 2, 3])
    device_ns = np.where(gpu_run & gpu_stage, np.round(host_ns * 0.97), np.nan)
    run_ids = np.array([f"20250101T000000{i:06d}-{i:08x}" for i in range(n_runs)])
    samples = pd.DataFrame(
        {
            "run_id": pd.Categorical.from_codes(run, categories=run_ids),
            "iteration": it,
            "phase": pd.Categorical.from_codes(
                (it >= n_warmup).astype(np.int8), categories=["warmup", "measure"]
            ),
            "stage": pd.Categorical.from_codes(stage, categories=stages),
            "start_ns": np.zeros(n_rows, dtype=np.int64),
            "host_ns": host_ns,
            "device_ns": device_ns,
            "items": np.ones(n_rows, dtype=np.int32),
        }
    )
    if ragged:
        # Runs stopped by time rather than by count end after different numbers of iterations.
        last = rng.integers(n_iter // 2, n_iter + 1, n_runs)
        samples = samples[it < last[run]].reset_index(drop=True)
    runs = pd.DataFrame(
        {"run_id": run_ids, "status": "ok", "measure_wall_s": rng.uniform(5, 20, n_runs)}
    )
    return samples, runs


def best_of(fn, repeat: int) -> float:
    fn()  # untimed: first-call imports and allocations
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--iterations", type=int, default=3334)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--ragged",
        action="store_true",
        help="runs of different lengths (between half and all --iterations)",
    )
    args = parser.parse_args()

    t0 = time.perf_counter()
    samples, runs = make_study(args.runs, args.iterations, ragged=args.ragged)
    print(
        f"generated {len(samples):,} samples ({args.runs} runs x "
        f"{'up to ' if args.ragged else ''}{args.iterations} iterations x 6 stages) "
        f"in {time.perf_counter() - t0:.1f} s"
    )

    def ours():
        return summarize(samples, runs)

    def baseline():
        measured = samples[samples["phase"] == "measure"]
        return (
            measured.groupby(["run_id", "stage"], observed=True)["host_ns"]
            .quantile([0.5, 0.9, 0.95, 0.99])
            .unstack()
        )

    # Same answer first: the percentiles must agree before the times mean anything.
    got = ours().set_index(["run_id", "stage"])["p99_ms"]
    ref = baseline()[0.99] / 1e6
    ref.index = ref.index.set_levels([lvl.astype(str) for lvl in ref.index.levels])
    assert np.allclose(got.reindex(ref.index).to_numpy(), ref.to_numpy(), rtol=1e-12), "p99 differs"

    t_ours = best_of(ours, args.repeat)
    t_base = best_of(baseline, args.repeat)
    print(f"summarize() (percentiles + CIs + moments + throughput + device): {t_ours:6.2f} s")
    print(f"pandas groupby().quantile([.5, .9, .95, .99]) baseline:          {t_base:6.2f} s")
    print(f"ratio baseline / summarize: {t_base / t_ours:.2f}x")


if __name__ == "__main__":
    main()
