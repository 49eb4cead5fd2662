"""ONNX -> torch.nn.Module: an interpreter that runs an ONNX graph with torch ops.

`interpreter` holds the module (constant folding, topological execution, reduced precision),
`ops` the operator functions registered by op type, `values` the dtypes and host-side values
both share. Importing this package imports no torch; `OnnxModule` is made on first access.
"""

from typing import Any

from perflab.backends.onnx_torch.interpreter import convert
from perflab.backends.onnx_torch.ops import SUPPORTED_OPS, unsupported_ops

__all__ = ["SUPPORTED_OPS", "convert", "unsupported_ops"]


def __getattr__(name: str) -> Any:
    if name == "OnnxModule":
        from perflab.backends.onnx_torch.interpreter import _module_class

        return _module_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
