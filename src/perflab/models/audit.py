"""What an ONNX file really holds: element types and quantization nodes, for the precision
a backend reports."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from perflab.models.files import _dtype_name, _load_proto
from perflab.models.graph_cost import _itemsize

# ---------------------------------------------------------------------------------------------
# What a file really holds
# ---------------------------------------------------------------------------------------------


def audit_onnx_types(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Element types inside an ONNX file, so a backend can report the precision it loaded.

    Returns initializer_types (dtype name -> count), initializer_bytes (dtype name -> bytes),
    quantize_linear / dequantize_linear (QDQ node counts), dynamic_quant_nodes
    (DynamicQuantizeLinear, MatMulInteger, ConvInteger), qlinear_nodes (QLinearConv,
    QLinearMatMul, ...), float16_tensors (initializers, Constant values and declared
    inputs/outputs/value_infos of type float16), cast_nodes, and `precision`: "int8" when
    there are quantize nodes, "fp16" when most weight bytes are float16, "bf16" likewise,
    else "fp32".
    """
    from onnx import TensorProto

    model = _load_proto(Path(path))
    g = model.graph
    types: dict[str, int] = {}
    nbytes: dict[str, int] = {}

    def add_tensor(t: Any) -> None:
        name = _dtype_name(t.data_type)
        types[name] = types.get(name, 0) + 1
        nbytes[name] = nbytes.get(name, 0) + math.prod(t.dims) * _itemsize(t.data_type)

    for init in g.initializer:
        add_tensor(init)
    ops: dict[str, int] = {}
    n_fp16 = sum(1 for i in g.initializer if i.data_type == TensorProto.FLOAT16)
    for node in g.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    add_tensor(a.t)
                    n_fp16 += a.t.data_type == TensorProto.FLOAT16
    n_fp16 += sum(
        1
        for vi in (*g.input, *g.output, *g.value_info)
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT16
    )
    q, dq = ops.get("QuantizeLinear", 0), ops.get("DequantizeLinear", 0)
    dyn = sum(ops.get(o, 0) for o in ("DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"))
    qlinear = sum(v for k, v in ops.items() if k.startswith("QLinear") or k == "QGemm")
    total = sum(nbytes.values()) or 1
    if q or dq or dyn or qlinear:
        precision = "int8"
    elif nbytes.get("float16", 0) > total / 2:
        precision = "fp16"
    elif nbytes.get("bfloat16", 0) > total / 2:
        precision = "bf16"
    else:
        precision = "fp32"
    return {
        "precision": precision,
        "initializer_types": dict(sorted(types.items())),
        "initializer_bytes": dict(sorted(nbytes.items())),
        "quantize_linear": q,
        "dequantize_linear": dq,
        "dynamic_quant_nodes": dyn,
        "qlinear_nodes": qlinear,
        "float16_tensors": n_fp16,
        "cast_nodes": ops.get("Cast", 0),
    }
