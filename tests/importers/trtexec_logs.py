"""Small trtexec console logs in the formats of TensorRT 7 to 11, written by the tests themselves.

Each builder returns the log text; the numbers in it are the ones the tests expect back.
"""

from __future__ import annotations

import json

TS = "[01/12/2021-17:36:31]"


def _i(msg: str, ts: str = TS) -> str:
    return f"{ts} [I] {msg}"


def trt7_two_runs() -> str:
    """TRT 7.x: two invocations in one file, 'Host Latency ... (end to end ...)' blocks."""
    runs = []
    for batch, host, gpu in ((1, "55.3094", "55.2468"), (4, "101.5", "100.25")):
        cmd = (
            "/usr/src/tensorrt/bin/trtexec --avgRuns=3 --deploy=Models/resnet-50.prototxt --int8 "
            f"--batch={batch} --iterations=3 --output=prob --useSpinWait"
        )
        runs.append(
            "\n".join(
                [
                    f"&&&& RUNNING TensorRT.trtexec # {cmd}",
                    _i("=== Model Options ==="),
                    _i("Format: Caffe"),
                    _i("Model: "),
                    _i("Prototxt: Models/resnet-50.prototxt"),
                    _i("=== Build Options ==="),
                    _i(f"Max batch: {batch}"),
                    _i("Precision: FP32+INT8"),
                    _i("=== System Options ==="),
                    _i("Device: 0"),
                    _i("=== Inference Options ==="),
                    _i(f"Batch: {batch}"),
                    _i("Iterations: 3"),
                    _i("Duration: 3s (+ 200ms warm up)"),
                    _i("Streams: 1"),
                    _i("ExposeDMA: Disabled"),
                    _i("Spin-wait: Enabled"),
                    _i("Multithreading: Disabled"),
                    _i("CUDA Graph: Disabled"),
                    _i("=== Reporting Options ==="),
                    _i("Averages: 3 inferences"),
                    _i("Percentile: 99"),
                    _i(""),
                    _i("Starting inference threads"),
                    _i("Warmup completed 4 queries over 200 ms"),
                    _i("Timing trace has 56 queries over 3.09807 s"),
                    _i("Trace averages of 3 runs:"),
                    _i(
                        "Average on 3 runs - GPU latency: 55.9279 ms - Host latency: 55.9919 ms "
                        "(end to end 56.006 ms, enqueue 4.59147 ms)"
                    ),
                    _i("Host Latency"),
                    _i("min: 55.1414 ms (end to end 55.1486 ms)"),
                    _i("max: 57.542 ms (end to end 57.561 ms)"),
                    _i(f"mean: {host} ms (end to end 55.3221 ms)"),
                    _i("median: 55.2737 ms (end to end 55.2913 ms)"),
                    _i("percentile: 57.542 ms at 99% (end to end 57.561 ms at 99%)"),
                    _i("throughput: 18.0758 qps"),
                    _i("walltime: 3.09807 s"),
                    _i("Enqueue Time"),
                    _i("min: 3.87885 ms"),
                    _i("max: 5.10864 ms"),
                    _i("median: 4.06059 ms"),
                    _i("GPU Compute"),
                    _i("min: 55.0791 ms"),
                    _i("max: 57.4766 ms"),
                    _i(f"mean: {gpu} ms"),
                    _i("median: 55.2111 ms"),
                    _i("percentile: 57.4766 ms at 99%"),
                    _i("total compute time: 3.09382 s"),
                    f"&&&& PASSED TensorRT.trtexec # {cmd}",
                ]
            )
        )
    return "\n".join(runs) + "\n"


def trt80_summary() -> str:
    """TRT 8.0: the first "=== Performance summary ===", with End-to-End Host Latency and one
    percentile; the packed version number in the banner and the version line."""
    cmd = "trtexec --onnx=model.onnx --shapes=x:0:4x1x28x28 --int8 --fp16"
    return (
        "\n".join(
            [
                f"&&&& RUNNING TensorRT.trtexec [TensorRT v8003] # {cmd}",
                _i("=== Device Information ==="),
                _i("Selected Device: NVIDIA GeForce GTX 1070"),
                _i(""),
                _i("TensorRT version: 8003"),
                _i("Created input binding for x:0 with dimensions 4x1x28x28"),
                _i("=== Performance summary ==="),
                _i("Throughput: 6430.89 qps"),
                _i(
                    "Latency: min = 0.156982 ms, max = 0.384766 ms, mean = 0.160129 ms, "
                    "median = 0.159668 ms, percentile(99%) = 0.165771 ms"
                ),
                _i(
                    "End-to-End Host Latency: min = 0.171387 ms, max = 0.504395 ms, mean = 0.284758 ms, "
                    "median = 0.289673 ms, percentile(99%) = 0.298828 ms"
                ),
                _i("Total Host Walltime: 3.00036 s"),
                f"&&&& PASSED TensorRT.trtexec [TensorRT v8003] # {cmd}",
            ]
        )
        + "\n"
    )


