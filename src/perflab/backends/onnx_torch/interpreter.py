"""ONNX -> torch.nn.Module: a small interpreter that runs an ONNX graph with torch ops.

Why not a library: onnx2torch pulls in torchvision, and torch.onnx has no importer. This module
needs only onnx, numpy and torch, and keeps the graph as it is (no fusion, no rewriting), so
what torch runs is the same computation the other backends get.

    module = OnnxModule(onnx.load(path))          # raises Unsupported naming every missing op
    module.set_compute_dtype(torch.float16)       # optional: fp16 weights and activations
    module.to("cuda")
    outputs = module(*inputs)                     # tensors in graph-input order -> tuple

How it runs:
- Initializers and `Constant` outputs become constants; every node whose inputs are all
  constants is evaluated once here ("constant folding"), so weight-generating subgraphs (for
  example ConstantOfShape -> weights) cost nothing per call.
- Float constants are registered buffers: `.to(device)` moves them and `set_compute_dtype`
  casts them. Small integer constants (shapes, axes, indices; <= 64 elements) stay on the
  host, so shape arithmetic never waits for the GPU. Shape-like inputs of ops (Reshape's
  shape, Slice's bounds, Resize's scales, Clip's bounds, ...) that are constants are read
  once, here, as Python values.
- Nodes then run in topological order in `forward`; each intermediate tensor is dropped after
  its last use, so peak memory is what the graph needs, not the sum of all activations.
- In reduced precision (`set_compute_dtype`), float inputs are cast to the compute dtype on
  entry, float outputs back to the graph's declared output dtype on exit, and `Cast` to a
  float type casts to the compute dtype (so the graph stays in one float precision).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from perflab.backends.onnx_torch.ops import (
    _META,
    SUPPORTED_OPS,
    _qualified,
    _specialize,
    unsupported_ops,
)
from perflab.backends.onnx_torch.values import (
    HOST_CONST_MAX_ELEMENTS,
    _meta_value,
    _to_tensor,
    _torch_dtype,
)
from perflab.errors import ModelError, Unsupported

if TYPE_CHECKING:
    import onnx
    import torch


def convert(model: onnx.ModelProto | str) -> torch.nn.Module:
    """Load (when given a path) and convert an ONNX model: an `OnnxModule`."""
    import onnx

    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = onnx.load(model)  # type: ignore[arg-type]
    return _module_class()(model)


# ---------------------------------------------------------------------------------------------
# The module


@dataclass
class _Step:
    fn: Callable[..., Any]
    op: str
    name: str
    # Per input: (0, env name) | (1, buffer name) | (2, host tensor or Python value) | None
    srcs: tuple[Any, ...]
    outs: tuple[str, ...]
    attrs: dict[str, Any]
    drop: tuple[str, ...] = ()


class _Ctx:
    """What op functions need besides their inputs: opset, compute dtype, device, a cache."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.compute_dtype: torch.dtype | None = None  # None: the graph's own float types
        self.device: torch.device | None = None
        self.host_ids: set[int] = set()  # ids of host constants (long-lived: safe to cache)
        self._cache: dict[Any, Any] = {}

    def clear(self) -> None:
        self._cache.clear()

    def float_dtype(self, declared: torch.dtype) -> torch.dtype:
        return self.compute_dtype if self.compute_dtype is not None else declared

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        """A value made once per key (index tables, device copies of host constants).

        A device tensor made here is copied on the current stream; waiting for that copy once
        lets other streams (throughput mode) use it safely afterwards.
        """
        try:
            return self._cache[key]
        except KeyError:
            value = self._cache[key] = make()
            for t in value if isinstance(value, tuple) else (value,):
                if getattr(t, "is_cuda", False):
                    import torch

                    torch.cuda.current_stream(t.device).synchronize()
            return value

    def on(self, t: torch.Tensor, device: torch.device) -> torch.Tensor:
        """`t` on `device`; host constants are copied once and cached, other tensors each time."""
        if t.device == device:
            return t
        if id(t) in self.host_ids:
            return self.cached(("on", id(t), device), lambda: t.to(device))
        return t.to(device, non_blocking=True)


