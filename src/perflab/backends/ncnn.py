"""ncnn backend: Tencent's ncnn on the CPU, on the model converted from ONNX by pnnx.

`build` times the conversion: pnnx (the `pnnx` wheel's executable, run in a subprocess so a
converter crash cannot take the run down) turns the ONNX file into `model.ncnn.param` /
`model.ncnn.bin`, cached under `$PERFLAB_CACHE/ncnn/<model hash>-<per-sample shapes>-<pnnx
version>/`. A model pnnx rejects is `unsupported` with its message. pnnx names the blobs `in0`,
`in1`, ... and `out0`, ... in the order of the ONNX graph's inputs and outputs.

ncnn has no batch dimension: a `Mat` is one sample (pnnx drops the batch axis), so `compute`
runs one extractor per sample of the batch, `input` + `extract` each, and stacks the outputs back
into the ONNX shapes. `load` times `load_param` + `load_model`. No `h2d` / `d2h`.

Precision: fp32 runs with fp16/bf16 storage and fp16 arithmetic off, so every layer computes in
fp32. On x86 ncnn has fp16 *storage* only (arithmetic stays fp32), and int8 needs ncnn's own
calibration tables, so fp16, bf16 and int8 are `unsupported`.

Options: `threads` (`opt.num_threads`; 0 = ncnn's default, its count of big cores),
`convert_timeout_s` (default 600).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perflab.backends.cpu_engine import CpuEngine
from perflab.backends.option_values import parse_whole_numbers
from perflab.errors import BackendUnavailable, Unsupported
from perflab.options import Option
from perflab.timing import COMPUTE

if TYPE_CHECKING:
    from perflab.models import ModelInfo
    from perflab.pipelines import Pipeline
    from perflab.timing import Recorder, SetupTimer

DECLARED_OPTIONS = (
    Option("threads", "int >= 0", 0, "opt.num_threads; 0: ncnn's default (its big cores)"),
    Option("convert_timeout_s", "number > 0", 600, "limit on the ONNX -> ncnn conversion (pnnx)"),
)


def parse_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the ncnn backend's options; SpecError names the bad key and the valid ones."""
    return parse_whole_numbers(
        "ncnn", options, DECLARED_OPTIONS, {"threads": 0, "convert_timeout_s": 1}
    )


