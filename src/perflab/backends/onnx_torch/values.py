"""Values between ONNX and torch: dtypes, constants read on the host as Python values, and
the harmony of host constants with device tensors."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from perflab.errors import Unsupported

if TYPE_CHECKING:
    import torch

    from perflab.backends.onnx_torch.interpreter import _Ctx

#: Integer constants with at most this many elements stay on the host (shapes, axes, indices).
HOST_CONST_MAX_ELEMENTS = 64


# ---------------------------------------------------------------------------------------------
# dtypes


def _torch_dtype(onnx_type: int) -> torch.dtype:
    import torch

    table = {
        1: torch.float32,
        2: torch.uint8,
        3: torch.int8,
        5: torch.int16,
        6: torch.int32,
        7: torch.int64,
        9: torch.bool,
        10: torch.float16,
        11: torch.float64,
        16: torch.bfloat16,
        4: torch.uint16,
        12: torch.uint32,
        13: torch.uint64,
    }
    if onnx_type not in table:
        from onnx import helper

        raise Unsupported(
            f"ONNX element type {helper.tensor_dtype_to_string(onnx_type)} has no torch dtype"
        )
    return table[onnx_type]


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    import torch

    if array.dtype.name == "bfloat16":  # ml_dtypes' bfloat16: torch cannot read it directly
        return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
    if array.dtype == np.object_:
        raise Unsupported("ONNX string tensors have no torch equivalent")
    # np.array, not np.ascontiguousarray: the latter turns 0-d arrays into 1-d ones.
    return torch.from_numpy(np.array(array, copy=True, order="C"))


def _meta_value(t: Any) -> Any:
    """A host-side value for a shape-like input: a numpy array (what the op functions read)."""
    if t is None or isinstance(t, np.ndarray):
        return t
    if t.dtype.is_floating_point:
        return t.detach().float().cpu().numpy().astype(np.float64)
    return t.detach().cpu().numpy()


def _flat(v: Any) -> list[Any]:
    """A meta input's values as one flat list of Python numbers (numpy array, host tensor, or
    device tensor: syncs); [] for a missing input."""
    return [] if v is None else v.reshape(-1).tolist()


def _ints(v: Any) -> list[int]:
    return [int(x) for x in _flat(v)]


def _floats(v: Any) -> list[float]:
    return [float(x) for x in _flat(v)]


def _scalar(v: Any) -> Any:
    """The first value of a meta input (numpy array or tensor) as a Python number."""
    return v.reshape(-1)[0].item()


# ---------------------------------------------------------------------------------------------
# Device and dtype harmony: host constants meet device tensors


def _harmonize(ctx: _Ctx, *xs: Any) -> list[Any]:
    """Bring tensors onto one device: the first non-CPU device among them wins.

    0-dim host tensors stay put (torch treats them as scalars on any device).
    """
    device = None
    for x in xs:
        if x is not None and x.device.type != "cpu":
            device = x.device
            break
    if device is None:
        return list(xs)
    return [x if x is None or x.device == device or x.dim() == 0 else ctx.on(x, device) for x in xs]


def _binary(fn: Callable[..., Any]) -> Callable[..., Any]:
    def op(ctx: _Ctx, a: Any, b: Any, **_: Any) -> Any:
        if a.device != b.device:
            a, b = _harmonize(ctx, a, b)
        return fn(a, b)

    return op


def _new_device(ctx: _Ctx, dtype: torch.dtype, numel: int) -> Any:
    """Where a tensor created from nothing goes: small integers stay on the host."""
    import torch

    if ctx.device is None or ctx.device.type == "cpu":
        return torch.device("cpu")
    if not dtype.is_floating_point and numel <= HOST_CONST_MAX_ELEMENTS:
        return torch.device("cpu")
    return ctx.device
