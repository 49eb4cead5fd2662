"""The ONNX operators as torch functions, registered by op type with `_op`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from perflab.backends.onnx_torch.values import (
    HOST_CONST_MAX_ELEMENTS,
    _binary,
    _floats,
    _harmonize,
    _ints,
    _new_device,
    _scalar,
    _to_tensor,
    _torch_dtype,
)
from perflab.errors import Unsupported

if TYPE_CHECKING:
    import onnx

    from perflab.backends.onnx_torch.interpreter import _Ctx


_OPS: dict[str, Callable[..., Any]] = {}
#: Per op: the input positions read on the host as Python values (shapes, axes, bounds, scales).
_META: dict[str, tuple[int, ...]] = {}


def _op(
    *names: str, meta: tuple[int, ...] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for n in names:
            _OPS[n] = fn
            _META[n] = meta
        return fn

    return register


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    """Op types in `model` (domain-qualified outside the default domain) this converter lacks."""
    missing = []
    for node in model.graph.node:
        name = _qualified(node)
        if name not in _OPS and name != "Constant" and name not in missing:
            missing.append(name)
    return missing


def _qualified(node: Any) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


# ---------------------------------------------------------------------------------------------
# Elementwise


def _unary(torch_fn_name: str, functional: bool = False) -> Callable[..., Any]:
    """An op that is one torch function of its input (from torch.nn.functional if `functional`)."""

    def op(ctx: _Ctx, x: Any, **_: Any) -> Any:
        import torch
        import torch.nn.functional as F

        return getattr(F if functional else torch, torch_fn_name)(x)

    return op


for _name, _fn in (
    ("Relu", "relu"),
    ("Sigmoid", "sigmoid"),
    ("Tanh", "tanh"),
    ("Erf", "erf"),
    ("Exp", "exp"),
    ("Log", "log"),
    ("Sqrt", "sqrt"),
    ("Reciprocal", "reciprocal"),
    ("Neg", "neg"),
    ("Abs", "abs"),
    ("Floor", "floor"),
    ("Ceil", "ceil"),
    ("Round", "round"),
    ("Sign", "sign"),
    ("Sin", "sin"),
    ("Cos", "cos"),
    ("Tan", "tan"),
    ("Asin", "asin"),
    ("Acos", "acos"),
    ("Atan", "atan"),
    ("Sinh", "sinh"),
    ("Cosh", "cosh"),
    ("Asinh", "asinh"),
    ("Acosh", "acosh"),
    ("Atanh", "atanh"),
    ("Not", "logical_not"),
    ("IsNaN", "isnan"),
    ("BitwiseNot", "bitwise_not"),
):
    _op(_name)(_unary(_fn))
for _name, _fn in (
    ("HardSwish", "hardswish"),
    ("Softplus", "softplus"),
    ("Softsign", "softsign"),
    ("Mish", "mish"),
):
    _op(_name)(_unary(_fn, functional=True))


@_op("Identity", "Dropout")
def _identity(ctx: _Ctx, x: Any, *rest: Any, **_: Any) -> Any:
    # Dropout at inference is the identity (its mask output is refused in _specialize).
    return x


@_op("IsInf")
def _isinf(ctx: _Ctx, x: Any, detect_negative: int = 1, detect_positive: int = 1) -> Any:
    import torch

    if detect_negative and detect_positive:
        return torch.isinf(x)
    if detect_positive:
        return torch.isposinf(x)
    return torch.isneginf(x)


@_op("LeakyRelu")
def _leaky(ctx: _Ctx, x: Any, alpha: float = 0.01) -> Any:
    import torch.nn.functional as F

    return F.leaky_relu(x, alpha)


@_op("Elu")
def _elu(ctx: _Ctx, x: Any, alpha: float = 1.0) -> Any:
    import torch.nn.functional as F

    return F.elu(x, alpha)


@_op("Selu")
def _selu(
    ctx: _Ctx,
    x: Any,
    alpha: float = 1.67326319217681884765625,
    gamma: float = 1.05070102214813232421875,
) -> Any:
    import torch

    return gamma * torch.where(x > 0, x, alpha * (torch.exp(x) - 1))


@_op("Celu")
def _celu(ctx: _Ctx, x: Any, alpha: float = 1.0) -> Any:
    import torch.nn.functional as F

    return F.celu(x, alpha)


@_op("ThresholdedRelu")
def _thresholded(ctx: _Ctx, x: Any, alpha: float = 1.0) -> Any:
    import torch

    return torch.where(x > alpha, x, torch.zeros_like(x))


@_op("HardSigmoid")
def _hardsigmoid(ctx: _Ctx, x: Any, alpha: float = 0.2, beta: float = 0.5) -> Any:
    import torch

    return torch.clamp(x * alpha + beta, 0.0, 1.0)


@_op("Gelu")
def _gelu(ctx: _Ctx, x: Any, approximate: str = "none") -> Any:
    import torch.nn.functional as F

    return F.gelu(x, approximate=approximate)


@_op("PRelu")
def _prelu(ctx: _Ctx, x: Any, slope: Any) -> Any:
    import torch

    x, slope = _harmonize(ctx, x, slope)
    return torch.where(x < 0, x * slope, x)


@_op("Clip", meta=(1, 2))
def _clip(
    ctx: _Ctx,
    x: Any,
    lo: Any = None,
    hi: Any = None,
    min: float | None = None,
    max: float | None = None,
) -> Any:
    import torch

    # Opset < 11 carries the bounds as attributes, later opsets as optional inputs.
    lo_v = min if lo is None else (_scalar(lo) if isinstance(lo, np.ndarray) else lo)
    hi_v = max if hi is None else (_scalar(hi) if isinstance(hi, np.ndarray) else hi)
    if isinstance(lo_v, torch.Tensor) or isinstance(hi_v, torch.Tensor):
        lo_t = lo_v if isinstance(lo_v, torch.Tensor) or lo_v is None else torch.tensor(lo_v)
        hi_t = hi_v if isinstance(hi_v, torch.Tensor) or hi_v is None else torch.tensor(hi_v)
        x, lo_t, hi_t = _harmonize(ctx, x, lo_t, hi_t)
        return torch.clamp(x, lo_t, hi_t)
    if lo_v is None and hi_v is None:
        return x
    return torch.clamp(x, lo_v, hi_v)


def _div(a: Any, b: Any) -> Any:
    import torch

    if not a.is_floating_point() and not b.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return torch.div(a, b)


def _pow(a: Any, b: Any) -> Any:
    import torch

    y = torch.pow(a, b)
    return y if y.dtype == a.dtype else y.to(a.dtype)


import operator as _operator

_op("Add")(_binary(_operator.add))
_op("Sub")(_binary(_operator.sub))
_op("Mul")(_binary(_operator.mul))
_op("Div")(_binary(_div))
_op("Pow")(_binary(_pow))


def _cmp(name: str) -> Callable[..., Any]:
    def fn(a: Any, b: Any) -> Any:
        import torch

        return getattr(torch, name)(a, b)

    return _binary(fn)


for _name, _fn in (
    ("Equal", "eq"),
    ("Less", "lt"),
    ("LessOrEqual", "le"),
    ("Greater", "gt"),
    ("GreaterOrEqual", "ge"),
    ("And", "logical_and"),
    ("Or", "logical_or"),
    ("Xor", "logical_xor"),
    ("BitwiseAnd", "bitwise_and"),
    ("BitwiseOr", "bitwise_or"),
    ("BitwiseXor", "bitwise_xor"),
):
    _op(_name)(_cmp(_fn))


@_op("Mod")
def _mod(ctx: _Ctx, a: Any, b: Any, fmod: int = 0) -> Any:
    import torch

    a, b = _harmonize(ctx, a, b)
    return torch.fmod(a, b) if fmod else torch.remainder(a, b)


def _variadic(reduce: Callable[[Any, Any], Any], mean: bool = False) -> Callable[..., Any]:
    def op(ctx: _Ctx, *xs: Any) -> Any:
        xs = tuple(_harmonize(ctx, *xs))
        y = xs[0]
        for x in xs[1:]:
            y = reduce(y, x)
        return y / len(xs) if mean else y

    return op


def _tmax(a: Any, b: Any) -> Any:
    import torch

    return torch.maximum(a, b)


def _tmin(a: Any, b: Any) -> Any:
    import torch

    return torch.minimum(a, b)


_op("Sum")(_variadic(_operator.add))
_op("Mean")(_variadic(_operator.add, mean=True))
_op("Max")(_variadic(_tmax))
_op("Min")(_variadic(_tmin))


@_op("Where")
def _where(ctx: _Ctx, cond: Any, x: Any, y: Any) -> Any:
    import torch

    cond, x, y = _harmonize(ctx, cond, x, y)
    return torch.where(cond, x, y)


@_op("Cast")
def _cast(ctx: _Ctx, x: Any, to: int, saturate: int = 1, round_mode: str = "") -> Any:
    dt = _torch_dtype(to)
    # In reduced precision a cast to float means the compute dtype, except for shape
    # arithmetic on host integers while the data lives on a device (it stays exact in fp32).
    shape_math = (
        x.device.type == "cpu"
        and not x.is_floating_point()
        and ctx.device is not None
        and ctx.device.type != "cpu"
    )
    if dt.is_floating_point and not shape_math:
        dt = ctx.float_dtype(dt)
    return x if x.dtype == dt else x.to(dt)


@_op("CastLike")
def _castlike(ctx: _Ctx, x: Any, like: Any, saturate: int = 1) -> Any:
    return x if x.dtype == like.dtype else x.to(like.dtype)


# ---------------------------------------------------------------------------------------------
# Neural-network ops


def _conv_pads(
    auto_pad: str,
    pads: Sequence[int] | None,
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> list[int]:
    """ONNX pads [x1_begin, x2_begin, ..., x1_end, x2_end, ...] for any auto_pad mode."""
    n = len(kernel)
    if auto_pad in ("", "NOTSET"):
        return list(pads) if pads else [0] * (2 * n)
    if auto_pad == "VALID":
        return [0] * (2 * n)
    begin, end = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        if auto_pad == "SAME_UPPER":
            begin.append(small)
            end.append(big)
        else:  # SAME_LOWER
            begin.append(big)
            end.append(small)
    return begin + end


def _steps(
    n: int, strides: Sequence[int] | None, dilations: Sequence[int] | None
) -> tuple[list[int], list[int]]:
    """Strides and dilations over `n` spatial axes, ONNX's default of 1 filled in."""
    return list(strides or [1] * n), list(dilations or [1] * n)


