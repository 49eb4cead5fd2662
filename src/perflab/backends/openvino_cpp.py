"""openvino-cpp backend: the OpenVINO build of the `openvino` wheel, driven from a C++ runner.

perflab carries the runner's source (`openvino_cpp_runner.cpp`) and compiles it on first use with
the system C++ compiler ($CXX, else c++ or g++) against the wheel's own headers
(`openvino/include`) and libraries (`openvino/libs`). The binary is cached under
`$PERFLAB_CACHE/openvino-cpp/` by the hash of the source, the OpenVINO version and the compiler,
so a changed runner or another OpenVINO build compiles afresh.

The runner is one child process per run. It reads the same ONNX file the `openvino` backend
reads, reshapes it to the run's static input shapes and compiles it for the CPU plugin with the
same precision hint, performance hint, threads and streams. Inputs and outputs live in one file
under /dev/shm that both processes map; the runner wraps its bytes as the infer request's tensors,
so nothing is copied through the pipe. The harness's loop drives each iteration as for any other
backend (same warmup and measure policy): `run` writes the inputs into the shared file, sends one
byte, and the runner times `infer()` with `std::chrono::steady_clock` and writes the nanoseconds
back. That C++ duration is the `compute` sample, so `compare(by="backend")` between `openvino`
(the Python binding's `infer`, timed in Python) and `openvino-cpp` on `compute` is what the
Python binding costs. The copy into the shared file and the pipe round trip fall in `e2e` only.

Calibration: option `calibration_us: N` loads no model (the config's model only shapes the
pipeline's inputs, which are ignored); each iteration the runner busy-waits N
microseconds on the same clock and reports them the same way, so the timing path (the clock, the
pipe, the sample arithmetic) is checked against known durations like the synthetic backend's.

Precision is read back from the compiled model's runtime graph, as in the `openvino` backend.
Options: `threads`, `hint`, `streams`, `strict_precision` (as the `openvino` backend), and
`calibration_us`.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import tempfile
from collections import Counter
from collections.abc import Mapping
from glob import glob
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perflab.backends.cpu_engine import CpuEngine
from perflab.backends.option_values import OptionValues
from perflab.backends.registry import find_compiler
from perflab.errors import BackendUnavailable, SpecError, Unsupported
from perflab.options import Option
from perflab.timing import COMPUTE, now_ns

if TYPE_CHECKING:
    from perflab.models import ModelInfo
    from perflab.pipelines import Pipeline
    from perflab.spec import RunConfig
    from perflab.timing import Recorder, SetupTimer

SOURCE = Path(__file__).with_name("openvino_cpp_runner.cpp")
DECLARED_OPTIONS = (
    Option("threads", "int >= 0", 0, "INFERENCE_NUM_THREADS; 0: OpenVINO's default"),
    Option("hint", "latency | throughput", "latency", "PERFORMANCE_HINT"),
    Option("streams", "int >= 0", 0, "NUM_STREAMS; 0: what the hint chooses"),
    Option("strict_precision", "bool", True,
           "fail the run when the engine ran another precision than asked"),
    Option("calibration_us", "int >= 1", None,
           "calibration mode: the runner busy-waits this long per iteration instead of inferring"),
)  # fmt: skip
OPTIONS = tuple(o.name for o in DECLARED_OPTIONS)
#: OpenVINO element type names the runner prints -> numpy dtypes.
OV_DTYPES = {
    "f32": np.float32,
    "f16": np.float16,
    "f64": np.float64,
    "i64": np.int64,
    "i32": np.int32,
    "i8": np.int8,
    "u8": np.uint8,
    "boolean": np.bool_,
}
SETUP_TIMEOUT_S = 600
COMPILE_TIMEOUT_S = 600


def parse_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the backend's options; SpecError names the bad key and the valid ones."""
    from perflab.backends import openvino

    OptionValues("openvino-cpp", options, {}).reject_unknown(OPTIONS)
    shared = {k: v for k, v in options.items() if k in ("threads", "hint", "streams")}
    if "strict_precision" in options:
        shared["strict_precision"] = options["strict_precision"]
    try:
        parsed = openvino.parse_options(shared)
    except SpecError as exc:
        raise SpecError(str(exc).replace("openvino:", "openvino-cpp:", 1)) from None
    calibration = options.get("calibration_us")
    if calibration is not None and (
        isinstance(calibration, bool) or not isinstance(calibration, int) or calibration < 1
    ):
        raise SpecError(f"openvino-cpp: option 'calibration_us': {calibration!r} must be >= 1")
    return {
        "threads": parsed["threads"],
        "hint": parsed["hint"],
        "streams": parsed["streams"],
        "strict_precision": parsed["strict_precision"],
        "calibration_us": calibration,
    }