def trt86_summary(extra_lines: list[str] | None = None) -> str:
    """TRT 8.6: percentile(90/95/99), Inference Streams, --shapes with quotes."""
    cmd = "trtexec --onnx=yolo.onnx --fp16 --shapes='images':8x3x640x640 --useCudaGraph --noDataTransfers"
    lines = [
        f"&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # {cmd}",
        _i("=== Model Options ==="),
        _i("Format: ONNX"),
        _i("Model: yolo.onnx"),
        _i("=== Build Options ==="),
        _i("Precision: FP32+FP16"),
        _i("=== System Options ==="),
        _i("Device: 0"),
        _i("=== Inference Options ==="),
        _i("Batch: Explicit"),
        _i("Input inference shape: images=8x3x640x640"),
        _i("Iterations: 10"),
        _i("Duration: 3s (+ 200ms warm up)"),
        _i("Inference Streams: 1"),
        _i("Data transfers: Disabled"),
        _i("Spin-wait: Disabled"),
        _i("Multithreading: Disabled"),
        _i("CUDA Graph: Enabled"),
        _i("=== Reporting Options ==="),
        _i("Averages: 10 inferences"),
        _i("Percentiles: 90,95,99"),
        _i(""),
        _i("=== Device Information ==="),
        _i("Selected Device: NVIDIA A100-SXM4-40GB"),
        _i("Compute Capability: 8.0"),
        _i(""),
        _i("TensorRT version: 8.6.1"),
        _i("Engine built in 41.5 sec."),
        _i("Engine deserialized in 0.0254 sec."),
        _i("Created input binding for images with dimensions 8x3x640x640"),
        _i("Starting inference"),
        _i("Warmup completed 44 queries over 200 ms"),
        _i("Timing trace has 665 queries over 3.00906 s"),
        _i(""),
        _i("=== Performance summary ==="),
        _i("Throughput: 221.002 qps"),
        _i(
            "Latency: min = 4.44141 ms, max = 4.8125 ms, mean = 4.51515 ms, median = 4.50781 ms, "
            "percentile(90%) = 4.55469 ms, percentile(95%) = 4.57617 ms, percentile(99%) = 4.66016 ms"
        ),
        _i(
            "Enqueue Time: min = 0.0174561 ms, max = 0.0649414 ms, mean = 0.0210023 ms, "
            "median = 0.0200195 ms, percentile(90%) = 0.0239258 ms, percentile(95%) = 0.0258789 ms, "
            "percentile(99%) = 0.0361328 ms"
        ),
        _i(
            "H2D Latency: min = 0 ms, max = 0 ms, mean = 0 ms, median = 0 ms, percentile(90%) = 0 ms, "
            "percentile(95%) = 0 ms, percentile(99%) = 0 ms"
        ),
        _i(
            "GPU Compute Time: min = 4.44141 ms, max = 4.8125 ms, mean = 4.51515 ms, "
            "median = 4.50781 ms, percentile(90%) = 4.55469 ms, percentile(95%) = 4.57617 ms, "
            "percentile(99%) = 4.66016 ms"
        ),
        _i(
            "D2H Latency: min = 0 ms, max = 0 ms, mean = 0 ms, median = 0 ms, percentile(90%) = 0 ms, "
            "percentile(95%) = 0 ms, percentile(99%) = 0 ms"
        ),
        _i("Total Host Walltime: 3.00906 s"),
        _i("Total GPU Compute Time: 3.00257 s"),
        _i("Explanations of the performance metrics are printed in the verbose logs."),
        *(extra_lines or []),
        f"&&&& PASSED TensorRT.trtexec [TensorRT v8601] # {cmd}",
    ]
    return "\n".join(lines) + "\n"


def trt11_defaults(*, include_transfers: bool = False) -> str:
    """TRT 11: banner with build number, no printed inference options (defaults must apply)."""
    flags = " --includeDataTransfers" if include_transfers else ""
    cmd = f"trtexec --onnx=/models/resnet50.onnx --bf16{flags}"
    ts = "[03/02/2026-10:00:00]"
    lines = [
        f"&&&& RUNNING TensorRT.trtexec [TensorRT v110400] [b12] # {cmd}",
        _i("=== Device Information ===", ts),
        _i("Available Devices:", ts),
        _i('  Device 0: "NVIDIA H200" UUID: GPU-0000', ts),
        _i("Selected Device: NVIDIA H200", ts),
        _i("Selected Device ID: 0", ts),
        _i("", ts),
        _i("TensorRT version: 11.4.0", ts),
        _i("Input binding for input with dimensions 1x3x224x224 is created.", ts),
        _i("=== Performance summary ===", ts),
        _i("Throughput: 3012.5 qps", ts),
        _i(
            "Latency: min = 0.3 ms, max = 0.5 ms, mean = 0.33 ms, median = 0.32 ms, "
            "percentile(90%) = 0.34 ms, percentile(95%) = 0.35 ms, percentile(99%) = 0.4 ms",
            ts,
        ),
        _i(
            "GPU Compute Time: min = 0.3 ms, max = 0.5 ms, mean = 0.33 ms, median = 0.32 ms, "
            "percentile(90%) = 0.34 ms, percentile(95%) = 0.35 ms, percentile(99%) = 0.4 ms",
            ts,
        ),
        _i("Total Host Walltime: 3.0001 s", ts),
        _i("Total GPU Compute Time: 2.9 s", ts),
        f"&&&& PASSED TensorRT.trtexec [TensorRT v110400] [b12] # {cmd}",
    ]
    return "\n".join(lines) + "\n"


