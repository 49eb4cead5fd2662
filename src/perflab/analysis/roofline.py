"""Roofline bounds per stage from a table of device peaks, and projections of measured runs to other devices.

The device table (`devices()`) ships as ``perflab/data/devices.csv``. Its conventions:

- ``fp32_tflops``: CUDA-core (non-tensor) FP32 at the boost clock. Ampere and newer may run fp32
  models on TF32 tensor cores (TensorRT and cuDNN allow it by default), so a measured fraction of
  the fp32 peak above 1 is possible there; the TF32 rate is in ``notes``.
- ``fp16_tflops``: dense (not 2:4 sparse) tensor-core FP16 where the part has tensor cores, with the
  accumulate mode of the vendor's headline figure (FP16 accumulate on GeForce, where FP32
  accumulate runs at half rate; datacenter parts run both at the same rate). On Pascal GP10x it is
  the real half rate, 1/64 of FP32.
- ``bf16_tflops``: dense tensor BF16 (FP32 accumulate); blank where the part has no BF16.
- ``int8_tops``: dense tensor INT8; on Pascal the DP4A rate, 4x FP32.
- ``mem_bandwidth_gbs``: theoretical DRAM bandwidth; ``pcie_gen`` x ``pcie_lanes`` gives the host
  link, whose per-direction rate is ``PCIE_GBS_PER_LANE[gen] * lanes``.
- ``source`` names the vendor document; ``notes`` says what is computed rather than quoted.

FLOPs follow the usual convention of two per multiply-accumulate, the same as the peaks.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from perflab.errors import PerflabError
from perflab.stages import DEVICE_STAGES, E2E, HOST_STAGES, ITERATION_STAGES, TRANSFER_STAGES

# A stage whose roofline bound is below this fraction of its measured time is not limited by the
# device's arithmetic or memory: something else (launches, synchronization, slow kernels) is.
LOW_FRACTION_OF_PEAK = 0.05
# ... and when such a stage is also this short, fixed per-launch or per-copy costs explain it.
LAUNCH_BOUND_MAX_MS = 1.0

# Per-kernel launch cost: the shortest time one kernel occupies a stream when kernels are queued
# back to back (shortest kernel + shortest same-stream gap). Read from the Nsight Systems exports
# in the test data, not fitted to any benchmark: YOLOv3 on an RTX 3070 Ti gives 1.79 + 0.64 us,
# an nvFuser run on an H200 1.22 + 0.96 us. One figure serves every GPU generation for want of
# measurements of the others; `project(launch_us=...)` replaces it.
GPU_LAUNCH_US = 2.4
# Per-node dispatch cost of a CPU engine: ONNX Runtime CPU profiles of mnist-8 and yolox_nano spend
# 3.6-5.1 us per node of `model_run` outside any node (profiler cost included: an upper bound).
CPU_LAUNCH_US = 4.0
# The launch floor (kernels x launch cost) "explains" a stage when it reaches this share of it.
LAUNCH_DOMINATED_SHARE = 0.8
# Fraction of the roofline a GPU engine reaches when no measurement of it on that device class
# exists (a CPU run projected onto a GPU, or a launch-bound source that says nothing about it):
# about what TensorRT reaches on ResNet-50 in MLPerf Inference (offline, A100: ~37k images/s x
# 8.2 GOP = ~300 of 624 dense INT8 TOPS, 48 %). Stated in every projected row; adjustable.
DEFAULT_EFFICIENCY = 0.5
# A small synchronous host<->device copy costs this much before its bytes (API call, DMA setup,
# completion); trtexec reports 3-6 us for kilobyte copies on Pascal, Ampere and Ada parts.
COPY_LATENCY_US = 5.0

# Per-direction PCIe payload rate per lane in GB/s (after line encoding: 8b/10b for Gen1-2,
# 128b/130b for Gen3-5, FLIT mode for Gen6).
PCIE_GBS_PER_LANE: dict[int, float] = {
    1: 0.25,
    2: 0.5,
    3: 0.985,
    4: 1.969,
    5: 3.938,
    6: 7.563,
}

# Which peak column bounds compute at each precision; "best" (the engine picks) uses the fastest.
PRECISION_PEAK_COLUMNS: dict[str, str] = {
    "fp32": "fp32_tflops",
    "fp16": "fp16_tflops",
    "bf16": "bf16_tflops",
    "int8": "int8_tops",
}
# Bytes per element, used only when a projection changes precision (weights and activations scale).
PRECISION_BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}


# Host CPU estimate: FP32 FLOPs per core per cycle for each vector ISA.
CPU_FP32_FLOPS_PER_CYCLE: dict[str, int] = {
    "avx512": 64,  # 2 FMA units x 16 lanes x 2; an upper bound where a core has one 512-bit FMA unit
    "avx2": 32,  # 2 FMA units x 8 lanes x 2
    "avx": 16,  # one 256-bit add + one 256-bit multiply per cycle, no FMA
    "neon": 16,  # 2 x 128-bit FMA (Arm Neoverse N1 class)
    "sse": 8,  # one 128-bit add + one 128-bit multiply per cycle
}
CPU_INT8_VNNI_FACTOR = 4.0  # VPDPBUSD: 4 int8 multiply-adds per 32-bit lane where FP32 FMA does one
CPU_INT8_NO_VNNI_FACTOR = 4.0 / 3.0  # VPMADDUBSW + VPMADDWD + VPADDD do the same in 3 instructions
CPU_BF16_FACTOR = 2.0  # VDPBF16PS: 2 bf16 multiply-adds per 32-bit lane
CPU_FP16_FACTOR = 2.0  # AVX512-FP16: 32 half lanes per 512-bit FMA
CPU_AMX_INT8_OPS_PER_CYCLE = 2048  # AMX TMUL: 1024 int8 multiply-adds per core per cycle
CPU_AMX_BF16_FLOPS_PER_CYCLE = 1024  # AMX TMUL: 512 bf16 multiply-adds per core per cycle
# Per-channel DRAM rate when a fingerprint gives memory channels but no speed: DDR4-3200,
# 3200 MT/s x 8 bytes = 25.6 GB/s per channel.
DEFAULT_DRAM_MTS = 3200
CPU_PEAK_SOURCE = "estimate from cores x clock x vector width"

# Tokens that, following a matched alias in a device name, mark a different product.
_VARIANT_TOKENS = frozenset({"ti", "super", "laptop", "mobile", "max", "nvl", "d", "3gb"})
# Vendor words dropped from a query before matching it as the start of a table name.
_VENDOR_TOKENS = frozenset({"nvidia", "geforce", "tesla", "quadro"})

_PEAK_KEYS = ("fp32_tflops", "fp16_tflops", "bf16_tflops", "int8_tops", "mem_bandwidth_gbs")
_RUN_COLUMNS = (
    "run_id",
    "device",
    "device_name",
    "precision",
    "batch_size",
    "model_flops_per_sample",
    "model_param_bytes",
    "model_activation_bytes_per_sample",
)
_STAGE_COLUMNS = ("run_id", "stage", "p50_ms")
ROOFLINE_COLUMNS = (
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
    "flops_bound_ms",
    "bytes_bound_ms",
    "achieved_gbs",
    "kernels",
    "launch_floor_ms",
)
PROJECTION_COLUMNS = (
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
)


# --------------------------------------------------------------------------------------------
# Device table


@functools.lru_cache(maxsize=1)
def _device_table() -> pd.DataFrame:
    path = resources.files("perflab").joinpath("data/devices.csv")
    with path.open("r", encoding="utf-8") as f:
        table = pd.read_csv(
            f,
            dtype={
                "name": str,
                "aliases": str,
                "architecture": str,
                "compute_capability": str,
                "source": str,
                "notes": str,
            },
            keep_default_na=False,
            na_values={
                c: [""] for c in (*_PEAK_KEYS, "pcie_gen", "pcie_lanes", "memory_gib", "tdp_w")
            },
        )
    for col in (*_PEAK_KEYS, "memory_gib", "tdp_w"):
        table[col] = table[col].astype("float64")
    for col in ("pcie_gen", "pcie_lanes"):
        table[col] = table[col].astype("int64")
    return table


def devices() -> pd.DataFrame:
    """The table of device peaks, one row per device (a fresh copy; the file is read once).

    Columns: name, aliases (``;``-separated), architecture, compute_capability (str), fp32_tflops,
    fp16_tflops, bf16_tflops (NaN where unsupported), int8_tops, mem_bandwidth_gbs, pcie_gen,
    pcie_lanes, memory_gib, tdp_w, source, notes. See the module docstring for what each peak means.
    """
    return _device_table().copy()


def _tokens(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _find(tokens: list[str], sub: list[str]) -> int:
    n = len(sub)
    for i in range(len(tokens) - n + 1):
        if tokens[i : i + n] == sub:
            return i
    return -1


def _known_names_hint(table: pd.DataFrame) -> str:
    names = list(table["name"])
    picks = [
        names[i] for i in sorted({0, 2, 4, 7, 9, 11, 13, 16, len(names) - 1}) if i < len(names)
    ]
    return ", ".join(picks) + f" ({len(names)} in all; see perflab.analysis.roofline.devices())"


def lookup_device(name: str) -> pd.Series:
    """The table row for a device, matched by name or by an alias inside an NVML-style name.

    Matching is case-insensitive and ignores punctuation: ``"NVIDIA A100-SXM4-80GB"`` finds the
    alias ``a100 sxm4 80gb``. An alias matches whole words only (``A10`` does not match ``A100``)
    and not when a variant word follows it (``RTX 3060 Ti``, ``... Laptop GPU`` are other parts).
    The longest matching alias wins. A short name that starts several table names (``H100``) is
    ambiguous and raises, as does an unknown name; both messages list valid names.

    >>> lookup_device("NVIDIA GeForce RTX 3070")["name"]
    'RTX 3070'
    """
    if not isinstance(name, str) or not name.strip():
        raise PerflabError(f"device name must be a non-empty string, got {name!r}")
    table = _device_table()
    query = _tokens(name)
    candidates: dict[int, int] = {}  # row -> longest matching alias length in tokens
    for row, (dev_name, aliases) in enumerate(zip(table["name"], table["aliases"], strict=True)):
        forms = [dev_name, *[a for a in aliases.split(";") if a.strip()]]
        for form in forms:
            form_tokens = _tokens(form)
            if form_tokens == query:
                return table.iloc[row].copy()
            at = _find(query, form_tokens)
            if at < 0 or _VARIANT_TOKENS.intersection(query[at + len(form_tokens) :]):
                continue
            candidates[row] = max(candidates.get(row, 0), len(form_tokens))
    if candidates:
        best = max(candidates.values())
        rows = [r for r, n in candidates.items() if n == best]
        if len(rows) == 1:
            return table.iloc[rows[0]].copy()
        names = ", ".join(table["name"].iloc[rows])
        raise PerflabError(
            f"device {name!r} is ambiguous: it matches {names}; use one of those names"
        )
    # A short query such as "H100" or "A100": the start of one or more table names.
    short = [t for t in query if t not in _VENDOR_TOKENS]
    rows = [
        r
        for r, dev_name in enumerate(table["name"])
        if short and _tokens(dev_name)[: len(short)] == short
    ]
    if len(rows) == 1:
        return table.iloc[rows[0]].copy()
    if rows:
        names = ", ".join(table["name"].iloc[rows])
        raise PerflabError(
            f"device {name!r} is ambiguous: it matches {names}; use one of those names"
        )
    raise PerflabError(f"unknown device {name!r}; {_close_matches(name, table)}")


def _close_matches(name: str, table: pd.DataFrame) -> str:
    """'did you mean ...' from the table's names and aliases, else a sample of the names."""
    import difflib

    forms = {}
    for dev_name, aliases in zip(table["name"], table["aliases"], strict=True):
        for form in (dev_name, *[a for a in aliases.split(";") if a.strip()]):
            forms[" ".join(_tokens(form))] = dev_name
    query = " ".join(t for t in _tokens(name) if t not in _VENDOR_TOKENS)
    close = difflib.get_close_matches(query, list(forms), n=6, cutoff=0.6)
    names = list(dict.fromkeys(forms[c] for c in close))
    if names:
        return f"close matches: {', '.join(names)}"
    return f"known devices include {_known_names_hint(table)}"


