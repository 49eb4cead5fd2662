"""Model cost from the graph: FLOPs, MACs, parameter and activation bytes per sample."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from perflab.models.files import TensorSpec, _dims_of, _dtype_name

if TYPE_CHECKING:  # onnx and numpy stay out of `import perflab`'s import time
    import numpy as np
    import onnx


# ---------------------------------------------------------------------------------------------
# Model cost from the graph
# ---------------------------------------------------------------------------------------------

#: FLOPs per output element of ops that are neither convolutions nor matrix products.
#: Simple elementwise ops (add, relu, sigmoid, erf, ...) count 1: engines fuse them and the
#: transcendental ones cost a handful of instructions, so one number per element is as good
#: as any other here. The others are documented estimates:
#: - Softmax 5: max, subtract, exp, sum, divide.
#: - LayerNormalization / InstanceNormalization / GroupNormalization 5: mean, subtract,
#:   square-sum, scale, shift.
#: - BatchNormalization 2: at inference it is one scale and one shift.
#: - QuantizeLinear / DequantizeLinear 2: scale and zero point (only on activations; those on
#:   weights are constant and folded by engines).
_ELEMENTWISE_OPS = """
    Add Sub Mul Div Pow Mod Max Min Sum Mean Neg Abs Reciprocal Sqrt Exp Log Erf Sin Cos
    Relu Clip Sigmoid Tanh LeakyRelu PRelu Elu Selu Celu Softplus Softsign HardSigmoid HardSwish
    Gelu Mish ThresholdedRelu Shrink Where Equal Less LessOrEqual Greater GreaterOrEqual And Or
    Xor Not Floor Ceil Round Sign IsNaN IsInf BitwiseAnd BitwiseOr BitwiseXor BitwiseNot CumSum
    Resize Upsample Trilu
""".split()  # noqa: SIM905 - a word list reads better than 60 quoted names
_FLOPS_PER_ELEMENT = {
    **dict.fromkeys(_ELEMENTWISE_OPS, 1),
    "Softmax": 5, "LogSoftmax": 5, "Hardmax": 2,
    "LayerNormalization": 5, "InstanceNormalization": 5, "GroupNormalization": 5,
    "MeanVarianceNormalization": 5, "LpNormalization": 3, "LRN": 5,
    "BatchNormalization": 2,
    "QuantizeLinear": 2, "DequantizeLinear": 2, "DynamicQuantizeLinear": 4,
}  # fmt: skip
#: Ops that move or reinterpret data without arithmetic: 0 FLOPs (their outputs still count
#: toward activation bytes).
_NO_FLOP_OPS = frozenset(
    """
    Reshape Transpose Concat Split Slice Gather GatherElements GatherND Squeeze Unsqueeze Flatten
    Identity Cast CastLike Shape Size Expand Tile Pad Constant ConstantOfShape Range DepthToSpace
    SpaceToDepth ScatterND ScatterElements Scatter Dropout NonZero OneHot EyeLike Compress
    ReverseSequence SplitToSequence SequenceAt SequenceConstruct ConcatFromSequence Optional
    OptionalGetElement
""".split()  # noqa: SIM905
)
#: Reductions and pools cost one FLOP per input element (or per window element).
_REDUCE_OPS = frozenset(
    """
    ReduceSum ReduceMean ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSum
    ReduceLogSumExp ReduceSumSquare ArgMax ArgMin GlobalAveragePool GlobalMaxPool GlobalLpPool