def _openvino_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("openvino")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("openvino-cpp unavailable: package openvino not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def runner_binary(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The compiled runner, built now if the cache has none for this source, OpenVINO and compiler.

    Raises BackendUnavailable when there is no compiler, no headers or the build fails."""
    from perflab.models import cache_root

    compiler = find_compiler()
    if compiler is None:
        raise BackendUnavailable("openvino-cpp unavailable: no C++ compiler found (install g++)")
    ov_dir = _openvino_dir()
    include, libs = ov_dir / "include", ov_dir / "libs"
    if not (include / "openvino" / "openvino.hpp").is_file():
        raise BackendUnavailable(
            f"openvino-cpp unavailable: this openvino wheel ships no C++ headers ({include})"
        )
    # The wheel names its library with the version (libopenvino.so.2641), without a plain link.
    candidates = sorted(glob(str(libs / "libopenvino.so*")))
    if not candidates:
        raise BackendUnavailable(f"openvino-cpp unavailable: no libopenvino.so in {libs}")
    library = Path(candidates[0]).name
    source = SOURCE.read_bytes()
    key = hashlib.sha256(
        source + b"\0" + library.encode() + b"\0" + compiler.encode() + b"\0" + _version_text()
    ).hexdigest()[:16]
    out_dir = cache_root(cache_dir) / "openvino-cpp"
    binary = out_dir / f"runner-{key}"
    if binary.is_file():
        return binary
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".runner-{key}-", dir=out_dir)
    os.close(fd)
    cmd = [
        compiler, "-O2", "-std=c++17", str(SOURCE), f"-I{include}", f"-L{libs}",
        f"-l:{library}", f"-Wl,-rpath,{libs}", "-o", tmp,
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd, check=False, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S
        )
        if proc.returncode != 0:
            tail = " ".join(proc.stderr.strip().splitlines()[-5:])[-1500:]
            raise BackendUnavailable(
                f"openvino-cpp unavailable: the C++ runner did not build: {tail}"
            )
        os.replace(tmp, binary)  # atomic: a concurrent build of the same key writes the same file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return binary


def _version_text() -> bytes:
    """The installed OpenVINO's version, read from its package metadata (no import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openvino").encode()
    except PackageNotFoundError:
        return b"unknown"


class RunnerProcess:
    """One running C++ runner: its setup report, and the timed commands of the protocol."""

    def __init__(self, args: list[str]):
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.lines: list[str] = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise self.failure("the C++ runner stopped during setup")
            text = line.decode().rstrip("\n")
            if text == "ready":
                break
            self.lines.append(text)

    def failure(self, what: str) -> Exception:
        """The runner's own error line as an exception (Unsupported for a model it refused)."""
        try:
            self.proc.wait(timeout=SETUP_TIMEOUT_S)
            err = self.proc.stderr.read().decode(errors="replace").strip()
        except subprocess.TimeoutExpired:
            self.proc.kill()
            err = ""
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        message = lines[-1][len("error:") :].strip() if lines else (err[-500:] or "no message")
        return Unsupported(f"openvino-cpp: {what} (exit {self.proc.returncode}): {message}")

    def send_line(self, text: str, expect: str) -> None:
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()
        got = self.proc.stdout.readline().decode().strip()
        if got != expect:
            raise self.failure(f"the C++ runner answered {got!r} to {text.split()[0]!r}")

    def infer(self) -> int:
        """One timed infer(); its steady_clock nanoseconds."""
        self.proc.stdin.write(b"r")
        self.proc.stdin.flush()
        return self._read_ns()

    def busy_wait(self, ns: int) -> int:
        """A busy-wait of `ns` on the runner's clock; the nanoseconds it measured."""
        self.proc.stdin.write(b"b" + struct.pack("<q", ns))
        self.proc.stdin.flush()
        return self._read_ns()

    def _read_ns(self) -> int:
        data = self.proc.stdout.read(8)
        if len(data) != 8:
            raise self.failure("the C++ runner stopped mid-run")
        return struct.unpack("<q", data)[0]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"q")
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