def check_devices(names: Sequence[str]) -> list[str]:
    """The table names of these devices, or PerflabError naming the first unknown one and its
    close matches (for choosing projection targets up front)."""
    return [str(lookup_device(n)["name"]) for n in names]


# --------------------------------------------------------------------------------------------
# Host CPU estimate


def _cpu_isa(flags: set[str]) -> str:
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags and "fma" in flags:
        return "avx2"
    if "avx" in flags:
        return "avx"
    if "asimd" in flags or "neon" in flags:
        return "neon"
    return "sse"


def host_cpu_peak(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """Estimate the host CPU's peak rates from an environment fingerprint.

    FP32 GFLOP/s = physical cores x max clock (GHz) x FP32 FLOPs per cycle per core, where the
    FLOPs per cycle come from the widest vector ISA in ``cpu_flags`` (``CPU_FP32_FLOPS_PER_CYCLE``:
    AVX-512 with two FMA units 64, AVX2+FMA 32, AVX 16, Neon 16, else 8). This is an upper bound:
    it assumes two FMA units per core (many Xeon Silver/Bronze parts and AMD Zen 4 have the
    equivalent of one 512-bit unit, so half) and ignores AVX frequency offsets.

    INT8 is 4x FP32 with VNNI (``avx512_vnni``/``avx_vnni``), 4/3x without it, 2048 ops/cycle/core
    with AMX; BF16 is 2x FP32 with ``avx512_bf16``, 1024 FLOPs/cycle/core with AMX; FP16 is 2x
    FP32 with ``avx512_fp16``. Without a native path engines compute in FP32, so the FP32 rate is
    given.

    Fingerprint keys read: cpu_model (str), cpu_cores_physical (int), cpu_threads (int, used when
    the physical count is missing), cpu_mhz_max (float; when missing, the ``@ 2.20GHz`` in the
    model string, a base clock), cpu_flags (list of str or a space-separated str), and optional
    mem_bandwidth_gbs, or mem_channels with mem_mts (DDR transfer rate; ``DEFAULT_DRAM_MTS`` when
    missing). With neither, mem_bandwidth_gbs is None. Values that cannot be estimated are None.

    Returns a dict with name, cores, clock_ghz, clock_source, isa, fp32_flops_per_cycle,
    fp32_gflops, and the device-table keys fp32_tflops, fp16_tflops, bf16_tflops, int8_tops,
    mem_bandwidth_gbs, plus source (``CPU_PEAK_SOURCE``) and notes.

    >>> host_cpu_peak({"cpu_model": "x", "cpu_cores_physical": 4, "cpu_mhz_max": 4000.0,
    ...                "cpu_flags": ["avx2", "fma"]})["fp32_gflops"]
    512.0
    """
    if not isinstance(fingerprint, Mapping):
        raise PerflabError(f"a fingerprint must be a mapping, got {type(fingerprint).__name__}")
    notes: list[str] = []
    model = str(fingerprint.get("cpu_model") or "cpu")
    raw_flags = fingerprint.get("cpu_flags") or []
    if isinstance(raw_flags, str):
        raw_flags = raw_flags.split()
    flags = {str(f).lower() for f in raw_flags}

    cores = fingerprint.get("cpu_cores_physical")
    if not cores:
        cores = fingerprint.get("cpu_threads")
        if cores:
            notes.append(
                "physical core count unknown: hardware threads used (an overestimate with SMT)"
            )
    cores = int(cores) if cores else None

    clock_ghz: float | None = None
    clock_source: str | None = None
    mhz = fingerprint.get("cpu_mhz_max")
    if mhz is not None and not (isinstance(mhz, float) and math.isnan(mhz)) and float(mhz) > 0:
        clock_ghz, clock_source = float(mhz) / 1000.0, "cpu_mhz_max"
    else:
        m = re.search(r"@\s*([0-9]+(?:\.[0-9]+)?)\s*GHz", model, flags=re.IGNORECASE)
        if m:
            clock_ghz, clock_source = float(m.group(1)), "cpu_model (base clock)"
            notes.append("max clock unknown: base clock from the model string used")

    isa = _cpu_isa(flags)
    per_cycle = CPU_FP32_FLOPS_PER_CYCLE[isa]
    if isa == "avx512":
        notes.append("assumes two AVX-512 FMA units per core")

    fp32_gflops = fp16_gflops = bf16_gflops = int8_gops = None
    if cores and clock_ghz:
        fp32_gflops = cores * clock_ghz * per_cycle
        core_ghz = cores * clock_ghz
        if "amx_int8" in flags:
            int8_gops = core_ghz * CPU_AMX_INT8_OPS_PER_CYCLE
        elif flags & {"avx512_vnni", "avx512vnni", "avx_vnni", "avxvnni"}:
            int8_gops = fp32_gflops * CPU_INT8_VNNI_FACTOR
        elif flags & {"avx2", "avx512bw"}:
            int8_gops = fp32_gflops * CPU_INT8_NO_VNNI_FACTOR

        def half(amx: str, avx512: str, factor: float) -> float:
            """A 16-bit float peak: AMX tiles, else AVX-512's own instructions, else fp32's."""
            if amx in flags:
                return core_ghz * CPU_AMX_BF16_FLOPS_PER_CYCLE
            return fp32_gflops * factor if avx512 in flags else fp32_gflops

        bf16_gflops = half("amx_bf16", "avx512_bf16", CPU_BF16_FACTOR)
        fp16_gflops = half("amx_fp16", "avx512_fp16", CPU_FP16_FACTOR)
    else:
        notes.append("core count or clock unknown: no compute estimate")

    bandwidth = fingerprint.get("mem_bandwidth_gbs")
    if bandwidth is None and fingerprint.get("mem_channels"):
        mts = fingerprint.get("mem_mts") or DEFAULT_DRAM_MTS
        bandwidth = int(fingerprint["mem_channels"]) * float(mts) * 8 / 1000.0
        if not fingerprint.get("mem_mts"):
            notes.append(f"memory speed unknown: DDR-{DEFAULT_DRAM_MTS} per channel assumed")
    if bandwidth is None:
        notes.append("memory bandwidth unknown")

    def tera(giga: float | None) -> float | None:
        return None if giga is None else giga / 1000.0

    return {
        "name": model,
        "cores": cores,
        "clock_ghz": clock_ghz,
        "clock_source": clock_source,
        "isa": isa,
        "fp32_flops_per_cycle": per_cycle,
        "fp32_gflops": fp32_gflops,
        "fp32_tflops": tera(fp32_gflops),
        "fp16_tflops": tera(fp16_gflops),
        "bf16_tflops": tera(bf16_gflops),
        "int8_tops": tera(int8_gops),
        "mem_bandwidth_gbs": None if bandwidth is None else float(bandwidth),
        "source": CPU_PEAK_SOURCE,
        "notes": "; ".join(notes),
    }


# --------------------------------------------------------------------------------------------
# Peak records: one plain dict per device, whatever it came from


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _pcie_gbs(gen: Any, lanes: Any) -> float:
    g, n = _num(gen), _num(lanes)
    if math.isnan(g) or math.isnan(n):
        return math.nan
    if int(g) not in PCIE_GBS_PER_LANE:
        raise PerflabError(f"unknown PCIe generation {gen!r}; valid: {sorted(PCIE_GBS_PER_LANE)}")
    return PCIE_GBS_PER_LANE[int(g)] * n


def _record_from_row(
    row: Mapping[str, Any] | pd.Series, device_class: str = "gpu"
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "name": str(row.get("name", "custom")),
        "device_class": str(row.get("device_class") or device_class),
        "launch_us": _num(row.get("launch_us")),
    }
    for key in _PEAK_KEYS:
        rec[key] = _num(row.get(key))
    if "pcie_gbs" in row and not math.isnan(_num(row.get("pcie_gbs"))):
        rec["pcie_gbs"] = _num(row.get("pcie_gbs"))
    else:
        rec["pcie_gbs"] = _pcie_gbs(row.get("pcie_gen"), row.get("pcie_lanes"))
    return rec


def _nan_record(name: Any = None, device_class: str = "gpu") -> dict[str, Any]:
    return {
        "name": name,
        "device_class": device_class,
        "launch_us": math.nan,
        **{k: math.nan for k in _PEAK_KEYS},
        "pcie_gbs": math.nan,
    }


def _is_fingerprint(spec: Mapping[str, Any]) -> bool:
    return "fp32_tflops" not in spec and any(str(k).startswith("cpu_") for k in spec)


def _resolve(spec: str | Mapping[str, Any]) -> dict[str, Any]:
    """A peak record from a table name, a mapping of peaks, or a fingerprint (host CPU)."""
    if isinstance(spec, str):
        return _record_from_row(lookup_device(spec))
    if isinstance(spec, Mapping):
        if _is_fingerprint(spec):
            return _record_from_row(host_cpu_peak(spec), "cpu")
        if not any(k in spec for k in _PEAK_KEYS):
            raise PerflabError(
                f"a device mapping needs peak keys ({', '.join(_PEAK_KEYS)}) or cpu_* fingerprint keys;"
                f" got {sorted(map(str, spec))}"
            )
        return _record_from_row(spec)
    raise PerflabError(
        f"device must be a device name, a mapping of peaks or a fingerprint, got {type(spec).__name__}"
    )


def _is_cpu(device: Any) -> bool:
    return isinstance(device, str) and device.strip().lower().startswith("cpu")


def _run_records(
    runs: pd.DataFrame, device: str | Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """The peak record for each run, in row order.

    A name or a mapping of peaks applies to every run. A fingerprint applies to CPU runs; GPU runs
    are looked up by device_name. Runs that cannot be resolved (a GPU not in the table, a CPU run
    without a fingerprint) get NaN peaks rather than failing the whole table.
    """
    if device is not None and not (isinstance(device, Mapping) and _is_fingerprint(device)):
        rec = _resolve(device)
        return [rec] * len(runs)
    host = _resolve(device) if device is not None else None
    cache: dict[Any, dict[str, Any]] = {}
    records = []
    for dev, dev_name in zip(runs["device"], runs["device_name"], strict=True):
        if _is_cpu(dev):
            records.append(host if host is not None else _nan_record(device_class="cpu"))
            continue
        if dev_name not in cache:
            try:
                cache[dev_name] = _record_from_row(lookup_device(dev_name))
            except PerflabError:
                cache[dev_name] = _nan_record()
        records.append(cache[dev_name])
    return records


def _peak_rate(rec: Mapping[str, Any], precision: str) -> float:
    """Peak TFLOP/s (TOP/s for int8) of a record at a precision; NaN when unknown or unsupported."""
    if precision == "best":
        rates = [rec[c] for c in PRECISION_PEAK_COLUMNS.values() if not math.isnan(rec[c])]
        return max(rates) if rates else math.nan
    col = PRECISION_PEAK_COLUMNS.get(precision)
    return math.nan if col is None else rec[col]


def _run_precision(run: Mapping[str, Any]) -> str:
    eff = run.get("precision_effective")
    if isinstance(eff, str) and eff.strip():
        return eff.strip().lower()
    prec = run.get("precision")
    return prec.strip().lower() if isinstance(prec, str) else ""


# --------------------------------------------------------------------------------------------
# Roofline


def _check_columns(frame: pd.DataFrame, needed: tuple[str, ...], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise PerflabError(f"{what} must be a DataFrame, got {type(frame).__name__}")
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise PerflabError(f"{what} lacks columns {missing}; it needs {list(needed)}")


def _ms(amount: float, rate_per_ms: float) -> float:
    if math.isnan(amount) or math.isnan(rate_per_ms) or rate_per_ms <= 0:
        return math.nan
    return amount / rate_per_ms


def _compute_terms(
    flops: float, nbytes: float, rate_tflops: float, bw_gbs: float
) -> tuple[float, float]:
    """(time at peak arithmetic, time at peak bandwidth) in ms; 1 TFLOP/s = 1e9 FLOP per ms."""
    return _ms(flops, rate_tflops * 1e9), _ms(nbytes, bw_gbs * 1e6)


def _bound(*terms: float) -> float:
    known = [t for t in terms if not math.isnan(t)]
    return max(known) if known else math.nan


def _launch_us(rec: Mapping[str, Any]) -> float:
    """Per-kernel launch cost of a peak record: its own ``launch_us``, else the class default."""
    own = _num(rec.get("launch_us"))
    if not math.isnan(own):
        return own
    return CPU_LAUNCH_US if rec.get("device_class") == "cpu" else GPU_LAUNCH_US


def _compute_verdict(measured: float, flops_ms: float, bytes_ms: float, launch_ms: float) -> str:
    """compute-, memory- or launch-bound, "underutilized", or "unknown".

    With a kernel count, launch-bound means the launch floor (kernels x launch cost) explains at
    least ``LAUNCH_DOMINATED_SHARE`` of the measured time. Without one, a stage far below its
    roofline (under ``LOW_FRACTION_OF_PEAK``) and shorter than ``LAUNCH_BOUND_MAX_MS`` is taken
    to be launch-bound, a longer one "underutilized"."""
    if not measured > 0:
        return "unknown"
    if not math.isnan(launch_ms) and launch_ms >= LAUNCH_DOMINATED_SHARE * measured:
        return "launch-bound"
    if math.isnan(flops_ms) or math.isnan(bytes_ms):
        return "unknown"
    fraction = max(flops_ms, bytes_ms) / measured
    if fraction < LOW_FRACTION_OF_PEAK:
        if math.isnan(launch_ms) and measured < LAUNCH_BOUND_MAX_MS:
            return "launch-bound"
        return "underutilized"
    return "compute-bound" if flops_ms >= bytes_ms else "memory-bound"


def _transfer_verdict(measured: float, bound: float) -> str:
    if math.isnan(bound) or not measured > 0:
        return "unknown"
    if bound / measured < LOW_FRACTION_OF_PEAK:
        return "latency-bound" if measured < LAUNCH_BOUND_MAX_MS else "underutilized"
    return "transfer-bound"


def _first_num(run: Mapping[str, Any], *keys: str) -> float:
    for key in keys:
        value = _num(run.get(key))
        if not math.isnan(value):
            return value
    return math.nan


def _run_costs(run: Mapping[str, Any]) -> dict[str, float]:
    batch = _num(run.get("batch_size"))
    flops = _num(run.get("model_flops_per_sample")) * batch
    nbytes = (
        _num(run.get("model_param_bytes"))
        + _num(run.get("model_activation_bytes_per_sample")) * batch
    )
    return {
        "batch": batch,
        "flops": flops,
        "bytes": nbytes,
        "kernels": _num(run.get("model_kernels")),
        "h2d_bytes": _first_num(run, "model_input_bytes_per_sample", "input_bytes_per_sample")
        * batch,
        "d2h_bytes": _first_num(run, "model_output_bytes_per_sample", "output_bytes_per_sample")
        * batch,
    }


def _stage_order(stage: Any) -> int:
    order = (*ITERATION_STAGES, E2E)
    return order.index(stage) if stage in order else len(order)


def _joined(runs: pd.DataFrame, stage_medians: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    _check_columns(runs, _RUN_COLUMNS, "runs")
    _check_columns(stage_medians, _STAGE_COLUMNS, "stage_medians")
    dup = runs["run_id"][runs["run_id"].duplicated()]
    if len(dup):
        raise PerflabError(f"runs has duplicate run_id {dup.iloc[0]!r}; pass one row per run")
    dup_stage = stage_medians.duplicated(["run_id", "stage"])
    if dup_stage.any():
        first = stage_medians.loc[dup_stage, ["run_id", "stage"]].iloc[0]
        raise PerflabError(
            f"stage_medians has more than one row for run {first['run_id']!r} stage"
            f" {first['stage']!r}; pass one median per run and stage"
        )
    runs = runs.reset_index(drop=True)
    stages = stage_medians.loc[stage_medians["run_id"].isin(runs["run_id"]), list(_STAGE_COLUMNS)]
    run_pos = {rid: i for i, rid in enumerate(runs["run_id"])}
    stages = stages.assign(
        _run=stages["run_id"].map(run_pos), _stage=stages["stage"].map(_stage_order)
    ).sort_values(["_run", "_stage"], kind="stable")
    return runs, stages.drop(columns=["_stage"]).reset_index(drop=True)


def _roofline_rows(
    runs: pd.DataFrame, stages: pd.DataFrame, records: list[dict[str, Any]]
) -> list[dict]:
    rows = []
    per_run = [(_run_costs(run), _run_precision(run)) for run in runs.to_dict("records")]
    for stage_row in stages.to_dict("records"):
        i = stage_row["_run"]
        costs, precision = per_run[i]
        rec = records[i]
        stage = stage_row["stage"]
        measured = _num(stage_row["p50_ms"])
        out = dict.fromkeys(ROOFLINE_COLUMNS, math.nan)
        out.update(run_id=stage_row["run_id"], stage=stage, measured_ms=measured)
        out["verdict"] = None
        out["device_peak_name"] = rec["name"]
        if stage == "compute":
            rate = _peak_rate(rec, precision)
            flops_ms, bytes_ms = _compute_terms(
                costs["flops"], costs["bytes"], rate, rec["mem_bandwidth_gbs"]
            )
            bound = _bound(flops_ms, bytes_ms)
            launch_ms = costs["kernels"] * _launch_us(rec) / 1e3
            out.update(
                kernels=costs["kernels"],
                launch_floor_ms=launch_ms,
                bound_ms=bound,
                flops_bound_ms=flops_ms,
                bytes_bound_ms=bytes_ms,
                peak_tflops=rate,
                bandwidth_gbs=rec["mem_bandwidth_gbs"],
                intensity_flops_per_byte=costs["flops"] / costs["bytes"]
                if costs["bytes"] > 0
                else math.nan,
                achieved_tflops=_ms(costs["flops"], measured * 1e9),
                achieved_gbs=_ms(costs["bytes"], measured * 1e6),
                verdict=_compute_verdict(measured, flops_ms, bytes_ms, launch_ms),
            )
        elif stage in TRANSFER_STAGES:
            nbytes = costs[f"{stage}_bytes"]
            bound = _ms(nbytes, rec["pcie_gbs"] * 1e6)
            out.update(
                bound_ms=bound,
                bytes_bound_ms=bound,
                bandwidth_gbs=rec["pcie_gbs"],
                achieved_gbs=_ms(nbytes, measured * 1e6),
                verdict=_transfer_verdict(measured, bound),
            )
        if not math.isnan(out["bound_ms"]) and measured > 0:
            out["fraction_of_peak"] = out["bound_ms"] / measured
        rows.append(out)
    return rows


def roofline(
    runs: pd.DataFrame,
    stage_medians: pd.DataFrame,
    *,
    device: str | Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Roofline bound, fraction of peak and a verdict for each run and stage.

    Inputs:
      runs: one row per run with run_id, device (``cpu``, ``cuda:0``), device_name, precision,
        batch_size, model_flops_per_sample, model_param_bytes, model_activation_bytes_per_sample;
        optional precision_effective (used when set), input_bytes_per_sample and
        output_bytes_per_sample (for the h2d and d2h bounds; NaN without them).
      stage_medians: run_id, stage, p50_ms (the median per run and stage).
      device: whose peaks to use. None: each run's device_name looked up in `devices()` (CPU runs
        and unknown GPUs get NaN bounds and verdict "unknown"). A table name or a mapping of peaks
        (fp32_tflops, fp16_tflops, bf16_tflops, int8_tops, mem_bandwidth_gbs, pcie_gen,
        pcie_lanes or pcie_gbs): used for every run. A fingerprint mapping (cpu_* keys): the
        `host_cpu_peak` estimate for CPU runs; GPU runs are still looked up by device_name.

    Model (per run; FLOPs and bytes of a whole batch):
      flops = model_flops_per_sample x batch_size
      bytes = model_param_bytes + model_activation_bytes_per_sample x batch_size
      compute: bound_ms = max(flops / peak at the run's precision, bytes / memory bandwidth)
      h2d/d2h: bound_ms = (input|output)_bytes_per_sample x batch_size / PCIe bandwidth
      fraction_of_peak = bound_ms / measured_ms (1 = on the roofline)
    Verdicts (compute): "launch-bound" when fraction < LOW_FRACTION_OF_PEAK and measured <
    LAUNCH_BOUND_MAX_MS; "underutilized" when the fraction is that low but the stage is longer;
    otherwise "compute-bound" or "memory-bound" by the larger roofline term. Transfers use
    "latency-bound" / "underutilized" / "transfer-bound" the same way. "unknown" where a term is
    missing; host stages and e2e have no bound and verdict None. A fraction above 1 means the
    run beat the roofline: the peak used is not what ran (TF32 for fp32 on Ampere and newer,
    an fp16 request that ran fp32 on Pascal) or the model cost is off.

    Output: one row per run and stage with run_id, stage, measured_ms, bound_ms, fraction_of_peak,
    achieved_tflops, intensity_flops_per_byte, peak_tflops, bandwidth_gbs (DRAM for compute, PCIe
    for transfers), verdict, device_peak_name, and the two terms flops_bound_ms, bytes_bound_ms
    plus achieved_gbs.

    Example (RTX 3090, fp32, 10 GFLOP and 30 MB per batch of 1)::

        run_id stage   p50_ms        run_id stage   measured_ms bound_ms fraction_of_peak verdict
        r1     compute 1.0      ->   r1     compute 1.0         0.281    0.281            compute-bound
        r1     e2e     3.0           r1     e2e     3.0         NaN      NaN              None
    """
    runs, stages = _joined(runs, stage_medians)
    records = _run_records(runs, device)
    return pd.DataFrame(_roofline_rows(runs, stages, records), columns=list(ROOFLINE_COLUMNS))


# --------------------------------------------------------------------------------------------
# Projection


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _efficiency(
    efficiency: float | str | None,
    measured: float,
    src_roof: float,
    src: Mapping[str, Any],
    tgt: Mapping[str, Any],
    src_verdict: str,
) -> tuple[float, str]:
    """The fraction of its roofline the target is assumed to reach, and whose figure it is."""
    if isinstance(efficiency, (int, float)) and not isinstance(efficiency, bool):
        return float(efficiency), "stated"
    same_class = src.get("device_class") == tgt.get("device_class")
    measurable = src_verdict not in ("launch-bound", "unknown") and src_roof > 0
    if same_class and measurable and measured > 0:
        return src_roof / measured, f"the source run's own on {src['name']}"
    if not same_class:
        why = f"a {src.get('device_class')} engine's efficiency does not carry to a {tgt.get('device_class')}"
    elif not measurable:
        why = f"the source run is {src_verdict} and shows no efficiency"
    else:
        why = "the source run shows no efficiency"
    if efficiency == "source":
        why = "asked for the source's, but " + why
    return DEFAULT_EFFICIENCY, f"default ({why})"


def _project_compute(
    measured: float,
    costs: Mapping[str, float],
    src: Mapping[str, Any],
    src_precision: str,
    tgt: Mapping[str, Any],
    tgt_precision: str,
    *,
    efficiency: float | str | None = None,
    launch_us: float | None = None,
) -> dict[str, Any]:
    """Predicted compute time on the target and every assumption behind it (see `project`)."""
    src_rate = _peak_rate(src, src_precision)
    tgt_rate = _peak_rate(tgt, tgt_precision)
    kernels = costs["kernels"]
    src_launch_us = launch_us if launch_us is not None else _launch_us(src)
    tgt_launch_us = launch_us if launch_us is not None else _launch_us(tgt)
    src_launch = kernels * src_launch_us / 1e3
    tgt_launch = kernels * tgt_launch_us / 1e3
    out: dict[str, Any] = {
        "kernels": kernels,
        "launch_us": tgt_launch_us,
        "launch_floor_ms": tgt_launch,
        "efficiency": math.nan,
        "efficiency_basis": None,
        "roofline_ms": math.nan,
        "bound": None,
    }
    src_flops_ms, src_bytes_ms = _compute_terms(
        costs["flops"], costs["bytes"], src_rate, src["mem_bandwidth_gbs"]
    )
    verdict = _compute_verdict(measured, src_flops_ms, src_bytes_ms, src_launch)
    if verdict == "launch-bound" and math.isnan(kernels):
        return {
            **out,
            "predicted_ms": measured,
            "basis": "unchanged (launch-bound on the source; kernel count unknown)",
            "bound": "launch",
        }
    scale = 1.0
    if (
        src_precision != tgt_precision
        and src_precision in PRECISION_BYTES
        and tgt_precision in PRECISION_BYTES
    ):
        scale = PRECISION_BYTES[tgt_precision] / PRECISION_BYTES[src_precision]
    tgt_flops_ms, tgt_bytes_ms = _compute_terms(
        costs["flops"], costs["bytes"] * scale, tgt_rate, tgt["mem_bandwidth_gbs"]
    )
    # An arithmetic peak missing on either side means the precision cannot be compared; a missing
    # bandwidth (a host CPU without one) leaves a partial roofline on the arithmetic term alone.
    if math.isnan(costs["flops"]):
        return {**out, "predicted_ms": math.nan, "basis": "unknown: model FLOPs missing"}
    if math.isnan(tgt_rate):
        return {
            **out,
            "predicted_ms": math.nan,
            "basis": f"unknown: target has no {tgt_precision or 'known'} peak",
        }
    if math.isnan(src_rate):
        return {
            **out,
            "predicted_ms": math.nan,
            "basis": f"unknown: source has no {src_precision or 'known'} peak",
        }
    use_bytes = not (math.isnan(src_bytes_ms) or math.isnan(tgt_bytes_ms))
    nan = math.nan
    src_bound = _bound(src_flops_ms, src_bytes_ms if use_bytes else nan)
    tgt_bound = _bound(tgt_flops_ms, tgt_bytes_ms if use_bytes else nan)
    src_regime = "compute" if src_bound == src_flops_ms else "memory"
    tgt_regime = "compute" if tgt_bound == tgt_flops_ms else "memory"
    eff, eff_basis = _efficiency(efficiency, measured, src_bound, src, tgt, verdict)
    if not eff > 0:
        raise PerflabError(f"efficiency must be a fraction of peak above 0, got {eff!r}")
    roofline_ms = tgt_bound / eff
    if eff_basis.startswith("the source run"):
        # The same engine on the same class of device: the ratio of the two rooflines.
        if src_regime == tgt_regime == "compute":
            if src_precision == tgt_precision:
                basis = f"{src_precision} peak ratio {_fmt(src_rate)}/{_fmt(tgt_rate)} TFLOPS"
            else:
                basis = (
                    f"peak ratio {src_precision} {_fmt(src_rate)} / {tgt_precision}"
                    f" {_fmt(tgt_rate)} TFLOPS"
                )
        elif src_regime == tgt_regime == "memory":
            basis = (
                f"memory bandwidth ratio {_fmt(src['mem_bandwidth_gbs'])}/"
                f"{_fmt(tgt['mem_bandwidth_gbs'])} GB/s"
            )
            if scale != 1.0:
                basis += f", bytes x{_fmt(scale)} for {tgt_precision}"
        else:
            basis = f"roofline bound ratio ({src_regime}-bound -> {tgt_regime}-bound)"
        if verdict == "underutilized":
            basis += " (source underutilized: assumes the same fraction of peak)"
    else:
        basis = f"{tgt_regime}-bound roofline at {_fmt(eff)} of the target's peak"
    if not use_bytes:
        basis += " (partial roofline: memory bandwidth or model bytes unknown)"
    predicted, bound = roofline_ms, tgt_regime
    if not math.isnan(tgt_launch) and tgt_launch > roofline_ms:
        predicted, bound = tgt_launch, "launch"
        basis = (
            f"launch floor {_fmt(kernels)} kernels x {_fmt(tgt_launch_us)} us"
            f" (the roofline at this efficiency, {_fmt(roofline_ms)} ms, is shorter)"
        )
    return {
        **out,
        "predicted_ms": predicted,
        "basis": basis,
        "efficiency": eff,
        "efficiency_basis": eff_basis,
        "roofline_ms": roofline_ms,
        "bound": bound,
    }


def _project_transfer(
    measured: float, nbytes: float, src: Mapping[str, Any], tgt: Mapping[str, Any]
) -> tuple[float, str]:
    src_gbs, tgt_gbs = src["pcie_gbs"], tgt["pcie_gbs"]
    if _transfer_verdict(measured, _ms(nbytes, src_gbs * 1e6)) == "latency-bound":
        return measured, "unchanged (latency-bound copy on the source)"
    if math.isnan(src_gbs) or math.isnan(tgt_gbs) or tgt_gbs <= 0:
        return math.nan, "unknown: PCIe bandwidth missing"
    return (
        measured * src_gbs / tgt_gbs,
        f"PCIe bandwidth ratio {_fmt(src_gbs)}/{_fmt(tgt_gbs)} GB/s",
    )


def _added_copy(nbytes: float, tgt: Mapping[str, Any]) -> tuple[float, str]:
    """A copy the source never made (it ran on a CPU) at the target's PCIe rate."""
    latency_ms = COPY_LATENCY_US / 1e3
    if math.isnan(nbytes) or math.isnan(tgt["pcie_gbs"]) or tgt["pcie_gbs"] <= 0:
        return latency_ms, (
            f"added: the source made no copy; {_fmt(COPY_LATENCY_US)} us latency only"
            " (bytes or PCIe rate unknown)"
        )
    return latency_ms + _ms(nbytes, tgt["pcie_gbs"] * 1e6), (
        f"added: the source made no copy; {_fmt(COPY_LATENCY_US)} us + {_fmt(nbytes)} B"
        f" at {_fmt(tgt['pcie_gbs'])} GB/s PCIe"
    )


def project(
    runs: pd.DataFrame,
    stage_medians: pd.DataFrame,
    *,
    device: str | Mapping[str, Any],
    from_device: str | Mapping[str, Any] | None = None,
    to_precision: str | None = None,
    efficiency: float | str | None = None,
    launch_us: float | None = None,
) -> pd.DataFrame:
    """Predict each run's stage times on another device from its measured medians and the rooflines.

    Every output row is a prediction (kind = "predicted"); measured values appear only as the
    measured_ms they were derived from. Every assumption is a column.

    Inputs are those of `roofline` (optional ``model_kernels``, ``model_input_bytes_per_sample``
    and ``model_output_bytes_per_sample`` give the launch floor and the copies). ``device`` is the
    target (a table name, a mapping of peaks or a fingerprint); ``from_device`` overrides the
    source (default: each run's device_name, or the fingerprint for CPU runs, as in `roofline`).
    ``to_precision`` assumes another precision on the target (default: the run's effective
    precision); weight and activation bytes then scale by element size (``PRECISION_BYTES``).
    ``efficiency``: the fraction of its roofline the target reaches: a number for every run,
    ``"source"`` or None (default) for the source run's own fraction where the source is the same
    class of device (GPU to GPU, CPU to CPU) and not launch-bound, else ``DEFAULT_EFFICIENCY``: one
    engine's efficiency on a CPU says nothing about a GPU engine. ``launch_us``: the per-kernel
    launch cost on both sides (default ``GPU_LAUNCH_US`` for GPUs, ``CPU_LAUNCH_US`` for CPUs).

    Model, per stage:
      compute: predicted = max(target roofline bound / efficiency, kernels x launch cost).
        With the source's own efficiency the first term is measured x bound_target /
        bound_source: the ratio of the precision's peaks when both sides are compute-bound, of the
        memory bandwidths when both are memory-bound. A source that is launch-bound with no
        kernel count known stays unchanged.
      h2d/d2h: latency-bound copies unchanged; otherwise scaled by the PCIe bandwidth ratio. A
        GPU target of a run that made no copies (a CPU run) gets both, at ``COPY_LATENCY_US`` plus
        the input or output bytes at the target's PCIe rate (measured_ms NaN: nothing was measured).
      preprocess/postprocess: unchanged (host work).
      e2e: sum of the predicted stages + the measured harness gap (e2e p50 minus the sum of the
        stage p50s; without an e2e median the gap is 0 and measured e2e is the sum of stages).
        speedup = measured / predicted, Amdahl's law over the stages.
    Stages other than these (enqueue, load, ...) are not projected.

    Output columns: run_id, stage, measured_ms, predicted_ms, speedup, basis (the ratio or term
    used), from_device, to_device, kind, and for compute the assumptions: efficiency,
    efficiency_basis (whose figure), kernels, launch_us, launch_floor_ms, roofline_ms (the roofline
    term at that efficiency) and bound (compute, memory or launch, on the target).

    Example (GTX 1070 -> RTX 3090, fp32, compute-bound 10 GFLOP model)::

        stage       p50_ms       stage       measured_ms predicted_ms basis
        preprocess  3.0          preprocess  3.0         3.0          unchanged (host work)
        compute     5.0     ->   compute     5.0         0.908        fp32 peak ratio 6.463/35.58 TFLOPS
        e2e         8.2          e2e         8.2         4.108        sum of predicted stages + ...
    """
    if device is None:
        raise PerflabError(
            "project needs a target device: a table name, a mapping of peaks or a fingerprint"
        )
    if to_precision is not None and to_precision.lower() not in (*PRECISION_PEAK_COLUMNS, "best"):
        raise PerflabError(
            f"unknown precision {to_precision!r}; valid: {', '.join((*PRECISION_PEAK_COLUMNS, 'best'))}"
        )
    if efficiency is not None and efficiency != "source":
        if isinstance(efficiency, bool) or not isinstance(efficiency, (int, float)):
            raise PerflabError(
                f"efficiency must be a number in (0, 1] or 'source', got {efficiency!r}"
            )
        if not 0 < efficiency <= 1:
            raise PerflabError(f"efficiency must be in (0, 1], got {efficiency!r}")
    if launch_us is not None and not (isinstance(launch_us, (int, float)) and launch_us >= 0):
        raise PerflabError(f"launch_us must be a number of microseconds >= 0, got {launch_us!r}")
    runs, stages = _joined(runs, stage_medians)
    tgt = _resolve(device)
    sources = _run_records(runs, from_device)
    medians: dict[int, dict[str, float]] = {}
    for stage_row in stages.to_dict("records"):
        medians.setdefault(stage_row["_run"], {})[stage_row["stage"]] = _num(stage_row["p50_ms"])

    rows = []
    for i, run in enumerate(runs.to_dict("records")):
        if i not in medians:
            continue
        src = sources[i]
        costs = _run_costs(run)
        src_precision = _run_precision(run)
        tgt_precision = to_precision.lower() if to_precision else src_precision
        base = {
            "run_id": run["run_id"],
            "from_device": src["name"],
            "to_device": tgt["name"],
            "kind": "predicted",
        }
        add_copies = src.get("device_class") == "cpu" and tgt.get("device_class") == "gpu"
        measured_sum = predicted_sum = 0.0
        first_row = len(rows)
        for stage in ITERATION_STAGES:
            extra: dict[str, Any] = {}
            if stage not in medians[i]:
                if not (add_copies and stage in TRANSFER_STAGES and "compute" in medians[i]):
                    continue
                measured = math.nan
                predicted, basis = _added_copy(costs[f"{stage}_bytes"], tgt)
            else:
                measured = medians[i][stage]
                measured_sum += measured
                if stage in HOST_STAGES:
                    predicted, basis = measured, "unchanged (host work)"
                elif stage == "compute":
                    extra = _project_compute(
                        measured,
                        costs,
                        src,
                        src_precision,
                        tgt,
                        tgt_precision,
                        efficiency=efficiency,
                        launch_us=launch_us,
                    )
                    predicted, basis = extra.pop("predicted_ms"), extra.pop("basis")
                else:
                    predicted, basis = _project_transfer(
                        measured, costs[f"{stage}_bytes"], src, tgt
                    )
            predicted_sum += predicted
            rows.append(
                {
                    **base,
                    **extra,
                    "stage": stage,
                    "measured_ms": measured,
                    "predicted_ms": predicted,
                    "basis": basis,
                }
            )
        e2e = medians[i].get("e2e", math.nan)
        if math.isnan(e2e):
            e2e, gap = measured_sum, 0.0
            basis = (
                "sum of predicted stages (e2e not measured: measured is the sum of stage medians)"
            )
        else:
            gap = e2e - measured_sum
            basis = f"sum of predicted stages + measured harness gap {_fmt(gap)} ms"
        unknown = [r for r in rows[first_row:] if math.isnan(r["predicted_ms"])]
        if unknown:
            # A stage without a prediction leaves e2e without one: say which and why.
            why = "; ".join(f"{r['stage']}: {r['basis']}" for r in unknown)
            basis = f"unknown: a stage has no prediction ({why})"
        rows.append(
            {
                **base,
                "stage": "e2e",
                "measured_ms": e2e,
                "predicted_ms": predicted_sum + gap,
                "basis": basis,
            }
        )
    out = pd.DataFrame(rows, columns=[c for c in PROJECTION_COLUMNS if c != "speedup"])
    with np.errstate(divide="ignore", invalid="ignore"):
        speedup = out["measured_ms"].astype("float64") / out["predicted_ms"].astype("float64")
    out.insert(PROJECTION_COLUMNS.index("speedup"), "speedup", speedup)
    return out[list(PROJECTION_COLUMNS)]


CHECK_COLUMNS = (
    "source_run_id",
    "target_run_id",
    "from_device",
    "to_device",
    "stage",
    "source_ms",
    "predicted_ms",
    "measured_ms",
    "ratio",
    "predicted_speedup",
    "measured_speedup",
    "source_batch",
    "target_batch",
    "basis",
    "efficiency_basis",
    "bound",
)


def _same_model_key(run: Mapping[str, Any]) -> tuple[Any, Any]:
    sha = run.get("model_sha256")
    model = sha if isinstance(sha, str) and sha else run.get("model")
    return model, _run_precision(run)


def projection_check(
    runs: pd.DataFrame,
    stage_medians: pd.DataFrame,
    *,
    stages: tuple[str, ...] = (*DEVICE_STAGES, E2E),
    **project_kw: Any,
) -> pd.DataFrame:
    """The projection's own error: each run projected onto every other measured device.

    For every ordered pair of runs of the same model (sha256, else name) and precision measured
    on two different devices, `project` predicts the source's stages on the target's device and
    sets them beside what the target measured. ``ratio`` = predicted / measured (1 = exact);
    ``predicted_speedup`` and ``measured_speedup`` are source / predicted and source / measured.
    Batch sizes are kept as columns rather than required to match: a projection keeps the
    source's batch, so a pair at different batches compares unlike work (say so when reading).

    Output: one row per pair and stage measured on both sides, with the columns of
    ``CHECK_COLUMNS`` (source_run_id, target_run_id, from_device, to_device, stage, source_ms,
    predicted_ms, measured_ms, ratio, predicted_speedup, measured_speedup, source_batch,
    target_batch, basis, efficiency_basis, bound).

    Example (two trtexec logs of one model)::

        from_device to_device stage   source_ms predicted_ms measured_ms ratio
        GTX 1070    RTX 3090  compute 0.1536    0.0420       0.0439      0.957
    """
    runs, stages_frame = _joined(runs, stage_medians)
    medians = {
        (r, s): v
        for r, s, v in zip(
            stages_frame["run_id"], stages_frame["stage"], stages_frame["p50_ms"], strict=True
        )
    }
    records = runs.to_dict("records")
    rows = []
    for src in records:
        for tgt in records:
            if src["run_id"] == tgt["run_id"] or _same_model_key(src) != _same_model_key(tgt):
                continue
            if not isinstance(tgt.get("device_name"), str) or src.get("device_name") == tgt.get(
                "device_name"
            ):
                continue
            try:
                target = lookup_device(tgt["device_name"])["name"]
            except PerflabError:
                continue  # a device the table does not know: nothing to project onto
            one = runs[runs["run_id"] == src["run_id"]]
            predicted = project(one, stage_medians, device=target, **project_kw)
            for p in predicted.to_dict("records"):
                measured = _num(medians.get((tgt["run_id"], p["stage"])))
                if p["stage"] not in stages or math.isnan(measured):
                    continue
                source_ms, predicted_ms = _num(p["measured_ms"]), _num(p["predicted_ms"])
                rows.append(
                    {
                        "source_run_id": src["run_id"],
                        "target_run_id": tgt["run_id"],
                        "from_device": p["from_device"],
                        "to_device": p["to_device"],
                        "stage": p["stage"],
                        "source_ms": source_ms,
                        "predicted_ms": predicted_ms,
                        "measured_ms": measured,
                        "ratio": predicted_ms / measured if measured > 0 else math.nan,
                        "predicted_speedup": source_ms / predicted_ms
                        if predicted_ms > 0
                        else math.nan,
                        "measured_speedup": source_ms / measured if measured > 0 else math.nan,
                        "source_batch": src.get("batch_size"),
                        "target_batch": tgt.get("batch_size"),
                        "basis": p["basis"],
                        "efficiency_basis": p.get("efficiency_basis"),
                        "bound": p.get("bound"),
                    }
                )
    return pd.DataFrame(rows, columns=list(CHECK_COLUMNS))


# --------------------------------------------------------------------------------------------
# The bound of each run, in words

# A run is host- or copy-bound when that part of the iteration reaches this share of it.
DOMINANT_SHARE = 0.5
BOUND_COLUMNS = (
    "run_id",
    "bound",
    "host_share",
    "copy_share",
    "compute_share",
    "compute_verdict",
    "device_can_save",
    "text",
)


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def bounds(roofline_rows: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """What limits each run, as a word and a sentence, from its stage medians and its roofline.

    Input: the output of `roofline` (one row per run and stage) and the runs (run_id, device).
    Host work is preprocess + postprocess + the harness gap (e2e minus the stages); copies are
    h2d + d2h. A run is ``host-bound`` when host work is at least ``DOMINANT_SHARE`` of the
    iteration, ``copy-bound`` when copies are; otherwise its bound is the compute stage's roofline
    verdict (compute-, memory-, launch-bound, underutilized, unknown). ``device_can_save`` is the
    most a faster device could save: the share of the iteration outside host work (for a
    copy-bound run on the same PCIe link, outside host work and copies too).

        run_id stage      measured_ms verdict          run_id bound      host_share text
        r1     preprocess 7.8         None        ->   r1     host-bound 0.78       "78 % of this
        r1     compute    2.0         compute-bound                                  iteration is ..."
        r1     e2e        10.0        None
    """
    _check_columns(roofline_rows, ("run_id", "stage", "measured_ms", "verdict"), "roofline rows")
    device_of = dict(zip(runs["run_id"], runs["device"], strict=False)) if len(runs) else {}
    out = []
    for run_id, g in roofline_rows.groupby("run_id", sort=False):
        t = dict(zip(g["stage"], g["measured_ms"].astype("float64"), strict=True))
        stages = [t[s] for s in ITERATION_STAGES if s in t and not math.isnan(t[s])]
        if not stages:
            continue
        total = t.get("e2e", math.nan)
        if math.isnan(total) or total <= 0:
            total = sum(stages)
        gap = max(total - sum(stages), 0.0)
        host = t.get("preprocess", 0.0) + t.get("postprocess", 0.0) + gap
        copies = t.get("h2d", 0.0) + t.get("d2h", 0.0)
        compute = t.get("compute", math.nan)
        verdict = g.loc[g["stage"] == "compute", "verdict"]
        verdict = (
            verdict.iloc[0] if len(verdict) and isinstance(verdict.iloc[0], str) else "unknown"
        )
        host_share, copy_share = host / total, copies / total
        compute_share = compute / total if not math.isnan(compute) else math.nan
        faster = "a faster device" if _is_cpu(device_of.get(run_id)) else "a faster GPU"
        if host_share >= DOMINANT_SHARE:
            bound, can_save = "host-bound", 1 - host_share
            text = (
                f"{_pct(host_share)} of this iteration is host-side work (preprocess"
                f" {t.get('preprocess', 0.0):.3g} ms, postprocess {t.get('postprocess', 0.0):.3g}"
                f" ms, harness {gap:.3g} ms): {faster} can save at most {_pct(can_save)}."
            )
        elif copy_share >= DOMINANT_SHARE:
            bound, can_save = "copy-bound", 1 - host_share - copy_share
            text = (
                f"{_pct(copy_share)} of this iteration is host<->device copies: {faster} on the"
                f" same PCIe link can save at most {_pct(can_save)}; pinned buffers and fewer or"
                " overlapped copies do more."
            )
        else:
            bound, can_save = verdict, 1 - host_share
            c = g[g["stage"] == "compute"].iloc[0] if (g["stage"] == "compute").any() else None
            share = f"compute is {_pct(compute_share)} of the iteration and"
            if verdict in ("compute-bound", "memory-bound"):
                what = "arithmetic rate" if verdict == "compute-bound" else "memory bandwidth"
                text = (
                    f"{share} {verdict} ({_pct(c['fraction_of_peak'])} of {c['device_peak_name']}'s"
                    f" roofline): it scales with the device's {what}; {faster} can save at most"
                    f" {_pct(can_save)}."
                )
            elif verdict == "launch-bound":
                floor = (
                    ""
                    if c is None or math.isnan(_num(c.get("launch_floor_ms")))
                    else (
                        f" ({c['kernels']:.0f} kernels need about {c['launch_floor_ms']:.3g} ms of"
                        f" its {compute:.3g} ms)"
                    )
                )
                text = (
                    f"{share} launch-bound{floor}: {faster} barely helps; fewer or fused kernels"
                    " (a fused engine, CUDA graphs) or a larger batch do."
                )
            elif verdict == "underutilized":
                text = (
                    f"{share} far below its roofline ({_pct(c['fraction_of_peak'])}): neither"
                    " arithmetic nor memory limits it; the engine's kernels, threads or layout do."
                )
            else:
                text = (
                    f"{share} of unknown bound: the device's peaks or the model's cost are"
                    " not known."
                )
        out.append(
            {
                "run_id": run_id,
                "bound": bound,
                "host_share": host_share,
                "copy_share": copy_share,
                "compute_share": compute_share,
                "compute_verdict": verdict,
                "device_can_save": max(can_save, 0.0),
                "text": text,
            }
        )
    return pd.DataFrame(out, columns=list(BOUND_COLUMNS))