PROFILE_ROWS = [
    ("conv1 + relu1", 12.34, 0.0412, 0.0401, 40.1),
    ("pool1", 3.21, 0.0107, 0.0105, 10.4),
    ("fc 1 (Unnamed Layer* 7) [Fully Connected]", 15.22, 0.0507, 0.0500, 49.5),
]


def profile_only() -> str:
    """TRT 8.x --dumpProfile output with a per-layer table and no performance summary."""
    cmd = "trtexec --loadEngine=model.plan --dumpProfile --separateProfileRun"
    lines = [
        f"&&&& RUNNING TensorRT.trtexec [TensorRT v8401] # {cmd}",
        _i("TensorRT version: 8.4.1"),
        _i(""),
        _i("=== Profile (300 iterations ) ==="),
        _i(
            "                                       Layer   Time (ms)   Avg. Time (ms)   Median Time (ms)   Time %"
        ),
    ]
    for name, total, avg, med, pct in PROFILE_ROWS:
        lines.append(_i(f"{name:>44}{total:12.2f}{avg:17.4f}{med:19.4f}{pct:9.1f}"))
    lines.append(_i(f"{'Total':>44}{30.77:12.2f}{0.1026:17.4f}{0.1012:19.4f}{100.0:9.1f}"))
    lines.append(_i(""))
    lines.append(f"&&&& PASSED TensorRT.trtexec [TensorRT v8401] # {cmd}")
    return "\n".join(lines) + "\n"


def failed() -> str:
    cmd = "trtexec --onnx=broken.onnx --fp16"
    return (
        "\n".join(
            [
                f"&&&& RUNNING TensorRT.trtexec [TensorRT v8600] # {cmd}",
                _i("TensorRT version: 8.6.0"),
                f"{TS} [E] [TRT] ModelImporter.cpp:771: While parsing node number 3 [Conv]:",
                f"{TS} [E] Failed to parse onnx file",
                f"{TS} [E] Parsing model failed",
                f"&&&& FAILED TensorRT.trtexec [TensorRT v8600] # {cmd}",
            ]
        )
        + "\n"
    )


def truncated() -> str:
    """A log cut off while the engine was still building: options, but no numbers, no end line."""
    return trt86_summary().split(_i("Starting inference"))[0]


def cut_after_summary() -> str:
    """A log whose end (after the summary) is missing: the numbers are there, the PASSED line is not."""
    text = trt86_summary()
    return text[: text.index("&&&& PASSED")]


def export_times(n: int = 6, warmups: int = 2) -> list[dict]:
    """--exportTimes records as TRT 8.x writes them; the first `warmups` start before 200 ms."""
    records = []
    t = 150.0
    for i in range(n):
        if i == warmups:
            t = 200.5
        compute = 1.0 + 0.25 * i
        rec = {
            "startEnqMs": t,
            "endEnqMs": t + 0.05,
            "startH2dMs": t + 0.1,
            "endH2dMs": t + 0.2,
            "startComputeMs": t + 0.2,
            "endComputeMs": t + 0.2 + compute,
            "startD2hMs": t + 0.2 + compute,
            "endD2hMs": t + 0.3 + compute,
            "h2dMs": 0.1,
            "computeMs": compute,
            "d2hMs": 0.1,
            "latencyMs": 0.2 + compute,
        }
        records.append(rec)
        t += 5.0
    return records


def export_profile() -> list[dict]:
    return [
        {"count": 100},
        {"name": "conv1", "timeMs": 10.0, "averageMs": 0.1, "medianMs": 0.095, "percentage": 62.5},
        {"name": "fc", "timeMs": 6.0, "averageMs": 0.06, "medianMs": 0.058, "percentage": 37.5},
    ]


def export_layer_info() -> dict:
    return {
        "Layers": [
            {
                "Name": "conv1",
                "LayerType": "CaskConvolution",
                "Outputs": [{"Name": "a", "Format/Datatype": "Row major linear FP16 format"}],
            },
            {
                "Name": "fc",
                "LayerType": "CaskGemm",
                "Outputs": [{"Name": "b", "Format/Datatype": "Row major linear FP32"}],
            },
            {"Name": "copy", "LayerType": "NoOp", "Outputs": []},
        ],
        "Bindings": ["input", "output"],
    }


def dumps(data: object) -> str:
    return json.dumps(data, indent=1)
