"""MNN backend: Alibaba's MNN on the CPU, on the model converted from ONNX by MNN's own converter.

`build` times the conversion: the converter that ships in the same `MNN` wheel (its native
`_tools.mnnconvert`, the code behind the `mnnconvert` command) runs in a subprocess, so a
converter crash cannot take the run down, and writes `$PERFLAB_CACHE/mnn/<model hash>-<MNN
version>.mnn`; a cached file skips it. The wheel's `mnnconvert` script is not used because its
Python wrapper installs a logging SDK with pip and sends usage records to a remote service. A
model the converter rejects (or dies on) is `unsupported` with its message.

`load` times `MNN.nn.load_module_from_file` under a runtime manager holding the threads and the
precision mode. `compute` wraps the input arrays as MNN constants, runs `forward` and reads the
outputs back to numpy (MNN may compute lazily, so the read is inside the timed region); outputs
in MNN's packed NC4HW4 layout are converted to NCHW there too. No `h2d` / `d2h`.

Precision: fp32 runs precision mode `high` (fp32 kernels). MNN's `low` mode computes in fp16 only
on CPUs with fp16 arithmetic (ARMv8.2), which MNN reports on load ("fp16:1"); elsewhere it
quietly runs fp32, so fp16 is `unsupported` unless MNN reports fp16. bf16 and int8 (which needs
MNN's separate quantization tool) are `unsupported`.

Options: `threads` (numThread; 0 = 4, MNN's default), `convert_timeout_s` (default 600).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perflab.backends.cpu_engine import CpuEngine
from perflab.backends.option_values import parse_whole_numbers
from perflab.errors import Unsupported
from perflab.options import Option
from perflab.timing import COMPUTE

if TYPE_CHECKING:
    from perflab.models import ModelInfo
    from perflab.pipelines import Pipeline
    from perflab.timing import Recorder, SetupTimer

DECLARED_OPTIONS = (
    Option("threads", "int >= 0", 0, "numThread; 0: 4, MNN's default"),
    Option("convert_timeout_s", "number > 0", 600, "limit on the ONNX -> MNN conversion"),
)
MNN_DEFAULT_THREADS = 4
#: perflab precision -> MNN precision mode.
PRECISION_MODES = {"fp32": "high", "best": "high", "fp16": "low"}
# Runs MNN's native converter on argv; stdout/stderr carry its log. Its return value is no
# status (it returns 1 after "Converted Success!"): success is read from the log and the file.
_CONVERT = "import sys, _tools; _tools.mnnconvert(['mnnconvert', *sys.argv[1:]])"
_PROBE = "import _mnncengine"


def parse_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the mnn backend's options; SpecError names the bad key and the valid ones."""
    return parse_whole_numbers(
        "mnn", options, DECLARED_OPTIONS, {"threads": 0, "convert_timeout_s": 1}
    )


def mnn_version() -> str:
    from importlib.metadata import version

    return version("MNN")


