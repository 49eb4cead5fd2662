"""Every GPU path of perflab, checked in a few minutes on whatever GPU machine is at hand.

    python benchmarks/gpu_check.py -o gpu-check.json      (or: make gpu-check)

Checks, each in its own process with its own timeout (a hung CUDA call cannot stop the others,
and a crash costs only its own check); the results go into one JSON file, rewritten after each
check so nothing measured is lost:

- event_clock: one piece of device work (repeated device-to-device copies of a known size) timed
  by perflab's CUDA-event clock (DeviceIO's compute stage) and, around the same call on the same
  stream, by CuPy's and torch's own events: they must agree within 2 %.
- copies: host-to-device and device-to-host copies of known sizes through DeviceIO; bandwidth
  against the theoretical figure of the PCIe link in the fingerprint.
- torch_cuda: the torch-cuda backend on zoo models at batch 1 and 8, latency and throughput mode.
  Latency mode: stage medians against torch's own CUDA-event timing of the same calls (the same
  module, tensors and copies, interleaved iteration by iteration), within 2 %. Throughput mode:
  every request completes, its stage starts map inside its host window, its outputs equal the
  latency mode's. Outputs are checked against ONNX Runtime on the CPU.
- telemetry: NVML sampled during device work (clocks, power, temperature, throttle reasons).
- nvtx_profiler: NVTX ranges through perflab's annotator; cudaProfilerStart/Stop once each.
- environment: `perflab backends` and the environment fingerprint (GPU name, driver, CUDA,
  compute capability, PCIe).

It installs nothing and needs no network. It needs neither pandas, pyarrow nor duckdb: results
stay in the JSON. Without a GPU every check is `unavailable` with its reason, in seconds, and the
exit status is 0; it is 1 when a check failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The working tree's perflab, also where it is not installed (a bare lent machine).
SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

OK, FAILED, UNAVAILABLE = "ok", "failed", "unavailable"
#: The whole check must fit twice into one short loan of a GPU machine.
BUDGET_S = 360.0
#: Agreement asked of two clocks timing the same device work.
CLOCK_REL_TOL = 0.02
#: Below this, two event pairs cannot tell durations apart (event resolution is about 0.5 us).
CLOCK_ABS_TOL_NS = 2_000
#: A healthy PCIe copy reaches this share of the link's theoretical figure (and never exceeds it).
PCIE_SHARE_RANGE = (0.5, 1.05)
#: torch-cuda fp32 (TF32 off) against ONNX Runtime's fp32 CPU reference.
OUTPUT_MIN_COSINE = 0.9999

# PCIe transfer rate per lane (GT/s) and line-code efficiency, by link generation.
_PCIE_GEN = {
    1: (2.5, 8 / 10),
    2: (5.0, 8 / 10),
    3: (8.0, 128 / 130),
    4: (16.0, 128 / 130),
    5: (32.0, 128 / 130),
    6: (64.0, 242 / 256),  # FLIT mode: 242 payload bytes per 256-byte flit
}


# --------------------------------------------------------------------------- comparisons


def rel_diff(a: float, b: float) -> float:
    """|a - b| relative to b (inf when b is 0 and a is not)."""
    if b == 0:
        return 0.0 if a == 0 else float("inf")
    return abs(a - b) / abs(b)


def clocks_agree(a_ns: float, b_ns: float, rel: float = CLOCK_REL_TOL) -> bool:
    """Two timings of the same work agree: within `rel`, or within the event resolution."""
    return abs(a_ns - b_ns) <= CLOCK_ABS_TOL_NS or rel_diff(a_ns, b_ns) <= rel


def pcie_bandwidth_gbs(gen: int | None, width: int | None) -> float | None:
    """Theoretical one-direction bandwidth of a PCIe link in GB/s (1e9 bytes/s); None if unknown."""
    if gen not in _PCIE_GEN or not width:
        return None
    rate, efficiency = _PCIE_GEN[int(gen)]
    return rate * efficiency * int(width) / 8


def bandwidth_verdict(measured_gbs: float, link_gbs: float | None) -> tuple[str, str | None]:
    """(status, reason) of a copy bandwidth against the link's theoretical figure."""
    if link_gbs is None:
        return FAILED, "the fingerprint gives no PCIe generation and width to compare with"
    lo, hi = PCIE_SHARE_RANGE
    share = measured_gbs / link_gbs
    if share > hi:
        return FAILED, (
            f"{measured_gbs:.1f} GB/s is {share:.0%} of the link's {link_gbs:.1f} GB/s: "
            "faster than the link, so the clock or the size is wrong"
        )
    if share < lo:
        return FAILED, (
            f"{measured_gbs:.1f} GB/s is only {share:.0%} of the link's {link_gbs:.1f} GB/s "
            f"(expected at least {lo:.0%})"
        )
    return OK, None


