"""Other tools' timed regions (the `reported.stage` values) and which perflab stages each covers.

A statistic another tool printed is stored under the tool's own region name whenever that region
is not exactly one of perflab's stages: trtexec's "Latency" spans h2d + compute + d2h, so it is
`latency`, never `e2e` (perflab's whole iteration, pre- and postprocessing included). Where a
tool's region is one of perflab's stages (trtexec's "GPU Compute Time" is the engine's execution
on the device clock, perflab's `compute`), it keeps the stage name, so medians meet directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from perflab.stages import DEVICE_STAGES


@dataclass(frozen=True)
class ToolStage:
    """One region another tool times: the tool, perflab's stages it spans, its clock, and the
    tool's own definition."""

    tool: str
    covers: tuple[str, ...]
    clock: str  # "device" (CUDA events) or "host"
    definition: str


TOOL_STAGES: dict[str, ToolStage] = {
    "compute": ToolStage(
        "trtexec",
        ("compute",),
        "device",
        "GPU Compute Time: the GPU latency to execute the query (CUDA events around enqueue)",
    ),
    "h2d": ToolStage(
        "trtexec",
        ("h2d",),
        "device",
        "H2D Latency: the latency of the host-to-device copies of the query's inputs",
    ),
    "d2h": ToolStage(
        "trtexec",
        ("d2h",),
        "device",
        "D2H Latency: the latency of the device-to-host copies of the query's outputs",
    ),
    "enqueue": ToolStage(
        "trtexec",
        ("enqueue",),
        "host",
        "Enqueue Time: the host latency to enqueue a query",
    ),
    "latency": ToolStage(
        "trtexec",
        DEVICE_STAGES,
        "device",
        "Latency: H2D Latency + GPU Compute Time + D2H Latency, the latency to infer a single "
        "query (TRT 7's Host Latency); no pre- or postprocessing, no Python",
    ),
    "end_to_end": ToolStage(
        "trtexec",
        DEVICE_STAGES,
        "host",
        "End-to-End Host Latency: from the query's H2D start to its D2H end, including the "
        "wait for the previous query (TRT 7 and 8.0-8.4)",
    ),
    "host_walltime": ToolStage(
        "trtexec",
        (),
        "host",
        "Total Host Walltime (walltime_s) and Throughput (throughput_qps = queries / walltime) "
        "of the whole run, overlapped queries included",
    ),
    "model_run": ToolStage(
        "onnxruntime",
        ("compute",),
        "host",
        "ONNX Runtime profiler's model_run event: InferenceSession::Run inside the engine, in "
        "a profiled session run after the timed iterations; excludes the Python binding's "
        "conversion of inputs and outputs",
    ),
    "infer_latency": ToolStage(
        "openvino",
        ("compute",),
        "host",
        "OpenVINO InferRequest.latency: the request's own time for one synchronous infer, read "
        "after each measured iteration's timed region; excludes the Python binding's tensor "
        "wrapping of inputs and outputs",
    ),
}


def covers(stage: str) -> tuple[str, ...]:
    """The perflab stages a reported region spans (a perflab stage name covers itself)."""
    known = TOOL_STAGES.get(stage)
    return known.covers if known is not None else (stage,)


def definition(stage: str) -> str:
    """The tool's own definition of a reported region, or "" where none is recorded."""
    known = TOOL_STAGES.get(stage)
    return known.definition if known is not None else ""


def reported_rows(stage: str, values_ms: list[float]) -> list[dict[str, object]]:
    """`reported` rows (stage, statistic, value_ms) summarizing an engine's own per-call times:
    median, mean, min, max and, as `count`, how many calls they summarize (a count, not ms)."""
    import numpy as np

    v = np.asarray(values_ms, dtype=np.float64)
    if not len(v):
        return []
    stats = {
        "median": float(np.median(v)),
        "mean": float(v.mean()),
        "min": float(v.min()),
        "max": float(v.max()),
        "count": float(len(v)),
    }
    return [{"stage": stage, "statistic": k, "value_ms": x} for k, x in stats.items()]
