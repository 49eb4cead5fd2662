"""The precision vocabulary: what a run may ask for, what a model file can be converted to, and
the one rule that names the precision an engine really ran (`precision_effective`).

Imports nothing but the standard library, so the experiment-file reader, the model converter, the
backends and the importers all read the same names from here.
"""

from __future__ import annotations

from collections.abc import Mapping

#: What an experiment file may ask for; "best" lets the engine choose per layer.
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8", "best")
#: What `models.convert` writes as a model file; bf16 and "best" are an engine's own conversion.
CONVERTIBLE: tuple[str, ...] = ("fp32", "fp16", "int8")
#: What `precision_effective` may name besides MIXED.
NAMED: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")
MIXED = "mixed"
#: A precision names a run when it covers at least this share of the counted compute operators.
DOMINANT_SHARE = 0.9


def precision_effective(counts: Mapping[str, int]) -> str | None:
    """The precision a run ran in, from counts of its compute operators (or engine layers) per
    precision: the one of NAMED covering at least DOMINANT_SHARE of them; MIXED when none does
    (a precision outside NAMED, fp8 say, is MIXED too); None when nothing was counted.

    What counts as a compute operator is the engine's to say (ONNX Runtime and OpenVINO: the heavy
    operators, Conv/Gemm/MatMul and their fused or quantized forms; TensorRT: every layer but the
    bookkeeping ones); the rule that names the run from those counts is this one for all.
    """
    total = sum(counts.values())
    if not total:
        return None
    name, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    return name if name in NAMED and n >= DOMINANT_SHARE * total else MIXED


def precision_mismatch(asked: str, effective: str | None) -> bool:
    """The `runs` row's precision_mismatch: the engine named what it ran, and that is not the
    precision asked for ("best" asks for none, so it never mismatches; MIXED does)."""
    return bool(effective) and asked != "best" and effective != asked


def strict_refuses(asked: str, effective: str | None) -> bool:
    """What option strict_precision refuses: a run whose compute ran in one other precision than
    asked. MIXED is measured (and flagged by precision_mismatch): an int8 or fp16 model keeps
    some operators in fp32 on every engine, so refusing it would refuse most such runs."""
    return precision_mismatch(asked, effective) and effective != MIXED


# TensorRT's format names ("Format/Datatype" in engine inspector and trtexec layer-info exports),
# read by the trt backend and the trtexec importer alike.

#: Precision names from "Format/Datatype" strings, most specific first.
TRT_FORMAT_TOKENS: tuple[tuple[str, str], ...] = (
    ("int8", "int8"),
    ("fp8", "fp8"),
    ("fp4", "fp4"),
    ("int4", "int4"),
    ("bf16", "bf16"),
    ("bfloat16", "bf16"),
    ("fp16", "fp16"),
    ("half", "fp16"),
    ("fp32", "fp32"),
    ("float", "fp32"),
    ("int32", "int32"),
    ("int64", "int64"),
    ("bool", "bool"),
)
#: The precisions a layer computes in, lowest first (a layer runs in the lowest of its inputs').
COMPUTE_LOWEST_FIRST: tuple[str, ...] = ("int4", "fp4", "int8", "fp8", "fp16", "bf16", "fp32")


def tensor_precision(fmt: str) -> str | None:
    """A precision name from a TensorRT "Format/Datatype" string, e.g.
    "Row major linear FP16 format" -> "fp16", "Thirty-two wide channel vectorized row major Int8
    format." -> "int8", "Float" -> "fp32"; None when it names no type ("N/A due to dynamic
    shapes")."""
    text = fmt.lower()
    for token, name in TRT_FORMAT_TOKENS:
        if token in text:
            return name
    return None
