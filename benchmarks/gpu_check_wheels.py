"""The wheels benchmarks/gpu_check.py needs on a lent GPU machine that it does not already have.

That machine has CUDA, PyTorch, CuPy, nvtx and the CPU build of onnxruntime (and with them
numpy, protobuf, typing_extensions, sympy, packaging), Python 3.12, and no package registry.
The check's path imports, besides those: onnx (zoo models, the ONNX -> torch converter), PyYAML
(perflab.spec), nvidia-ml-py (NVML: fingerprint, telemetry) and rich (`perflab backends`).
It avoids pandas, pyarrow and duckdb, so they are not carried.

    python benchmarks/gpu_check_wheels.py gather [-d .whl]    # here: download, list, check size
    python benchmarks/gpu_check_wheels.py install [-d .whl]   # there: install what is missing

`gather` fails when the wheels exceed the carry limit. `install` asks pip to resolve the
requirements from the folder alone (`--no-index`): what the machine has and satisfies them is
kept, the rest comes from the folder; it never reaches the network.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

LIMIT_MIB = 60
PYTHON_VERSION = "3.12"
# onnx >= 1.20 ships manylinux_2_27/2_28 wheels only, so both tags are accepted (every machine
# with a CUDA 12/13 driver has a newer glibc than 2.28).
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64")
#: What the check imports that the lent machine lacks (constraints as in pyproject.toml).
REQUIREMENTS = ("onnx>=1.16", "pyyaml>=6", "nvidia-ml-py>=12", "rich>=13")
#: Their dependencies that the machine may lack or hold too old (onnx needs protobuf >= 6.31).
DEPENDENCIES = ("ml-dtypes", "protobuf", "markdown-it-py", "mdurl", "pygments")


def gather(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.whl"):
        old.unlink()
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
        "--only-binary=:all:", "--python-version", PYTHON_VERSION,
        "--implementation", "cp", "--abi", "cp" + PYTHON_VERSION.replace(".", ""),
        *(arg for p in PLATFORMS for arg in ("--platform", p)),
        "-d", str(folder), *REQUIREMENTS, *DEPENDENCIES,
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    return report(folder)


def report(folder: Path) -> int:
    """List the wheels with their sizes; 1 when together they exceed the limit."""
    wheels = sorted(folder.glob("*.whl"))
    total = 0
    for w in wheels:
        size = w.stat().st_size
        total += size
        print(f"{size / 2**20:8.2f} MiB  {w.name}")
    print(f"{total / 2**20:8.2f} MiB  total in {len(wheels)} wheels (limit {LIMIT_MIB} MiB)")
    if total > LIMIT_MIB * 2**20:
        print(f"too large: {total / 2**20:.2f} MiB > {LIMIT_MIB} MiB", file=sys.stderr)
        return 1
    return 0


def install(folder: Path) -> int:
    if not any(folder.glob("*.whl")):
        print(f"no wheels in {folder}: run `make gpu-check-wheels` first", file=sys.stderr)
        return 1
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-index",
        "--find-links", str(folder), *REQUIREMENTS,
    ]  # fmt: skip
    return subprocess.run(cmd, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("gather", "install", "list"))
    p.add_argument("-d", "--dir", type=Path, default=Path(".whl"))
    args = p.parse_args(argv)
    if args.action == "gather":
        return gather(args.dir)
    if args.action == "install":
        return install(args.dir)
    return report(args.dir)


if __name__ == "__main__":
    sys.exit(main())
