"""Environment fingerprint of this machine (CPU, memory, OS, packages, GPU) and fingerprint diffs.

Package versions are read from installed metadata, without importing the packages; the GPU part
uses NVML through perflab.cuda, which never creates a CUDA context, and is empty without a GPU.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import platform
import socket
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from perflab.errors import PerflabError, StoreError
from perflab.untrusted import check_regular_file

PACKAGES = (
    "perflab",
    "numpy",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "torch",
    "tensorrt",
    "tensorrt-cu12",
    "tensorrt-cu13",
    "cupy-cuda12x",
    "cupy-cuda13x",
    "nvidia-ml-py",
    "nvtx",
    "pandas",
    "pyarrow",
)
# CPU features that change which kernels engines pick (int8 dot products, bf16, wide vectors).
CPU_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
    "sse4_2",
    "neon",
    "asimd",
)
ENV_PREFIXES = (
    "OMP_",
    "MKL_",
    "KMP_",
    "OPENBLAS_",
    "CUDA_",
    "ORT_",
    "OV_",
    "OPENVINO_",
    "TRT_",
    "NVIDIA_",
    "TORCH_",
    "PYTORCH_",
    "NVTX_",
    "TF32",
    "CUBLAS_",
    "CUDNN_",
    "LD_LIBRARY_PATH",
)
# Keys that describe the moment, not the machine: left out of env_id.
VOLATILE = ("memory_available_gib", "load_average")


def cpu_flags() -> list[str]:
    """The CPU features among ``CPU_FLAGS`` that this machine has (from /proc/cpuinfo)."""
    return list(_cpuinfo().get("cpu_flags", []))


def _cpuinfo() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu_model": platform.processor() or platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    physical = core = ""
    mhz = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name":
            info["cpu_model"] = value
        elif key in ("flags", "Features"):
            flags.update(value.split())
        elif key == "physical id":
            physical = value
        elif key == "core id":
            core = value
            cores.add((physical, core))
        elif key == "cpu MHz":
            mhz.append(float(value))
    info["cpu_flags"] = sorted(f for f in CPU_FLAGS if f in flags)
    info["cpu_cores_physical"] = len(cores) or os.cpu_count()
    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        info["cpu_mhz_max"] = int(max_freq.read_text()) / 1000
    except (OSError, ValueError):
        info["cpu_mhz_max"] = max(mhz) if mhz else None
    return info


def _memory() -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                gib = round(int(value.split()[0]) / 2**20, 2)
                out["memory_gib" if key == "MemTotal" else "memory_available_gib"] = gib
    except OSError:
        pass
    return out


# The host copy benchmark: arrays well past any last-level cache, one slice per usable core (numpy
# releases the GIL while it copies), best of a few rounds. GB/s counts the bytes read and written.
BANDWIDTH_MIB = 256
BANDWIDTH_ROUNDS = 5
BANDWIDTH_METHOD = f"numpy copy of {BANDWIDTH_MIB} MiB split over the usable cores, best of {BANDWIDTH_ROUNDS}, read + write bytes"


def measure_host_bandwidth(mib: int = BANDWIDTH_MIB, rounds: int = BANDWIDTH_ROUNDS) -> float:
    """Host memory bandwidth in GB/s from a timed copy (about a second of work)."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    n = mib * 2**20 // 8
    src = np.ones(n, dtype=np.float64)
    dst = np.empty_like(src)
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    bounds = np.linspace(0, n, workers + 1, dtype=np.int64)
    slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]

    def copy(sl: slice) -> None:
        np.copyto(dst[sl], src[sl])

    best = float("inf")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in range(rounds):
            t0 = time.perf_counter()
            list(pool.map(copy, slices))
            best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


def _host_bandwidth(machine: Mapping[str, Any]) -> dict[str, Any]:
    """The host's measured memory bandwidth, measured once per machine and kept in the cache
    (so the fingerprint, and with it env_id, stays the same from one study to the next)."""
    from perflab.cache import cache_root

    key = hashlib.sha256(json.dumps(machine, sort_keys=True, default=str).encode()).hexdigest()
    path = cache_root() / "host" / f"bandwidth-{key[:16]}.json"
    try:
        cached = json.loads(path.read_text())
        if isinstance(cached.get("mem_bandwidth_gbs"), (int, float)):
            return cached
    except (OSError, ValueError, AttributeError):
        pass
    facts = {
        "mem_bandwidth_gbs": round(measure_host_bandwidth(), 1),
        "mem_bandwidth_source": f"measured: {BANDWIDTH_METHOD}",
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(facts))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache: measure again next time rather than fail the study
    return facts


