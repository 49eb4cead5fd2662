"""The precision vocabulary: one precision_effective rule for every engine, TensorRT's format names."""

from __future__ import annotations

import pytest

from perflab.precisions import (
    CONVERTIBLE,
    NAMED,
    PRECISIONS,
    precision_effective,
    precision_mismatch,
    strict_refuses,
    tensor_precision,
)


def test_precision_effective_needs_ninety_percent():
    assert precision_effective({"int8": 53}) == "int8"
    assert precision_effective({"int8": 95, "fp32": 5}) == "int8"
    assert precision_effective({"int8": 90, "fp32": 10}) == "int8"
    assert precision_effective({"int8": 89, "fp32": 11}) == "mixed"
    assert precision_effective({"int8": 24, "fp32": 8}) == "mixed"
    assert precision_effective({"fp16": 2, "fp32": 1, "int8": 1}) == "mixed"
    assert precision_effective({}) is None
    assert precision_effective({"fp16": 0}) is None


def test_precision_effective_names_only_requestable_precisions():
    # An engine running fp8 or fp64 throughout ran in no precision a config can ask for.
    assert precision_effective({"fp8": 10}) == "mixed"
    assert precision_effective({"fp64": 10}) == "mixed"
    assert set(NAMED) == set(PRECISIONS) - {"best"}
    assert set(CONVERTIBLE) < set(NAMED)


@pytest.mark.parametrize(
    ("asked", "effective", "mismatch", "refused"),
    [
        ("int8", "int8", False, False),
        ("int8", "fp32", True, True),
        ("fp16", "mixed", True, False),  # flagged, measured
        ("best", "fp16", False, False),  # best asks for no precision
        ("best", "mixed", False, False),
        ("fp32", None, False, False),  # the engine did not say
    ],
)
def test_mismatch_is_flagged_and_only_one_other_precision_is_refused(
    asked, effective, mismatch, refused
):
    assert precision_mismatch(asked, effective) is mismatch
    assert strict_refuses(asked, effective) is refused


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Row major linear FP16 format", "fp16"),
        ("Row major linear FP32", "fp32"),
        ("Float", "fp32"),
        ("Half", "fp16"),
        ("Thirty-two wide channel vectorized row major Int8 format.", "int8"),
        ("Channel major FP16 format where channel % 8 == 0", "fp16"),
        ("Row major linear BF16 format", "bf16"),
        ("Row major linear FP8 format", "fp8"),
        ("Row major linear Int32", "int32"),
        ("N/A due to dynamic shapes", None),
    ],
)
def test_tensor_precision(text, expected):
    assert tensor_precision(text) == expected
