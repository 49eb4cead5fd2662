"""The zoo as users see it: the list of built-in models and their export to a file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from perflab.errors import ModelError
from perflab.models.conversion import convert
from perflab.models.files import _default_shapes, _dims_of, _dtype_name, _write_atomic
from perflab.models.graph_cost import cost
from perflab.models.resolution import resolve
from perflab.models.zoo import _ZOO, _ZOO_ENTRIES, _unknown_model, build_model


def list_models() -> list[dict[str, Any]]:
    """The built-in models: name, task, kind, inputs, outputs, params, flops_per_sample and
    description, one dict per model.

    Inputs and outputs read like "input float32[N,3,224,224]", symbolic dims kept ("N" is the
    batch). FLOPs are per sample at the default shape (224x224 images, 320x320 for yolo-s,
    S=128 for bert-mini), counted as `cost` counts them.
    """
    rows = []
    for entry in _ZOO_ENTRIES:
        skeleton = build_model(entry.name, materialize=False)
        c = cost(skeleton, _default_shapes(skeleton), batch_size=1)
        g = skeleton.graph
        rows.append(
            {
                "name": entry.name,
                "task": entry.task,
                "kind": entry.kind,
                "inputs": ", ".join(map(_describe, g.input)),
                "outputs": ", ".join(map(_describe, g.output)),
                "params": c["param_count"],
                "flops_per_sample": c["flops_per_sample"],
                "description": entry.description,
            }
        )
    return rows


def _describe(vi: Any) -> str:
    """'name float32[N,3,224,224]': compact enough for a table cell."""
    dims = ",".join(map(str, _dims_of(vi)))
    return f"{vi.name} {_dtype_name(vi.type.tensor_type.elem_type)}[{dims}]"


def export(
    name: str,
    path: str | os.PathLike[str],
    precision: str = "fp32",
    *,
    image_size: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Write built-in model `name` to `path` as ONNX in `precision` (fp32, fp16 or int8).

    int8 is calibrated on seeded random inputs (the weights are random too, so no real data
    would be more faithful).
    """
    if name not in _ZOO:
        raise _unknown_model(name)
    shapes = None
    if image_size is not None:
        skeleton = build_model(name, image_size=image_size, materialize=False)
        shapes = {vi.name: ["N", *_dims_of(vi)[1:]] for vi in skeleton.graph.input}
    info = resolve(name, batch_size=1, input_shapes=shapes, cache_dir=cache_dir)
    src = convert(info, precision, cache_dir=cache_dir).path
    dest = Path(path)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(dest, src.read_bytes())
    except OSError as exc:
        raise ModelError(f"cannot write {dest}: {exc.strerror or exc}") from None
    return dest
