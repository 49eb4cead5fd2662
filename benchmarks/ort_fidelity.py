"""Does perflab's `compute` for ort-cpu agree with ONNX Runtime's own `model_run` timing?

The same model, batch and thread count, measured two ways on the same inputs:

- perflab: `OrtBackend.run` with a `Recorder`, i.e. `perf_counter_ns` around `session.run`
  (the Python binding's feed conversion and output allocation are inside the timed region);
- ORT: a second session with `enable_profiling`, whose `model_run` events time `Run()` inside
  the C++ session (the per-node profiler timestamps are inside that one).

The two sessions run in alternating blocks, so a drift in clock speed or background load hits
both equally. Prints both medians (ms) and their ratio (perflab / ORT), and, as a check that
needs no quiet machine, the median per-iteration ratio of the host clock around the profiled
session's own run() calls to their model_run (the harness's timing overhead alone, without the
profiler's overhead and without run-to-run noise between the two sessions).

    python benchmarks/ort_fidelity.py --model resnet18 --batch 1 8 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from time import perf_counter_ns

import numpy as np


def measure(
    model_name: str, batch: int, threads: int, iterations: int, warmup: int, block: int
) -> dict[str, float]:
    import onnxruntime as ort

    from perflab import models, pipelines
    from perflab.backends.ort import OrtBackend
    from perflab.importers.ort_profile import parse_ort_profile
    from perflab.spec import RunConfig
    from perflab.timing import Recorder, SetupTimer

    config = RunConfig(
        study="fidelity",
        model=model_name,
        pipeline="raw",
        backend="ort-cpu",
        precision="fp32",
        batch_size=batch,
        options=(("threads", threads),),
    )
    info = models.resolve(model_name, batch_size=batch)
    pipeline = pipelines.create("raw", info.inputs, batch_size=batch, seed=0)
    backend = OrtBackend(config)
    backend.setup(info, pipeline, SetupTimer())
    feeds = pipeline.preprocess(pipeline.make_inputs())

    with tempfile.TemporaryDirectory(prefix="ort-fidelity-") as tmp:
        so = backend._session_options(ort)  # the very options the timed session was made with
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "ort")
        profiled = ort.InferenceSession(str(info.path), so, providers=["CPUExecutionProvider"])
        names = [o.name for o in profiled.get_outputs()]

        rec = Recorder(batch)
        for _ in range(warmup):  # warm both; these iterations are left out below
            backend.run(feeds, rec)
            rec.next_iteration()
            profiled.run(names, feeds)
        rec.phase = 1
        profiled_host_ns = []
        done = 0
        while done < iterations:
            n = min(block, iterations - done)
            for _ in range(n):
                backend.run(feeds, rec)
                rec.next_iteration()
            for _ in range(n):
                t = perf_counter_ns()
                profiled.run(names, feeds)
                profiled_host_ns.append(perf_counter_ns() - t)
            done += n
        tables = parse_ort_profile(profiled.end_profiling())
    backend.close()

    samples = rec.table("fidelity").to_pandas()
    compute = samples[(samples["stage"] == "compute") & (samples["phase"] == "measure")]
    perflab_ms = compute["host_ns"].to_numpy() / 1e6
    ort_ms = np.asarray(tables.model_run_ms[warmup:])
    assert len(perflab_ms) == len(ort_ms) == iterations, (len(perflab_ms), len(ort_ms))
    # The same executions timed both ways: the host clock around run() of the profiled session
    # against its own model_run. Background load hits both halves of each pair alike.
    paired = np.asarray(profiled_host_ns) / 1e6 / ort_ms
    return {
        "perflab_median_ms": float(np.median(perflab_ms)),
        "ort_model_run_median_ms": float(np.median(ort_ms)),
        "ratio": float(np.median(perflab_ms) / np.median(ort_ms)),
        "paired_ratio": float(np.median(paired)),
        "perflab_p90_ms": float(np.percentile(perflab_ms, 90)),
        "ort_p90_ms": float(np.percentile(ort_ms, 90)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--block", type=int, default=20, help="iterations per alternating block")
    parser.add_argument(
        "--tolerance", type=float, default=0.03, help="largest |ratio - 1| reported as agreeing"
    )
    args = parser.parse_args(argv)
    print(
        f"{'model':10} {'batch':>5} {'threads':>7} {'perflab ms':>11} {'ORT model_run ms':>17} "
        f"{'ratio':>7}  agree  {'paired':>7}  load1"
    )
    worst = 0.0
    for batch in args.batch:
        load_before = os.getloadavg()[0]
        r = measure(args.model, batch, args.threads, args.iterations, args.warmup, args.block)
        load = max(load_before, os.getloadavg()[0])
        worst = max(worst, abs(r["ratio"] - 1))
        print(
            f"{args.model:10} {batch:>5} {args.threads:>7} {r['perflab_median_ms']:>11.3f} "
            f"{r['ort_model_run_median_ms']:>17.3f} {r['ratio']:>7.4f}  "
            f"{'yes' if abs(r['ratio'] - 1) <= args.tolerance else 'NO ':<3}  "
            f"{r['paired_ratio']:>7.4f}  {load:.2f}"
        )
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