""".split()  # noqa: SIM905
)
_WINDOW_POOL_OPS = frozenset(("MaxPool", "AveragePool", "LpPool"))
#: Ops whose outputs are constants whatever the inputs: their outputs count as parameters.
_GENERATOR_OPS = frozenset(("ConstantOfShape", "RandomNormal", "RandomUniform", "EyeLike"))


def _skeleton(
    model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int | str]] | None = None
) -> onnx.ModelProto:
    """A light copy for shape inference: big float initializers keep their dims, not data.

    Small and integer initializers keep their values because shape inference reads them
    (Reshape targets, Resize scales, Slice bounds). `input_shapes` replaces the graph input
    shapes, and stale intermediate shapes are dropped so inference recomputes them.
    """
    import onnx
    from onnx import TensorProto

    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
    g = model.graph
    g2 = onnx.GraphProto(name=g.name)
    g2.node.extend(g.node)
    g2.output.extend(g.output)
    for init in g.initializer:
        numel = math.prod(init.dims)
        if init.data_type in floats and numel > 64 or init.data_location == TensorProto.EXTERNAL:
            g2.initializer.append(
                TensorProto(name=init.name, dims=init.dims, data_type=init.data_type)
            )
        else:
            g2.initializer.append(init)
    for vi in g.input:
        vi2 = g2.input.add()
        vi2.CopyFrom(vi)
        if input_shapes and vi.name in input_shapes:
            dims = vi2.type.tensor_type.shape.dim
            del dims[:]
            for d in input_shapes[vi.name]:
                if isinstance(d, str):
                    dims.add().dim_param = d
                else:
                    dims.add().dim_value = int(d)
    if input_shapes:
        for out in g2.output:  # declared output shapes may contradict the new input shapes
            out.type.tensor_type.ClearField("shape")
    m2 = onnx.ModelProto(ir_version=model.ir_version, graph=g2, domain=model.domain)
    m2.opset_import.extend(model.opset_import)
    m2.functions.extend(model.functions)
    return m2


def _infer_once(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnx

    for data_prop in (True, False):
        try:
            return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=data_prop)
        except Exception:  # noqa: BLE001, S112 - inference is best-effort; unknowns are reported
            continue
    return model


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference, helped by folding shape arithmetic where it gives up.

    Exporters such as Paddle's compute Reshape targets from Shape -> Slice -> Cast -> Concat
    chains that onnx's data propagation does not follow through every op; once the input
    shapes are concrete, those chains are constants, so they are evaluated here and inference
    runs again.
    """
    inferred = _infer_once(model)
    for _ in range(4):
        if all(t.known for t in _node_output_infos(inferred)):
            break
        folded = _fold_shape_arithmetic(model, inferred)
        if folded is None:
            break
        model = folded
        inferred = _infer_once(model)
    return inferred


def _node_output_infos(model: onnx.ModelProto) -> list[_TensorInfo]:
    shapes = _value_shapes(model)
    missing = _TensorInfo(None, 0)
    return [shapes.get(o, missing) for n in model.graph.node for o in n.output if o]


_FOLD_MAX_ELEMENTS = 1024


def _fold_shape_arithmetic(
    model: onnx.ModelProto, inferred: onnx.ModelProto
) -> onnx.ModelProto | None:
    """Evaluate small integer subgraphs fed by Shape; None when nothing could be folded."""
    import numpy as np
    from onnx import helper, numpy_helper

    shapes = _value_shapes(inferred)
    vals: dict[str, np.ndarray] = {}
    for init in model.graph.initializer:
        if math.prod(init.dims) <= _FOLD_MAX_ELEMENTS and (
            init.raw_data or init.int64_data or init.int32_data or init.float_data
        ):
            try:
                vals[init.name] = numpy_helper.to_array(init)
            except Exception:  # noqa: BLE001, S110 - unreadable initializers are simply not folded
                pass
    folded: dict[str, np.ndarray] = {}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or len(node.output) != 1:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        try:
            if node.op_type == "Shape":
                t = shapes.get(node.input[0])
                if t is None or not t.known:
                    continue
                out = np.array(t.shape, np.int64)[attrs.get("start", 0) : attrs.get("end")]
            elif node.op_type == "Constant" and "value" in attrs:
                out = numpy_helper.to_array(attrs["value"])
                vals[node.output[0]] = out
                continue
            else:
                args = [vals.get(i) if i else None for i in node.input]
                if not node.input or any(a is None for a, i in zip(args, node.input) if i):
                    continue
                out = _fold_op(node.op_type, args, attrs)
                if out is None:
                    continue
        except Exception:  # noqa: BLE001, S112 - an op this folder gets wrong is left to ORT
            continue
        if out.size <= _FOLD_MAX_ELEMENTS:
            vals[node.output[0]] = out
            if node.op_type != "Constant":
                folded[node.output[0]] = out
    if not folded:
        return None
    g = model.graph
    g2 = type(g)()
    g2.CopyFrom(g)
    del g2.node[:]
    g2.node.extend(n for n in g.node if not (n.output and n.output[0] in folded))
    g2.initializer.extend(numpy_helper.from_array(v, k) for k, v in folded.items())
    m2 = type(model)()
    m2.CopyFrom(model)
    m2.graph.CopyFrom(g2)
    return m2