def pnnx_executable() -> Path:
    """The pnnx binary inside the installed `pnnx` package (found without importing it: its
    package imports torch)."""
    spec = importlib.util.find_spec("pnnx")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("ncnn unavailable: package pnnx not installed")
    exe = Path(next(iter(spec.submodule_search_locations))) / "pnnx"
    if not exe.is_file():
        raise BackendUnavailable(f"ncnn unavailable: the pnnx package has no executable ({exe})")
    return exe


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def converted_model(model: ModelInfo, timeout_s: int) -> tuple[Path, bool]:
    """The folder holding model.ncnn.param/.bin for `model` (converted now unless cached) and
    whether it was cached."""
    from perflab.models import cache_root

    shapes = ",".join(str([1, *t.shape[1:]]) for t in model.inputs)
    key = hashlib.sha256(f"{model.sha256}|{shapes}".encode()).hexdigest()[:16]
    root = cache_root() / "ncnn"
    target = root / f"{key}-{_version('pnnx')}"
    if (target / "model.ncnn.bin").is_file():
        return target, True
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        # pnnx writes its outputs beside its input: give it a copy of its own to convert.
        shutil.copyfile(model.path, work / "model.onnx")
        cmd = [str(pnnx_executable()), "model.onnx", f"inputshape={shapes.replace(' ', '')}"]
        try:
            proc = subprocess.run(
                cmd, cwd=work, check=False, capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            raise Unsupported(f"ncnn: pnnx took longer than {timeout_s} s") from None
        done = (work / "model.ncnn.param").is_file() and (work / "model.ncnn.bin").is_file()
        if proc.returncode != 0 or not done:
            lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
            tail = " | ".join(lines[-4:])[-600:] or "no message"
            raise Unsupported(
                f"ncnn: pnnx could not convert {model.name} (exit {proc.returncode}): {tail}"
            )
        final = root / f".{key}-ready"
        final.mkdir(exist_ok=True)
        for name in ("model.ncnn.param", "model.ncnn.bin"):
            os.replace(work / name, final / name)
        try:
            os.replace(final, target)  # atomic: a folder appears whole or not at all
        except OSError:  # another process converted the same model meanwhile
            shutil.rmtree(final, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target, False


class NcnnBackend(CpuEngine):
    """ncnn on the CPU (see the module docstring for the timed region and precision)."""

    name = "ncnn"
    options = DECLARED_OPTIONS
    option_parser = staticmethod(parse_options)
    precision_refusal = (
        "ncnn: {precision} cannot run: on x86 ncnn stores fp16/bf16 but computes "
        "in fp32, and int8 needs ncnn's own calibration tables"
    )

    def setup(self, model: ModelInfo | None, pipeline: Pipeline, timer: SetupTimer) -> None:
        model = self.onnx_model(model)
        with timer("build"):
            folder, cached = converted_model(model, self.opts["convert_timeout_s"])
        import ncnn

        net = ncnn.Net()
        opt = net.opt
        opt.use_fp16_packed = opt.use_fp16_storage = opt.use_fp16_arithmetic = False
        opt.use_bf16_storage = False
        opt.use_int8_inference = False
        if self.opts["threads"]:
            opt.num_threads = self.opts["threads"]
        with timer("load"):
            if net.load_param(str(folder / "model.ncnn.param")) or net.load_model(
                str(folder / "model.ncnn.bin")
            ):
                raise Unsupported(
                    f"ncnn could not load the converted {model.name}"
                    + _leftover_ops(folder / "model.ncnn.param")
                )
        self._engine = net
        self._meta = {
            "ncnn_version": ncnn.__version__,
            "pnnx_version": _version("pnnx"),
            "threads": int(opt.num_threads),
            "converted_folder": folder.name,
            "conversion_cached": cached,
            "precision_source": "fp16/bf16 storage and fp16 arithmetic off: fp32 throughout",
        }

    def run(self, inputs: dict[str, np.ndarray], rec: Recorder) -> dict[str, np.ndarray]:
        """One extractor per sample; outputs stacked into new arrays, safe to keep."""
        import ncnn

        net = self._engine
        t = rec.begin(COMPUTE)
        batches = [np.ascontiguousarray(inputs[name], np.float32) for name in self._input_names]
        per_output: list[list[np.ndarray]] = [[] for _ in self._output_names]
        for b in range(len(batches[0])):
            ex = net.create_extractor()
            for i, x in enumerate(batches):
                ex.input(f"in{i}", ncnn.Mat(x[b]))
            for j, got in enumerate(per_output):
                ret, mat = ex.extract(f"out{j}")
                if ret != 0:
                    raise Unsupported(f"ncnn: extracting out{j} failed with code {ret}")
                got.append(np.array(mat))
        result = {name: np.stack(v) for name, v in zip(self._output_names, per_output, strict=True)}
        rec.end(COMPUTE, t)
        return result

    def close(self) -> None:
        if self._engine is not None:
            self._engine.clear()
            self._engine = None


def _leftover_ops(param: Path) -> str:
    """Operators pnnx could not map to ncnn layers: it writes them under their PyTorch names
    (`Tensor.slice`, `aten::...`), which ncnn has no layer for."""
    types = set()
    for line in param.read_text(errors="replace").splitlines()[2:]:
        kind = line.split(" ", 1)[0]
        if "." in kind or "::" in kind:
            types.add(kind)
    return (
        f": pnnx left operators ncnn has no layer for: {', '.join(sorted(types))}" if types else ""
    )