class OpenVinoCppBackend(CpuEngine):
    """OpenVINO on the CPU from C++ (see the module docstring for the timed region)."""

    name = "openvino-cpp"
    options = DECLARED_OPTIONS
    option_parser = staticmethod(parse_options)
    precisions = ("fp32", "fp16", "bf16", "best")
    precision_refusal = (
        "openvino-cpp: int8 needs the calibrated QDQ model; use the openvino backend"
    )

    def __init__(self, config: RunConfig):
        super().__init__(config)
        from perflab.backends.openvino import PRECISION_HINTS

        self.precision = config.precision
        self._hint = PRECISION_HINTS[self.precision][0]
        self._shm: Path | None = None
        self._buffer: np.memmap | None = None
        self._inputs: dict[str, np.ndarray] = {}
        self._outputs: dict[str, np.ndarray] = {}
        self._precision_effective: str | None = None

    def setup(self, model: ModelInfo | None, pipeline: Pipeline, timer: SetupTimer) -> None:
        binary = runner_binary()
        if self.opts["calibration_us"] is not None:
            with timer("load"):
                self._engine = RunnerProcess([str(binary), "--calibrate"])
            self._meta = {"calibration_us": self.opts["calibration_us"], **self._report()}
            return
        model = self.onnx_model(model)
        args = [
            str(binary), "--model", str(model.path), "--threads", str(self.opts["threads"]),
            "--streams", str(self.opts["streams"]), "--precision", self._hint or "-",
            "--hint", self.opts["hint"].upper(),
        ]  # fmt: skip
        for t in model.inputs:
            args += ["--shape", f"{t.name}={','.join(str(d) for d in t.shape)}"]
        with timer("load"):
            self._engine = RunnerProcess(args)
            self._map_buffers()
        self._check_precision()

    def _report(self) -> dict[str, Any]:
        assert self._engine is not None
        meta: dict[str, Any] = {"compiler": find_compiler()}
        for line in self._engine.lines:
            word, _, rest = line.partition(" ")
            if word == "version":
                meta["openvino_version"] = rest
            elif word == "prop":
                key, _, value = rest.partition(" ")
                key = {"INFERENCE_NUM_THREADS": "threads"}.get(key, key.lower())
                meta[key] = int(value) if value.isdigit() else value
        return meta

    def _map_buffers(self) -> None:
        """Create the shared tensor file, map it here, and hand it to the runner."""
        assert self._engine is not None
        ports = []
        for line in self._engine.lines:
            word, *fields = line.split(" ")
            if word in ("in", "out"):
                name, dtype, nbytes, dims = fields
                if dtype not in OV_DTYPES:
                    raise Unsupported(f"openvino-cpp: port {name} has element type {dtype}")
                shape = () if dims == "-" else tuple(int(d) for d in dims.split(","))
                ports.append((word, name, np.dtype(OV_DTYPES[dtype]), int(nbytes), shape))
        total = sum(p[3] for p in ports)
        shm_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, path = tempfile.mkstemp(prefix="perflab-ovcpp-", dir=shm_dir)
        os.ftruncate(fd, max(total, 1))
        os.close(fd)
        self._shm = Path(path)
        self._buffer = np.memmap(path, dtype=np.uint8, mode="r+", shape=(max(total, 1),))
        offset = 0
        for kind, name, dtype, nbytes, shape in ports:
            view = self._buffer[offset : offset + nbytes].view(dtype).reshape(shape)
            (self._inputs if kind == "in" else self._outputs)[name] = view
            offset += nbytes
        self._engine.send_line(f"shm {path}", "ok")

    def _check_precision(self) -> None:
        from perflab.backends.openvino import heavy_precisions
        from perflab.precisions import precision_effective, strict_refuses

        assert self._engine is not None
        layers = []
        for line in self._engine.lines:
            word, *fields = line.split(" ")
            if word == "layer" and len(fields) == 2:
                from perflab.backends.openvino import OV_PRECISION

                op_type, runtime = fields
                layers.append({"op_type": op_type, "precision": OV_PRECISION.get(runtime, runtime)})
        counts = heavy_precisions(layers)
        eff = self._precision_effective = precision_effective(counts) or "fp32"
        self._meta = {
            **self._report(),
            "heavy_layers_per_precision": counts,
            "precision_source": "runtime precision of the heavy layers of the compiled model",
            "input_dtypes": {k: str(v.dtype) for k, v in self._inputs.items()},
            "layers_per_precision": dict(Counter(r["precision"] for r in layers)),
        }
        if self.opts["strict_precision"] and strict_refuses(self.precision, eff):
            raise Unsupported(
                f"openvino-cpp: asked for {self.precision}, but the compiled model runs its heavy "
                f"layers in {eff} (heavy layers per precision: {counts}); set option "
                "strict_precision: false to measure it anyway"
            )

    def run(self, inputs: dict[str, np.ndarray], rec: Recorder) -> dict[str, np.ndarray]:
        """Inputs into the shared file, one timed infer() in C++; its duration is `compute`."""
        runner = self._engine
        assert runner is not None
        if self.opts["calibration_us"] is not None:
            t0 = now_ns()
            ns = runner.busy_wait(self.opts["calibration_us"] * 1000)
            rec.record(rec.iteration, COMPUTE, t0, ns)
            return {}
        for name, view in self._inputs.items():
            np.copyto(view, inputs[name], casting="same_kind")
        t0 = now_ns()
        rec.record(rec.iteration, COMPUTE, t0, runner.infer())
        return {name: np.array(view) for name, view in self._outputs.items()}

    def device_name(self) -> str:
        # OpenVINO's own CPU name, as the openvino backend reports it, so the two match up.
        return self._meta.get("full_device_name") or super().device_name()

    def precision_effective(self) -> str | None:
        return self._precision_effective

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self._inputs, self._outputs = {}, {}
        self._buffer = None
        if self._shm is not None:
            self._shm.unlink(missing_ok=True)
            self._shm = None
