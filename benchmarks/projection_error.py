"""How far the device projection lands from what another GPU measured, on real trtexec logs.

    python benchmarks/projection_error.py LOG... --model FILE.onnx [--efficiency F] [--launch-us U]

Imports each log (with the ONNX file it timed, for FLOPs and bytes), projects each run's GPU
compute time onto every other GPU among the logs, and prints one line per ordered pair:

    SOURCE_GPU -> TARGET_GPU predicted P ms measured M ms ratio R      (R = P / M)

`--onnx-cost-only` ignores the weight bytes and layer count the logs print for their engines and
uses the ONNX file's instead, to show what the projection makes of a model cost that does not
describe the engine that was timed.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import perflab
from perflab import importers, models
from perflab.analysis.roofline import projection_check


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("logs", nargs="+", type=Path)
    ap.add_argument("--model", required=True, type=Path, help="the ONNX file the logs timed")
    ap.add_argument("--efficiency", type=float, help="fraction of peak (default: see project())")
    ap.add_argument("--launch-us", type=float, help="per-kernel launch cost in microseconds")
    ap.add_argument("--onnx-cost-only", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for log in args.logs:
            importers.import_file("trtexec", [log], tmp, model=args.model)
        res = perflab.open(tmp)
        runs = res.runs.copy()
        if args.onnx_cost_only:
            info = models.resolve(str(args.model), batch_size=1)
            runs["model_param_bytes"] = float(info.param_bytes)
            runs["model_kernels"] = float(info.node_count)
        kw = {"efficiency": args.efficiency, "launch_us": args.launch_us}
        check = projection_check(runs, res.stage_medians(), stages=("compute",), **kw)
    if check.empty:
        print("no pair of logs of one model on two known GPUs", file=sys.stderr)
        return 1
    worst = 1.0
    for row in check.itertuples():
        note = (
            ""
            if row.source_batch == row.target_batch
            else (f"   (batch {row.source_batch} vs {row.target_batch})")
        )
        print(
            f"{row.from_device} -> {row.to_device} predicted {row.predicted_ms:.4g} ms"
            f" measured {row.measured_ms:.4g} ms ratio {row.ratio:.3g}{note}"
        )
        if not math.isnan(row.ratio):
            worst = max(worst, row.ratio, 1 / row.ratio)
    print(f"worst factor {worst:.3g} over {len(check)} pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
