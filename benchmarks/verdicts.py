"""How often are perflab's verdicts wrong? A/A comparisons and a true 5 % difference, counted.

    python benchmarks/verdicts.py [--trials 20] [--real-trials 5] [--iterations 60] [--quick]

On the synthetic backend (known truth), each trial is one study of three configs run `repeat`
times, round by round: A1 and A2 are identical (2 ms compute, other seeds), B computes 5 % longer.
Every run draws its own multiplicative offset (`run_jitter`, the between-process variance) and
every stage of every iteration its own noise (`jitter` 0.01). compare() then judges A2 against
A1 (any `faster` / `slower` is a false verdict) and B against A1 (`slower` is a detection).

Two clocks:
- `virtual` (timing.VirtualClock): every stage takes exactly its drawn duration, so the only
  variance is the one injected; this calibrates the statistics themselves. Settings: repeat 1
  and 5 x run_jitter 0.01 and 0.05, `--trials` trials each. The targets are checked here: with
  repeat 5, at most 1 in 20 A/A comparisons `faster`/`slower` at run_jitter 0.05 and at least
  19 in 20 true differences found at run_jitter 0.01; with repeat 1, no verdict stronger than
  `indicative`.
- `real` (perf_counter_ns, busy-waits): this machine's own noise on top, with and without a
  background CPU load that this script starts (one bursty busy-looping process per CPU: busy
  and idle in random bursts of 50-500 ms, so the load drifts between runs) and stops. Settings:
  repeat 1 and 5 at run_jitter 0.01, `--real-trials` trials each. The column `busy runs` counts
  runs perflab flagged as measured on a busy host.

Runs are made in this process (run_study with isolate=False) and the harness's per-run
calibration of its own timer is measured once and reused, to keep the benchmark short on a small
machine: the between-process variance is what run_jitter injects, so the statistics are
calibrated on the variance structure a run per process gives.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

COMPUTE_MS = 2.0
DIFFERENCE = 0.05
JITTER = 0.01
TARGET_FALSE = 1  # at most this many false verdicts in 20 A/A comparisons (repeat 5)
TARGET_FOUND = 19  # at least this many of 20 true differences found (repeat 5)


def _bursty_load(seed: int, stop) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        end = time.perf_counter() + rng.uniform(0.05, 0.5)
        while time.perf_counter() < end:
            pass
        stop.wait(rng.uniform(0.05, 0.5))


class BackgroundLoad:
    """One bursty busy-looping process per CPU, for the length of a `with` block."""

    def __init__(self, procs: int):
        self.procs = procs

    def __enter__(self):
        ctx = mp.get_context("spawn")
        self.stop = ctx.Event()
        self.workers = [
            ctx.Process(target=_bursty_load, args=(i, self.stop), daemon=True)
            for i in range(self.procs)
        ]
        for w in self.workers:
            w.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for w in self.workers:
            w.join(timeout=5)
            if w.is_alive():
                w.terminate()


def trial(out: Path, seed: int, repeat: int, run_jitter: float, iterations: int, clock: str):
    """One study (A1, A2, B) run `repeat` times; returns (A2 vs A1 verdict, B vs A1 verdict,
    runs flagged busy)."""
    from perflab import results, runner, spec
    from perflab.analysis.compare import compare
    from perflab.timing import VirtualClock, use_clock

    opts = {
        "preprocess_ms": 0.0,
        "postprocess_ms": 0.0,
        "compute_ms": COMPUTE_MS,
        "jitter": JITTER,
        "run_jitter": run_jitter,
    }
    study = spec.parse(
        {
            "study": f"verdicts-{seed}",
            "backend": "synthetic",
            "options": opts,
            "warmup": {"iterations": 5},
            "measure": {"iterations": iterations},
            "repeat": repeat,
            "sweep": [
                {"seed": [3 * seed, 3 * seed + 1]},
                {"seed": [3 * seed + 2], "options.compute_ms": [COMPUTE_MS * (1 + DIFFERENCE)]},
            ],
        },
        source="<verdicts>",
    )
    # Three seeds: every config draws its own run offsets (a shared seed would pair the runs).
    arms = dict(zip((c.spec_id for c in study.configs), ("A1", "A2", "B")))
    if clock == "virtual":
        with use_clock(VirtualClock()):
            runner.run_study(study, out, isolate=False)
    else:
        runner.run_study(study, out, isolate=False)
    res = results.open(out)
    runs = res.runs.assign(arm=res.runs["spec_id"].map(arms))
    table = compare(res.samples, runs, by="arm", baseline="A1", match=[]).set_index("b")
    busy = int(runs["host_busy"].fillna(False).astype(bool).sum())
    return table.loc["A2", "verdict"], table.loc["B", "verdict"], busy


def setting(clock, repeat, run_jitter, load, trials, iterations, base_seed):
    from perflab import host

    aa, ab = [], []
    loads, busy, total = [], 0, 0
    with tempfile.TemporaryDirectory(prefix="perflab-verdicts-") as tmp:
        ctx = BackgroundLoad(os.cpu_count() or 1) if load else None
        if ctx:
            ctx.__enter__()
        try:
            for t in range(trials):
                loads.append(host.load1())
                v_aa, v_ab, n_busy = trial(
                    Path(tmp) / f"t{t}", base_seed + t, repeat, run_jitter, iterations, clock
                )
                aa.append(v_aa)
                ab.append(v_ab)
                busy += n_busy
                total += 3 * repeat
        finally:
            if ctx:
                ctx.__exit__(None, None, None)
    return {
        "clock": clock,
        "busy_runs": f"{busy}/{total}",
        "repeat": repeat,
        "run_jitter": run_jitter,
        "load": "on" if load else "off",
        "host_load": sum(loads) / len(loads),
        "aa_false": sum(v in ("faster", "slower") for v in aa),
        "found": sum(v == "slower" for v in ab),
        "wrong_way": sum(v == "faster" for v in ab),
        "indicative": sum(v == "indicative" for v in aa + ab),
        "confident_r1": sum(v in ("faster", "slower", "same") for v in aa + ab)
        if repeat == 1
        else 0,
        "trials": trials,
    }


def _reuse_calibration() -> None:
    """Measure the harness's timer calibration once instead of once per run (see the module)."""
    from perflab import runner

    rows = runner.calibrate()
    runner.calibrate = lambda: [dict(r) for r in rows]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20, help="trials per virtual-clock setting")
    p.add_argument("--real-trials", type=int, default=5, help="trials per real-clock setting")
    p.add_argument("--iterations", type=int, default=60, help="measured iterations per run")
    p.add_argument("--quick", action="store_true", help="only the two target settings")
    p.add_argument("--seed", type=int, default=1000)
    args = p.parse_args(argv)
    plan = [("virtual", r, j, False, args.trials) for r in (1, 5) for j in (0.01, 0.05)]
    if not args.quick:
        plan += [
            ("real", r, 0.01, load, args.real_trials) for load in (False, True) for r in (1, 5)
        ]
    _reuse_calibration()
    print(
        f"synthetic backend: compute {COMPUTE_MS} ms, jitter {JITTER}, B = A x {1 + DIFFERENCE}; "
        f"{args.trials} trials per setting, {args.iterations} measured iterations per run"
    )
    header = (
        f"{'clock':>7} {'repeat':>6} {'run_jitter':>10} {'load':>4} {'host load':>9} "
        f"{'busy runs':>9} {'A/A faster|slower':>17} {'5% found':>8} {'5% wrong way':>12} "
        f"{'indicative':>10} {'s':>5}"
    )
    print(header)
    rows = []
    for clock, repeat, run_jitter, load, trials in plan:
        t0 = time.monotonic()
        r = setting(clock, repeat, run_jitter, load, trials, args.iterations, args.seed)
        r["seconds"] = time.monotonic() - t0
        rows.append(r)
        n = r["trials"]
        print(
            f"{clock:>7} {r['repeat']:>6} {r['run_jitter']:>10.2f} {r['load']:>4} "
            f"{r['host_load']:>9.2f} {r['busy_runs']:>9} "
            f"{r['aa_false']:>12}/{n:<4} {r['found']:>5}/{n:<2} {r['wrong_way']:>9}/{n:<2} "
            f"{r['indicative']:>7}/{2 * n:<2} {r['seconds']:>5.0f}",
            flush=True,
        )
    failed = []
    scale = args.trials / 20
    for r in (r for r in rows if r["clock"] == "virtual"):
        five = r["repeat"] == 5
        if five and r["run_jitter"] == 0.05 and r["aa_false"] > TARGET_FALSE * scale:
            failed.append(f"A/A false verdicts {r['aa_false']}/{r['trials']} at run_jitter 0.05")
        if five and r["run_jitter"] == 0.01 and r["found"] < TARGET_FOUND * scale:
            failed.append(f"5% found {r['found']}/{r['trials']} at run_jitter 0.01")
        if r["repeat"] == 1 and r["confident_r1"]:
            failed.append(f"repeat 1 gave {r['confident_r1']} verdicts stronger than indicative")
    print("targets:", "met" if not failed else "NOT met: " + "; ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
