"""openvino-cpp's timing against known durations: the C++ runner busy-waits each target on
steady_clock and reports what it measured over the pipe, as it reports an infer().

Prints, per target, the median and p99 of measured / requested - 1 (the calibration error), and
the median pipe round trip seen from Python beyond the C++ duration. A busy machine stretches
the tail (a busy-wait preempted at its end overshoots), not the median.
Usage: python benchmarks/ovcpp_calibration.py [--n 200]
"""

from __future__ import annotations

import argparse
from time import perf_counter_ns

import numpy as np

from perflab.backends.openvino_cpp import RunnerProcess, runner_binary

TARGETS_MS = (0.1, 1.0, 10.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="busy-waits per target")
    args = parser.parse_args()
    proc = RunnerProcess([str(runner_binary()), "--calibrate"])
    try:
        print(f"{'target_ms':>10} {'n':>5} {'median_err_%':>13} {'p99_err_%':>10} {'pipe_us':>8}")
        for target_ms in TARGETS_MS:
            ns = int(target_ms * 1e6)
            measured, round_trip = [], []
            for _ in range(args.n):
                t0 = perf_counter_ns()
                measured.append(proc.busy_wait(ns))
                round_trip.append(perf_counter_ns() - t0)
            m = np.asarray(measured, dtype=np.float64)
            err = m / ns - 1
            pipe_us = np.median(np.asarray(round_trip) - m) / 1e3
            print(
                f"{target_ms:>10.1f} {args.n:>5} {np.median(err) * 100:>13.4f} "
                f"{np.quantile(err, 0.99) * 100:>10.3f} {pipe_us:>8.1f}"
            )
    finally:
        proc.close()


if __name__ == "__main__":
    main()
