"""trtexec console logs (TensorRT 7 to 11): the invocations a log holds, their statistics,
options, profile tables, and the runs made from them."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from perflab import run_row, store
from perflab.errors import ImportFormatError
from perflab.importers import ImportedRun, frame

BACKEND = "trtexec"
PROVIDER = "TensorRT"
DEFAULT_WARMUP_MS = 200.0

# A number as C++ iostreams print a float (default %g-like, std::fixed, scientific, inf/nan).
NUM = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf(?:inity)?|nan)"
_NUM_RE = re.compile(NUM, re.IGNORECASE)

_PREFIX_RE = re.compile(
    r"^\s*\[(?P<ts>\d{1,2}/\d{1,2}/\d{2,4}-\d{1,2}:\d{2}:\d{2})\]\s*\[(?P<sev>[A-Z!])\]\s?"
)
_RUNNING_RE = re.compile(r"^&&&& RUNNING\b(?P<rest>.*)$")
_END_RE = re.compile(r"^&&&& (?P<what>PASSED|FAILED|WAIVED)\b")
_BANNER_VERSION_RE = re.compile(r"\[TensorRT v(?P<v>\d+)\](?:\s*\[b(?P<b>\d+)\])?")
_CMD_RE = re.compile(r"#\s*(?P<cmd>\S*trtexec\S*.*)$")
_VERSION_LINE_RE = re.compile(r"^TensorRT version:\s*(?P<v>[\d.]+)\s*$")
_SECTION_RE = re.compile(
    r"^=== (?P<name>[A-Za-z][A-Za-z ]*?)(?: \((?P<n>\d+) iterations ?\))? ===\s*$"
)

# Statistic lines of the 8.0+ performance summary: "Name: min = 1 ms, max = 2 ms, ...".
_STAT_LINE_RE = re.compile(
    r"^(?P<name>[A-Za-z][A-Za-z0-9 /\-]*?)\s*:\s*(?P<body>(?:min|max|mean|median|percentile)\b.*=.*)$"
)
_STAT_PAIR_RE = re.compile(
    rf"(?P<key>min|max|mean|median|percentile\s*\(\s*(?P<pct>{NUM})\s*%\s*\)|percentile)"
    rf"\s*=\s*(?P<value>{NUM})\s*(?P<unit>ms|us|s)?(?:\s+at\s+(?P<at>{NUM})\s*%)?",
    re.IGNORECASE,
)
_THROUGHPUT_RE = re.compile(rf"^(?:Throughput|throughput):\s*(?P<v>{NUM})\s*qps\s*$")
_WALLTIME_RE = re.compile(rf"^(?:Total Host Walltime|walltime):\s*(?P<v>{NUM})\s*s\s*$")
_TOTAL_GPU_RE = re.compile(
    rf"^(?:Total GPU Compute Time|total compute time):\s*(?P<v>{NUM})\s*s\s*$"
)

# TRT 7 blocks: a header line ("Host Latency") then "min: 1 ms (end to end 2 ms)" lines.
_TRT7_HEADERS = {"host latency": "latency", "enqueue time": "enqueue", "gpu compute": "compute"}
_TRT7_LINE_RE = re.compile(
    rf"^(?P<key>min|max|mean|median|percentile):\s*(?P<v>{NUM})\s*ms"
    rf"(?:\s+at\s+(?P<at>{NUM})\s*%)?"
    rf"(?:\s*\(end to end\s+(?P<e2e>{NUM})\s*ms(?:\s+at\s+(?P<at2>{NUM})\s*%)?\))?\s*$"
)

_STAGES = {
    "latency": "latency",
    "host latency": "latency",
    "end-to-end host latency": "end_to_end",
    "enqueue time": "enqueue",
    "h2d latency": "h2d",
    "gpu compute time": "compute",
    "gpu compute": "compute",
    "d2h latency": "d2h",
}

_QUERIES_RE = re.compile(rf"^Timing trace has (?P<n>\d+) queries over (?P<s>{NUM}) s")
_WARMUP_RE = re.compile(rf"^Warmup completed (?P<n>\d+) queries over (?P<ms>{NUM}) ms")
_BUILT_RE = re.compile(rf"^Engine built in (?P<v>{NUM}) sec")
_LOADED_RE = re.compile(rf"^Engine loaded in (?P<v>{NUM}) sec")
# What the engine holds, as TensorRT prints it: the projection's weight bytes and kernel count.
_WEIGHTS_RE = re.compile(r"^Total Weights Memory:\s*(?P<v>[0-9]+)\s*bytes")
_ENGINE_SIZE_RE = re.compile(rf"^Loaded engine size:\s*(?P<v>{NUM})\s*(?P<u>[KMG]i?B)\b")
_ENGINE_LAYER_RE = re.compile(r"^Layer\([A-Za-z0-9_]+\): ")
_SIZE_UNITS = {"KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
_DESERIALIZED_RE = re.compile(rf"^Engine deserialized in (?P<v>{NUM}) sec")
# Lines that state one number (group "v"): the ParsedLog mapping it goes to and its key there.
_NUMBER_LINES = (
    (_THROUGHPUT_RE, "reported", ("host_walltime", "throughput_qps")),
    (_WALLTIME_RE, "reported", ("host_walltime", "walltime_s")),
    (_TOTAL_GPU_RE, "reported", ("compute", "total_s")),
    (_BUILT_RE, "facts", "build_s"),
    (_LOADED_RE, "facts", "engine_load_s"),
    (_DESERIALIZED_RE, "facts", "deserialize_s"),
)
_BINDING_RE = re.compile(
    r"^(?:Created input binding for (?P<a>.+?) with dimensions (?P<da>[\dx]+)"
    r"|Input binding for (?P<b>.+?) with dimensions (?P<db>[\dx]+) is created)"
)
_OVERRIDE_RE = re.compile(r"^Dynamic dimensions required for input: (?P<name>.+?), but no shapes")
_OVERRIDE_SHAPE_RE = re.compile(r"Automatically overriding shape to:\s*(?P<dims>[\dx]+)")
_AVERAGE_RE = re.compile(r"^Average on \d+ runs - ")
_UNSTABLE_RE = re.compile(rf"coefficient of variance = (?P<v>{NUM})%")

_OPTION_SECTIONS = {
    "Model Options",
    "Build Options",
    "System Options",
    "Inference Options",
    "Reporting Options",
    "Device Information",
}


def parse_number(text: str) -> float:
    """A number as trtexec prints it (C++ iostream float formatting) -> float."""
    m = _NUM_RE.fullmatch(text.strip())
    if not m:
        raise ImportFormatError(f"not a number as trtexec prints it: {text!r}")
    return float(m.group(0))


def split_prefix(line: str) -> tuple[str | None, str | None, str]:
    """`[03/07/2022-05:05:44] [I] message` -> (timestamp, severity, message); no prefix -> (None, None, line)."""
    line = line.rstrip("\r\n")
    m = _PREFIX_RE.match(line)
    if not m:
        return None, None, line
    return m.group("ts"), m.group("sev"), line[m.end() :]


def _stat_name(key: str, pct: str | None, at: str | None) -> str:
    key = key.lower()
    if key.startswith("percentile"):
        p = pct or at
        if p is None:
            raise ImportFormatError("a percentile without its level")
        return "p" + _format_pct(float(p))
    return key


def _format_pct(p: float) -> str:
    return str(int(p)) if float(p).is_integer() else repr(float(p))


def _to_ms(value: float, unit: str | None) -> float:
    if unit is None or unit.lower() == "ms":
        return value
    if unit.lower() == "us":
        return value / 1000.0
    return value * 1000.0


def parse_stat_line(message: str) -> tuple[str, dict[str, float]] | None:
    """Parse one 8.0+ summary line: `GPU Compute Time: min = 0.15 ms, ..., percentile(99%) = 0.16 ms`.

    Returns (stage, {statistic: value_ms}) or None when the line is not a statistic line. Names
    trtexec does not document become a snake_case stage so nothing printed is dropped.
    """
    m = _STAT_LINE_RE.match(message.strip())
    if not m:
        return None
    stats: dict[str, float] = {}
    for pair in _STAT_PAIR_RE.finditer(m.group("body")):
        if pair.group("key").lower() == "percentile" and not (
            pair.group("pct") or pair.group("at")
        ):
            continue  # a percentile without its level cannot be named
        name = _stat_name(pair.group("key"), pair.group("pct"), pair.group("at"))
        stats[name] = _to_ms(parse_number(pair.group("value")), pair.group("unit"))
    if not stats:
        return None
    raw = m.group("name").strip()
    stage = _STAGES.get(raw.lower()) or re.sub(r"[^a-z0-9]+", "_", raw.lower()).strip("_")
    return stage, stats


def parse_trt7_line(message: str) -> list[tuple[str, float, bool]] | None:
    """Parse one TRT 7 block line: `percentile: 1.8 ms at 99% (end to end 1.9 ms at 99%)`.

    Returns [(statistic, value_ms, is_end_to_end), ...] or None when the line does not match.
    """
    m = _TRT7_LINE_RE.match(message.strip())
    if not m or (m.group("key") == "percentile" and not (m.group("at") or m.group("at2"))):
        return None
    name = _stat_name(m.group("key"), None, m.group("at") or m.group("at2"))
    out = [(name, parse_number(m.group("v")), False)]
    if m.group("e2e") is not None:
        out.append((name, parse_number(m.group("e2e")), True))
    return out


def decode_version(text: str) -> str:
    """TensorRT version as the banner or log prints it -> "major.minor.patch".

    `8.2.3` stays; the packed integers decode as TRT <= 9: major*1000 + minor*100 + patch
    (`8003` -> 8.0.3), TRT >= 10: major*10000 + minor*100 + patch (`101401` -> 10.14.1).
    """
    text = text.strip()
    if "." in text:
        return text
    n = int(text)
    if n >= 10000:
        return f"{n // 10000}.{(n // 100) % 100}.{n % 100}"
    return f"{n // 1000}.{(n // 100) % 10}.{n % 100}"


def _major(version: str | None) -> int | None:
    if not version:
        return None
    try:
        return int(version.split(".")[0])
    except ValueError:
        return None


def parse_command(cmd: str) -> dict[str, object]:
    """`trtexec --onnx=m.onnx --fp16 --shapes=x:1x3` -> {"onnx": "m.onnx", "fp16": True, ...}."""
    try:
        tokens = shlex.split(cmd)
    except ValueError:
        tokens = cmd.split()
    flags: dict[str, object] = {}
    for tok in tokens[1:]:
        if not tok.startswith("-"):
            continue
        key, sep, value = tok.lstrip("-").partition("=")
        if not key:
            continue
        flags[key] = value if sep else True
    return flags


def parse_shapes(spec: str) -> dict[str, list[int]]:
    """`x:0:4x1x28x28,'y':1x2` (or `x:0=4x1x28x28`) -> {"x:0": [4, 1, 28, 28], "y": [1, 2]}."""
    shapes: dict[str, list[int]] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part or part == "model":
            continue
        m = re.match(r"^(?P<name>.+)[:=](?P<dims>\d+(?:x\d+)*)$", part)
        if not m:
            continue
        name = m.group("name").strip().strip("'\"")
        shapes[name] = [int(d) for d in m.group("dims").split("x")]
    return shapes


# --- log parsing ----------------------------------------------------------------------------


@dataclass
class _LogRun:
    lines: list[tuple[str | None, str | None, str]] = field(default_factory=list)
    command: str | None = None
    banner_version: str | None = None
    build: str | None = None
    end: str | None = None


def _split_runs(text: str) -> list[_LogRun]:
    runs: list[_LogRun] = []
    current: _LogRun | None = None
    for raw in text.splitlines():
        ts, sev, msg = split_prefix(raw)
        if ts is None:
            running = _RUNNING_RE.match(msg.strip())
            if running:
                current = _LogRun()
                runs.append(current)
                rest = running.group("rest")
                vm = _BANNER_VERSION_RE.search(rest)
                if vm:
                    current.banner_version = decode_version(vm.group("v"))
                    current.build = vm.group("b")
                cm = _CMD_RE.search(rest)
                if cm:
                    current.command = cm.group("cmd").strip()
                continue
            end = _END_RE.match(msg.strip())
            if end and current is not None:
                current.end = end.group("what")
                continue
        if current is None:
            current = _LogRun()
            runs.append(current)
        current.lines.append((ts, sev, msg))
    return runs


@dataclass
class ParsedLog:
    """What one trtexec invocation in a log says, before it becomes table rows."""

    command: str | None = None
    flags: dict[str, object] = field(default_factory=dict)
    version: str | None = None
    build: str | None = None
    end: str | None = None
    started: str | None = None
    sections: dict[str, dict[str, str]] = field(default_factory=dict)
    reported: dict[tuple[str, str], float] = field(default_factory=dict)
    profile: list[dict] = field(default_factory=list)
    profile_iterations: int | None = None
    bindings: dict[str, list[int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)
    n_lines: int = 0

    @property
    def has_numbers(self) -> bool:
        return bool(self.reported) or bool(self.profile)

    def count_line(self, fact: str) -> None:
        """One more line of the kind `fact` counts (such as the engine's layer lines)."""
        self.facts[fact] = int(self.facts.get(fact, 0)) + 1


def _parse_profile_header(msg: str) -> list[str] | None:
    if "Layer" not in msg or "Time" not in msg:
        return None
    cols = re.findall(r"Avg\. Time \(ms\)|Median Time \(ms\)|Time \(ms\)|Time %", msg)
    return cols or None


def _parse_profile_row(msg: str, ncols: int) -> tuple[str, list[float]] | None:
    m = re.match(r"^\s*(?P<name>.*?\S)\s+" + r"\s+".join([f"({NUM})"] * ncols) + r"\s*$", msg)
    if not m:
        return None
    return m.group("name"), [parse_number(m.group(i + 2)) for i in range(ncols)]


def _parse_log_run(run: _LogRun) -> ParsedLog:
    p = ParsedLog(command=run.command, version=run.banner_version, build=run.build, end=run.end)
    if run.command:
        p.flags = parse_command(run.command)
    section: str | None = None
    trt7_block: str | None = None
    profile_cols: list[str] | None = None
    in_profile = False
    for ts, sev, msg in run.lines:
        p.n_lines += 1
        if ts and p.started is None:
            p.started = ts
        text = msg.strip()
        if sev == "E" or sev == "F":
            p.errors.append(text)
        elif sev == "W" and text:
            p.warnings.append(text)
            um = _UNSTABLE_RE.search(text)
            if um:
                p.facts["gpu_compute_cv_pct"] = parse_number(um.group("v"))
        if text.startswith("[TRT]"):
            _engine_fact(p, text[len("[TRT]") :].strip())
            continue
        if _ENGINE_LAYER_RE.match(text):
            p.count_line("engine_layers")
            continue
        sm = _SECTION_RE.match(text)
        if sm:
            name = sm.group("name").strip()
            trt7_block = None
            in_profile = name == "Profile"
            profile_cols = None
            if in_profile and sm.group("n"):
                p.profile_iterations = int(sm.group("n"))
            section = name if name in _OPTION_SECTIONS else None
            if section:
                p.sections.setdefault(section, {})
            continue
        if in_profile:
            if profile_cols is None:
                profile_cols = _parse_profile_header(text)
                if profile_cols is None and text:
                    in_profile = False
                continue
            if not text:
                if p.profile:
                    in_profile = False
                continue
            row = _parse_profile_row(text, len(profile_cols))
            if row is None:
                in_profile = False
            else:
                name, values = row
                rec = dict(zip(profile_cols, values))
                if name == "Total":
                    p.facts["profile_total_ms"] = rec.get("Time (ms)")
                else:
                    p.profile.append({"layer": name, **rec})
                continue
        vm = _VERSION_LINE_RE.match(text)
        if vm:
            p.version = decode_version(vm.group("v"))
            section = None
            continue
        if section is not None:
            if not text:
                continue
            key, sep, value = text.partition(":")
            if sep and key.strip() and not key.startswith(" "):
                p.sections[section][key.strip()] = value.strip()
                continue
            section = None
        # TRT 7 summary blocks
        low = text.lower()
        if low in _TRT7_HEADERS:
            trt7_block = _TRT7_HEADERS[low]
            continue
        if trt7_block is not None:
            parsed7 = parse_trt7_line(text)
            if parsed7 is not None:
                for stat, value, e2e in parsed7:
                    stage = "end_to_end" if e2e else trt7_block
                    p.reported[(stage, stat)] = value
                continue
            if not (
                _THROUGHPUT_RE.match(text) or _WALLTIME_RE.match(text) or _TOTAL_GPU_RE.match(text)
            ):
                trt7_block = None
        if _number_line(p, text):
            continue
        stat = parse_stat_line(text)
        if stat is not None:
            stage, stats = stat
            for name, value in stats.items():
                p.reported[(stage, name)] = value
            continue
        if _AVERAGE_RE.match(text):
            p.count_line("trace_average_lines")
            continue
        m = _QUERIES_RE.match(text)
        if m:
            p.facts["n_measure"] = int(m.group("n"))
            p.facts["trace_wall_s"] = parse_number(m.group("s"))
            continue
        m = _WARMUP_RE.match(text)
        if m:
            p.facts["n_warmup"] = int(m.group("n"))
            p.facts["warmup_ms"] = parse_number(m.group("ms"))
            continue
        m = _BINDING_RE.match(text)
        if m:
            dims = m.group("da") or m.group("db")
            p.bindings[m.group("a") or m.group("b")] = [int(d) for d in dims.split("x")]
            continue
        m = _OVERRIDE_RE.match(text)
        if m:
            om = _OVERRIDE_SHAPE_RE.search(text)
            if om:
                p.facts.setdefault("overridden_shapes", {})[m.group("name")] = [
                    int(d) for d in om.group("dims").split("x")
                ]
    return p


def _number_line(p: ParsedLog, text: str) -> bool:
    """Keep the number of a line that states one (_NUMBER_LINES); whether `text` was one."""
    for pattern, mapping, key in _NUMBER_LINES:
        m = pattern.match(text)
        if m:
            getattr(p, mapping)[key] = parse_number(m.group("v"))
            return True
    return False


def _engine_fact(p: ParsedLog, text: str) -> None:
    """Weight bytes and engine size from TensorRT's own log lines (the last one printed wins)."""
    m = _WEIGHTS_RE.match(text)
    if m:
        p.facts["engine_weights_bytes"] = int(m.group("v"))
        return
    m = _ENGINE_SIZE_RE.match(text)
    if m:
        p.facts["engine_size_bytes"] = int(parse_number(m.group("v")) * _SIZE_UNITS[m.group("u")])


def _engine_cost(p: ParsedLog, notes: list[str]) -> dict[str, float]:
    """Model-cost columns the log itself gives: the engine's weight bytes and its layer count.

    The engine is what trtexec timed, whatever ONNX file a user names beside the log, so these
    take precedence for the roofline. The engine size (TRT 8) bounds the weights from above."""
    cost: dict[str, float] = {}
    if "engine_weights_bytes" in p.facts:
        cost["model_param_bytes"] = float(p.facts["engine_weights_bytes"])
        notes.append("model_param_bytes: the engine's Total Weights Memory as TensorRT printed it")
    elif "engine_size_bytes" in p.facts:
        cost["model_param_bytes"] = float(p.facts["engine_size_bytes"])
        notes.append(
            "model_param_bytes: the engine size TensorRT printed (weights plus kernels: an upper"
            " bound)"
        )
    if p.facts.get("engine_layers"):
        cost["model_kernels"] = float(p.facts["engine_layers"])
        notes.append("model_kernels: the layers of the engine's layer information")
    return cost


def _option(p: ParsedLog, section: str, *keys: str) -> str | None:
    values = p.sections.get(section, {})
    for key in keys:
        if key in values:
            return values[key]
    return None


def _enabled(value: str | None) -> bool | None:
    if value is None:
        return None
    v = value.strip().lower()
    if v.startswith("enabled") or v in {"true", "1", "yes", "on"}:
        return True
    if v.startswith("disabled") or v in {"false", "0", "no", "off"}:
        return False
    return None


def _flag(flags: dict[str, object], name: str) -> bool:
    value = flags.get(name)
    if value is None:
        return False
    if value is True:
        return True
    return str(value).lower() not in {"0", "false", "off", "no"}


def _int_or_none(value: object) -> int | None:
    if value is None:
        return None
    m = re.match(r"^\s*(-?\d+)", str(value))
    return int(m.group(1)) if m else None


def _duration(value: str | None) -> tuple[float | None, float | None]:
    """`3s (+ 200ms warm up)` -> (3.0, 200.0)."""
    if not value:
        return None, None
    d = re.match(rf"^\s*({NUM})\s*s", value)
    w = re.search(rf"\(\+\s*({NUM})\s*ms warm ?up\)", value)
    return (float(d.group(1)) if d else None, float(w.group(1)) if w else None)


def _precision(flags: dict[str, object], build_precision: str | None) -> str | None:
    if _flag(flags, "best"):
        return "best"
    if _flag(flags, "stronglyTyped"):
        return None
    for name in ("int8", "fp8", "int4", "bf16", "fp16"):
        if _flag(flags, name):
            return name
    if flags:
        return "fp32"
    if build_precision:
        bp = build_precision.upper()
        for token, name in (("INT8", "int8"), ("FP8", "fp8"), ("BF16", "bf16"), ("FP16", "fp16")):
            if token in bp:
                return name
        if "FP32" in bp:
            return "fp32"
    return "fp32"


def _switch(
    p: ParsedLog,
    flags: dict[str, object],
    label: str,
    flag_values: tuple[tuple[str, bool], ...],
    default: bool | None,
) -> bool | None:
    """An inference option as the log printed it, else as the command line set it, else the
    version's default."""
    printed = _enabled(_option(p, "Inference Options", label))
    if printed is not None:
        return printed
    for flag, value in flag_values:
        if _flag(flags, flag):
            return value
    return default


def _log_options(p: ParsedLog) -> dict[str, object]:
    """The options that change what the numbers mean, from the printed options, then the flags,
    then the version's defaults (TRT 11 turned data transfers off, CUDA graphs and spin-wait on)."""
    flags = p.flags
    major = _major(p.version)
    # TensorRT 11 turned data transfers off and CUDA graphs and spin-wait on by default.
    trt11 = major is not None and major >= 11
    default_on = trt11 if major is not None else None
    default_transfers = not trt11 if major is not None else None
    transfers = _switch(
        p,
        flags,
        "Data transfers",
        (("noDataTransfers", False), ("includeDataTransfers", True)),
        default_transfers,
    )
    cuda_graph = _switch(
        p, flags, "CUDA Graph", (("useCudaGraph", True), ("noCudaGraph", False)), default_on
    )
    spin = _switch(
        p, flags, "Spin-wait", (("useSpinWait", True), ("noSpinWait", False)), default_on
    )
    threads = _enabled(_option(p, "Inference Options", "Multithreading"))
    if threads is None and "threads" in flags:
        threads = _flag(flags, "threads")
    streams = _int_or_none(_option(p, "Inference Options", "Inference Streams", "Streams"))
    if streams is None:
        streams = _int_or_none(flags.get("infStreams", flags.get("streams")))
    avg_runs = _int_or_none(_option(p, "Reporting Options", "Averages"))
    if avg_runs is None:
        avg_runs = _int_or_none(flags.get("avgRuns"))
    iterations = _int_or_none(_option(p, "Inference Options", "Iterations"))
    if iterations is None:
        iterations = _int_or_none(flags.get("iterations"))
    duration_s, warmup_ms = _duration(_option(p, "Inference Options", "Duration"))
    if duration_s is None and flags.get("duration") not in (None, True):
        duration_s = float(str(flags["duration"]))
    if warmup_ms is None and flags.get("warmUp") not in (None, True):
        warmup_ms = float(str(flags["warmUp"]))
    percentiles = _option(p, "Reporting Options", "Percentiles", "Percentile")
    return {
        "data_transfers_included": transfers,
        "no_data_transfers": None if transfers is None else not transfers,
        "cuda_graph": cuda_graph,
        "spin_wait": spin,
        "threads": threads,
        "streams": streams,
        "avg_runs": avg_runs,
        "iterations": iterations,
        "duration_s": duration_s,
        "warmup_ms": warmup_ms,
        "percentiles": percentiles,
        "separate_profile_run": _enabled(_option(p, "Inference Options", "Separate profiling")),
    }


def _model(p: ParsedLog) -> str | None:
    for key in ("onnx", "loadEngine", "deploy", "uff", "model"):
        value = p.flags.get(key)
        if isinstance(value, str) and value:
            return value
    for key in ("Model", "Load engine", "Prototxt"):
        value = _option(p, "Model Options", key) or _option(p, "Build Options", key)
        if value:
            return value
    return None


def _shapes_and_batch(p: ParsedLog) -> tuple[dict[str, list[int]], int, str]:
    if p.bindings:
        shapes = dict(p.bindings)
        source = "input bindings"
    else:
        shapes = {}
        source = ""
        spec = p.flags.get("shapes")
        if isinstance(spec, str):
            shapes, source = parse_shapes(spec), "--shapes"
        if not shapes:
            printed = _option(
                p, "Inference Options", "Input inference shape", "Input inference shapes"
            )
            if printed:
                shapes, source = parse_shapes(printed), "printed inference shape"
        if not shapes and p.facts.get("overridden_shapes"):
            shapes, source = dict(p.facts["overridden_shapes"]), "automatic shape override"
    batch_opt = _option(p, "Inference Options", "Batch")
    batch_flag = _int_or_none(p.flags.get("batch"))
    if batch_flag:
        return shapes, batch_flag, "--batch"
    if batch_opt and batch_opt.strip().isdigit() and int(batch_opt) > 0:
        return shapes, int(batch_opt), "printed batch"
    if shapes:
        first = next(iter(shapes.values()))
        if first:
            return shapes, first[0], f"first dimension of the first input ({source})"
    return shapes, 1, "default"


def _device(p: ParsedLog) -> tuple[str | None, str | None]:
    name = _option(p, "Device Information", "Selected Device")
    dev = _option(p, "Device Information", "Selected Device ID") or _option(
        p, "System Options", "Device"
    )
    index = _int_or_none(dev)
    return (f"cuda:{index}" if index is not None else None), name


def _started_at(ts: str | None) -> datetime | None:
    if not ts:
        return None
    for fmt in ("%m/%d/%Y-%H:%M:%S", "%m/%d/%y-%H:%M:%S"):
        try:
            return datetime.strptime(ts, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


def _reported_rows(run_id: str, reported: dict[tuple[str, str], float]) -> list[dict]:
    return [
        {"run_id": run_id, "stage": stage, "statistic": stat, "value_ms": value}
        for (stage, stat), value in reported.items()
    ]


def _profile_layer_rows(run_id: str, p: ParsedLog) -> list[dict]:
    rows = []
    for rec in p.profile:
        total = rec.get("Time (ms)")
        rows.append(
            {
                "run_id": run_id,
                "layer": rec["layer"],
                "provider": PROVIDER,
                "count": p.profile_iterations,
                "total_ms": total,
                "median_ms": rec.get("Median Time (ms)"),
            }
        )
    return rows


def _log_run(p: ParsedLog, source: Path, index: int, n_runs: int) -> ImportedRun:
    run_id = store.new_run_id()
    notes: list[str] = []
    options = _log_options(p)
    device, device_name = _device(p)
    shapes, batch, batch_source = _shapes_and_batch(p)
    precision = _precision(p.flags, _option(p, "Build Options", "Precision"))
    if _flag(p.flags, "stronglyTyped"):
        notes.append("--stronglyTyped: layer precisions follow the model's tensor types")
    if (
        precision == "fp32"
        and "loadEngine" in p.flags
        and not any(_flag(p.flags, f) for f in ("fp16", "int8", "bf16", "fp8", "best"))
    ):
        notes.append(
            "engine loaded from a file: its build precision is not in the log; fp32 assumed"
        )
    if batch_source != "input bindings":
        notes.append(f"batch size from {batch_source}")

    has_numbers = p.has_numbers
    status, error = "ok", None
    if p.end == "FAILED" or (p.errors and not has_numbers):
        status = "failed"
        error = "; ".join(p.errors[:3]) or "trtexec reported &&&& FAILED"
    elif not has_numbers:
        skip = _enabled(
            _option(p, "Build Options", "Skip inference")
            or _option(p, "Inference Options", "Skip inference")
        )
        if skip or _flag(p.flags, "skipInference"):
            notes.append("inference skipped (--skipInference): build only, no timings")
        else:
            status = "failed"
            error = "trtexec printed no performance numbers"
    if p.end is None:
        notes.append("log ends without the &&&& PASSED/FAILED line (cut short)")
    if len(p.reported) and not any(s in {"mean", "median"} for _, s in p.reported):
        notes.append("summary holds no mean or median")

    throughput = p.reported.get(("host_walltime", "throughput_qps"))
    walltime = p.reported.get(("host_walltime", "walltime_s"))
    meta = {
        "source": str(source),
        "run_in_file": index,
        "runs_in_file": n_runs,
        "tensorrt_version": p.version,
        "tensorrt_build": p.build,
        "command": p.command,
        **options,
        "throughput_qps": throughput,
        "walltime_s": walltime,
        "total_gpu_compute_s": p.reported.get(("compute", "total_s")),
        "log_started": p.started,
        "log_time_zone": "unknown (trtexec prints local time; created_at stores it as UTC)",
        "warnings": p.warnings[:20],
        "printed_options": p.sections,
        **{k: v for k, v in p.facts.items() if k != "overridden_shapes"},
    }
    load_s = p.facts.get("engine_load_s", p.facts.get("deserialize_s"))
    build_s = p.facts.get("build_s")
    warmup_policy = {"ms": options["warmup_ms"]} if options["warmup_ms"] is not None else None
    measure_policy = {
        k: v
        for k, v in (("iterations", options["iterations"]), ("seconds", options["duration_s"]))
        if v is not None
    } or None
    model = _model(p)
    label = " ".join(
        x for x in ("trtexec", Path(model).name if model else None, precision, f"bs{batch}") if x
    )
    row = run_row.new(
        run_id,
        BACKEND,
        label=label,
        created_at=_started_at(p.started) or datetime.now(timezone.utc),
        status=status,
        error=error,
        model=model,
        device=device,
        device_name=device_name,
        precision=precision,
        batch_size=batch,
        input_shapes=shapes or None,
        options=p.flags or None,
        warmup_policy=warmup_policy,
        measure_policy=measure_policy,
        n_warmup=p.facts.get("n_warmup"),
        n_measure=p.facts.get("n_measure"),
        measure_wall_s=walltime if walltime is not None else p.facts.get("trace_wall_s"),
        load_ms=None if load_s is None else float(load_s) * 1000.0,
        build_ms=None if build_s is None else float(build_s) * 1000.0,
        **_engine_cost(p, notes),
        notes=notes,
        meta=meta,
    )
    tables = {
        "reported": frame("reported", _reported_rows(run_id, p.reported)),
        "layers": frame("layers", _profile_layer_rows(run_id, p)),
    }
    return ImportedRun(row=row, tables=tables)


def parse_log(text: str, source: str | Path = "<log>") -> list[ParsedLog]:
    """Split a console log into its trtexec invocations and parse each one.

    Raises ImportFormatError when the text is not a trtexec log, or when it ends before any run
    printed a number (a log cut short).
    """
    if "\x00" in text:
        raise ImportFormatError(f"{source} is not a trtexec log (binary content)")
    raw_runs = _split_runs(text)
    parsed = [_parse_log_run(r) for r in raw_runs]
    recognised = [
        p
        for p in parsed
        if p.command or p.version or p.sections or p.has_numbers or p.end or p.errors
    ]
    if not recognised:
        raise ImportFormatError(
            f"{source} is not a trtexec log: no '&&&& RUNNING', options, summary or profile found"
        )
    if not any(p.has_numbers or p.end for p in recognised):
        raise ImportFormatError(
            f"{source} has no performance summary: the log ends before trtexec printed any "
            "numbers (truncated log?)"
        )
    return recognised