@lru_cache(maxsize=1)
def device_features() -> dict[str, int]:
    """The CPU features MNN reports when it loads ("The device supports: i8sdot:0, fp16:0, ..."),
    read in a subprocess because MNN prints them from native code."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], check=False, capture_output=True, text=True, timeout=120
    )
    text = proc.stdout + proc.stderr
    return {k: int(v) for k, v in re.findall(r"(\w+):\s*(\d+)", text.split("supports:", 1)[-1])}


def converted_model(model: ModelInfo, timeout_s: int) -> tuple[Path, bool]:
    """The .mnn file for `model` (converted now unless cached) and whether it was cached."""
    from perflab.models import cache_root

    out_dir = cache_root() / "mnn"
    target = out_dir / f"{model.sha256[:16]}-{mnn_version()}.mnn"
    if target.is_file():
        return target, True
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".mnn", dir=out_dir)
    os.close(fd)
    args = ["-f", "ONNX", "--modelFile", str(model.path), "--MNNModel", tmp, "--bizCode", "perflab"]
    try:
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _CONVERT, *args],
                check=False,
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise Unsupported(f"mnn: the converter took longer than {timeout_s} s") from None
        log = (proc.stdout + proc.stderr).strip()
        ok = proc.returncode == 0 and "Converted Success" in log and os.path.getsize(tmp) > 0
        if not ok:
            raise Unsupported(f"mnn: the converter rejected {model.name}: {_why(proc, log)}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target, False


def _why(proc: subprocess.CompletedProcess, log: str) -> str:
    code = proc.returncode
    died = ""
    if code < 0:
        died = f"it died with {signal.Signals(-code).name}"
    elif code:
        died = f"exit {code}"
    lines = [ln for ln in log.splitlines() if ln.strip() and "device supports" not in ln]
    tail = " | ".join(lines[-4:])[-600:]
    return "; ".join(x for x in (died, tail) if x) or "no message"


class MnnBackend(CpuEngine):
    """MNN on the CPU (see the module docstring for the timed region and precision)."""

    name = "mnn"
    options = DECLARED_OPTIONS
    option_parser = staticmethod(parse_options)
    precisions = tuple(PRECISION_MODES)
    precision_refusal = (
        "mnn: {precision} is not a precision MNN's CPU backend runs from a "
        "converted ONNX model (fp32, and fp16 on CPUs with fp16 arithmetic)"
    )

    def setup(self, model: ModelInfo | None, pipeline: Pipeline, timer: SetupTimer) -> None:
        model = self.onnx_model(model)
        features = device_features()
        mode = PRECISION_MODES[self.config.precision]
        if mode == "low" and not features.get("fp16"):
            raise Unsupported(
                "mnn: this CPU has no fp16 arithmetic (MNN reports "
                f"{', '.join(f'{k}:{v}' for k, v in features.items())}); precision mode low "
                "would quietly run fp32"
            )
        with timer("build"):
            path, cached = converted_model(model, self.opts["convert_timeout_s"])
        from MNN import nn

        threads = self.opts["threads"] or MNN_DEFAULT_THREADS
        with timer("load"):
            runtime = nn.create_runtime_manager(
                ({"backend": "CPU", "precision": mode, "numThread": threads},)
            )
            try:
                self._engine = nn.load_module_from_file(
                    str(path), self._input_names, self._output_names, runtime_manager=runtime
                )
            except Exception as exc:
                raise Unsupported(f"mnn cannot load the converted {model.name}: {exc}") from exc
        self._runtime = runtime
        self._meta = {
            "mnn_version": mnn_version(),
            "precision_mode": mode,
            "threads": threads,
            "device_features": features,
            "converted_file": path.name,
            "conversion_cached": cached,
            "precision_source": "MNN precision mode high runs fp32 kernels on the CPU",
        }

    def run(self, inputs: dict[str, np.ndarray], rec: Recorder) -> dict[str, np.ndarray]:
        """const + forward + read; `read` returns new arrays, safe to keep."""
        import MNN.expr as F

        t = rec.begin(COMPUTE)
        feeds = []
        for name in self._input_names:
            x = inputs[name]
            # MNN has no int64 tensors: its converter turns int64 inputs into int32 ones.
            x = np.ascontiguousarray(x, np.int32 if x.dtype == np.int64 else None)
            feeds.append(F.const(x, list(x.shape), F.NCHW, _mnn_dtype(F, x.dtype)))
        outs = self._engine.forward(feeds)
        result = {}
        for name, var in zip(self._output_names, outs, strict=True):
            if var.data_format == F.NC4HW4:
                var = F.convert(var, F.NCHW)
            result[name] = np.array(var.read())
        rec.end(COMPUTE, t)
        return result

    def close(self) -> None:
        self._engine = None
        self._runtime = None


def _mnn_dtype(F: Any, dtype: np.dtype) -> Any:
    kinds = {np.float32: F.float, np.int32: F.int, np.uint8: F.uint8}
    for kind, mnn in kinds.items():
        if dtype == kind:
            return mnn
    raise Unsupported(f"mnn: input dtype {dtype} has no MNN type")