def _fold_op(op: str, args: list[Any], attrs: Mapping[str, Any]) -> Any:
    import numpy as np
    from onnx import helper

    if op in ("Add", "Sub", "Mul", "Div", "Equal", "Max", "Min", "Mod"):
        a, b = args[0], args[1]
        if op == "Div":
            return a // b if a.dtype.kind in "iu" else a / b
        fn = {
            "Add": np.add,
            "Sub": np.subtract,
            "Mul": np.multiply,
            "Equal": np.equal,
            "Max": np.maximum,
            "Min": np.minimum,
            "Mod": np.mod,
        }[op]
        return fn(a, b)
    if op == "Cast":
        return args[0].astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))
    if op in ("Identity", "Floor", "Ceil", "Neg", "Abs"):
        fn = {
            "Identity": np.asarray,
            "Floor": np.floor,
            "Ceil": np.ceil,
            "Neg": np.negative,
            "Abs": np.abs,
        }[op]
        return fn(args[0])
    if op == "Concat":
        return np.concatenate([np.atleast_1d(a) for a in args], axis=attrs.get("axis", 0))
    if op == "Gather":
        return np.take(args[0], args[1], axis=attrs.get("axis", 0))
    if op in ("Unsqueeze", "Squeeze"):
        axes = args[1] if len(args) > 1 and args[1] is not None else attrs.get("axes")
        if op == "Unsqueeze":
            out = args[0]
            for ax in sorted(int(a) % (out.ndim + len(axes)) for a in axes):
                out = np.expand_dims(out, ax)
            return out
        return np.squeeze(args[0], axis=None if axes is None else tuple(int(a) for a in axes))
    if op == "Slice":
        data = args[0]
        if len(args) > 1:
            starts, ends = args[1], args[2]
            axes = args[3] if len(args) > 3 and args[3] is not None else range(len(starts))
            steps = args[4] if len(args) > 4 and args[4] is not None else [1] * len(starts)
        else:  # opset < 10 keeps them in attributes
            starts, ends = attrs["starts"], attrs["ends"]
            axes = attrs.get("axes", range(len(starts)))
            steps = [1] * len(starts)
        index = [slice(None)] * data.ndim
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            index[int(ax)] = slice(int(st), int(en), int(sp))
        return data[tuple(index)]
    if op == "Reshape":
        return args[0].reshape(
            [int(d) if d != 0 else args[0].shape[i] for i, d in enumerate(args[1])]
        )
    if op == "Range":
        return np.arange(args[0], args[1], args[2])
    if op in ("ReduceProd", "ReduceSum") and len(args) == 1:
        fn = np.prod if op == "ReduceProd" else np.sum
        return np.asarray(fn(args[0], keepdims=bool(attrs.get("keepdims", 1))))
    return None


@dataclass(frozen=True)
class _TensorInfo:
    shape: tuple[int | None, ...] | None  # None: rank unknown; None dims: unknown sizes
    elem_type: int

    @property
    def known(self) -> bool:
        return self.shape is not None and all(d is not None for d in self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)  # type: ignore[arg-type]

    @property
    def nbytes(self) -> int:
        return self.numel * _itemsize(self.elem_type)


def _itemsize(elem_type: int) -> int:
    from onnx import helper

    try:
        return helper.tensor_dtype_to_np_dtype(elem_type).itemsize
    except Exception:  # noqa: BLE001 - 4-bit and float8 types have no numpy dtype
        return 1


def _value_shapes(model: onnx.ModelProto) -> dict[str, _TensorInfo]:
    """Shape and element type of every tensor the graph declares, infers or holds."""
    from onnx import TensorProto

    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    out: dict[str, _TensorInfo] = {}
    g = model.graph
    for vi in (*g.input, *g.value_info, *g.output):
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            continue
        shape = None
        if tt.HasField("shape"):
            shape = tuple(
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in tt.shape.dim
            )
        out[vi.name] = _TensorInfo(shape, tt.elem_type)
    for init in g.initializer:
        out[init.name] = _TensorInfo(tuple(init.dims), init.data_type)
    for node in g.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = _TensorInfo(tuple(a.t.dims), a.t.data_type)
                elif a.name in ("value_float", "value_int"):
                    out[node.output[0]] = _TensorInfo((), f32 if a.name == "value_float" else i64)
                elif a.name == "value_floats":
                    out[node.output[0]] = _TensorInfo((len(a.floats),), f32)
                elif a.name == "value_ints":
                    out[node.output[0]] = _TensorInfo((len(a.ints),), i64)
    return out


