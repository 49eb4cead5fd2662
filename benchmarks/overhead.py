"""The harness's own cost per stage, NVTX on, against a bare loop of two perf_counter_ns calls.

Three loops run in this one process, interleaved in rounds: the bare timer, the built-in loop's
recorded stage, and a stage recorded through `perflab.record()` (`with rec.stage(...)`). The
figures are medians of per-round ratios, so machine noise moves both sides of each ratio alike.
Usage: python benchmarks/overhead.py [--n 200000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from time import perf_counter_ns

from perflab.recording import Recording
from perflab.timing import COMPUTE, Recorder


def bare_loop(n: int) -> float:
    """ns per iteration of the floor: read the clock twice and keep the difference."""
    out = []
    append = out.append
    start = perf_counter_ns()
    for _ in range(n):
        t0 = perf_counter_ns()
        t1 = perf_counter_ns()
        append(t1 - t0)
    return (perf_counter_ns() - start) / n


def stage_loop(n: int) -> float:
    """ns per iteration of one recorded stage: NVTX push, clock, clock, NVTX pop, row kept."""
    rec = Recorder(1)
    begin, end = rec.begin, rec.end
    start = perf_counter_ns()
    for _ in range(n):
        end(COMPUTE, begin(COMPUTE))
    return (perf_counter_ns() - start) / n


def record_loop(rec: Recording, n: int) -> float:
    """ns per iteration of one stage recorded by perflab.record: `with rec.stage("compute"):`."""
    stage = rec.stage
    start = perf_counter_ns()
    for _ in range(n):
        with stage("compute"):
            pass
    return (perf_counter_ns() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="iterations per round")
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    bare, stage, recorded, ratios, record_ratios = [], [], [], [], []
    with tempfile.TemporaryDirectory() as out:
        # A recording that is never written: only its stage objects are timed here.
        rec = Recording(
            "overhead", out, backend="none", batch_size=1, warmup=0, model=None,
            precision="fp32", config={},
        )  # fmt: skip
        for _ in range(args.rounds):
            bare.append(bare_loop(args.n))
            stage.append(stage_loop(args.n))
            recorded.append(record_loop(rec, args.n))
            ratios.append(stage[-1] / bare[-1])  # a ratio within one round: noise hits both
            record_ratios.append(recorded[-1] / stage[-1])
    b, s = statistics.median(bare), statistics.median(stage)
    r = statistics.median(recorded)
    nvtx = "attached" if Recorder(1).annotator.enabled else "no profiler attached (no-op domain)"
    print(f"bare loop (2 x perf_counter_ns):  {b:7.1f} ns per iteration")
    print(f"perflab stage (begin/end + NVTX): {s:7.1f} ns per stage   [NVTX: {nvtx}]")
    print(f"perflab.record stage (with rec.stage): {r:7.1f} ns per stage")
    print(
        f"ratio: {statistics.median(ratios):.2f}x   (median of {args.rounds} per-round ratios; target <= 2x)"
    )
    print(
        f"record / built-in stage: {statistics.median(record_ratios):.2f}x   "
        f"(median of {args.rounds} per-round ratios)"
    )


if __name__ == "__main__":
    main()
