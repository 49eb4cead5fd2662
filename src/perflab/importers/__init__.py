"""Importers: other tools' results (trtexec, ONNX Runtime profiles, Nsight Systems) as perflab runs.

Every importer parses its input completely before it writes anything, so a malformed file raises
`ImportFormatError` and leaves the output folder untouched. Each imported run is written with
`store.write_run`: child tables first, the `runs` row last (the commit marker).

The importer modules are loaded only when their kind is asked for, which keeps `import perflab`
light and lets this package hold the helpers they share without an import cycle.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from perflab import __version__ as _perflab_version
from perflab import store
from perflab.errors import ImportFormatError

KINDS = ("trtexec", "ort-profile", "nsys")

_DISPATCH = {
    "trtexec": ("perflab.importers.trtexec", "read_trtexec_runs"),
    "ort-profile": ("perflab.importers.ort_profile", "read_ort_profile_run"),
    "nsys": ("perflab.importers.nsys", "read_nsys_run"),
}

DEFAULT_STUDY = "imported"


def import_file(
    kind: str,
    paths: str | Path | Iterable[str | Path],
    out: str | Path,
    *,
    model: str | Path | None = None,
) -> list[str]:
    """Import one or more files of one kind into the result folder `out`; returns the run ids.

    `trtexec` takes all paths together (JSON exports given together belong to one run);
    `ort-profile` and `nsys` import each path as its own run. All files are parsed before the first
    one is written, so one bad file leaves `out` as it was. `model` (trtexec only) names the ONNX
    file the log timed (see `attach_model`).
    """
    if model is not None and kind != "trtexec":
        raise ImportFormatError(f"a model file goes with trtexec imports, not {kind}")
    if kind not in _DISPATCH:
        raise ImportFormatError(f"unknown import kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    path_list = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not path_list:
        raise ImportFormatError(f"no files given to import as {kind}")
    module_name, _ = _DISPATCH[kind]
    module = importlib.import_module(module_name)
    if kind == "trtexec":
        parsed = module.read_trtexec_runs(path_list)
        if model is not None:
            for run in parsed:
                attach_model(run.row, Path(model))
    elif kind == "ort-profile":
        parsed = [module.read_ort_profile_run(p) for p in path_list]
    else:
        parsed = [module.read_nsys_run(p, out=out) for p in path_list]
    return commit(out, parsed)


# --- helpers shared by the importer modules -------------------------------------------------


@dataclass
class ImportedRun:
    """One parsed run waiting to be written: its `runs` row and its child tables."""

    row: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    write_row: bool = True

    @property
    def run_id(self) -> str:
        return str(self.row["run_id"])


def base_row(run_id: str, backend: str, *, study: str | None = None, **values: object) -> dict:
    """A `runs` row with the fields every importer fills the same way."""
    row: dict[str, object] = {
        "run_id": run_id,
        "study": study or DEFAULT_STUDY,
        "created_at": datetime.now(timezone.utc),
        "status": "ok",
        "backend": backend,
        "perflab_version": _perflab_version,
    }
    row.update(values)
    for key in ("meta", "notes", "options", "input_shapes", "warmup_policy", "measure_policy"):
        if key in row and row[key] is not None and not isinstance(row[key], str):
            row[key] = store.json_text(row[key])
    return row


def frame(table: str, rows: list[Mapping[str, object]] | pd.DataFrame) -> pd.DataFrame:
    """Rows as a frame with exactly the table's columns (missing ones null), in schema order."""
    names = [c.name for c in store.TABLES[table]]
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    for name in names:
        if name not in df.columns:
            df[name] = None
    return df[names]


def attach_model(row: dict, model: Path) -> None:
    """Give an imported run the cost of the ONNX model it timed, at its batch size.

    The log's own name for the model stays in ``meta.model_in_log``. Weight bytes and the kernel
    count that the log printed for its engine are kept: the engine is what was timed."""
    from perflab import models

    batch = int(row.get("batch_size") or 1)
    info = models.resolve(str(model), batch_size=batch)
    meta = json.loads(row.get("meta") or "{}")
    meta["model_in_log"] = row.get("model")
    notes = json.loads(row.get("notes") or "[]")
    if row.get("model") and Path(str(row["model"])).name != model.name:
        notes.append(f"the log names {Path(str(row['model'])).name}; cost from {model.name}")
    row.update(
        model=str(model),
        model_sha256=info.source_sha256 or info.sha256,
        model_flops_per_sample=info.flops_per_sample,
        model_activation_bytes_per_sample=info.activation_bytes_per_sample,
        model_input_bytes_per_sample=models.tensor_bytes(info.inputs) / batch,
        model_output_bytes_per_sample=models.tensor_bytes(info.outputs) / batch,
    )
    row.setdefault("model_param_bytes", float(info.param_bytes))
    row.setdefault("model_kernels", float(info.node_count))
    row["meta"], row["notes"] = store.json_text(meta), store.json_text(notes)


def commit(out: str | Path, runs: list[ImportedRun]) -> list[str]:
    """Write parsed runs: each run's child tables, then its `runs` row (store.write_run)."""
    ids = []
    for run in runs:
        tables = {name: df for name, df in run.tables.items() if df is not None and len(df)}
        if run.write_row:
            store.write_run(Path(out), run.row, tables)
        else:
            for table, df in tables.items():
                store.write(Path(out), table, run.run_id, df)
        ids.append(run.run_id)
    return ids


def check_file(path: str | Path, what: str) -> bytes:
    """The first 64 bytes of a non-empty file (for format checks without reading it all);
    ImportFormatError naming the file when it is missing, a folder, or empty."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        raise ImportFormatError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ImportFormatError(f"{p} is a folder, not a {what} file") from None
    except OSError as exc:
        raise ImportFormatError(f"{p}: cannot read ({exc.strerror})") from None
    if not head:
        raise ImportFormatError(f"{p} is empty; expected a {what} file")
    return head


def read_bytes(path: str | Path, what: str) -> bytes:
    """The file's content, or ImportFormatError naming the file when it is missing or empty."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImportFormatError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ImportFormatError(f"{p} is a folder, not a {what} file") from None
    except OSError as exc:
        raise ImportFormatError(f"{p}: cannot read ({exc.strerror})") from None
    if not data.strip():
        raise ImportFormatError(f"{p} is empty; expected a {what} file")
    return data


__all__ = ["KINDS", "ImportedRun", "import_file"]