def median(values: Iterable[float]) -> float:
    values = list(values)
    return float(statistics.median(values)) if values else float("nan")


def output_agreement(got: Mapping[str, Any], ref: Mapping[str, Any]) -> dict[str, float]:
    """Cosine similarity and largest absolute error of the outputs both sides produced."""
    import numpy as np

    names = [k for k in ref if k in got]
    if not names:
        return {}
    a = np.concatenate([np.asarray(got[k], dtype=np.float64).ravel() for k in names])
    b = np.concatenate([np.asarray(ref[k], dtype=np.float64).ravel() for k in names])
    if a.size != b.size or a.size == 0:
        return {}
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return {
        "output_cosine": float(a @ b / denom) if denom else float("nan"),
        "output_max_abs_err": float(np.max(np.abs(a - b))),
        "output_max_abs_ref": float(np.max(np.abs(b))),
    }


# --------------------------------------------------------------------------- the checks


class Unavailable(Exception):
    """The check cannot run here; the message says why."""


@dataclass(frozen=True)
class Check:
    name: str
    timeout_s: float
    needs: tuple[str, ...]  # modules that must be installed
    gpu: bool  # needs an NVIDIA driver on the machine
    run: Callable[[argparse.Namespace], dict[str, Any]]
    what: str


def _cupy_device(device_id: int) -> Any:
    from perflab import cuda

    reason = cuda.gpu_unavailable_reason(device_id)
    if reason:
        raise Unavailable(reason)
    import cupy

    return cupy


def _torch_cuda(device_id: int) -> Any:
    from perflab.backends.torch import cuda_unavailable_reason

    reason = cuda_unavailable_reason(device_id)
    if reason:
        raise Unavailable(reason)
    import torch

    return torch