def _conv_geometry(
    w: Any,
    kernel_shape: Sequence[int] | None,
    strides: Sequence[int] | None,
    dilations: Sequence[int] | None,
) -> tuple[int, list[int], list[int], list[int]]:
    """A Conv's or ConvTranspose's spatial rank, kernel, strides and dilations, read from its
    weight where the attributes leave them out."""
    n = w.dim() - 2
    return (n, list(kernel_shape or w.shape[2:]), *_steps(n, strides, dilations))


def _split_transpose_pads(total: Sequence[int], auto_pad: str) -> list[int]:
    """ConvTranspose's total padding per axis as ONNX pads [begins..., ends...]: SAME_UPPER puts
    the larger half at the end; the spec has SAME_LOWER and NOTSET put it at the beginning."""
    if auto_pad == "SAME_UPPER":
        begin = [t // 2 for t in total]
    else:
        begin = [t - t // 2 for t in total]
    return begin + [t - bg for t, bg in zip(total, begin)]


def _torch_pad_arg(pads: Sequence[int]) -> list[int]:
    """ONNX [b1, b2, e1, e2] -> F.pad's last-axis-first [b2, e2, b1, e1]."""
    n = len(pads) // 2
    out: list[int] = []
    for i in reversed(range(n)):
        out += [pads[i], pads[i + n]]
    return out


@_op("Conv")
def _conv(
    ctx: _Ctx,
    x: Any,
    w: Any,
    b: Any = None,
    auto_pad: str = "NOTSET",
    dilations: Sequence[int] | None = None,
    group: int = 1,
    kernel_shape: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> Any:
    import torch.nn.functional as F

    n, kernel, strides, dilations = _conv_geometry(w, kernel_shape, strides, dilations)
    p = _conv_pads(auto_pad, pads, x.shape[2:], kernel, strides, dilations)
    if p[:n] == p[n:]:
        padding: Any = p[:n]
    else:
        x = F.pad(x, _torch_pad_arg(p))
        padding = 0
    conv = (F.conv1d, F.conv2d, F.conv3d)[n - 1]
    return conv(x, w, b, strides, padding, dilations, group)


@_op("ConvTranspose")
def _conv_transpose(
    ctx: _Ctx,
    x: Any,
    w: Any,
    b: Any = None,
    auto_pad: str = "NOTSET",
    dilations: Sequence[int] | None = None,
    group: int = 1,
    kernel_shape: Sequence[int] | None = None,
    output_padding: Sequence[int] | None = None,
    output_shape: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> Any:
    import torch.nn.functional as F

    n, kernel, strides, dilations = _conv_geometry(w, kernel_shape, strides, dilations)
    out_pad = list(output_padding or [0] * n)
    spatial = list(x.shape[2:])
    full = [
        s * (i - 1) + op + (k - 1) * d + 1
        for i, s, k, d, op in zip(spatial, strides, kernel, dilations, out_pad)
    ]
    if output_shape:
        target = list(output_shape)[-n:]
        p = _split_transpose_pads([f - t for f, t in zip(full, target)], auto_pad)
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        p = _split_transpose_pads([f - i * s for f, i, s in zip(full, spatial, strides)], auto_pad)
    else:
        p = list(pads) if pads else [0] * (2 * n)
    fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[n - 1]
    symmetric = p[:n] == p[n:]
    if symmetric and all(op < max(s, d) for op, s, d in zip(out_pad, strides, dilations)):
        return fn(x, w, b, strides, p[:n], out_pad, group, dilations)
    # Asymmetric pads: the full output, then crop (negative pad) and add the bias after.
    y = fn(x, w, None, strides, 0, 0, group, dilations)
    extra = [f - c for f, c in zip(full, y.shape[2:])]  # output_padding rows: no contributions
    y = F.pad(y, _torch_pad_arg([-v for v in p[:n]] + [e - v for e, v in zip(extra, p[n:])]))
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * n)
    return y


def _pool_common(
    x: Any,
    kernel: Sequence[int],
    auto_pad: str,
    pads: Sequence[int] | None,
    strides: Sequence[int] | None,
    dilations: Sequence[int] | None,
) -> tuple[list[int], list[int], list[int]]:
    strides, dilations = _steps(len(kernel), strides, dilations)
    p = _conv_pads(auto_pad, pads, x.shape[2:], kernel, strides, dilations)
    return p, strides, dilations


@_op("MaxPool")
def _maxpool(
    ctx: _Ctx,
    x: Any,
    kernel_shape: Sequence[int],
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    dilations: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    storage_order: int = 0,
    strides: Sequence[int] | None = None,
) -> Any:
    import torch.nn.functional as F

    n = len(kernel_shape)
    p, strides, dilations = _pool_common(x, kernel_shape, auto_pad, pads, strides, dilations)
    fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[n - 1]
    if p[:n] == p[n:] and all(2 * q <= k for q, k in zip(p[:n], kernel_shape)):
        y = fn(x, kernel_shape, strides, p[:n], dilations, bool(ceil_mode))
    else:
        x = F.pad(x, _torch_pad_arg(p), value=float("-inf"))
        y = fn(x, kernel_shape, strides, 0, dilations, bool(ceil_mode))
    return (y, None)


@_op("AveragePool")
def _avgpool(
    ctx: _Ctx,
    x: Any,
    kernel_shape: Sequence[int],
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    count_include_pad: int = 0,
    dilations: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> Any:
    import torch
    import torch.nn.functional as F

    n = len(kernel_shape)
    p, strides, dilations = _pool_common(x, kernel_shape, auto_pad, pads, strides, dilations)
    if any(d != 1 for d in dilations):
        raise Unsupported("AveragePool with dilations")
    fn = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[n - 1]
    if p[:n] == p[n:] and all(2 * q <= k for q, k in zip(p[:n], kernel_shape)):
        return fn(x, kernel_shape, strides, p[:n], bool(ceil_mode), bool(count_include_pad))
    xp = F.pad(x, _torch_pad_arg(p))
    total = fn(xp, kernel_shape, strides, 0, bool(ceil_mode), True)
    if count_include_pad:
        return total
    ones = F.pad(
        torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device), _torch_pad_arg(p)
    )
    share = fn(ones, kernel_shape, strides, 0, bool(ceil_mode), True)
    return total / share


@_op("GlobalAveragePool")
def _gap(ctx: _Ctx, x: Any) -> Any:
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@_op("GlobalMaxPool")
def _gmp(ctx: _Ctx, x: Any) -> Any:
    return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


@_op("BatchNormalization")
def _batchnorm(
    ctx: _Ctx,
    x: Any,
    scale: Any,
    bias: Any,
    mean: Any,
    var: Any,
    epsilon: float = 1e-5,
    momentum: float = 0.9,
    training_mode: int = 0,
    spatial: int = 1,
    is_test: int = 1,
    consumed_inputs: Any = None,
) -> Any:
    import torch.nn.functional as F

    if training_mode:
        raise Unsupported("BatchNormalization with training_mode=1")
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, epsilon)


@_op("InstanceNormalization")
def _instancenorm(ctx: _Ctx, x: Any, scale: Any, bias: Any, epsilon: float = 1e-5) -> Any:
    import torch.nn.functional as F

    return F.instance_norm(x, weight=scale, bias=bias, eps=epsilon)


@_op("LayerNormalization")
def _layernorm(
    ctx: _Ctx,
    x: Any,
    scale: Any,
    bias: Any = None,
    axis: int = -1,
    epsilon: float = 1e-5,
    stash_type: int = 1,
) -> Any:
    import torch
    import torch.nn.functional as F

    axis = axis % x.dim()
    shape = tuple(x.shape[axis:])
    if tuple(scale.shape) == shape and (bias is None or tuple(bias.shape) == shape):
        y = F.layer_norm(x, shape, scale, bias, epsilon)
    else:  # scale/bias only broadcastable to the normalized shape
        dims = tuple(range(axis, x.dim()))
        xf = x.float() if stash_type == 1 else x
        mean = xf.mean(dim=dims, keepdim=True)
        var = (xf - mean).pow(2).mean(dim=dims, keepdim=True)
        y = ((xf - mean) * torch.rsqrt(var + epsilon)).to(x.dtype) * scale
        if bias is not None:
            y = y + bias
    return (y, None, None)


@_op("GroupNormalization")
def _groupnorm(
    ctx: _Ctx,
    x: Any,
    scale: Any,
    bias: Any,
    epsilon: float = 1e-5,
    num_groups: int = 1,
    stash_type: int = 1,
) -> Any:
    import torch.nn.functional as F

    c = x.shape[1]
    if scale.numel() != c:  # opset 18: per-group scale and bias
        scale = scale.repeat_interleave(c // num_groups)
        bias = bias.repeat_interleave(c // num_groups)
    return F.group_norm(x, num_groups, scale, bias, epsilon)


@_op("LpNormalization")
def _lpnorm(ctx: _Ctx, x: Any, axis: int = -1, p: int = 2) -> Any:
    return x / x.norm(p=p, dim=axis, keepdim=True)


@_op("Gemm")
def _gemm(
    ctx: _Ctx,
    a: Any,
    b: Any,
    c: Any = None,
    alpha: float = 1.0,
    beta: float = 1.0,
    transA: int = 0,
    transB: int = 0,
) -> Any:
    import torch.nn.functional as F

    if transA:
        a = a.t()
    if transB and alpha == 1.0 and beta == 1.0 and (c is None or c.dim() <= 1):
        return F.linear(a, b, c)
    if transB:
        b = b.t()
    y = a @ b
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c * beta if beta != 1.0 else c)
    return y


@_op("MatMul")
def _matmul(ctx: _Ctx, a: Any, b: Any) -> Any:
    import torch

    return torch.matmul(a, b)


@_op("Einsum")
def _einsum(ctx: _Ctx, *xs: Any, equation: str) -> Any:
    import torch

    return torch.einsum(equation, *_harmonize(ctx, *xs))


def _softmax_like(kind: str) -> Callable[..., Any]:
    def op(ctx: _Ctx, x: Any, axis: int | None = None) -> Any:
        import torch

        fn = torch.softmax if kind == "softmax" else torch.log_softmax
        if ctx.opset >= 13:
            return fn(x, -1 if axis is None else axis)
        # Before opset 13 the input is coerced to 2-D at `axis` (default 1).
        axis = (1 if axis is None else axis) % max(x.dim(), 1)
        shape = x.shape
        lead = math.prod(shape[:axis])
        return fn(x.reshape(lead, -1), 1).reshape(shape)

    return op


_op("Softmax")(_softmax_like("softmax"))
_op("LogSoftmax")(_softmax_like("log_softmax"))


# ---------------------------------------------------------------------------------------------
# Shapes and data movement


@_op("Shape")
def _shape(ctx: _Ctx, x: Any, start: int = 0, end: int | None = None) -> Any:
    import torch

    return torch.tensor(tuple(x.shape)[start:end], dtype=torch.int64)


@_op("Size")
def _size(ctx: _Ctx, x: Any) -> Any:
    import torch

    return torch.tensor(x.numel(), dtype=torch.int64)


@_op("Reshape", meta=(1,))
def _reshape(ctx: _Ctx, x: Any, shape: Any, allowzero: int = 0) -> Any:
    dims = _ints(shape)
    if not allowzero:
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


@_op("Flatten")
def _flatten(ctx: _Ctx, x: Any, axis: int = 1) -> Any:
    axis = axis % x.dim() if x.dim() else 0
    return x.reshape(math.prod(x.shape[:axis]), -1)


@_op("Transpose")
def _transpose(ctx: _Ctx, x: Any, perm: Sequence[int] | None = None) -> Any:
    return x.permute(*(perm if perm is not None else reversed(range(x.dim()))))


@_op("Concat")
def _concat(ctx: _Ctx, *xs: Any, axis: int) -> Any:
    import torch

    xs = tuple(x for x in xs if x is not None)
    device = next((x.device for x in xs if x.device.type != "cpu"), None)
    if device is not None:
        xs = tuple(x if x.device == device else ctx.on(x, device) for x in xs)
    return torch.cat(xs, axis)


def _split_node(n_out: int) -> Callable[..., Any]:
    """Split for a node with `n_out` outputs: `split` is an attribute before opset 13 and an
    input since; without sizes the axis is cut into `num_outputs` (or `n_out`) parts, the last
    one smaller when it does not divide (opset 18)."""

    def op(
        ctx: _Ctx, x: Any, split: Any = None, axis: int = 0, num_outputs: int | None = None
    ) -> Any:
        sizes = _ints(split) if split is not None and not isinstance(split, list) else split
        if not sizes:
            k = num_outputs or n_out
            dim = x.shape[axis]
            chunk = -(-dim // k)
            sizes = [min(chunk, dim - i * chunk) for i in range(k)]
        return tuple(x.split(list(sizes), axis))

    return op


_op("Split", meta=(1,))(_split_node(0))


@_op("Slice", meta=(1, 2, 3, 4))
def _slice(
    ctx: _Ctx,
    x: Any,
    starts: Any = None,
    ends: Any = None,
    axes: Any = None,
    steps: Any = None,
    **attrs: Any,
) -> Any:
    import torch

    if isinstance(starts, list):  # opset < 10: starts/ends/axes are attributes
        starts, ends = list(starts), list(ends or [])
        axes = list(axes) if axes is not None else list(range(len(starts)))
        steps_l = [1] * len(starts)
    else:
        starts, ends = _ints(starts), _ints(ends)
        axes = _ints(axes) if axes is not None else list(range(len(starts)))
        steps_l = _ints(steps) if steps is not None else [1] * len(starts)
    index: list[Any] = [slice(None)] * x.dim()
    flips = []
    for s, e, a, st in zip(starts, ends, axes, steps_l):
        a = a % x.dim()
        start, stop, step = slice(s, e, st).indices(x.shape[a])
        if step > 0:
            index[a] = slice(start, stop, step)
        else:
            flips.append((a, start, stop, step))
    y = x[tuple(index)]
    for a, start, stop, step in flips:
        idx = list(range(start, stop, step))
        key = ("slice", tuple(idx), y.device)
        y = y.index_select(
            a, ctx.cached(key, lambda idx=idx, dev=y.device: torch.tensor(idx, device=dev))
        )
    return y


@_op("Squeeze", meta=(1,))
def _squeeze(ctx: _Ctx, x: Any, axes_in: Any = None, axes: Sequence[int] | None = None) -> Any:
    ax = _ints(axes_in) if axes_in is not None else (list(axes) if axes is not None else None)
    if ax is None:
        return x.squeeze()
    return x.squeeze(tuple(a % x.dim() for a in ax)) if ax else x


@_op("Unsqueeze", meta=(1,))
def _unsqueeze(ctx: _Ctx, x: Any, axes_in: Any = None, axes: Sequence[int] | None = None) -> Any:
    ax = _ints(axes_in) if axes_in is not None else list(axes or [])
    rank = x.dim() + len(ax)
    for a in sorted(a % rank for a in ax):
        x = x.unsqueeze(a)
    return x


@_op("Expand", meta=(1,))
def _expand(ctx: _Ctx, x: Any, shape: Any) -> Any:
    import torch

    return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(_ints(shape))))


@_op("Tile", meta=(1,))
def _tile(ctx: _Ctx, x: Any, repeats: Any) -> Any:
    return x.repeat(*_ints(repeats))


@_op("Pad", meta=(1, 2, 3))
def _pad(
    ctx: _Ctx,
    x: Any,
    pads_in: Any = None,
    value: Any = None,
    axes: Any = None,
    mode: str = "constant",
    pads: Sequence[int] | None = None,
    **attrs: Any,
) -> Any:
    import torch.nn.functional as F

    # Before opset 11 `pads` and `value` are attributes (value arrives as a float keyword).
    p = _ints(pads_in) if pads_in is not None else list(pads or [])
    if value is None:
        fill = 0.0
    elif isinstance(value, (int, float)):
        fill = float(value)
    elif isinstance(value, np.ndarray):
        fill = _scalar(value)
    else:
        fill = value.item()
    if axes is not None:
        ax = [a % x.dim() for a in _ints(axes)]
        full = [0] * (2 * x.dim())
        for i, a in enumerate(ax):
            full[a] = p[i]
            full[a + x.dim()] = p[i + len(ax)]
        p = full
    arg = _torch_pad_arg(p)
    # F.pad pads trailing dims; drop leading all-zero pairs so reflect/replicate accept it.
    while len(arg) > 2 and arg[-1] == 0 and arg[-2] == 0:
        arg = arg[:-2]
    torch_mode = {
        "constant": "constant",
        "reflect": "reflect",
        "edge": "replicate",
        "wrap": "circular",
    }.get(mode)
    if torch_mode is None:
        raise Unsupported(f"Pad mode {mode!r}")
    if torch_mode == "constant":
        return F.pad(x, arg, value=fill)
    return F.pad(x, arg, mode=torch_mode)


@_op("Gather")
def _gather(ctx: _Ctx, x: Any, idx: Any, axis: int = 0) -> Any:
    import torch

    axis = axis % x.dim()
    n = x.shape[axis]
    if idx.device.type == "cpu" and idx.numel() <= HOST_CONST_MAX_ELEMENTS:
        values = [int(v) % n if int(v) < 0 else int(v) for v in idx.reshape(-1).tolist()]
        if idx.dim() == 0:
            return x.select(axis, values[0])
        key = ("gather", tuple(values), x.device)
        flat = ctx.cached(key, lambda: torch.tensor(values, dtype=torch.int64, device=x.device))
    else:
        if idx.device != x.device:
            idx = idx.to(x.device)
        flat = torch.where(idx < 0, idx + n, idx).reshape(-1)
    y = x.index_select(axis, flat)
    return y.reshape(tuple(x.shape[:axis]) + tuple(idx.shape) + tuple(x.shape[axis + 1 :]))


@_op("GatherElements")
def _gather_elements(ctx: _Ctx, x: Any, idx: Any, axis: int = 0) -> Any:
    import torch

    x, idx = _harmonize(ctx, x, idx)
    n = x.shape[axis]
    return torch.gather(x, axis, torch.where(idx < 0, idx + n, idx))


@_op("ConstantOfShape", meta=(0,))
def _constant_of_shape(ctx: _Ctx, shape: Any, value: Any = None) -> Any:
    import torch

    dims = _ints(shape)
    if value is None:
        fill, dt = 0.0, torch.float32
    else:
        arr = np.asarray(value)
        fill, dt = arr.reshape(-1)[0].item(), _to_tensor(arr.reshape(-1)[:1]).dtype
    if dt.is_floating_point:
        dt = ctx.float_dtype(dt)
    device = _new_device(ctx, dt, math.prod(dims))
    return torch.full(dims, fill, dtype=dt, device=device)


@_op("Range", meta=(0, 1, 2))
def _range(ctx: _Ctx, start: Any, limit: Any, delta: Any) -> Any:
    import torch

    values = [_scalar(v) if isinstance(v, np.ndarray) else v.item() for v in (start, limit, delta)]
    ref = start if not isinstance(start, np.ndarray) else None
    if ref is not None:
        dt = ref.dtype
    else:
        dt = torch.float32 if isinstance(values[0], float) else torch.int64
    if dt.is_floating_point:
        dt = ctx.float_dtype(dt)
    n = max(0, math.ceil((values[1] - values[0]) / values[2]))
    return torch.arange(values[0], values[1], values[2], dtype=dt, device=_new_device(ctx, dt, n))


@_op("CumSum", meta=(1,))
def _cumsum(ctx: _Ctx, x: Any, axis: Any, exclusive: int = 0, reverse: int = 0) -> Any:
    import torch

    a = _ints(axis)[0]
    if reverse:
        x = x.flip(a)
    y = torch.cumsum(x, a)
    if exclusive:
        y = y - x
    if reverse:
        y = y.flip(a)
    return y.to(x.dtype) if y.dtype != x.dtype else y


def _reduce(kind: str) -> Callable[..., Any]:
    def op(
        ctx: _Ctx,
        x: Any,
        axes_in: Any = None,
        axes: Sequence[int] | None = None,
        keepdims: int = 1,
        noop_with_empty_axes: int = 0,
    ) -> Any:
        ax = _ints(axes_in) if axes_in is not None else list(axes or [])
        if not ax:
            if noop_with_empty_axes:
                return x
            ax = list(range(x.dim()))
        dims = tuple(sorted(a % x.dim() for a in ax)) if x.dim() else ()
        keep = bool(keepdims)
        if kind == "mean":
            return x.mean(dim=dims, keepdim=keep)
        if kind == "sum":
            return x.sum(dim=dims, keepdim=keep)
        if kind == "max":
            return x.amax(dim=dims, keepdim=keep)
        if kind == "min":
            return x.amin(dim=dims, keepdim=keep)
        if kind == "sumsquare":
            return (x * x).sum(dim=dims, keepdim=keep)
        if kind == "l1":
            return x.abs().sum(dim=dims, keepdim=keep)
        if kind == "l2":
            return (x * x).sum(dim=dims, keepdim=keep).sqrt()
        if kind == "logsum":
            return x.sum(dim=dims, keepdim=keep).log()
        if kind == "logsumexp":
            return x.logsumexp(dim=dims, keepdim=keep)
        # prod: torch reduces one dim at a time
        y = x
        for d in sorted(dims, reverse=True):
            y = y.prod(dim=d, keepdim=keep)
        return y

    return op


for _name, _kind in (
    ("ReduceMean", "mean"),
    ("ReduceSum", "sum"),
    ("ReduceMax", "max"),
    ("ReduceMin", "min"),
    ("ReduceSumSquare", "sumsquare"),
    ("ReduceL1", "l1"),
    ("ReduceL2", "l2"),
    ("ReduceLogSum", "logsum"),
    ("ReduceLogSumExp", "logsumexp"),
    ("ReduceProd", "prod"),
):
    _op(_name, meta=(1,))(_reduce(_kind))


def _arg(kind: str) -> Callable[..., Any]:
    def op(ctx: _Ctx, x: Any, axis: int = 0, keepdims: int = 1, select_last_index: int = 0) -> Any:
        import torch

        fn = torch.argmax if kind == "max" else torch.argmin
        if select_last_index:
            n = x.shape[axis]
            return (n - 1) - fn(x.flip(axis), dim=axis, keepdim=bool(keepdims))
        return fn(x, dim=axis, keepdim=bool(keepdims))

    return op


_op("ArgMax")(_arg("max"))
_op("ArgMin")(_arg("min"))


@_op("TopK", meta=(1,))
def _topk(ctx: _Ctx, x: Any, k: Any, axis: int = -1, largest: int = 1, sorted: int = 1) -> Any:
    import torch

    values, indices = torch.topk(
        x, _ints(k)[0], dim=axis, largest=bool(largest), sorted=bool(sorted)
    )
    return (values, indices)


@_op("NonZero")
def _nonzero(ctx: _Ctx, x: Any) -> Any:
    import torch

    return torch.nonzero(x).t().contiguous()


@_op("Trilu", meta=(1,))
def _trilu(ctx: _Ctx, x: Any, k: Any = None, upper: int = 1) -> Any:
    import torch

    kk = _ints(k)[0] if k is not None else 0
    return torch.triu(x, kk) if upper else torch.tril(x, kk)


@_op("DepthToSpace")
def _depth_to_space(ctx: _Ctx, x: Any, blocksize: int, mode: str = "DCR") -> Any:
    import torch.nn.functional as F

    if mode == "CRD":
        return F.pixel_shuffle(x, blocksize)
    n, c, h, w = x.shape
    b = blocksize
    y = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (b * b), h * b, w * b)


@_op("SpaceToDepth")
def _space_to_depth(ctx: _Ctx, x: Any, blocksize: int) -> Any:
    n, c, h, w = x.shape
    b = blocksize
    y = x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


# ---------------------------------------------------------------------------------------------
# Resize / Upsample


def _source_index(out_size: int, in_size: int, scale: float, ctm: str, nearest: str) -> list[int]:
    """ONNX nearest-neighbour source index for every output position along one axis."""
    idx = []
    for o in range(out_size):
        if ctm == "half_pixel":
            x = (o + 0.5) / scale - 0.5
        elif ctm == "pytorch_half_pixel":
            x = (o + 0.5) / scale - 0.5 if out_size > 1 else 0.0
        elif ctm == "align_corners":
            x = 0.0 if out_size == 1 else o * (in_size - 1) / (out_size - 1)
        elif ctm == "asymmetric":
            x = o / scale
        elif ctm == "half_pixel_symmetric":
            adj = out_size / (scale * in_size)
            center = in_size / 2
            offset = center * (1 - adj)
            x = offset + (o + 0.5) / scale - 0.5
        else:
            raise Unsupported(f"Resize coordinate_transformation_mode {ctm!r}")
        if nearest == "round_prefer_floor":
            i = math.ceil(x - 0.5)
        elif nearest == "round_prefer_ceil":
            i = math.floor(x + 0.5)
        elif nearest == "floor":
            i = math.floor(x)
        elif nearest == "ceil":
            i = math.ceil(x)
        else:
            raise Unsupported(f"Resize nearest_mode {nearest!r}")
        idx.append(min(max(i, 0), in_size - 1))
    return idx


def _resize_impl(
    ctx: _Ctx,
    x: Any,
    scales: list[float] | None,
    sizes: list[int] | None,
    mode: str,
    ctm: str,
    nearest: str,
    cubic_a: float,
    exclude_outside: int,
    axes: list[int] | None,
) -> Any:
    import torch
    import torch.nn.functional as F

    rank = x.dim()
    if axes:  # opset 18: scales/sizes only for the listed axes
        full_s = [1.0] * rank
        full_z = list(x.shape)
        for i, a in enumerate(axes):
            if scales:
                full_s[a % rank] = scales[i]
            if sizes:
                full_z[a % rank] = sizes[i]
        scales = full_s if scales else None
        sizes = full_z if sizes else None
    if sizes:
        out = list(sizes)
        scales = [o / i for o, i in zip(out, x.shape)]
    elif scales:
        out = [math.floor(i * s) for i, s in zip(x.shape, scales)]
    else:
        raise Unsupported("Resize without scales or sizes")
    if out[:2] != list(x.shape[:2]):
        raise Unsupported("Resize of the batch or channel axis")
    spatial = list(range(2, rank))
    if not spatial:
        return x
    if mode == "nearest":
        fast = (ctm == "asymmetric" and nearest == "floor") or (
            ctm in ("half_pixel", "pytorch_half_pixel")
            and nearest == "round_prefer_floor"
            and all(float(scales[d]).is_integer() and scales[d] >= 1 for d in spatial)
        )
        if fast and rank in (3, 4, 5):
            return (
                F.interpolate(x, scale_factor=[float(scales[d]) for d in spatial], mode="nearest")
                if not sizes
                else F.interpolate(x, size=[out[d] for d in spatial], mode="nearest")
            )
        y = x
        for d in spatial:
            if out[d] == x.shape[d] and scales[d] == 1.0:
                continue
            idx = _source_index(out[d], x.shape[d], scales[d], ctm, nearest)
            key = ("resize", tuple(idx), y.device)
            y = y.index_select(
                d, ctx.cached(key, lambda idx=idx, dev=y.device: torch.tensor(idx, device=dev))
            )
        return y
    if mode in ("linear", "bilinear", "trilinear", "cubic", "bicubic"):
        cubic = mode in ("cubic", "bicubic")
        n = len(spatial)
        if cubic and n != 2:
            raise Unsupported("Resize cubic outside 2-D")
        if cubic and (abs(cubic_a + 0.75) > 1e-6 or exclude_outside):
            raise Unsupported("Resize cubic with cubic_coeff_a != -0.75 or exclude_outside")
        torch_mode = "bicubic" if cubic else ("linear", "bilinear", "trilinear")[n - 1]
        if ctm == "align_corners":
            return F.interpolate(
                x, size=[out[d] for d in spatial], mode=torch_mode, align_corners=True
            )
        if ctm in ("half_pixel", "pytorch_half_pixel"):
            if ctm == "pytorch_half_pixel" and any(out[d] == 1 for d in spatial):
                raise Unsupported("Resize pytorch_half_pixel to size 1")
            if sizes:
                return F.interpolate(
                    x, size=[out[d] for d in spatial], mode=torch_mode, align_corners=False
                )
            return F.interpolate(
                x,
                scale_factor=[float(scales[d]) for d in spatial],
                mode=torch_mode,
                align_corners=False,
            )
        if ctm == "asymmetric" and not cubic:
            return _linear_asymmetric(ctx, x, spatial, out, scales)
        raise Unsupported(f"Resize {mode} with coordinate_transformation_mode {ctm!r}")
    raise Unsupported(f"Resize mode {mode!r}")


def _linear_asymmetric(
    ctx: _Ctx, x: Any, spatial: list[int], out: list[int], scales: list[float]
) -> Any:
    """Separable linear interpolation with x_in = x_out / scale (Upsample's coordinates)."""
    import torch

    y = x
    for d in spatial:
        n_in = y.shape[d]

        def make(
            d: int = d,
            n_in: int = n_in,
            rank: int = y.dim(),
            dev: Any = y.device,
            dt: Any = y.dtype,
        ) -> tuple[Any, Any, Any]:
            pos = [min(o / scales[d], n_in - 1) for o in range(out[d])]
            lo = [math.floor(p) for p in pos]
            hi = [min(v + 1, n_in - 1) for v in lo]
            w = [p - v for p, v in zip(pos, lo)]
            shape = [1] * rank
            shape[d] = out[d]
            return (
                torch.tensor(lo, device=dev),
                torch.tensor(hi, device=dev),
                torch.tensor(w, dtype=dt, device=dev).reshape(shape),
            )

        lo, hi, w = ctx.cached(("lin", d, n_in, out[d], scales[d], y.device, y.dtype), make)
        a, b = y.index_select(d, lo), y.index_select(d, hi)
        y = a + (b - a) * w
    return y


@_op("Resize", meta=(1, 2, 3))
def _resize(
    ctx: _Ctx,
    x: Any,
    roi: Any = None,
    scales: Any = None,
    sizes: Any = None,
    mode: str = "nearest",
    coordinate_transformation_mode: str | None = None,
    nearest_mode: str = "round_prefer_floor",
    cubic_coeff_a: float = -0.75,
    exclude_outside: int = 0,
    extrapolation_value: float = 0.0,
    antialias: int = 0,
    axes: Sequence[int] | None = None,
    keep_aspect_ratio_policy: str = "stretch",
) -> Any:
    if antialias:
        raise Unsupported("Resize with antialias=1")
    if keep_aspect_ratio_policy != "stretch":
        raise Unsupported(f"Resize keep_aspect_ratio_policy {keep_aspect_ratio_policy!r}")
    if ctx.opset < 11:  # Resize-10: (X, scales), asymmetric coordinates
        scales, roi = roi, None
        ctm = "asymmetric"
        nearest_mode = "floor" if nearest_mode == "round_prefer_floor" else nearest_mode
    else:
        ctm = coordinate_transformation_mode or "half_pixel"
    sc = _floats(scales) if scales is not None else []
    sz = _ints(sizes) if sizes is not None else []
    return _resize_impl(
        ctx,
        x,
        sc or None,
        sz or None,
        mode,
        ctm,
        nearest_mode,
        cubic_coeff_a,
        exclude_outside,
        list(axes) if axes else None,
    )


@_op("Upsample", meta=(1,))
def _upsample(
    ctx: _Ctx,
    x: Any,
    scales_in: Any = None,
    mode: str = "nearest",
    scales: Sequence[float] | None = None,
    **_: Any,
) -> Any:
    sc = _floats(scales_in) if scales_in is not None else list(scales or [])
    return _resize_impl(ctx, x, sc, None, mode, "asymmetric", "floor", -0.75, 0, None)


SUPPORTED_OPS: tuple[str, ...] = tuple(sorted((*_OPS, "Constant")))


def _specialize(op: str, node: Any, used: set[str]) -> Callable[..., Any]:
    """The op function for one node, where the node's output list changes what it must do."""
    outs = list(node.output)
    if op == "Split":
        return _split_node(len(outs))
    extra_used = [o for o in outs[1:] if o and o in used]
    if extra_used and op in ("MaxPool", "Dropout", "LayerNormalization"):
        raise Unsupported(f"{op} with its optional output {extra_used[0]!r} in use")
    return _OPS[op]