def _make_module_class() -> type:
    import torch

    class OnnxModule(torch.nn.Module):
        """An ONNX graph as a torch module (see the module docstring for how it runs)."""

        def __init__(self, model: onnx.ModelProto) -> None:
            super().__init__()
            from onnx import numpy_helper

            missing = unsupported_ops(model)
            if missing:
                raise Unsupported(
                    "the ONNX->torch converter does not support op"
                    f"{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                    f"(it covers {len(SUPPORTED_OPS)} ops: "
                    "perflab.backends.onnx_torch.SUPPORTED_OPS)"
                )
            g = model.graph
            opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
            self._ctx = _Ctx(opset)
            consts: dict[str, torch.Tensor] = {}
            for init in g.initializer:
                consts[init.name] = _to_tensor(numpy_helper.to_array(init))
            init_names = set(consts)
            graph_inputs = [i for i in g.input if i.name not in init_names]
            self.input_names = tuple(i.name for i in graph_inputs)
            self.output_names = tuple(o.name for o in g.output)
            self._output_dtypes = tuple(
                _torch_dtype(o.type.tensor_type.elem_type) if o.type.tensor_type.elem_type else None
                for o in g.output
            )
            self._input_float = tuple(
                i.type.tensor_type.elem_type in (1, 10, 11, 16) for i in graph_inputs
            )
            used_anywhere = {i for n in g.node for i in n.input if i} | set(self.output_names)

            steps: list[_Step] = []
            for node in _toposort(g, init_names | set(self.input_names)):
                op = _qualified(node)
                attrs = {a.name: _attr_value(a) for a in node.attribute}
                if op == "Constant":
                    consts[node.output[0]] = _constant_value(attrs)
                    continue
                fn = _specialize(op, node, used_anywhere)
                ins = [i if i else None for i in node.input]
                if all(i is None or i in consts for i in ins) and op not in _NONDETERMINISTIC:
                    # Constant folding: evaluate once, on the host, in the graph's own types.
                    args = [None if i is None else consts[i] for i in ins]
                    args = [
                        _meta_value(a) if k in _META[op] and a is not None else a
                        for k, a in enumerate(args)
                    ]
                    for name, value in zip(node.output, _call(fn, self._ctx, args, attrs, node)):
                        if name and value is not None:
                            consts[name] = value
                    continue
                steps.append(_Step(fn, op, node.name or op, tuple(ins), tuple(node.output), attrs))

            # Shape-like inputs that are constants are read once, here, as Python values; the
            # other constants are tensors: floats (and big integer tables) as buffers, small
            # integers on the host.
            data_uses: set[str] = {o for o in self.output_names if o in consts}
            for s in steps:
                for pos, i in enumerate(s.srcs):
                    if i and i in consts and pos not in _META[s.op]:
                        data_uses.add(i)
            host: dict[str, torch.Tensor] = {}
            buffer_names: dict[str, str] = {}
            for name in sorted(data_uses):
                t = consts[name]
                if not t.is_floating_point() and t.numel() <= HOST_CONST_MAX_ELEMENTS:
                    host[name] = t
                else:
                    key = f"c{len(buffer_names)}"
                    self.register_buffer(key, t, persistent=True)
                    buffer_names[name] = key
            self._ctx.host_ids = {id(t) for t in host.values()}
            self._host = host
            self.constant_names = dict(buffer_names)

            last_use: dict[str, int] = {}
            for k, s in enumerate(steps):
                for i in s.srcs:
                    if i:
                        last_use[i] = k
            keep = set(self.output_names)
            for k, s in enumerate(steps):
                srcs: list[Any] = []
                for pos, i in enumerate(s.srcs):
                    if i is None:
                        srcs.append(None)
                    elif i in consts and pos in _META[s.op]:
                        srcs.append((2, _meta_value(consts[i])))
                    elif i in buffer_names:
                        srcs.append((1, buffer_names[i]))
                    elif i in host:
                        srcs.append((2, host[i]))
                    else:
                        srcs.append((0, i))
                runtime = [src[1] for src in srcs if src and src[0] == 0]
                s.drop = tuple(
                    i for i in dict.fromkeys(runtime) if last_use.get(i) == k and i not in keep
                )
                s.srcs = tuple(srcs)
            self._steps = steps
            produced = set(self.input_names) | {o for s in steps for o in s.outs if o}
            output_srcs: list[Any] = []
            for o in self.output_names:
                if o in produced:
                    output_srcs.append((0, o))
                elif o in buffer_names:
                    output_srcs.append((1, buffer_names[o]))
                elif o in host:
                    output_srcs.append((2, host[o]))
                else:
                    raise ModelError(f"graph output {o!r} is produced by no node")
            self._output_srcs = tuple(output_srcs)
            self.register_buffer("_anchor", torch.zeros(0), persistent=False)
            #: Op type -> number of nodes that run per call (constant-folded nodes excluded).
            self.op_counts = _count(s.op for s in steps)

        @property
        def compute_dtype(self) -> torch.dtype | None:
            return self._ctx.compute_dtype

        def set_compute_dtype(self, dtype: torch.dtype | None) -> OnnxModule:
            """Run in `dtype` (torch.float16 / bfloat16): float constants are cast once here,
            float inputs on entry and float outputs back to their declared dtype on exit."""
            if dtype is not None and not dtype.is_floating_point:
                raise ValueError(f"compute dtype must be a float dtype, got {dtype}")
            if dtype is not None:
                for key, t in list(self._buffers.items()):
                    if t is not None and t.is_floating_point() and key != "_anchor":
                        self._buffers[key] = t.to(dtype)
            self._ctx.compute_dtype = dtype
            self._ctx.clear()
            return self

        def _apply(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> OnnxModule:
            out = super()._apply(fn, *args, **kwargs)
            self._ctx.device = self._anchor.device
            self._ctx.clear()
            return out

        def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            if len(inputs) != len(self.input_names):
                raise TypeError(
                    f"expected {len(self.input_names)} inputs ({', '.join(self.input_names)}), "
                    f"got {len(inputs)}"
                )
            ctx = self._ctx
            cdt = ctx.compute_dtype
            env: dict[str, Any] = {}
            for name, x, is_float in zip(self.input_names, inputs, self._input_float):
                env[name] = x.to(cdt) if (cdt is not None and is_float and x.dtype != cdt) else x
            buffers = self._buffers
            for s in self._steps:
                args = [
                    None
                    if src is None
                    else env[src[1]]
                    if src[0] == 0
                    else buffers[src[1]]
                    if src[0] == 1
                    else src[1]
                    for src in s.srcs
                ]
                result = s.fn(ctx, *args, **s.attrs)
                if type(result) is tuple:
                    for name, value in zip(s.outs, result):
                        if name:
                            env[name] = value
                else:
                    env[s.outs[0]] = result
                for name in s.drop:
                    del env[name]
            outs = []
            for src, dt in zip(self._output_srcs, self._output_dtypes):
                y = env[src[1]] if src[0] == 0 else buffers[src[1]] if src[0] == 1 else src[1]
                if dt is not None and y.dtype != dt and y.is_floating_point():
                    y = y.to(dt)
                outs.append(y)
            return tuple(outs)

    return OnnxModule


_NONDETERMINISTIC = frozenset(
    (
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
    )
)


def _count(ops: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for op in ops:
        out[op] = out.get(op, 0) + 1
    return dict(sorted(out.items()))


def _call(
    fn: Callable[..., Any], ctx: _Ctx, args: list[Any], attrs: dict[str, Any], node: Any
) -> tuple[Any, ...]:
    try:
        result = fn(ctx, *args, **attrs)
    except Unsupported:
        raise
    except Exception as exc:
        raise ModelError(
            f"folding constant node {node.name or node.op_type!r} ({node.op_type}) failed: {exc}"
        ) from exc
    return result if type(result) is tuple else (result,)


def _toposort(graph: Any, available: set[str]) -> list[Any]:
    """Nodes in an order where every input is produced first (valid ONNX is sorted already)."""
    nodes = list(graph.node)
    have = set(available) | {""}
    out: list[Any] = []
    pending = nodes
    while pending:
        rest = []
        for n in pending:
            if all(i in have for i in n.input):
                out.append(n)
                have.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            missing = sorted({i for n in rest for i in n.input if i not in have})
            raise ModelError(f"graph inputs never produced: {', '.join(missing[:5])}")
        pending = rest
    return out


def _attr_value(a: Any) -> Any:
    from onnx import AttributeProto, helper, numpy_helper

    if a.type == AttributeProto.TENSOR:
        return numpy_helper.to_array(a.t)
    if a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
        raise Unsupported(f"attribute {a.name!r} holds a subgraph (control flow)")
    if a.type == AttributeProto.SPARSE_TENSOR:
        raise Unsupported(f"attribute {a.name!r} holds a sparse tensor")
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode() for x in v]
    return v


def _constant_value(attrs: dict[str, Any]) -> torch.Tensor:
    import torch

    if "value" in attrs:
        return _to_tensor(np.asarray(attrs["value"]))
    if "value_float" in attrs:
        return torch.tensor(attrs["value_float"], dtype=torch.float32)
    if "value_floats" in attrs:
        return torch.tensor(attrs["value_floats"], dtype=torch.float32)
    if "value_int" in attrs:
        return torch.tensor(attrs["value_int"], dtype=torch.int64)
    if "value_ints" in attrs:
        return torch.tensor(attrs["value_ints"], dtype=torch.int64)
    raise Unsupported(f"Constant with attributes {sorted(attrs)} (strings, sparse)")


# ---------------------------------------------------------------------------------------------
# Public class (created lazily so importing this module does not import torch)

_CLASS: list[type] = []


def _module_class() -> type:
    if not _CLASS:
        _CLASS.append(_make_module_class())
    return _CLASS[0]