def check_event_clock(args: argparse.Namespace, cp: Any = None, torch: Any = None) -> dict:
    """perflab's compute-stage clock, CuPy's and torch's events around the same device work."""
    from perflab import cuda
    from perflab.models import TensorSpec
    from perflab.timing import COMPUTE, Recorder

    cp = cp or _cupy_device(args.device_id)
    torch = torch or _torch_cuda(args.device_id)
    n_bytes, copies = args.clock_mib << 20, args.clock_copies
    spec = TensorSpec("x", (n_bytes // 4,), "float32")
    io = cuda.DeviceIO((spec,), (spec,), args.device_id, cupy_module=cp)
    src, dst = io.device_inputs["x"], io.device_outputs["x"]
    tstream = torch.cuda.ExternalStream(io.stream_ptr, device=f"cuda:{args.device_id}")

    def work() -> None:
        with io.stream:
            for _ in range(copies):
                dst[...] = src  # a device-to-device copy on io.stream

    rows = []
    for i in range(args.clock_repeats + 1):
        t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        c0, c1 = cp.cuda.Event(), cp.cuda.Event()
        rec = Recorder(1)
        t0.record(tstream)
        c0.record(io.stream)
        io.compute(work, rec, record_enqueue=False)
        c1.record(io.stream)
        t1.record(tstream)
        t1.synchronize()
        a = rec.arrays()
        k = list(a["stage"]).index(COMPUTE)
        host_ns = int(a["host_ns"][k])
        # compute's own event pair (device_durations_ns needs the copies' events recorded too)
        device_ns = cuda.ms_to_ns(cp.cuda.get_elapsed_time(io.events[2], io.events[3]))
        if i == 0:
            continue  # the first call loads the copy kernel
        rows.append(
            (
                device_ns,
                cuda.ms_to_ns(cp.cuda.get_elapsed_time(c0, c1)),
                cuda.ms_to_ns(t0.elapsed_time(t1)),
                host_ns,
            )
        )
    io.close()
    return clock_result(rows, n_bytes * copies)


def clock_result(rows: Sequence[tuple[int, int, int, int]], bytes_copied: int) -> dict:
    """Verdict on (perflab device, cupy, torch, perflab host) ns per repeat of the same work."""
    perflab_ns = median(r[0] for r in rows)
    cupy_ns = median(r[1] for r in rows)
    torch_ns = median(r[2] for r in rows)
    host_ns = median(r[3] for r in rows)
    out: dict[str, Any] = {
        "repeats": len(rows),
        "perflab_device_ms": perflab_ns / 1e6,
        "cupy_events_ms": cupy_ns / 1e6,
        "torch_events_ms": torch_ns / 1e6,
        "perflab_host_ms": host_ns / 1e6,
        "rel_diff_cupy": rel_diff(perflab_ns, cupy_ns),
        "rel_diff_torch": rel_diff(perflab_ns, torch_ns),
        # read + write of every byte: the device memory bandwidth the copies reached
        "device_copy_gbs": 2 * bytes_copied / perflab_ns if perflab_ns > 0 else None,
    }
    problems = []
    if not rows or perflab_ns <= 0:
        problems.append("perflab's clock measured no time")
    for other, ns in (("CuPy", cupy_ns), ("torch", torch_ns)):
        if not clocks_agree(perflab_ns, ns):
            problems.append(
                f"perflab {perflab_ns / 1e6:.4f} ms vs {other} {ns / 1e6:.4f} ms "
                f"({rel_diff(perflab_ns, ns):.2%} apart, more than {CLOCK_REL_TOL:.0%})"
            )
    if host_ns < perflab_ns:
        problems.append("the host duration is shorter than the device duration")
    out["status"] = FAILED if problems else OK
    out["reason"] = "; ".join(problems) or None
    return out


def check_copies(args: argparse.Namespace, cp: Any = None, gpu: Mapping | None = None) -> dict:
    """h2d and d2h of known sizes through DeviceIO (pinned buffers), against the PCIe link."""
    from perflab import cuda
    from perflab.models import TensorSpec
    from perflab.timing import Recorder

    cp = cp or _cupy_device(args.device_id)
    gpu = gpu if gpu is not None else _gpu_facts(args.device_id)
    results: dict[str, Any] = {"sizes_mib": list(args.copy_mib), "by_size": []}
    for mib in args.copy_mib:
        spec = TensorSpec("x", ((mib << 20) // 4,), "float32")
        io = cuda.DeviceIO((spec,), (spec,), args.device_id, cupy_module=cp)
        h2d, d2h = [], []
        for i in range(args.copy_repeats + 1):
            rec = Recorder(1)
            io.h2d(io.host_inputs, rec)  # the pinned buffer itself: no staging copy
            io.compute(lambda: None, rec, record_enqueue=False)
            io.d2h(rec)
            if i:
                ns = io.device_durations_ns()
                h2d.append(ns[0])
                d2h.append(ns[2])
        io.close()
        nbytes = mib << 20
        results["by_size"].append(
            {
                "mib": mib,
                "h2d_ms": median(h2d) / 1e6,
                "d2h_ms": median(d2h) / 1e6,
                "h2d_gbs": nbytes / median(h2d),
                "d2h_gbs": nbytes / median(d2h),
            }
        )
    return copies_result(results, gpu, _current_pcie(args.device_id))


def copies_result(
    results: dict[str, Any], gpu: Mapping[str, Any], current: Mapping[str, Any] | None
) -> dict:
    """Judge the largest copy's bandwidth against the link (the current link when NVML gives
    it right after the copies: a link that trained below its maximum is what the copies use)."""
    gen = (current or {}).get("pcie_gen") or gpu.get("pcie_gen_max")
    width = (current or {}).get("pcie_width") or gpu.get("pcie_width_max")
    link = pcie_bandwidth_gbs(gen, width)
    largest = max(results["by_size"], key=lambda r: r["mib"])
    results.update(
        pcie_gen=gen,
        pcie_width=width,
        pcie_gen_max=gpu.get("pcie_gen_max"),
        pcie_width_max=gpu.get("pcie_width_max"),
        link_gbs=link,
    )
    problems = []
    for direction in ("h2d", "d2h"):
        gbs = largest[f"{direction}_gbs"]
        results[f"{direction}_share_of_link"] = gbs / link if link else None
        status, reason = bandwidth_verdict(gbs, link)
        if status != OK:
            problems.append(f"{direction}: {reason}")
    results["status"] = FAILED if problems else OK
    results["reason"] = "; ".join(problems) or None
    return results


def _gpu_facts(device_id: int) -> dict[str, Any]:
    from perflab.cuda import gpu_facts

    for gpu in gpu_facts():
        if gpu.get("cuda_index", gpu.get("index")) == device_id:
            return gpu
    return {}


def _current_pcie(device_id: int) -> dict[str, Any] | None:
    """The PCIe link as it is now (it trains down when idle: read right after a copy)."""
    try:
        import pynvml as nvml

        nvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no NVML: the fingerprint's maximum is the figure
        return None
    try:
        h = nvml.nvmlDeviceGetHandleByIndex(device_id)
        return {
            "pcie_gen": int(nvml.nvmlDeviceGetCurrPcieLinkGeneration(h)),
            "pcie_width": int(nvml.nvmlDeviceGetCurrPcieLinkWidth(h)),
        }
    except Exception:  # noqa: BLE001
        return None
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001, S110 - shutting down is best effort
            pass


def check_torch_cuda(args: argparse.Namespace) -> dict:
    """The torch-cuda backend, latency and throughput, against torch's own timing and ORT."""
    torch = _torch_cuda(args.device_id)
    from perflab.models import resolve
    from perflab.reference import reference_outputs

    runs, problems = [], []
    for model_name in args.models:
        for batch in args.batches:
            model = resolve(model_name, batch_size=batch, cache_dir=args.cache_dir)
            inputs = _inputs(model, seed=batch)
            ref = reference_outputs(model.path, inputs)
            latency = _torch_latency(torch, args, model, inputs)
            outputs = latency.pop("outputs")
            latency.update(output_agreement(outputs, ref))
            throughput = _torch_throughput(torch, args, model, inputs, latency, outputs)
            for run in (latency, throughput):
                run.update(model=model_name, batch=batch)
                run_problems = torch_run_problems(run)
                run["status"] = FAILED if run_problems else OK
                run["reason"] = "; ".join(run_problems) or None
                problems += [f"{model_name} b{batch} {run['mode']}: {p}" for p in run_problems]
                runs.append(run)
    return {
        "runs": runs,
        "status": FAILED if problems else OK,
        "reason": "; ".join(problems) or None,
    }


def torch_run_problems(run: Mapping[str, Any]) -> list[str]:
    """What is wrong with one torch-cuda run's figures (empty: nothing)."""
    problems = []
    if run["mode"] == "latency":
        for stage in ("h2d", "compute", "d2h"):
            ours, theirs = run[f"{stage}_device_ms"] * 1e6, run[f"{stage}_torch_ms"] * 1e6
            if not clocks_agree(ours, theirs):
                problems.append(
                    f"{stage} median {ours / 1e6:.4f} ms vs torch's {theirs / 1e6:.4f} ms "
                    f"({rel_diff(ours, theirs):.2%} apart)"
                )
            if run[f"{stage}_host_ms"] < run[f"{stage}_device_ms"]:
                problems.append(f"{stage}: host median below device median")
        cosine = run.get("output_cosine")
        if cosine is None:
            problems.append("no outputs to compare with ONNX Runtime")
        elif not cosine >= OUTPUT_MIN_COSINE:
            problems.append(
                f"outputs vs ONNX Runtime CPU: cosine {cosine:.6f} < {OUTPUT_MIN_COSINE}"
            )
    else:
        if run["completed"] != run["submitted"]:
            problems.append(f"{run['completed']} of {run['submitted']} requests completed")
        if run["outside_window"]:
            problems.append(
                f"{run['outside_window']} request(s) with stage starts outside their host window"
            )
        if not run["outputs_match_latency"]:
            problems.append("outputs differ from latency mode's for the same input")
    return problems


def _inputs(model: Any, seed: int) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    out = {}
    for t in model.inputs:
        if not t.dtype.startswith("float"):
            raise Unavailable(f"{model.name}: input {t.name} is {t.dtype}; the check feeds floats")
        out[t.name] = rng.standard_normal(t.shape).astype(t.dtype)
    return out


def _torch_backend(model: Any, args: argparse.Namespace, mode: str, inflight: int = 1) -> Any:
    from perflab.backends.torch import TorchBackend
    from perflab.spec import RunConfig
    from perflab.timing import SetupTimer

    config = RunConfig(
        study="gpu-check",
        model=model.name,
        pipeline="none",
        backend="torch-cuda",
        precision="fp32",
        batch_size=model.batch_size,
        mode=mode,
        inflight=inflight,
        # TF32 off: fp32 arithmetic, so the outputs can be held to the fp32 reference.
        options=(("device_id", args.device_id), ("tf32", False), ("telemetry", False)),
    )
    backend = TorchBackend(config)
    backend.setup(model, None, SetupTimer())
    return backend


def _torch_latency(torch: Any, args: argparse.Namespace, model: Any, inputs: dict) -> dict:
    """Interleave backend.run with torch's own events around the same module, tensors, copies."""
    from perflab.timing import COMPUTE, D2H, H2D, Recorder

    backend = _torch_backend(model, args, "latency")
    slot = backend._slots[0]
    module, stream = backend._module, slot.stream
    ours: dict[int, list[int]] = {H2D: [], COMPUTE: [], D2H: []}
    host: dict[int, list[int]] = {H2D: [], COMPUTE: [], D2H: []}
    theirs: dict[int, list[float]] = {H2D: [], COMPUTE: [], D2H: []}
    outputs = None
    # The inputs already in the slot's pinned buffers, so that `h2d` is the copy alone, as in
    # the reference; the pageable case (host staging too) is measured after.
    pinned = dict(zip(backend._in_names, slot.pinned_in_np))
    for name, buf in pinned.items():
        buf[...] = inputs[name]
    backend.measure_begin()
    try:
        for i in range(args.warmup + args.iterations):
            rec = Recorder(model.batch_size)
            got = backend.run(pinned, rec)
            if outputs is None:
                outputs = {k: v.copy() for k, v in got.items()}
            ref = _torch_reference_ns(torch, backend, slot, module, stream)
            if i < args.warmup:
                continue
            a = rec.arrays()
            for stage, h, d in zip(a["stage"], a["host_ns"], a["device_ns"]):
                if stage in ours:
                    ours[stage].append(int(d))
                    host[stage].append(int(h))
            for stage, ns in ref.items():
                theirs[stage].append(ns)
        pageable = []
        for _ in range(max(1, args.iterations // 4)):
            rec = Recorder(model.batch_size)
            backend.run(inputs, rec)
            a = rec.arrays()
            pageable += [int(d) for s, d in zip(a["stage"], a["device_ns"]) if s == H2D]
    finally:
        backend.measure_end()
    notes = backend.facts()["meta"].get("notes", [])
    backend.close()
    out: dict[str, Any] = {"mode": "latency", "iterations": args.iterations, "notes": notes}
    for stage, name in ((H2D, "h2d"), (COMPUTE, "compute"), (D2H, "d2h")):
        out[f"{name}_device_ms"] = median(ours[stage]) / 1e6
        out[f"{name}_host_ms"] = median(host[stage]) / 1e6
        out[f"{name}_torch_ms"] = median(theirs[stage]) / 1e6
    # Events time the device's wall clock: with pageable inputs the start event completes
    # before the host has staged them, so this figure holds the staging copy too.
    out["h2d_device_pageable_ms"] = median(pageable) / 1e6
    e2e = [sum(x) for x in zip(host[H2D], host[COMPUTE], host[D2H])]
    out["items_per_s"] = model.batch_size / (median(e2e) / 1e9) if e2e else None
    out["outputs"] = outputs or {}
    return out


def _torch_reference_ns(torch: Any, backend: Any, slot: Any, module: Any, stream: Any) -> dict:
    """torch's own CUDA-event timing of the backend's three calls (copy in, forward, copy out)."""
    from perflab.cuda import ms_to_ns
    from perflab.timing import COMPUTE, D2H, H2D

    ev = [torch.cuda.Event(enable_timing=True) for _ in range(6)]
    with torch.cuda.stream(stream):
        ev[0].record(stream)
        for pinned, dev in zip(slot.pinned_in, slot.dev_in):
            dev.copy_(pinned, non_blocking=True)
        ev[1].record(stream)
        ev[1].synchronize()
        ev[2].record(stream)
        with torch.inference_mode(), backend._autocast():
            ys = module(*slot.dev_in)
        ev[3].record(stream)
        ev[3].synchronize()
        ev[4].record(stream)
        for name, y in zip(backend._out_names, ys):
            slot.pinned_out[name].copy_(y, non_blocking=True)
        ev[5].record(stream)
        ev[5].synchronize()
    return {
        stage: ms_to_ns(ev[a].elapsed_time(ev[b]))
        for stage, (a, b) in zip((H2D, COMPUTE, D2H), ((0, 1), (2, 3), (4, 5)))
    }


def _torch_throughput(
    torch: Any,
    args: argparse.Namespace,
    model: Any,
    inputs: dict,
    latency: Mapping,
    ref: Mapping[str, Any],
) -> dict:
    """submit/wait with requests in flight: completion, clock mapping and outputs."""
    from time import perf_counter_ns

    import numpy as np

    from perflab.timing import COMPUTE, D2H, H2D, Recorder

    inflight = args.inflight
    backend = _torch_backend(model, args, "throughput", inflight)
    rec = Recorder(model.batch_size)
    pending: list[tuple[Any, int, int]] = []  # (handle, iteration, submit start ns)
    windows: dict[int, tuple[int, int]] = {}
    same = bool(ref)
    n = args.warmup + args.iterations
    started = perf_counter_ns()
    for i in range(n):
        t_submit = perf_counter_ns()
        pending.append((backend.submit(inputs, rec), i, t_submit))
        rec.next_iteration()
        while len(pending) >= inflight or (i == n - 1 and pending):
            handle, it, t0 = pending.pop(0)
            got = backend.wait(handle, rec)
            windows[it] = (t0, perf_counter_ns())
            # the latency run's kernels on the same inputs: only reduction order may differ
            same = same and all(np.allclose(got[k], ref[k], rtol=1e-4, atol=1e-5) for k in ref)
    elapsed = perf_counter_ns() - started
    a = rec.arrays()
    outside = set()
    for it, stage, start, dur in zip(a["iteration"], a["stage"], a["start_ns"], a["host_ns"]):
        if stage not in (H2D, COMPUTE, D2H):
            continue  # the enqueue rows are host time of submit itself
        lo, hi = windows.get(int(it), (0, -1))
        # The anchor's host time is late by the wake-up latency: allow 50 us either side.
        if not (lo - 50_000 <= start and start + dur <= hi + 50_000):
            outside.add(int(it))
    backend.close()
    return {
        "mode": "throughput",
        "inflight": inflight,
        "submitted": n,
        "completed": len(windows),
        "outside_window": len(outside),
        "outputs_match_latency": bool(same),
        "items_per_s": n * model.batch_size / (elapsed / 1e9),
        "latency_items_per_s": latency.get("items_per_s"),
    }


def check_telemetry(args: argparse.Namespace) -> dict:
    """NVML sampled while the GPU works."""
    cp = _cupy_device(args.device_id)
    if importlib.util.find_spec("pynvml") is None:
        raise Unavailable("package nvidia-ml-py (module pynvml) is not installed")
    from perflab.telemetry import GpuSampler

    x = cp.ones((4096, 4096), dtype=cp.float32)
    sampler = GpuSampler(args.device_id, args.telemetry_interval_ms)
    note = sampler.start()
    t_end = time.monotonic() + args.telemetry_s
    while time.monotonic() < t_end:
        for _ in range(20):
            x = x @ x
            x /= cp.abs(x).max() + 1
        cp.cuda.Stream.null.synchronize()
    sampler.stop()
    return telemetry_result(sampler.rows(), sampler.errors, note, args.telemetry_s, sampler)


def telemetry_result(
    rows: Sequence[Mapping[str, Any]],
    errors: Mapping[str, str],
    note: str | None,
    seconds: float,
    sampler: Any,
) -> dict:
    """Per-metric min/median/max, the throttle reasons seen, and whether every metric came."""
    import math

    out: dict[str, Any] = {"samples": len(rows), "seconds": seconds, "note": note}
    missing = []
    for key in ("sm_clock_mhz", "mem_clock_mhz", "temp_c", "power_w", "util_pct"):
        values = [r[key] for r in rows if not math.isnan(r[key])]
        if values:
            out[key] = {"min": min(values), "median": median(values), "max": max(values)}
        else:
            missing.append(key)
    reasons = sorted({n for r in rows for n in (r["throttle_reasons"] or "").split(",") if n})
    out["throttle_reasons_seen"] = reasons
    out["throttled_samples"] = sum(1 for r in rows if r["throttled"])
    if not any(r["throttle_reasons"] is not None for r in rows):
        missing.append("throttle_reasons")
    out["errors"] = dict(errors)
    expected = seconds / sampler.interval_s
    problems = []
    if note and not rows:
        problems.append(note)
    if len(rows) < 0.5 * expected:
        problems.append(f"{len(rows)} samples in {seconds} s, expected about {expected:.0f}")
    if missing:
        problems.append(f"no values for {', '.join(missing)}")
    out["status"] = FAILED if problems else OK
    out["reason"] = "; ".join(problems) or None
    return out


def check_nvtx_profiler(args: argparse.Namespace) -> dict:
    """perflab's NVTX ranges (a run, iterations, stages) and the profiler bracket, once each."""
    _cupy_device(args.device_id)
    from perflab import cuda
    from perflab.nvtx import Annotator
    from perflab.timing import COMPUTE, STAGES, Recorder

    annotator = Annotator(STAGES)
    rec = Recorder(1, annotator)
    start_reason = cuda.profiler_start()
    with annotator.run_range("gpu-check"):
        for _ in range(3):
            rec.end(COMPUTE, rec.begin(COMPUTE))
            rec.next_iteration()
    stop_reason = cuda.profiler_stop()
    problems = [r for r in (start_reason, stop_reason) if r]
    return {
        "ranges_pushed": 3,
        "tool_attached": annotator.enabled,
        "note": None
        if annotator.enabled
        else "no NVTX tool attached: ranges went to nvtx's no-op domain (run under nsys to see them)",
        "profiler_start": start_reason or "called",
        "profiler_stop": stop_reason or "called",
        "status": FAILED if problems else OK,
        "reason": "; ".join(problems) or None,
    }


def check_environment(args: argparse.Namespace) -> dict:
    """`perflab backends` and the fingerprint; `unavailable` when it shows no GPU."""
    from perflab import env
    from perflab.backends.registry import BACKENDS, unavailable_reason

    fp = env.fingerprint()
    cli = subprocess.run(
        [sys.executable, "-m", "perflab.cli", "backends"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        },
        check=False,
    )
    out: dict[str, Any] = {
        "backends": {name: unavailable_reason(name) or "available" for name in BACKENDS},
        "perflab_backends_rc": cli.returncode,
        "perflab_backends_output": (cli.stdout + cli.stderr)[-4000:],
        "fingerprint": fp,
    }
    return environment_result(out)


GPU_FIELDS = (
    "name",
    "driver_version",
    "cuda_driver_version",
    "compute_capability",
    "pcie_gen_max",
    "pcie_width_max",
)


def environment_result(out: dict[str, Any]) -> dict:
    gpus = [g for g in out["fingerprint"].get("gpus") or [] if "error" not in g]
    problems = []
    if out["perflab_backends_rc"] != 0:
        problems.append(f"`perflab backends` exited {out['perflab_backends_rc']}")
    if not gpus:
        from perflab.cuda import driver_unavailable_reason

        out["status"] = FAILED if problems else UNAVAILABLE
        reason = driver_unavailable_reason()
        if reason is None and importlib.util.find_spec("pynvml") is None:
            reason = "package nvidia-ml-py (module pynvml) is not installed: no GPU facts"
        reason = reason or "the fingerprint shows no GPU"
        out["reason"] = "; ".join([*problems, reason])
        return out
    out["gpu"] = {k: gpus[0].get(k) for k in (*GPU_FIELDS, "cuda_runtime_version")}
    missing = [k for k in GPU_FIELDS if gpus[0].get(k) in (None, "")]
    if missing:
        problems.append(f"fingerprint lacks {', '.join(missing)}")
    out["status"] = FAILED if problems else OK
    out["reason"] = "; ".join(problems) or None
    return out


CHECKS: tuple[Check, ...] = (
    Check("environment", 60, (), False, check_environment, "perflab backends, fingerprint"),
    Check(
        "event_clock",
        45,
        ("cupy", "torch"),
        True,
        check_event_clock,
        "CUDA-event clock vs CuPy and torch events",
    ),
    Check("copies", 45, ("cupy",), True, check_copies, "h2d/d2h bandwidth vs PCIe"),
    Check(
        "torch_cuda",
        150,
        ("torch", "onnx", "onnxruntime", "yaml"),
        True,
        check_torch_cuda,
        "torch-cuda backend vs torch events and ORT CPU",
    ),
    Check("telemetry", 30, ("cupy", "pynvml"), True, check_telemetry, "NVML during device work"),
    Check(
        "nvtx_profiler",
        30,
        ("cupy", "nvtx"),
        True,
        check_nvtx_profiler,
        "NVTX ranges, cudaProfilerStart/Stop",
    ),
)


# --------------------------------------------------------------------------- running them


def precondition(
    check: Check,
    find_spec: Callable[[str], Any] = importlib.util.find_spec,
    driver_reason: Callable[[], str | None] | None = None,
) -> str | None:
    """Why `check` cannot run here, found without importing anything heavy; None if it can."""
    missing = [m for m in check.needs if find_spec(m) is None]
    if missing:
        return f"package(s) not installed: {', '.join(missing)}"
    if check.gpu:
        if driver_reason is None:
            from perflab.cuda import driver_unavailable_reason as driver_reason
        return driver_reason()
    return None


def run_child(check: Check, argv: Sequence[str], timeout_s: float) -> dict[str, Any]:
    """Run one check in its own process; its result, or why there is none."""
    with tempfile.TemporaryDirectory(prefix="perflab-gpu-check-") as tmp:
        result = Path(tmp) / "result.json"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            *argv,
            "--child",
            check.name,
            "--result",
            str(result),
        ]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            return {"status": FAILED, "reason": f"timed out after {timeout_s:.0f} s"}
        if result.exists():
            return json.loads(result.read_text())
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {
            "status": FAILED,
            "reason": f"the check's process exited {proc.returncode}: {' | '.join(tail)}",
        }


def run_checks(
    checks: Sequence[Check],
    run_one: Callable[[Check, float], dict[str, Any]],
    *,
    budget_s: float = BUDGET_S,
    reason_of: Callable[[Check], str | None] = precondition,
    clock: Callable[[], float] = time.monotonic,
    write: Callable[[dict[str, Any]], None] = lambda doc: None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every check within its own timeout and the whole budget; `write` after each one."""
    doc: dict[str, Any] = {"budget_s": budget_s, "checks": []}
    start = clock()
    for check in checks:
        t0 = clock()
        left = budget_s - (t0 - start)
        reason = reason_of(check)
        if reason:
            result = {"status": UNAVAILABLE, "reason": reason}
        elif left < 5:
            result = {
                "status": UNAVAILABLE,
                "reason": f"time budget of {budget_s:.0f} s spent before this check",
            }
        else:
            result = run_one(check, min(check.timeout_s, left))
        seconds = clock() - t0
        entry = {"name": check.name, "what": check.what, **result, "seconds": round(seconds, 3)}
        entry.setdefault("reason", None)
        doc["checks"].append(entry)
        doc["total_s"] = round(clock() - start, 3)
        write(doc)
        say(
            f"{check.name:<14} {entry['status']:<12} {seconds:7.1f} s"
            + (f"  {entry['reason']}" if entry["reason"] else "")
        )
    return doc


def summary_line(doc: Mapping[str, Any]) -> str:
    """One line: what was skipped and why (or that nothing was)."""
    skipped = [c for c in doc["checks"] if c["status"] == UNAVAILABLE]
    if not skipped:
        return "skipped: nothing"
    reasons: dict[str, list[str]] = {}
    for c in skipped:
        reasons.setdefault(c["reason"], []).append(c["name"])
    return "skipped: " + "; ".join(f"{', '.join(n)} ({r})" for r, n in reasons.items())


def child_main(args: argparse.Namespace) -> int:
    check = next(c for c in CHECKS if c.name == args.child)
    try:
        result = check.run(args)
    except Unavailable as exc:
        result = {"status": UNAVAILABLE, "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the failure is the check's result
        import traceback

        result = {
            "status": FAILED,
            "reason": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc()[-4000:],
        }
    Path(args.result).write_text(json.dumps(result, default=_json_default))
    return 0


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", default="gpu-check.json", help="the JSON file to write")
    p.add_argument("--budget-s", type=float, default=BUDGET_S)
    p.add_argument("--device-id", type=int, default=0)
    p.add_argument("--models", nargs="+", default=["resnet18", "mlp"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--inflight", type=int, default=2)
    p.add_argument("--clock-mib", type=int, default=256)
    p.add_argument("--clock-copies", type=int, default=40)
    p.add_argument("--clock-repeats", type=int, default=10)
    p.add_argument("--copy-mib", nargs="+", type=int, default=[1, 16, 256])
    p.add_argument("--copy-repeats", type=int, default=10)
    p.add_argument("--telemetry-s", type=float, default=3.0)
    p.add_argument("--telemetry-interval-ms", type=float, default=50.0)
    p.add_argument(
        "--cache-dir", default=None, help="where zoo models are built (default: a temp dir)"
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.child:
        return child_main(args)
    out = Path(args.output)
    if not out.parent.is_dir():
        print(f"gpu_check: error: folder {str(out.parent)!r} of -o does not exist", file=sys.stderr)
        return 2
    cache = tempfile.TemporaryDirectory(prefix="perflab-gpu-check-models-")
    passed = [a for a in argv if a not in ("-o", "--output", args.output)]
    if args.cache_dir is None:
        passed += ["--cache-dir", cache.name]

    def write(doc: dict[str, Any]) -> None:
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2, default=_json_default))
        tmp.replace(out)

    try:
        doc = run_checks(
            CHECKS, lambda c, t: run_child(c, passed, t), budget_s=args.budget_s, write=write
        )
    finally:
        cache.cleanup()
    print(summary_line(doc))
    print(f"total {doc['total_s']:.1f} s of a {args.budget_s:.0f} s budget; results: {out}")
    return 1 if any(c["status"] == FAILED for c in doc["checks"]) else 0


if __name__ == "__main__":
    sys.exit(main())
