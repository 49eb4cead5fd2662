"""Tests for the device table, roofline bounds, verdicts and device-to-device projections."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from perflab.analysis import roofline as rl
from perflab.errors import PerflabError

LISTED_DEVICES = [
    "GTX 1050 Ti",
    "GTX 1060 6GB",
    "GTX 1070",
    "GTX 1080 Ti",
    "Tesla T4",
    "RTX 2080 Ti",
    "RTX 3060",
    "RTX 3070",
    "RTX 3080",
    "RTX 3090",
    "A10",
    "A100 SXM4 80GB",
    "A100 PCIe 40GB",
    "RTX 4090",
    "L4",
    "L40S",
    "RTX 6000 Ada",
    "H100 SXM",
    "H100 PCIe",
    "H200",
]

STAGES = ("preprocess", "h2d", "compute", "d2h", "postprocess", "e2e")


def make_runs(**overrides) -> pd.DataFrame:
    """One GPU run row; keyword arguments replace columns (lists give several runs)."""
    row = {
        "run_id": "r1",
        "backend": "trt",
        "device": "cuda:0",
        "device_name": "NVIDIA GeForce GTX 1070",
        "precision": "fp32",
        "precision_effective": "fp32",
        "batch_size": 1,
        "model": "m",
        "model_flops_per_sample": 10e9,
        "model_param_bytes": 20e6,
        "model_activation_bytes_per_sample": 10e6,
    }
    row.update(overrides)
    if any(isinstance(v, list) for v in row.values()):
        n = max(len(v) for v in row.values() if isinstance(v, list))
        row = {k: v if isinstance(v, list) else [v] * n for k, v in row.items()}
        return pd.DataFrame(row)
    return pd.DataFrame([row])


def make_medians(run_id: str = "r1", **p50_ms: float) -> pd.DataFrame:
    return pd.DataFrame(
        {"run_id": run_id, "stage": list(p50_ms), "p50_ms": [float(v) for v in p50_ms.values()]}
    )


def row(frame: pd.DataFrame, stage: str, run_id: str = "r1") -> pd.Series:
    hit = frame[(frame["run_id"] == run_id) & (frame["stage"] == stage)]
    assert len(hit) == 1, hit
    return hit.iloc[0]


def cpu_fingerprint(model: str, cores: int, mhz: float, bandwidth_gbs: float) -> dict:
    """A host fingerprint of an AVX2+FMA CPU (32 fp32 FLOP a cycle a core) with a known bandwidth."""
    return {
        "cpu_model": model,
        "cpu_cores_physical": cores,
        "cpu_mhz_max": mhz,
        "cpu_flags": ["avx2", "fma"],
        "mem_bandwidth_gbs": bandwidth_gbs,
    }


# --------------------------------------------------------------------------------------------
# The table


def test_table_has_every_listed_device_with_a_source():
    table = rl.devices()
    assert set(LISTED_DEVICES) <= set(table["name"])
    assert table["name"].is_unique
    assert table["source"].str.strip().str.len().gt(0).all()
    assert table["notes"].str.strip().str.len().gt(0).all()


def test_table_values_positive_and_plausible():
    table = rl.devices().set_index("name")
    for col in ("fp32_tflops", "fp16_tflops", "int8_tops", "mem_bandwidth_gbs", "memory_gib"):
        assert (table[col] > 0).all(), col
    assert table["tdp_w"].between(50, 1000).all()
    assert table["fp32_tflops"].between(1, 100).all()
    assert table["mem_bandwidth_gbs"].between(100, 5000).all()
    assert table["pcie_gen"].isin(list(rl.PCIE_GBS_PER_LANE)).all()
    assert (table["pcie_lanes"] == 16).all()
    bf16 = table["bf16_tflops"]
    assert (bf16.dropna() > 0).all()
    pre_ampere = table["architecture"].str.startswith(("Pascal", "Turing"))
    assert bf16[pre_ampere].isna().all() and bf16[~pre_ampere].notna().all()
    # Tensor-core generations order as expected.
    fp16 = table["fp16_tflops"]
    assert fp16["H100 SXM"] > fp16["A100 SXM4 80GB"] > fp16["Tesla T4"]
    assert fp16["H100 SXM"] == fp16["H200"] > fp16["H100 PCIe"]
    assert fp16["RTX 4090"] > fp16["RTX 3090"] > fp16["RTX 3080"] > fp16["RTX 3070"]
    bw = table["mem_bandwidth_gbs"]
    assert (
        bw["H200"] > bw["H100 SXM"] > bw["A100 SXM4 80GB"] > bw["A100 PCIe 40GB"] > bw["RTX 4090"]
    )
    assert bw["RTX 3090"] > bw["RTX 3070"] > bw["GTX 1070"] > bw["GTX 1050 Ti"]
    assert table["fp32_tflops"]["RTX 3090"] > table["fp32_tflops"]["GTX 1070"]


def test_pascal_rates_follow_the_architecture():
    table = rl.devices().set_index("name")
    for name in ("GTX 1050 Ti", "GTX 1060 6GB", "GTX 1070", "GTX 1080 Ti"):
        fp32 = table.loc[name, "fp32_tflops"]
        assert table.loc[name, "fp16_tflops"] == pytest.approx(fp32 / 64, rel=0.01)  # 1/64 rate
        assert table.loc[name, "int8_tops"] == pytest.approx(fp32 * 4, rel=0.01)  # DP4A
        assert table.loc[name, "compute_capability"] == "6.1"


def test_devices_returns_a_copy():
    table = rl.devices()
    table.loc[0, "fp32_tflops"] = -1.0
    assert (rl.devices()["fp32_tflops"] > 0).all()


# --------------------------------------------------------------------------------------------
# Lookup


@pytest.mark.parametrize(
    ("nvml_name", "expected"),
    [
        ("NVIDIA GeForce RTX 3070", "RTX 3070"),
        ("NVIDIA GeForce GTX 1050 Ti", "GTX 1050 Ti"),
        ("GeForce GTX 1060 6GB", "GTX 1060 6GB"),
        ("NVIDIA GeForce GTX 1080 Ti", "GTX 1080 Ti"),
        ("Tesla T4", "Tesla T4"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA A100-SXM4-80GB", "A100 SXM4 80GB"),
        ("NVIDIA A100-PCIE-40GB", "A100 PCIe 40GB"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H200", "H200"),
        ("rtx 4090", "RTX 4090"),
        ("H100 SXM", "H100 SXM"),
    ],
)
def test_lookup_by_nvml_style_names(nvml_name, expected):
    assert rl.lookup_device(nvml_name)["name"] == expected


@pytest.mark.parametrize(
    "other_part",
    [
        "NVIDIA GeForce RTX 3060 Ti",
        "NVIDIA GeForce RTX 3080 Laptop GPU",
        "GeForce GTX 1060 3GB",
        "NVIDIA A10G",
        "NVIDIA H200 NVL",
        "NVIDIA GeForce RTX 9999",
    ],
)
def test_lookup_refuses_other_parts_and_lists_known_names(other_part):
    with pytest.raises(PerflabError) as err:
        rl.lookup_device(other_part)
    message = str(err.value)
    assert other_part in message and "\n" not in message
    assert "close matches: " in message or "known devices include" in message


def test_lookup_ambiguous_short_name_lists_the_matches():
    with pytest.raises(PerflabError, match="H100 SXM, H100 PCIe"):
        rl.lookup_device("H100")


# --------------------------------------------------------------------------------------------
# Host CPU


def test_host_cpu_peak_avx512_vnni_bf16():
    fingerprint = {
        "cpu_model": "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
        "cpu_cores_physical": 8,
        "cpu_threads": 16,
        "cpu_mhz_max": 3000.0,
        "cpu_flags": [
            "sse4_2",
            "avx",
            "avx2",
            "fma",
            "avx512f",
            "avx512bw",
            "avx512_vnni",
            "avx512_bf16",
        ],
    }
    peak = rl.host_cpu_peak(fingerprint)
    assert peak["isa"] == "avx512" and peak["fp32_flops_per_cycle"] == 64
    assert peak["fp32_gflops"] == pytest.approx(8 * 3.0 * 64)  # 1536 GFLOP/s
    assert peak["fp32_tflops"] == pytest.approx(1.536)
    assert peak["int8_tops"] == pytest.approx(4 * 1.536)  # VNNI
    assert peak["bf16_tflops"] == pytest.approx(2 * 1.536)  # AVX512_BF16
    assert peak["fp16_tflops"] == pytest.approx(1.536)  # no native fp16: fp32 rate
    assert peak["mem_bandwidth_gbs"] is None
    assert peak["source"] == "estimate from cores x clock x vector width"


def test_host_cpu_peak_avx2_clock_from_model_and_channels():
    peak = rl.host_cpu_peak(
        {
            "cpu_model": "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz",
            "cpu_cores_physical": 6,
            "cpu_mhz_max": None,
            "cpu_flags": "sse4_2 avx avx2 fma",
            "mem_channels": 2,
        }
    )
    assert peak["fp32_gflops"] == pytest.approx(6 * 3.2 * 32)
    assert peak["clock_source"].startswith("cpu_model")
    assert peak["int8_tops"] == pytest.approx(6 * 3.2 * 32 * 4 / 3 / 1000)
    assert peak["mem_bandwidth_gbs"] == pytest.approx(2 * 25.6)
    bare = rl.host_cpu_peak({"cpu_model": "unknown", "cpu_threads": 4, "cpu_flags": []})
    assert bare["fp32_gflops"] is None and bare["fp32_flops_per_cycle"] == 8


def test_roofline_cpu_run_uses_the_fingerprint():
    fingerprint = cpu_fingerprint("test cpu", cores=4, mhz=4000.0, bandwidth_gbs=50.0)
    runs = make_runs(device="cpu", device_name="test cpu", model_flops_per_sample=2e9)
    out = rl.roofline(runs, make_medians(compute=10.0), device=fingerprint)
    compute = row(out, "compute")
    # 4 cores x 4 GHz x 32 = 512 GFLOP/s: 2 GFLOP take 3.906 ms; 30 MB at 50 GB/s take 0.6 ms.
    assert compute["peak_tflops"] == pytest.approx(0.512)
    assert compute["bound_ms"] == pytest.approx(2e9 / 512e9 * 1e3)
    assert compute["verdict"] == "compute-bound"
    assert compute["device_peak_name"] == "test cpu"
    # Without a fingerprint a CPU run has no peak, and says so.
    bare = row(rl.roofline(runs, make_medians(compute=10.0)), "compute")
    assert math.isnan(bare["bound_ms"]) and bare["verdict"] == "unknown"


# --------------------------------------------------------------------------------------------
# Roofline and verdicts

# A small fp16 model on an RTX 3070 (81.3 TFLOP/s, 448 GB/s): 0.5 GFLOP and 12 MB a batch, a
# roofline bound of 0.027 ms (its bytes).
SMALL_FP16_ON_3070 = {
    "device_name": "NVIDIA GeForce RTX 3070",
    "precision": "fp16",
    "precision_effective": "fp16",
    "model_flops_per_sample": 0.5e9,
    "model_param_bytes": 10e6,
    "model_activation_bytes_per_sample": 2e6,
}

GTX1070_FP32 = 6.463  # TFLOP/s, from devices.csv
GTX1070_BW = 256.0  # GB/s
RTX3090_FP32 = 35.58
RTX3090_BW = 936.0
GEN3_X16 = 0.985 * 16  # GB/s per direction
GEN4_X16 = 1.969 * 16


def test_table_values_used_by_the_hand_arithmetic():
    gtx, rtx = rl.lookup_device("GTX 1070"), rl.lookup_device("RTX 3090")
    assert (gtx["fp32_tflops"], gtx["mem_bandwidth_gbs"], gtx["pcie_gen"]) == (GTX1070_FP32, 256, 3)
    assert (rtx["fp32_tflops"], rtx["mem_bandwidth_gbs"], rtx["pcie_gen"]) == (RTX3090_FP32, 936, 4)


def test_roofline_compute_bound_by_hand():
    runs = make_runs(input_bytes_per_sample=602112.0, output_bytes_per_sample=4000.0)
    medians = make_medians(preprocess=3.0, h2d=0.5, compute=5.0, d2h=0.05, postprocess=1.0, e2e=9.8)
    out = rl.roofline(runs, medians)
    assert list(out.columns[:11]) == [
        "run_id",
        "stage",
        "measured_ms",
        "bound_ms",
        "fraction_of_peak",
        "achieved_tflops",
        "intensity_flops_per_byte",
        "peak_tflops",
        "bandwidth_gbs",
        "verdict",
        "device_peak_name",
    ]
    assert list(out["stage"]) == list(STAGES)
    compute = row(out, "compute")
    flops_ms = 10e9 / (GTX1070_FP32 * 1e12) * 1e3  # 1.547 ms at the fp32 peak
    bytes_ms = (20e6 + 10e6) / (GTX1070_BW * 1e9) * 1e3  # 0.117 ms at peak bandwidth
    assert compute["flops_bound_ms"] == pytest.approx(flops_ms)
    assert compute["bytes_bound_ms"] == pytest.approx(bytes_ms)
    assert compute["bound_ms"] == pytest.approx(flops_ms)
    assert compute["fraction_of_peak"] == pytest.approx(flops_ms / 5.0)  # 0.31
    assert compute["achieved_tflops"] == pytest.approx(10e9 / 5e-3 / 1e12)  # 2 TFLOP/s
    assert compute["intensity_flops_per_byte"] == pytest.approx(10e9 / 30e6)
    assert compute["verdict"] == "compute-bound"
    assert compute["device_peak_name"] == "GTX 1070"
    h2d = row(out, "h2d")
    assert h2d["bandwidth_gbs"] == pytest.approx(GEN3_X16)
    assert h2d["bound_ms"] == pytest.approx(602112 / (GEN3_X16 * 1e9) * 1e3)  # 0.038 ms
    assert h2d["verdict"] == "transfer-bound"  # 7.6% of the PCIe peak
    assert row(out, "d2h")["verdict"] == "latency-bound"  # 4 kB in 50 us
    for host_stage in ("preprocess", "postprocess", "e2e"):
        assert math.isnan(row(out, host_stage)["bound_ms"])
        assert pd.isna(row(out, host_stage)["verdict"])


def test_verdicts_on_constructed_cases():
    # RTX 3070, fp16: 81.3 TFLOP/s and 448 GB/s.
    runs = make_runs(
        run_id=["memory", "launch", "slow", "compute"],
        device_name="NVIDIA GeForce RTX 3070",
        precision="fp16",
        precision_effective="fp16",
        model_flops_per_sample=[1e8, 0.5e9, 0.5e9, 200e9],
        model_param_bytes=[100e6, 10e6, 10e6, 10e6],
        model_activation_bytes_per_sample=[20e6, 2e6, 2e6, 2e6],
    )
    medians = pd.concat(
        [
            make_medians("memory", compute=0.5),  # bytes 0.268 ms > flops 0.0012 ms; 54% of peak
            make_medians("launch", compute=0.6),  # bound 0.0268 ms = 4.5% of 0.6 ms, under 1 ms
            make_medians("slow", compute=5.0),  # the same 4.5%-or-less, but 5 ms long
            make_medians("compute", compute=5.0),  # flops 2.46 ms > bytes 0.027 ms; 49% of peak
        ]
    )
    out = rl.roofline(runs, medians)
    verdicts = dict(zip(out["run_id"], out["verdict"], strict=True))
    assert verdicts == {
        "memory": "memory-bound",
        "launch": "launch-bound",
        "slow": "underutilized",
        "compute": "compute-bound",
    }
    assert row(out, "compute", "launch")["fraction_of_peak"] == pytest.approx(
        12e6 / 448e9 * 1e3 / 0.6
    )


def test_roofline_explicit_device_and_unknown_names():
    runs = make_runs(device_name="NVIDIA GeForce RTX 9999")
    medians = make_medians(compute=5.0)
    assert row(rl.roofline(runs, medians), "compute")["verdict"] == "unknown"
    explicit = row(rl.roofline(runs, medians, device="RTX 3090"), "compute")
    assert explicit["peak_tflops"] == RTX3090_FP32 and explicit["device_peak_name"] == "RTX 3090"
    custom = {"name": "lab card", "fp32_tflops": 10.0, "mem_bandwidth_gbs": 500.0}
    assert row(rl.roofline(runs, medians, device=custom), "compute")["bound_ms"] == pytest.approx(
        1.0
    )
    with pytest.raises(PerflabError, match="unknown device"):
        rl.roofline(runs, medians, device="RTX 9999")
    with pytest.raises(PerflabError, match="lacks columns"):
        rl.roofline(runs.drop(columns=["batch_size"]), medians)


def test_roofline_and_project_leave_inputs_unchanged():
    runs = make_runs()
    medians = make_medians(preprocess=1.0, compute=5.0, e2e=6.5)
    runs_before, medians_before = runs.copy(), medians.copy()
    rl.roofline(runs, medians)
    rl.project(runs, medians, device="RTX 3090")
    pd.testing.assert_frame_equal(runs, runs_before)
    pd.testing.assert_frame_equal(medians, medians_before)


# --------------------------------------------------------------------------------------------
# Projection


def test_project_gtx1070_to_rtx3090_by_hand():
    runs = make_runs(input_bytes_per_sample=602112.0, output_bytes_per_sample=4000.0)
    medians = make_medians(preprocess=3.0, h2d=0.5, compute=5.0, d2h=0.05, postprocess=1.0, e2e=9.8)
    out = rl.project(runs, medians, device="NVIDIA GeForce RTX 3090")
    assert list(out.columns) == [
        "run_id",
        "stage",
        "measured_ms",
        "predicted_ms",
        "speedup",
        "basis",
        "from_device",
        "to_device",
        "kind",
        "efficiency",
        "efficiency_basis",
        "kernels",
        "launch_us",
        "launch_floor_ms",
        "roofline_ms",
        "bound",
    ]
    assert list(out["stage"]) == list(STAGES)
    assert (out["kind"] == "predicted").all()
    assert set(out["from_device"]) == {"GTX 1070"} and set(out["to_device"]) == {"RTX 3090"}

    # Compute: 10 GFLOP, 30 MB per batch. Compute-bound on both devices
    # (1070: 1.547 ms > 0.117 ms; 3090: 0.281 ms > 0.032 ms), so the fp32 peak ratio applies.
    compute_ms = 5.0 * GTX1070_FP32 / RTX3090_FP32  # 5 x 6.463 / 35.58 = 0.9082 ms
    assert row(out, "compute")["predicted_ms"] == pytest.approx(compute_ms)
    assert row(out, "compute")["basis"].startswith("fp32 peak ratio")
    # h2d: 0.6 MB at 7.6% of Gen3 x16 is bandwidth-limited: Gen3 x16 / Gen4 x16 = 0.985 / 1.969.
    h2d_ms = 0.5 * 0.985 / 1.969  # 0.2501 ms
    assert row(out, "h2d")["predicted_ms"] == pytest.approx(h2d_ms)
    assert row(out, "h2d")["basis"].startswith("PCIe bandwidth ratio")
    # d2h: 4 kB in 50 us is latency-bound: unchanged. Host stages: unchanged.
    assert row(out, "d2h")["predicted_ms"] == 0.05
    assert row(out, "preprocess")["predicted_ms"] == 3.0
    assert row(out, "postprocess")["predicted_ms"] == 1.0
    assert row(out, "preprocess")["speedup"] == 1.0
    # e2e by Amdahl: stages sum to 3 + 0.5 + 5 + 0.05 + 1 = 9.55 ms, so the harness gap is 0.25 ms.
    e2e_ms = 3.0 + h2d_ms + compute_ms + 0.05 + 1.0 + 0.25  # 5.458 ms
    e2e = row(out, "e2e")
    assert e2e["measured_ms"] == 9.8
    assert e2e["predicted_ms"] == pytest.approx(e2e_ms)
    assert e2e["speedup"] == pytest.approx(9.8 / e2e_ms)  # 1.80x, though compute alone is 5.5x
    assert row(out, "compute")["speedup"] == pytest.approx(RTX3090_FP32 / GTX1070_FP32)


def test_project_memory_bound_uses_bandwidth_ratio():
    # 0.1 GFLOP over 120 MB: 0.47 ms at 256 GB/s vs 0.015 ms at the fp32 peak on the 1070,
    # 0.128 ms vs 0.0028 ms on the 3090: memory-bound on both.
    runs = make_runs(
        model_flops_per_sample=1e8, model_param_bytes=100e6, model_activation_bytes_per_sample=20e6
    )
    out = rl.project(runs, make_medians(compute=2.0, e2e=2.0), device="RTX 3090")
    compute = row(out, "compute")
    assert compute["predicted_ms"] == pytest.approx(2.0 * GTX1070_BW / RTX3090_BW)  # 0.547 ms
    assert compute["basis"].startswith("memory bandwidth ratio")
    assert row(out, "e2e")["predicted_ms"] == pytest.approx(2.0 * 256 / 936)


def test_project_launch_bound_is_unchanged_and_regime_change_uses_both_bounds():
    launch = rl.project(
        make_runs(**SMALL_FP16_ON_3070), make_medians(compute=0.6), device="RTX 3090"
    )
    assert row(launch, "compute")["predicted_ms"] == 0.6
    assert "launch-bound" in row(launch, "compute")["basis"]
    # Intensity 30 FLOP/B: above the 1070's ridge (6463/256 = 25) and below the 3090's (38).
    runs = make_runs(
        model_flops_per_sample=3e9, model_param_bytes=90e6, model_activation_bytes_per_sample=10e6
    )
    out = rl.project(runs, make_medians(compute=1.0), device="RTX 3090")
    source_bound = 3e9 / (GTX1070_FP32 * 1e9)  # 0.4642 ms, compute-bound
    target_bound = 100e6 / (RTX3090_BW * 1e6)  # 0.1068 ms, memory-bound
    assert row(out, "compute")["predicted_ms"] == pytest.approx(target_bound / source_bound)
    assert "compute-bound -> memory-bound" in row(out, "compute")["basis"]


def test_project_gtx1050ti_to_rtx3070_preprocess_dominated():
    # "Will a 3070 help my 1050 Ti pipeline?" fp32, 1.8 GFLOP, compute 2 ms, preprocess 8 ms.
    runs = make_runs(
        device_name="NVIDIA GeForce GTX 1050 Ti",
        model_flops_per_sample=1.8e9,
        model_param_bytes=46e6,
        model_activation_bytes_per_sample=10e6,
    )
    medians = make_medians(
        preprocess=8.0, h2d=0.2, compute=2.0, d2h=0.05, postprocess=0.5, e2e=10.75
    )
    out = rl.project(runs, medians, device="NVIDIA GeForce RTX 3070")
    # 1050 Ti: 1.8 GFLOP at 2.138 TFLOP/s = 0.842 ms > 56 MB at 112 GB/s = 0.5 ms (compute-bound).
    # 3070: 56 MB at 448 GB/s = 0.125 ms > 1.8 GFLOP at 20.31 TFLOP/s = 0.0886 ms (memory-bound),
    # so the ratio of the two roofline bounds applies, not the fp32 peak ratio.
    compute_ms = 2.0 * (56e6 / 448e9) / (1.8e9 / 2.138e12)  # 0.297 ms
    assert row(out, "compute")["predicted_ms"] == pytest.approx(compute_ms)
    assert "compute-bound -> memory-bound" in row(out, "compute")["basis"]
    e2e = row(out, "e2e")
    # Copies of unknown size scale by the PCIe ratio (Gen3 -> Gen4); the harness gap is 0 here.
    pcie = 0.985 / 1.969
    assert e2e["predicted_ms"] == pytest.approx(8.0 + 0.2 * pcie + compute_ms + 0.05 * pcie + 0.5)
    assert e2e["speedup"] < 1.3  # preprocess dominates: the GPU upgrade barely helps


def test_project_to_other_precision_and_unsupported():
    runs = make_runs()  # compute-bound, fp32 on the 1070
    out = rl.project(runs, make_medians(compute=5.0), device="RTX 3090", to_precision="fp16")
    # Target bound: max(10 GFLOP at 142 TFLOP/s, 15 MB at 936 GB/s) = max(0.0704, 0.016) ms.
    expected = 5.0 * (10e9 / 142e9) / (10e9 / (GTX1070_FP32 * 1e9))
    assert row(out, "compute")["predicted_ms"] == pytest.approx(expected)
    bf16 = rl.project(
        make_runs(
            device_name="NVIDIA A100-SXM4-80GB", precision="bf16", precision_effective="bf16"
        ),
        make_medians(compute=1.0),
        device="Tesla T4",
    )
    assert math.isnan(row(bf16, "compute")["predicted_ms"])
    assert "no bf16 peak" in row(bf16, "compute")["basis"]
    with pytest.raises(PerflabError, match="unknown precision 'fp8'"):
        rl.project(runs, make_medians(compute=5.0), device="RTX 3090", to_precision="fp8")


# --------------------------------------------------------------------------------------------
# Launch floor, stated efficiency, copies added for a GPU target


def test_launch_floor_with_a_kernel_count():
    # 0.5 GFLOP, 12 MB on a 3070 (fp16): roofline 0.027 ms; 200 kernels x 2.4 us = 0.48 ms.
    runs = make_runs(**SMALL_FP16_ON_3070, model_kernels=200.0)
    medians = make_medians(compute=0.55)
    roof = row(rl.roofline(runs, medians), "compute")
    assert roof["launch_floor_ms"] == pytest.approx(200 * rl.GPU_LAUNCH_US / 1e3)
    assert roof["verdict"] == "launch-bound"  # 0.48 ms >= 0.8 x 0.55 ms
    out = row(rl.project(runs, medians, device="RTX 3090"), "compute")
    # Launch-bound source: no efficiency measured, so the default; the floor stays on the target.
    assert out["efficiency"] == rl.DEFAULT_EFFICIENCY
    assert out["efficiency_basis"].startswith("default (the source run is launch-bound")
    assert out["predicted_ms"] == pytest.approx(0.48)
    assert out["bound"] == "launch" and out["basis"].startswith("launch floor 200 kernels")
    # A stated launch cost replaces the default on both sides.
    cheap = row(rl.project(runs, medians, device="RTX 3090", launch_us=0.5), "compute")
    assert cheap["launch_floor_ms"] == pytest.approx(0.1) and cheap["launch_us"] == 0.5


def test_stated_efficiency_and_its_checks():
    runs = make_runs()  # 10 GFLOP compute-bound fp32 on the 1070, 5 ms measured
    out = row(
        rl.project(runs, make_medians(compute=5.0), device="RTX 3090", efficiency=0.25), "compute"
    )
    assert out["predicted_ms"] == pytest.approx(10e9 / (RTX3090_FP32 * 1e9) / 0.25)
    assert out["efficiency_basis"] == "stated" and out["bound"] == "compute"
    for bad in (0, 1.5, "half", True):
        with pytest.raises(PerflabError, match="efficiency"):
            rl.project(runs, make_medians(compute=5.0), device="RTX 3090", efficiency=bad)


def test_cpu_run_to_gpu_uses_the_default_efficiency_and_adds_copies():
    # Two CPU engines at very different speeds on one model project to the same GPU time: a CPU
    # engine's efficiency is not carried to a GPU.
    fp = cpu_fingerprint("x", cores=2, mhz=3000.0, bandwidth_gbs=20.0)
    runs = make_runs(
        run_id=["slow", "fast"],
        device="cpu",
        device_name="x",
        model_input_bytes_per_sample=602112.0,
        model_output_bytes_per_sample=4000.0,
    )
    medians = pd.concat(
        [
            make_medians("slow", compute=400.0, e2e=401.0),
            make_medians("fast", compute=40.0, e2e=41.0),
        ]
    )
    out = rl.project(runs, medians, device="RTX 3070", from_device=fp)
    compute = out[out["stage"] == "compute"].set_index("run_id")
    assert compute.loc["slow", "predicted_ms"] == pytest.approx(compute.loc["fast", "predicted_ms"])
    assert compute.loc["slow", "efficiency"] == rl.DEFAULT_EFFICIENCY
    assert "does not carry" in compute.loc["slow", "efficiency_basis"]
    h2d = row(out, "h2d", "fast")
    assert math.isnan(h2d["measured_ms"])
    # 5 us + 602112 B at Gen4 x16 (31.5 GB/s)
    assert h2d["predicted_ms"] == pytest.approx(0.005 + 602112 / (1.969 * 16 * 1e6))
    assert h2d["basis"].startswith("added: the source made no copy")
    e2e = row(out, "e2e", "fast")
    stages = out[(out["run_id"] == "fast") & (out["stage"] != "e2e")]["predicted_ms"].sum()
    assert e2e["predicted_ms"] == pytest.approx(stages + 1.0)  # + the 1 ms harness gap


@pytest.mark.realdata
def test_projection_check_on_the_shared_mnist_trtexec_logs(tmp_path, realdata):
    from perflab import importers, results

    logs = realdata / "trtexec"
    model = realdata / "models" / "mnist-8.onnx"
    for name in (
        "trt8.0.3_gtx1070_mnist_build_fp32_verbose.txt",
        "trt8.6.0_rtx3090_mnist_load_fp32_verbose.log",
        "trt10.14.1_rtx6000ada_mnist_build_default.log",
    ):
        importers.import_file("trtexec", [logs / name], tmp_path, model=model)
    res = results.open(tmp_path)
    runs = res.runs.set_index("device_name")
    # The engines' own figures, as TensorRT printed them (not mnist-8's 24 kB of weights).
    assert runs.loc["NVIDIA GeForce GTX 1070", "model_param_bytes"] == 12e6
    assert runs.loc["NVIDIA GeForce GTX 1070", "model_kernels"] == 10
    assert runs.loc["NVIDIA RTX 6000 Ada Generation", "model_param_bytes"] == 13100672
    check = res.projection_check(stages=("compute",))
    pairs = set(zip(check["from_device"], check["to_device"], strict=True))
    assert pairs == {
        (a, b)
        for a in ("GTX 1070", "RTX 3090", "RTX 6000 Ada")
        for b in ("GTX 1070", "RTX 3090", "RTX 6000 Ada")
        if a != b
    }
    assert check["measured_ms"].notna().all()
    assert ((check["ratio"] > 0.5) & (check["ratio"] < 2.0)).all(), check[
        ["from_device", "to_device", "ratio"]
    ]
    g = check.set_index(["from_device", "to_device"])
    # 1070 -> 3090: both memory-bound, the 1070's own efficiency: 0.1536 ms x 256 / 936 GB/s.
    assert g.loc[("GTX 1070", "RTX 3090"), "predicted_ms"] == pytest.approx(0.153564 * 256 / 936)


# --------------------------------------------------------------------------------------------
# Bounds in words


def test_bounds_in_words_host_copy_and_compute():
    runs = make_runs(
        run_id=["host", "copy", "compute", "cpu"],
        device=["cuda:0", "cuda:0", "cuda:0", "cpu"],
        device_name=["NVIDIA GeForce RTX 3070"] * 3 + ["x"],
    )
    medians = pd.concat(
        [
            make_medians("host", preprocess=7.0, compute=2.0, postprocess=0.5, e2e=10.0),
            make_medians("copy", h2d=6.0, compute=2.0, d2h=1.0, e2e=10.0),
            make_medians("compute", preprocess=0.5, compute=8.0, e2e=9.0),
            make_medians("cpu", preprocess=8.0, compute=2.0, e2e=10.0),
        ]
    )
    fp = cpu_fingerprint("x", cores=2, mhz=3000.0, bandwidth_gbs=20.0)
    out = rl.bounds(rl.roofline(runs, medians, device=fp), runs).set_index("run_id")
    # host: 7 + 0.5 + a 0.5 ms harness gap = 8 of 10 ms
    assert out.loc["host", "bound"] == "host-bound"
    assert out.loc["host", "host_share"] == pytest.approx(0.8)
    assert out.loc["host", "device_can_save"] == pytest.approx(0.2)
    assert out.loc["host", "text"].startswith("80 % of this iteration is host-side work")
    assert "a faster GPU can save at most 20 %" in out.loc["host", "text"]
    assert out.loc["copy", "bound"] == "copy-bound" and out.loc["copy", "copy_share"] == 0.7
    # 10 GFLOP / 20.31 TFLOP/s = 0.49 ms of 8 ms: 6 %, not launch-sized: underutilized
    assert (
        out.loc["compute", "bound"]
        == rl.roofline(runs, medians)
        .set_index(["run_id", "stage"])
        .loc[("compute", "compute"), "verdict"]
    )
    assert out.loc["cpu", "bound"] == "host-bound" and "a faster device" in out.loc["cpu", "text"]


def test_unknown_device_lists_close_matches():
    with pytest.raises(
        PerflabError, match=r"unknown device 'RTX 3070 Ti'; close matches: RTX 3070"
    ):
        rl.lookup_device("RTX 3070 Ti")
    assert rl.check_devices(["GTX 1050 Ti", "NVIDIA GeForce RTX 3070"]) == [
        "GTX 1050 Ti",
        "RTX 3070",
    ]
