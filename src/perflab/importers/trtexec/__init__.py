"""Import trtexec console logs (TensorRT 7 to 11) and its JSON exports as perflab runs.

What lands where:

- `runs`: one row per trtexec invocation (a log may hold several, each opened by its
  `&&&& RUNNING` line). backend `trtexec`; model from `--onnx=` / `--loadEngine=` (or `--deploy=`,
  `--uff=`); precision from the build flags; `meta` holds the TensorRT version, the command line and
  every option that changes what the numbers mean (data transfers, CUDA graph, spin-wait, streams,
  averaging, iterations, duration, warmup), plus the reported throughput and wall time.
- `reported`: every statistic trtexec printed, as printed (value_ms in ms), under the region names
  of perflab.tool_stages: `compute` (GPU Compute Time), `h2d`, `d2h`, `enqueue`, `latency`
  (Latency, or TRT 7's Host Latency: h2d + compute + d2h, not perflab's `e2e`), and `end_to_end`
  for trtexec's *end-to-end host latency* (TRT 7's "(end to end ...)" numbers and TRT 8.0-8.4's
  "End-to-End Host Latency"), which includes waiting for the previous query. Statistics: mean,
  median, min, max, pNN (percentile(NN%)). Three whole-run statistics carry their unit in the
  name instead of ms: `throughput_qps` and `walltime_s` (stage host_walltime) and `total_s`
  (stage compute, Total GPU Compute Time).
- `samples` from `--exportTimes`: one row per query and stage (h2d, compute, d2h, enqueue,
  latency, end_to_end), host_ns = trtexec's value; for h2d/compute/d2h, which trtexec times with
  CUDA events, the same value is also in device_ns (null for the host times). Iterations are 0-based over the whole file. Older trtexec versions exported the
  warmup queries too; trtexec itself counts a query as warmup when its compute started before the
  warmup time, and those rows get phase `warmup` (the others `measure`).
- `layers` from `--exportProfile`, from a log's `=== Profile ===` table, and from
  `--exportLayerInfo` (op_type = LayerType, precision from the output format; no times).

`logs` reads console logs, `exports` the JSON files; this module tells them apart by content.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from perflab.errors import ImportFormatError
from perflab.importers import ImportedRun, commit, read_bytes, refuse_non_finite
from perflab.importers.trtexec.exports import (
    _Exports,
    _exports_run,
    _json_kind,
    parse_layer_info,
    parse_profile,
    parse_summary_json,
    parse_times,
)
from perflab.importers.trtexec.logs import (
    _PREFIX_RE,
    ParsedLog,
    _log_run,
    decode_version,
    parse_log,
    parse_number,
    parse_stat_line,
    parse_trt7_line,
)

__all__ = [
    "ParsedLog",
    "decode_version",
    "import_trtexec",
    "parse_layer_info",
    "parse_log",
    "parse_number",
    "parse_profile",
    "parse_stat_line",
    "parse_summary_json",
    "parse_times",
    "parse_trt7_line",
    "read_trtexec_runs",
]


# --- entry points ---------------------------------------------------------------------------


def _looks_like_log(text: str) -> bool:
    return (
        "&&&& RUNNING" in text
        or "=== Performance summary ===" in text
        or any(_PREFIX_RE.match(line) for line in text.splitlines()[:50])
    )


def read_trtexec_runs(paths: str | Path | Iterable[str | Path]) -> list[ImportedRun]:
    """Parse logs and JSON exports into runs without writing anything.

    Each log invocation is one run. JSON exports given together belong to one run; when exactly
    one log run is given with them, they complete that run (its warmup time, batch and options
    then apply to the exported queries).
    """
    path_list = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not path_list:
        raise ImportFormatError("no trtexec files given")
    logs: list[tuple[Path, list[ParsedLog]]] = []
    exports = _Exports()
    for path in path_list:
        data = read_bytes(path, "trtexec log or JSON export")
        text = data.decode("utf-8", errors="replace")
        stripped = text.lstrip()
        if stripped[:1] in ("[", "{") and not _PREFIX_RE.match(stripped):
            try:
                parsed_json = json.loads(text, parse_constant=refuse_non_finite)
            except json.JSONDecodeError as exc:
                if _looks_like_log(text):
                    logs.append((path, parse_log(text, path)))
                    continue
                raise ImportFormatError(
                    f"{path}: JSON is malformed or cut short (line {exc.lineno}: {exc.msg})"
                ) from None
            kind = _json_kind(parsed_json)
            if kind is None:
                raise ImportFormatError(
                    f"{path} is JSON but not a trtexec export (--exportTimes, --exportProfile, "
                    "--exportLayerInfo) or a performance summary"
                )
            getattr(exports, kind).append((path, parsed_json))
            continue
        logs.append((path, parse_log(text, path)))
    runs: list[ImportedRun] = []
    parsed_pairs: list[tuple[ParsedLog, ImportedRun]] = []
    for path, parsed in logs:
        for i, p in enumerate(parsed):
            run = _log_run(p, path, i, len(parsed))
            runs.append(run)
            parsed_pairs.append((p, run))
    if exports.any():
        if len(parsed_pairs) > 1:
            raise ImportFormatError(
                "JSON exports given with several trtexec runs: it is not clear which run they "
                "belong to; import them with the one log they came from"
            )
        if parsed_pairs:
            p, run = parsed_pairs[0]
            _exports_run(exports, p, run)
        else:
            runs.append(_exports_run(exports, None, None))
    return runs


def import_trtexec(paths: str | Path | Iterable[str | Path], out: str | Path) -> list[str]:
    """Import trtexec logs and/or JSON exports into `out`; returns the new run ids.

    The kind of each file (console log or which JSON export) is read from its content. Nothing is
    written unless every file parses.
    """
    return commit(out, read_trtexec_runs(paths))