def _packages() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _ort_providers() -> list[str] | None:
    """What the installed onnxruntime build contains (imports onnxruntime: only called on demand)."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def fingerprint(
    *, gpu: bool = True, providers: bool = True, bandwidth: bool = True
) -> dict[str, Any]:
    """Everything about this machine that can change a measurement, as plain JSON data.

    ``bandwidth`` adds the host memory bandwidth (``mem_bandwidth_gbs``), measured on the first
    call on a machine and read from the cache after (see `measure_host_bandwidth`)."""
    fp: dict[str, Any] = {
        "host": socket.gethostname(),
        **_cpuinfo(),
        "cpu_threads": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        **_memory(),
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": _packages(),
        "env_vars": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)},
    }
    try:
        fp["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    if bandwidth:
        machine = {k: fp.get(k) for k in ("host", "cpu_model", "cpu_threads", "memory_gib")}
        fp.update(_host_bandwidth(machine))
    if providers:
        fp["ort_providers"] = _ort_providers()
    if gpu:
        fp["gpus"] = _gpus()
    return fp


def _gpus() -> list[dict[str, Any]]:
    try:
        from perflab.cuda import gpu_facts
    except ImportError:
        return []
    try:
        return list(gpu_facts())
    except Exception as exc:  # noqa: BLE001 - GPU facts are best effort; a broken driver must not stop a study
        return [{"error": f"{type(exc).__name__}: {exc}"}]


def env_id(fp: Mapping[str, Any]) -> str:
    stable = {k: v for k, v in fp.items() if k not in VOLATILE}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]


def row(fp: Mapping[str, Any]) -> dict[str, Any]:
    """The fingerprint as a row of the `env` table."""
    gpu = (fp.get("gpus") or [{}])[0]
    return {
        "env_id": env_id(fp),
        "host": fp.get("host"),
        "cpu_model": fp.get("cpu_model"),
        "cpu_cores": fp.get("cpu_cores_physical"),
        "cpu_threads": fp.get("cpu_threads"),
        "memory_gib": fp.get("memory_gib"),
        "os": fp.get("os"),
        "python": fp.get("python"),
        "gpu_name": gpu.get("name"),
        "gpu_compute_capability": gpu.get("compute_capability"),
        "cuda_driver": gpu.get("driver_version"),
        "cuda_runtime": gpu.get("cuda_runtime_version"),
        "fingerprint": json.dumps(fp, sort_keys=True, default=str),
    }


# Keys every fingerprint perflab writes holds; a JSON object without them is not a fingerprint.
FINGERPRINT_KEYS = ("host", "python", "os")
MAX_FINGERPRINT_BYTES = 16 << 20
MAX_DEPTH = 32  # a fingerprint nests 3 levels; flatten() recurses once per level


def _depth(data: Any) -> int:
    """Nesting depth of JSON data, counted without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH and isinstance(value, (Mapping, list)):
            children = value.values() if isinstance(value, Mapping) else value
            stack.extend((v, depth + 1) for v in children)
    return deepest


def load(source: str | Path) -> dict[str, Any]:
    """A fingerprint from a JSON file (`perflab env --json > f.json`), a result folder, or
    `FOLDER@MACHINE`: the machine's in a folder of several (a study run on a cluster, merged).

    A folder holding several fingerprints (runs from several machines or setups) is refused
    unless a machine is named: which one to compare is the user's choice, so the message lists
    their env ids."""
    path = Path(source)
    folder, _, machine = str(source).rpartition("@")
    if not path.exists() and folder and Path(folder).is_dir():
        return _machine_fingerprint(Path(folder), machine)
    if not path.exists():
        raise PerflabError(f"{path}: no such file or result folder")
    if path.is_dir():
        from perflab import store

        frame = store.read(path, "env")
        if frame.empty:
            raise StoreError(f"{path}: result folder has no env table")
        ids = sorted(frame["env_id"].dropna().unique())
        if len(ids) > 1:
            raise StoreError(
                f"{path}: result folder holds {len(ids)} fingerprints ({', '.join(ids[:5])}"
                f"{', ...' if len(ids) > 5 else ''}), and env diff compares one with one; "
                "name one as FOLDER@MACHINE, or compare files written by `perflab env --json`"
            )
        return _parse(frame["fingerprint"].iloc[-1], f"{path}/env")
    check_regular_file(path, "fingerprint JSON file", PerflabError)
    if path.stat().st_size > MAX_FINGERPRINT_BYTES:
        raise PerflabError(f"{path}: not a fingerprint JSON file (too large)")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PerflabError(f"{path}: not a fingerprint JSON file ({exc})") from None
    return _parse(text, str(path))


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PerflabError(f"{where}: not a fingerprint JSON file ({exc})") from None
    except RecursionError:
        raise PerflabError(f"{where}: not a fingerprint JSON file (nested too deeply)") from None
    if not isinstance(data, dict):
        raise PerflabError(f"{where}: not a fingerprint JSON file (expected an object)")
    if _depth(data) > MAX_DEPTH:
        raise PerflabError(f"{where}: not a fingerprint JSON file (nested too deeply)")
    missing = [k for k in FINGERPRINT_KEYS if k not in data]
    if missing:
        raise PerflabError(
            f"{where}: not a fingerprint JSON file (no {', '.join(missing)}; write one with "
            "`perflab env --json > FILE`)"
        )
    return data


def _machine_fingerprint(folder: Path, machine: str) -> dict[str, Any]:
    from perflab import store

    runs = store.read(folder, "runs")
    ids = runs.loc[runs["machine"] == machine, "env_id"].dropna()
    if ids.empty:
        known = ", ".join(sorted(runs["machine"].dropna().unique())) or "none"
        raise PerflabError(f"{folder}: no run on machine {machine!r}; machines: {known}")
    frame = store.read(folder, "env")
    match = frame.loc[frame["env_id"] == ids.iloc[-1], "fingerprint"]
    if match.empty:
        raise StoreError(f"{folder}: the fingerprint of machine {machine!r} is missing from env")
    return json.loads(match.iloc[-1])


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(data, list) and any(isinstance(v, (Mapping, list)) for v in data):
        out = {}
        for i, v in enumerate(data):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: data}


def diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """Keys whose values differ (missing on one side shows as None), sorted by key."""
    fa, fb = flatten(a), flatten(b)
    return [
        (k, fa.get(k), fb.get(k))
        for k in sorted(set(fa) | set(fb))
        if fa.get(k) != fb.get(k) and k not in VOLATILE and not k.startswith(VOLATILE)
    ]