def _static_tensors(model: onnx.ModelProto) -> set[str]:
    """Tensors that do not depend on any graph input (weights and what engines fold from them)."""
    g = model.graph
    static = {i.name for i in g.initializer}
    graph_inputs = {i.name for i in g.input} - static
    for node in g.node:  # nodes are topologically sorted in a valid model
        ins = [i for i in node.input if i]
        if node.op_type in ("If", "Loop", "Scan"):
            continue
        if all(i in static for i in ins) and not any(i in graph_inputs for i in ins):
            static.update(o for o in node.output if o)
    return static


def _node_flops(node: Any, shapes: Mapping[str, _TensorInfo]) -> tuple[int, int] | None:
    """(MACs, other FLOPs) of one node, or None when its shapes or its op are unknown."""

    def info(i: int) -> _TensorInfo | None:
        if i >= len(node.input) or not node.input[i]:
            return None
        t = shapes.get(node.input[i])
        return t if t is not None and t.known else None

    out = shapes.get(node.output[0]) if node.output else None
    if out is None or not out.known:
        return None if node.op_type not in _NO_FLOP_OPS else (0, 0)
    op = node.op_type
    n_out = out.numel
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w = info(3 if op == "QLinearConv" else 1)
        if w is None:
            return None
        bias_in = 8 if op == "QLinearConv" else 2
        has_bias = len(node.input) > bias_in and bool(node.input[bias_in])
        return n_out * math.prod(w.shape[1:]), n_out if has_bias else 0  # type: ignore[index]
    if op == "ConvTranspose":
        x, w = info(0), info(1)
        if x is None or w is None:
            return None
        has_bias = len(node.input) > 2 and bool(node.input[2])
        return x.numel * math.prod(w.shape[1:]), n_out if has_bias else 0  # type: ignore[index]
    if op == "Gemm":
        a = info(0)
        if a is None:
            return None
        trans_a = any(at.name == "transA" and at.i for at in node.attribute)
        k = a.shape[0 if trans_a else 1]  # type: ignore[index]
        has_c = len(node.input) > 2 and bool(node.input[2])
        return n_out * k, n_out if has_c else 0
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        a = info(0)
        if a is None or not a.shape:
            return None
        return n_out * a.shape[-1], 0  # type: ignore[index]
    if op in _NO_FLOP_OPS:
        return 0, 0
    if op in ("Sum", "Max", "Min", "Mean"):
        return 0, n_out * max(1, len(node.input) - 1)
    if op in _FLOPS_PER_ELEMENT:
        return 0, n_out * _FLOPS_PER_ELEMENT[op]
    if op in _REDUCE_OPS:
        x = info(0)
        return None if x is None else (0, x.numel)
    if op in _WINDOW_POOL_OPS:
        ks = next((list(at.ints) for at in node.attribute if at.name == "kernel_shape"), None)
        return None if ks is None else (0, n_out * math.prod(ks))
    return None


def _batch_of(inputs: Mapping[str, Sequence[int]]) -> int:
    for shape in inputs.values():
        if len(shape) and int(shape[0]) > 0:
            return int(shape[0])
    return 1


def _as_shape_map(
    inputs: Mapping[str, Sequence[int]] | Sequence[TensorSpec],
) -> dict[str, tuple[int, ...]]:
    if isinstance(inputs, Mapping):
        return {k: tuple(int(d) for d in v) for k, v in inputs.items()}
    return {t.name: tuple(t.shape) for t in inputs}


@dataclass(frozen=True)
class _Analysis:
    cost: dict[str, Any]
    outputs: tuple[TensorSpec, ...]


