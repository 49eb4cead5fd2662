"""Model files and their cache: where models live, reading and writing ONNX safely, and
small readers of a graph's declared inputs and metadata."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perflab.cache import cache_root
from perflab.errors import ModelError
from perflab.untrusted import quote

if TYPE_CHECKING:  # onnx and numpy stay out of `import perflab`'s import time
    import onnx


#: Metadata keys the zoo writes into its models; `resolve` reads them from any model.
META_DIM_DEFAULTS = "perflab.dim_defaults"  # JSON {symbolic dim name: default size}
META_VOCAB = "perflab.vocab_size"
META_TASK = "perflab.task"
META_POSTPROCESS = "perflab.postprocess"


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output with its shape resolved for a batch size.

    `shape` holds ints; `dtype` is a numpy dtype name ("float32", "int64", ...).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str


def tensor_bytes(tensors: Sequence[TensorSpec]) -> int:
    """Bytes of these tensors at their resolved shapes (dims of -1 or 0 count as 0 bytes)."""
    import numpy as np

    return sum(
        int(np.dtype(t.dtype).itemsize) * math.prod(max(d, 0) for d in t.shape) for t in tensors
    )


# ---------------------------------------------------------------------------------------------
# Reading a graph's declared inputs and metadata
# ---------------------------------------------------------------------------------------------


def _dims_of(vi: Any) -> list[int | str]:
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
        for d in vi.type.tensor_type.shape.dim
    ]


def _dtype_name(elem_type: int) -> str:
    from onnx import helper

    try:
        return helper.tensor_dtype_to_np_dtype(elem_type).name
    except Exception:  # noqa: BLE001 - types numpy lacks (bfloat16, float8, int4)
        return helper.tensor_dtype_to_string(elem_type).removeprefix("TensorProto.").lower()


def _metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _default_shapes(model: onnx.ModelProto, batch_size: int = 1) -> dict[str, list[int]]:
    defaults = json.loads(_metadata(model).get(META_DIM_DEFAULTS, "{}"))
    shapes = {}
    for vi in model.graph.input:
        dims = _dims_of(vi)
        shapes[vi.name] = [batch_size if d == "N" else defaults.get(d, d) for d in dims]
    return shapes


# ---------------------------------------------------------------------------------------------
# Files and the cache
# ---------------------------------------------------------------------------------------------


def _models_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    d = cache_root(cache_dir) / "models"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _write_atomic(path: Path, data: bytes) -> None:
    # A temporary name in the same folder and a rename: concurrent runs building the same
    # model never see a half-written file, and the rename is atomic on POSIX and Windows.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _safe_stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60] or "model"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _load_proto(path: Path) -> onnx.ModelProto:
    """Parse an ONNX file without its external data; ModelError if it is not ONNX."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except OSError as e:
        raise ModelError(f"cannot read model file {path}: {e.strerror or _one_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError, RuntimeWarning, ...
        raise ModelError(
            f"{path} is not an ONNX model (truncated, or another format): {_one_line(e)}"
        ) from None
    # Protobuf parses many non-ONNX byte strings into a mostly empty message without error.
    if model.ir_version <= 0 or not model.graph.node or not model.graph.output:
        raise ModelError(
            f"{path} is not an ONNX model (no graph with nodes and outputs after "
            f"parsing {path.stat().st_size} bytes)"
        )
    return model


def _check_external_data(model: onnx.ModelProto, path: Path) -> None:
    from onnx import TensorProto

    for init in model.graph.initializer:
        if init.data_location != TensorProto.EXTERNAL:
            continue
        entries = {e.key: e.value for e in init.external_data}
        loc = entries.get("location", "")
        target = path.parent / loc
        folder = path.parent.resolve()
        if loc and (Path(loc).is_absolute() or folder not in target.resolve().parents):
            # Refused before it is opened, and without its size: the model names any file.
            raise ModelError(
                f"external data {quote(loc)} of initializer {quote(init.name)} points outside "
                f"the model's folder {folder}; keep external data next to {path.name}"
            )
        if not loc or not target.is_file():
            raise ModelError(
                f"external data file {loc!r} of initializer {init.name!r} is "
                f"missing (expected at {target}); keep it next to {path.name}"
            )
        need = int(entries.get("offset", 0) or 0) + int(entries.get("length", 0) or 0)
        if target.stat().st_size < need:
            raise ModelError(
                f"external data file {target} is shorter ({target.stat().st_size}"
                f" bytes) than initializer {init.name!r} needs ({need} bytes)"
            )


def _save_model(model: onnx.ModelProto, path: Path) -> None:
    import onnx

    if model.ByteSize() < 1_800_000_000:
        _write_atomic(path, model.SerializeToString())
        return
    # Over protobuf's 2 GiB limit the weights must live in a side file.
    tmp_dir = Path(tempfile.mkdtemp(dir=path.parent, prefix=".save."))
    try:
        data_name = f"{path.name}.data"
        onnx.save_model(
            model,
            str(tmp_dir / path.name),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_name,
        )
        os.replace(tmp_dir / data_name, path.parent / data_name)
        os.replace(tmp_dir / path.name, path)
    finally:
        for p in tmp_dir.iterdir():
            p.unlink()
        tmp_dir.rmdir()