def _analyze(
    model: onnx.ModelProto, inputs: Mapping[str, Sequence[int]], batch_size: int | None
) -> _Analysis:
    inferred = _infer(_skeleton(model, inputs))
    shapes = _value_shapes(inferred)
    static = _static_tensors(inferred)
    g = inferred.graph
    batch = batch_size or _batch_of(inputs)

    consumers: dict[str, list[str]] = {}
    for node in g.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node.op_type)

    # Parameters: initializers and Constant outputs that something uses, except shape
    # arguments of generator ops, whose generated tensors are counted instead.
    param_bytes = param_count = 0
    sources = [i.name for i in g.initializer]
    sources += [n.output[0] for n in g.node if n.op_type == "Constant" and n.output]
    for name in sources:
        users = consumers.get(name, [])
        if not users or all(u in _GENERATOR_OPS for u in users):
            continue
        t = shapes.get(name)
        if t is not None and t.known:
            param_bytes += t.nbytes
            param_count += t.numel
    for node in g.node:
        if node.op_type in _GENERATOR_OPS and node.output[0] in static:
            t = shapes.get(node.output[0])
            if t is not None and t.known:
                param_bytes += t.nbytes
                param_count += t.numel

    macs = flops_other = act_bytes = nodes = 0
    flops_by_op: dict[str, int] = {}
    uncounted: dict[str, int] = {}
    for node in g.node:
        if node.output and node.output[0] in static:
            continue  # folded into constants by every engine
        nodes += 1
        for o in node.output:
            t = shapes.get(o)
            if o and t is not None and t.known:
                act_bytes += t.nbytes
        r = _node_flops(node, shapes)
        if r is None:
            uncounted[node.op_type] = uncounted.get(node.op_type, 0) + 1
            continue
        node_macs, node_other = r
        macs += node_macs
        flops_other += node_other
        f = 2 * node_macs + node_other
        if f:
            flops_by_op[node.op_type] = flops_by_op.get(node.op_type, 0) + f

    declared = {vi.name: vi for vi in model.graph.output}
    outputs = []
    for out in g.output:
        t = shapes.get(out.name)
        if t is not None and t.shape is not None:
            shape = tuple(-1 if d is None else d for d in t.shape)
        else:  # inference lost it: fall back to the declared shape, minus its symbols
            shape = tuple(
                d if isinstance(d, int) and d > 0 else -1 for d in _dims_of(declared[out.name])
            )
        et = out.type.tensor_type.elem_type or (t.elem_type if t else 1)
        outputs.append(TensorSpec(out.name, shape, _dtype_name(et)))

    cost_dict = {
        "flops_per_sample": (2 * macs + flops_other) / batch,
        "macs_per_sample": macs / batch,
        "param_bytes": param_bytes,
        "param_count": param_count,
        "activation_bytes_per_sample": act_bytes / batch,
        "node_count": nodes,
        "flops_by_op": {
            k: v / batch for k, v in sorted(flops_by_op.items(), key=lambda kv: -kv[1])
        },
        "uncounted_ops": dict(sorted(uncounted.items())),
    }
    return _Analysis(cost_dict, tuple(outputs))


def cost(
    model: onnx.ModelProto,
    inputs: Mapping[str, Sequence[int]] | Sequence[TensorSpec],
    *,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """FLOPs, parameter bytes and activation bytes of `model` at the given input shapes.

    Shapes come from ONNX shape inference with `inputs` as the graph input shapes. Per-sample
    values divide the totals by `batch_size` (default: the leading dim of the first input).

    Keys:
    - flops_per_sample: 2 x MACs of Conv (groups included), ConvTranspose, Gemm and MatMul
      (batched included), plus `_FLOPS_PER_ELEMENT` per output element of the other ops
      (1 for elementwise ops, 5 for Softmax and layer/instance norms, ...), pools and
      reductions 1 per window / input element. Subgraphs of constants are not counted
      (engines fold them).
    - macs_per_sample: the multiply-accumulates alone (the number papers quote as "FLOPs").
    - param_bytes, param_count: initializers and Constant outputs in use, and the outputs of
      generator ops such as ConstantOfShape (counted instead of their shape argument).
    - activation_bytes_per_sample: sum of the sizes of all tensors computed from the inputs
      (graph outputs included, graph inputs not): a traffic estimate, not peak memory.
    - node_count: nodes that compute from the inputs (constant subgraphs left out), an upper
      bound on the kernels an engine launches per iteration (engines fuse nodes).
    - flops_by_op: flops_per_sample split by op type.
    - uncounted_ops: op type -> number of nodes left out because their shapes stayed unknown
      or no rule covers the op (empty when everything was counted).
    """
    return _analyze(model, _as_shape_map(inputs), batch_size).cost
