"""Built-in ONNX model zoo, user models, precision conversion and model cost."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perflab.errors import ModelError, Unsupported

if TYPE_CHECKING:  # onnx and numpy stay out of `import perflab`'s import time
    import numpy as np
    import onnx


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
# Versions and constants
# ---------------------------------------------------------------------------------------------

#: ONNX opset of the zoo models. 17 is the first with LayerNormalization, which bert-mini uses;
#: every onnxruntime since 1.13 and OpenVINO since 2022.3 run it.
OPSET = 17
#: IR version written into zoo models and rewritten copies. onnx 1.23 writes IR 14 by default,
#: which onnxruntime 1.31 refuses to load; IR 8 is what opset 17 was released with.
IR_VERSION = 8
#: Bumped whenever a zoo builder changes what it writes, so cached files are never reused stale.
ZOO_VERSION = 1
#: Bumped whenever `resolve`'s batch rewrite or `convert` changes what it writes.
REWRITE_VERSION = 2
CONVERT_VERSION = 4

#: Precisions `convert` can produce. bf16 and "best" are engine-side conversions (a backend
#: decides whether it can run them), so they are not files this module writes.
PRECISIONS = ("fp32", "fp16", "int8")

#: Metadata keys the zoo writes into its models; `resolve` reads them from any model.
META_DIM_DEFAULTS = "perflab.dim_defaults"  # JSON {symbolic dim name: default size}
META_VOCAB = "perflab.vocab_size"
META_TASK = "perflab.task"
META_POSTPROCESS = "perflab.postprocess"


@dataclass(frozen=True)
class _ZooEntry:
    name: str
    kind: str  # image | sequence | tensor
    task: str
    seed: int
    description: str
    #: Default square input size (other multiples of 32 can be built); None: not an image model.
    image_size: int | None = None


_ZOO_ENTRIES = (
    _ZooEntry(
        "resnet18", "image", "classification", 18, "ResNet-18 (BasicBlock), 1000 classes", 224
    ),
    _ZooEntry(
        "resnet50", "image", "classification", 50, "ResNet-50 v1.5 (Bottleneck), 1000 classes", 224
    ),
    _ZooEntry(
        "mobilenetv2",
        "image",
        "classification",
        2,
        "MobileNetV2 1.0 (inverted residuals, ReLU6 as Clip), 1000 classes",
        224,
    ),
    _ZooEntry(
        "yolo-s",
        "image",
        "detection",
        5,
        "small YOLO-style detector (CSP backbone, "
        "FPN/PAN neck, 3 anchor-free heads), 80 classes, boxes decoded in-graph",
        320,
    ),
    _ZooEntry(
        "bert-mini",
        "sequence",
        "embedding",
        4,
        "BERT-mini encoder: 4 layers, hidden 256, 4 heads, sequence length S (default 128)",
    ),
    _ZooEntry(
        "mlp",
        "tensor",
        "classification",
        1,
        "3 Gemm layers 256-512-512-10 with ReLU, for harness overhead studies",
    ),
)
_ZOO = {e.name: e for e in _ZOO_ENTRIES}
#: Names of the built-in models.
ZOO: tuple[str, ...] = tuple(_ZOO)

YOLO_NUM_CLASSES = 80
BERT_VOCAB = 30522
BERT_MAX_POSITIONS = 512


def _unknown_model(name: str) -> ModelError:
    return ModelError(f"unknown model {name!r}; built-in models: {', '.join(ZOO)}")


# ---------------------------------------------------------------------------------------------
# Graph builder
# ---------------------------------------------------------------------------------------------


class _Graph:
    """Accumulates nodes and seeded initializers for one zoo model.

    With `materialize=False` initializers carry their dims but no data: such a skeleton is
    enough for shape inference and cost (what `list_models` needs) and costs no random draws.
    """

    def __init__(self, seed: int, materialize: bool = True) -> None:
        import numpy as np

        self.rng = np.random.default_rng(seed)
        self.materialize = materialize
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._counts: dict[str, int] = {}
        self._consts: dict[tuple, str] = {}

    def name(self, prefix: str) -> str:
        i = self._counts.get(prefix, 0)
        self._counts[prefix] = i + 1
        return f"{prefix}_{i}"

    def node(
        self, op: str, inputs: Sequence[str], n_out: int = 1, name: str | None = None, **attrs: Any
    ) -> Any:
        from onnx import helper

        base = name or self.name(op.lower())
        outs = [base if n_out == 1 else f"{base}:{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=base, **attrs))
        return outs[0] if n_out == 1 else outs

    def tensor(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def weight(
        self, name: str, shape: Sequence[int], std: float | np.ndarray, mean: float = 0.0
    ) -> str:
        """A float32 initializer drawn from N(mean, std^2); std may vary along axis 0."""
        import numpy as np
        from onnx import TensorProto

        if not self.materialize:
            self.initializers.append(
                TensorProto(name=name, dims=list(shape), data_type=TensorProto.FLOAT)
            )
            return name
        a = self.rng.standard_normal(tuple(shape), dtype=np.float32)
        std = np.asarray(std, dtype=np.float32)
        if std.ndim:
            std = std.reshape((-1,) + (1,) * (len(shape) - 1))
        return self.tensor(name, (a * std + np.float32(mean)).astype(np.float32))

    def uniform(self, name: str, shape: Sequence[int], low: float, high: float) -> str:
        import numpy as np
        from onnx import TensorProto

        if not self.materialize:
            self.initializers.append(
                TensorProto(name=name, dims=list(shape), data_type=TensorProto.FLOAT)
            )
            return name
        return self.tensor(name, self.rng.uniform(low, high, tuple(shape)).astype(np.float32))

    def const(self, value: Any, dtype: str = "float32") -> str:
        """A small shared constant (scalars, shapes, axes), always materialized."""
        import numpy as np

        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.tensor(self.name("const"), arr)
        return self._consts[key]

    def model(
        self,
        entry: _ZooEntry,
        inputs: list[Any],
        outputs: list[Any],
        metadata: Mapping[str, str] | None = None,
    ) -> onnx.ModelProto:
        from onnx import helper

        graph = helper.make_graph(
            self.nodes, entry.name.replace("-", "_"), inputs, outputs, self.initializers
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="perflab",
            producer_version=f"zoo-{ZOO_VERSION}",
            doc_string=f"perflab built-in model {entry.name}: {entry.description}. Random "
            f"weights (seed {entry.seed}); for performance work, not for accuracy.",
        )
        model.ir_version = IR_VERSION
        meta = {META_TASK: entry.task, **(metadata or {})}
        helper.set_model_props(model, dict(sorted(meta.items())))
        return model


# Weight scales of the random zoo. They were tuned by running the models on seeded noise,
# gradients and flat images: activations stay O(1) through the depth (so fp16 and int8 are
# compared on meaningful numbers) and yolo-s passes 0.1-8% of its anchors at conf > 0.25.
#: E[act(z)^2] for z ~ N(0, 1) sets the He gain: 0.5 for ReLU. For SiLU it is 0.355; 0.38 is a
#: little below full compensation because yolo-s's residual adds add variance of their own.
_SILU_SECOND_MOMENT = 0.38
#: Std of a detection head's logits over locations (its input is instance-normalized).
_HEAD_STD = 1.2
#: Objectness prior: sigmoid(-3) = 0.05, so only locations the features push up pass 0.25.
_OBJ_BIAS = -3.0


def _he_std(fan_in: int, act: str | None = "relu") -> float:
    second_moment = _SILU_SECOND_MOMENT if act == "silu" else 0.5
    return math.sqrt(1.0 / (second_moment * fan_in))


def _conv(
    g: _Graph,
    x: str,
    cin: int,
    cout: int,
    k: int,
    stride: int = 1,
    group: int = 1,
    act: str | None = "relu",
    gain: float = 1.0,
    prefix: str = "conv",
) -> str:
    """Conv with a folded batch norm (per-channel scale in the weights, a bias), then act.

    Folding mirrors what an eval-mode export writes. The per-channel scale spread gives
    per-channel quantization something real to do.
    """
    import numpy as np

    name = g.name(prefix)
    fan_in = (cin // group) * k * k
    if g.materialize:
        bn_scale = g.rng.uniform(0.8, 1.2, cout).astype(np.float32) * gain
        std: float | np.ndarray = bn_scale * _he_std(fan_in, act)
    else:
        std = 1.0
    w = g.weight(f"{name}.weight", (cout, cin // group, k, k), std)
    b = g.weight(f"{name}.bias", (cout,), 0.05 * gain)
    pad = k // 2
    y = g.node(
        "Conv",
        [x, w, b],
        name=name,
        kernel_shape=[k, k],
        strides=[stride, stride],
        pads=[pad, pad, pad, pad],
        group=group,
    )
    return _act(g, y, act)


def _act(g: _Graph, x: str, act: str | None) -> str:
    if act is None:
        return x
    if act == "relu":
        return g.node("Relu", [x])
    if act == "relu6":
        return g.node("Clip", [x, g.const(0.0), g.const(6.0)])
    if act == "silu":
        return g.node("Mul", [x, g.node("Sigmoid", [x])])
    raise AssertionError(act)


def _classifier(g: _Graph, x: str, cin: int, classes: int = 1000) -> str:
    pooled = g.node("GlobalAveragePool", [x])
    flat = g.node("Flatten", [pooled], axis=1)
    w = g.weight("fc.weight", (classes, cin), 1.0 / math.sqrt(cin))
    b = g.weight("fc.bias", (classes,), 0.01)
    return g.node("Gemm", [flat, w, b], name="logits", transB=1)


def _image_io(entry: _ZooEntry, size: int, input_name: str = "input") -> Any:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 3, size, size])


def _build_resnet(entry: _ZooEntry, g: _Graph, size: int) -> onnx.ModelProto:
    from onnx import TensorProto, helper

    bottleneck = entry.name == "resnet50"
    blocks = (3, 4, 6, 3) if bottleneck else (2, 2, 2, 2)
    expansion = 4 if bottleneck else 1
    # The last conv of each residual branch gets a small gain (like a zero-ish BN gamma), so
    # the residual sum grows slowly and activations stay finite and fp16-safe through depth.
    branch_gain = 0.3

    x = _conv(g, "input", 3, 64, 7, stride=2)
    x = g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for stage, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512))):
        for i in range(n):
            stride = 2 if (i == 0 and stage > 0) else 1
            cout = width * expansion
            if bottleneck:
                y = _conv(g, x, cin, width, 1)
                y = _conv(g, y, width, width, 3, stride=stride)  # v1.5: stride on the 3x3
                y = _conv(g, y, width, cout, 1, act=None, gain=branch_gain)
            else:
                y = _conv(g, x, cin, width, 3, stride=stride)
                y = _conv(g, y, width, cout, 3, act=None, gain=branch_gain)
            if stride != 1 or cin != cout:
                shortcut = _conv(g, x, cin, cout, 1, stride=stride, act=None, prefix="downsample")
            else:
                shortcut = x
            x = g.node("Relu", [g.node("Add", [y, shortcut])])
            cin = cout
    logits = _classifier(g, x, cin)
    out = helper.make_tensor_value_info(logits, TensorProto.FLOAT, ["N", 1000])
    return g.model(entry, [_image_io(entry, size)], [out])


def _build_mobilenetv2(entry: _ZooEntry, g: _Graph, size: int) -> onnx.ModelProto:
    from onnx import TensorProto, helper

    settings = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )
    x = _conv(g, "input", 3, 32, 3, stride=2, act="relu6")
    cin = 32
    for t, c, n, s in settings:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            y = x
            if t != 1:
                y = _conv(g, y, cin, hidden, 1, act="relu6")
            y = _conv(g, y, hidden, hidden, 3, stride=stride, group=hidden, act="relu6")
            # Linear bottleneck: no activation after the projection.
            y = _conv(g, y, hidden, c, 1, act=None, gain=0.5 if stride == 1 and cin == c else 1.0)
            x = g.node("Add", [x, y]) if stride == 1 and cin == c else y
            cin = c
    x = _conv(g, x, cin, 1280, 1, act="relu6")
    logits = _classifier(g, x, 1280)
    out = helper.make_tensor_value_info(logits, TensorProto.FLOAT, ["N", 1000])
    return g.model(entry, [_image_io(entry, size)], [out])


def _build_yolo(entry: _ZooEntry, g: _Graph, size: int) -> onnx.ModelProto:
    """YOLOv5/v8-style: CSP backbone, SPPF, FPN+PAN neck, one anchor-free head per level."""
    import numpy as np
    from onnx import TensorProto, helper

    nc = YOLO_NUM_CLASSES
    no = 4 + 1 + nc

    def conv(x: str, cin: int, cout: int, k: int = 1, s: int = 1, gain: float = 1.0) -> str:
        return _conv(g, x, cin, cout, k, stride=s, act="silu", gain=gain)

    def csp(x: str, cin: int, cout: int, n: int, shortcut: bool = True) -> str:
        half = cout // 2
        a = conv(x, cin, half)
        b = conv(x, cin, half)
        for _ in range(n):
            y = conv(conv(a, half, half), half, half, 3, gain=0.5 if shortcut else 1.0)
            a = g.node("Add", [a, y]) if shortcut else y
        return conv(g.node("Concat", [a, b], axis=1), 2 * half, cout)

    def sppf(x: str, c: int) -> str:
        x = conv(x, c, c // 2)
        p1 = g.node("MaxPool", [x], kernel_shape=[5, 5], pads=[2, 2, 2, 2])
        p2 = g.node("MaxPool", [p1], kernel_shape=[5, 5], pads=[2, 2, 2, 2])
        p3 = g.node("MaxPool", [p2], kernel_shape=[5, 5], pads=[2, 2, 2, 2])
        return conv(g.node("Concat", [x, p1, p2, p3], axis=1), 2 * c, c)

    def upsample(x: str) -> str:
        scales = g.const([1.0, 1.0, 2.0, 2.0])
        return g.node("Resize", [x, "", scales], mode="nearest")

    # Backbone (widths of a YOLOv5s / v8s).
    x = conv("images", 3, 32, 3, 2)  # /2
    x = conv(x, 32, 64, 3, 2)  # /4
    x = csp(x, 64, 64, 1)
    x = conv(x, 64, 128, 3, 2)  # /8
    p3 = csp(x, 128, 128, 2)
    x = conv(p3, 128, 256, 3, 2)  # /16
    p4 = csp(x, 256, 256, 3)
    x = conv(p4, 256, 512, 3, 2)  # /32
    x = csp(x, 512, 512, 1)
    p5 = sppf(x, 512)
    # Neck: top-down then bottom-up.
    h5 = conv(p5, 512, 256)
    t4 = csp(g.node("Concat", [upsample(h5), p4], axis=1), 512, 256, 1, shortcut=False)
    h4 = conv(t4, 256, 128)
    n3 = csp(g.node("Concat", [upsample(h4), p3], axis=1), 256, 128, 1, shortcut=False)
    d3 = conv(n3, 128, 128, 3, 2)
    n4 = csp(g.node("Concat", [d3, h4], axis=1), 256, 256, 1, shortcut=False)
    d4 = conv(n4, 256, 256, 3, 2)
    n5 = csp(g.node("Concat", [d4, h5], axis=1), 512, 512, 1, shortcut=False)

    # Heads. Each normalizes its input per channel (InstanceNormalization, like the GroupNorm
    # heads of FCOS), so the spread of the logits does not depend on how the random weights
    # happened to scale the features: logit = per-channel prior + an O(1) data-dependent part.
    # The objectness prior says few locations hold objects, so a bounded share of anchors
    # clears confidence 0.25 (0.05-8% on noise, gradients and flat images) and NMS gets a
    # realistic amount of work whatever the input.
    decoded = []
    for level, (feat, c, stride) in enumerate(((n3, 128, 8), (n4, 256, 16), (n5, 512, 32))):
        hw = size // stride
        y = conv(feat, c, c, 3)
        name = f"head{level}"
        y = g.node(
            "InstanceNormalization",
            [y, g.const(np.ones(c)), g.const(np.zeros(c))],
            name=f"{name}.norm",
            epsilon=1e-5,
        )
        w = g.weight(f"{name}.weight", (no, c, 1, 1), _HEAD_STD / math.sqrt(c))
        if g.materialize:
            bias = np.zeros(no, np.float32)
            bias[4] = _OBJ_BIAS  # objectness prior
            bias[5:] = g.rng.normal(-1.0, 0.8, nc).astype(np.float32)  # class priors
            b = g.tensor(f"{name}.bias", bias)
        else:
            b = g.weight(f"{name}.bias", (no,), 1.0)
        p = g.node("Conv", [y, w, b], name=name, kernel_shape=[1, 1])
        p = g.node("Reshape", [p, g.const([0, no, hw * hw], "int64")])  # [N, no, hw*hw]
        s = g.node("Sigmoid", [p])
        xy, wh, scores = g.node("Split", [s, g.const([2, 2, 1 + nc], "int64")], n_out=3, axis=1)
        gy, gx = np.meshgrid(
            np.arange(hw, dtype=np.float32), np.arange(hw, dtype=np.float32), indexing="ij"
        )
        grid = np.stack([gx.ravel(), gy.ravel()])[None] - 0.5  # [1, 2, hw*hw]
        grid_name = g.tensor(f"{name}.grid", (grid * stride).astype(np.float32))
        # v5-style bounded decode: xy = (2*sig - 0.5 + grid) * stride, wh = (2*sig)^2 * anchor
        cxcy = g.node("Add", [g.node("Mul", [xy, g.const(2.0 * stride)]), grid_name])
        wh2 = g.node("Mul", [wh, g.const(2.0)])
        wh_px = g.node("Mul", [g.node("Mul", [wh2, wh2]), g.const(4.0 * stride)])
        decoded.append(g.node("Concat", [cxcy, wh_px, scores], axis=1))
    out_name = g.node("Concat", decoded, name="output", axis=2)
    anchors = sum((size // s) ** 2 for s in (8, 16, 32))
    out = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", no, anchors])
    images = _image_io(entry, size, "images")
    meta = {
        META_POSTPROCESS: "output [N, 4+1+80, anchors]: cx, cy, w, h in input pixels, "
        "objectness, 80 class scores (after sigmoid); confidence = "
        "objectness * class score; then NMS"
    }
    return g.model(entry, [images], [out], meta)


def _build_bert(entry: _ZooEntry, g: _Graph) -> onnx.ModelProto:
    from onnx import TensorProto, helper

    hidden, heads, layers, inter = 256, 4, 4, 1024
    dh = hidden // heads
    std = 0.02  # BERT's initializer range; LayerNorm keeps the scale after every block

    def layer_norm(x: str, name: str) -> str:
        gamma = g.uniform(f"{name}.weight", (hidden,), 0.9, 1.1)
        beta = g.weight(f"{name}.bias", (hidden,), 0.02)
        return g.node("LayerNormalization", [x, gamma, beta], name=name, axis=-1, epsilon=1e-12)

    def dense(x: str, cin: int, cout: int, name: str) -> str:
        w = g.weight(f"{name}.weight", (cin, cout), std)
        b = g.weight(f"{name}.bias", (cout,), 0.02)
        return g.node("Add", [g.node("MatMul", [x, w], name=f"{name}.matmul"), b], name=name)

    def split_heads(x: str) -> str:  # [N,S,H] -> [N,heads,S,dh]
        r = g.node("Reshape", [x, g.const([0, 0, heads, dh], "int64")])
        return g.node("Transpose", [r], perm=[0, 2, 1, 3])

    ids, mask = "input_ids", "attention_mask"
    word = g.weight("embeddings.word", (BERT_VOCAB, hidden), std)
    pos_table = g.weight("embeddings.position", (BERT_MAX_POSITIONS, hidden), std)
    # Position ids as cumsum(ones) - 1 (as RoBERTa exports do): every shape then follows from
    # the inputs' shapes, so static shape inference resolves the whole graph for any S.
    ones = g.node("Add", [g.node("Mul", [ids, g.const(0, "int64")]), g.const(1, "int64")])
    pos_ids = g.node("Sub", [g.node("CumSum", [ones, g.const(1, "int64")]), g.const(1, "int64")])
    emb = g.node(
        "Add",
        [g.node("Gather", [word, ids], axis=0), g.node("Gather", [pos_table, pos_ids], axis=0)],
    )
    x = layer_norm(emb, "embeddings.norm")
    # Additive mask [N,1,1,S]: 0 where attended, -10000 where padded.
    maskf = g.node("Cast", [mask], to=TensorProto.FLOAT)
    bias = g.node("Mul", [g.node("Sub", [g.const(1.0), maskf]), g.const(-10000.0)])
    bias = g.node("Unsqueeze", [bias, g.const([1, 2], "int64")])
    for i in range(layers):
        p = f"layer{i}"
        q = split_heads(dense(x, hidden, hidden, f"{p}.query"))
        k = split_heads(dense(x, hidden, hidden, f"{p}.key"))
        v = split_heads(dense(x, hidden, hidden, f"{p}.value"))
        kt = g.node("Transpose", [k], perm=[0, 1, 3, 2])
        scores = g.node("Mul", [g.node("MatMul", [q, kt]), g.const(1.0 / math.sqrt(dh))])
        probs = g.node("Softmax", [g.node("Add", [scores, bias])], axis=-1)
        ctx = g.node("Transpose", [g.node("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = g.node("Reshape", [ctx, g.const([0, 0, hidden], "int64")])
        x = layer_norm(
            g.node("Add", [dense(ctx, hidden, hidden, f"{p}.attn_out"), x]), f"{p}.attn_norm"
        )
        h = dense(x, hidden, inter, f"{p}.ffn_in")
        # GELU in its exact Erf form, as transformers exports write it.
        erf = g.node("Erf", [g.node("Div", [h, g.const(math.sqrt(2.0))])])
        h = g.node("Mul", [g.node("Mul", [h, g.node("Add", [erf, g.const(1.0)])]), g.const(0.5)])
        x = layer_norm(g.node("Add", [dense(h, inter, hidden, f"{p}.ffn_out"), x]), f"{p}.ffn_norm")
    last = g.node("Identity", [x], name="last_hidden_state")
    first = g.node("Gather", [last, g.const(0, "int64")], axis=1)  # [CLS] token
    pooled = g.node("Tanh", [dense(first, hidden, hidden, "pooler")], name="pooler_output")
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["N", "S"]) for n in (ids, mask)]
    outputs = [
        helper.make_tensor_value_info(last, TensorProto.FLOAT, ["N", "S", hidden]),
        helper.make_tensor_value_info(pooled, TensorProto.FLOAT, ["N", hidden]),
    ]
    meta = {META_DIM_DEFAULTS: json.dumps({"S": 128}), META_VOCAB: str(BERT_VOCAB)}
    return g.model(entry, inputs, outputs, meta)


def _build_mlp(entry: _ZooEntry, g: _Graph) -> onnx.ModelProto:
    from onnx import TensorProto, helper

    widths = (256, 512, 512, 10)
    x = "input"
    for i, (cin, cout) in enumerate(itertools.pairwise(widths)):
        w = g.weight(f"fc{i}.weight", (cout, cin), _he_std(cin))
        b = g.weight(f"fc{i}.bias", (cout,), 0.01)
        last = i == len(widths) - 2
        x = g.node("Gemm", [x, w, b], name="logits" if last else f"fc{i}", transB=1)
        if not last:
            x = g.node("Relu", [x])
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", widths[0]])
    out = helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", widths[-1]])
    return g.model(entry, [inp], [out])


def build_model(
    name: str, *, image_size: int | None = None, materialize: bool = True
) -> onnx.ModelProto:
    """Build a zoo model with seeded random weights; the same arguments give the same bytes.

    `image_size` changes the square input size of the image models (a multiple of 32; the
    detector's anchor count follows it). `materialize=False` returns a weightless skeleton
    that is only good for shape inference and `cost`.
    """
    entry = _ZOO.get(name)
    if entry is None:
        raise _unknown_model(name)
    if image_size is not None:
        if entry.image_size is None:
            raise ModelError(
                f"built-in model {name!r} has no image size to set; image models: "
                f"{', '.join(e.name for e in _ZOO_ENTRIES if e.image_size)}"
            )
        if image_size < 32 or image_size % 32:
            raise ModelError(
                f"image_size {image_size} for {name!r} must be a positive multiple of 32"
            )
    size = image_size or entry.image_size or 0
    g = _Graph(entry.seed, materialize)
    if name in ("resnet18", "resnet50"):
        return _build_resnet(entry, g, size)
    if name == "mobilenetv2":
        return _build_mobilenetv2(entry, g, size)
    if name == "yolo-s":
        return _build_yolo(entry, g, size)
    if name == "bert-mini":
        return _build_bert(entry, g)
    return _build_mlp(entry, g)


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


# ---------------------------------------------------------------------------------------------
# Zoo listing and export
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
    dest.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(dest, src.read_bytes())
    return dest


# ---------------------------------------------------------------------------------------------
# Files and the cache
# ---------------------------------------------------------------------------------------------


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where built and converted models live: `cache_dir`, else $PERFLAB_CACHE, else
    ~/.cache/perflab; models go to its `models/` subfolder."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("PERFLAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "perflab"


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


def _zoo_file(
    name: str, image_size: int | None, cache_dir: str | os.PathLike[str] | None
) -> tuple[Path, str]:
    """Build (or find) a zoo model's file; returns (path, sha256 of its bytes).

    The file is named by its content hash. A small pointer file keyed by what determines the
    content (name, size, zoo version, numpy's generator) saves rebuilding on every resolve.
    """
    import numpy as np

    d = _models_dir(cache_dir)
    variant = f"{name}-{image_size}" if image_size else name
    pointer = d / f"{variant}.zoo{ZOO_VERSION}.np{np.__version__}.json"
    try:
        meta = json.loads(pointer.read_text())
        path = d / meta["file"]
        if path.stat().st_size == meta["size"]:
            return path, meta["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    data = build_model(name, image_size=image_size).SerializeToString()
    sha = hashlib.sha256(data).hexdigest()
    path = d / f"{_safe_stem(variant)}-{sha[:16]}.onnx"
    if not (path.exists() and path.stat().st_size == len(data)):
        _write_atomic(path, data)
    _write_atomic(
        pointer, json.dumps({"file": path.name, "sha256": sha, "size": len(data)}).encode()
    )
    return path, sha


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


# ---------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """A model resolved for one batch size: the file to load and everything known about it.

    `path` is the fp32 ONNX file to load (a cached rewrite when the batch dim had to be made
    symbolic), `sha256` the hash of that file's bytes and `source_sha256` of the file the user
    named (equal unless rewritten). `inputs` have every dim resolved; `outputs` are resolved
    where shape inference could, -1 elsewhere. Cost fields are per sample at these shapes.
    """

    name: str
    path: Path
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    kind: str
    notes: tuple[str, ...]
    flops_per_sample: float
    param_bytes: int
    activation_bytes_per_sample: float
    batch_size: int = 1
    source: str = ""
    source_sha256: str = ""
    opset: int = 0
    macs_per_sample: float = 0.0
    node_count: int = 0
    metadata: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def meta(self, key: str, default: str | None = None) -> str | None:
        """A metadata_props value of the model (zoo models describe their postprocessing)."""
        return dict(self.metadata).get(key, default)


def _kind(inputs: Sequence[TensorSpec]) -> str:
    if (
        len(inputs) == 1
        and len(inputs[0].shape) == 4
        and inputs[0].shape[1] in (1, 3)
        and inputs[0].dtype.startswith(("float", "bfloat"))
    ):
        return "image"
    if (
        inputs
        and all(t.dtype in ("int64", "int32") for t in inputs)
        and any(t.dtype == "int64" for t in inputs)
    ):
        return "sequence"
    return "tensor"


def _graph_inputs(model: onnx.ModelProto) -> list[Any]:
    inits = {i.name for i in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in inits]


def _resolve_dims(
    model: onnx.ModelProto, batch_size: int, input_shapes: Mapping[str, Sequence[int | str]]
) -> tuple[dict[str, tuple[int, ...]], list[str], list[str]]:
    """Resolve every input dim; returns (shapes, notes, names of inputs whose batch is 1)."""
    defaults = json.loads(_metadata(model).get(META_DIM_DEFAULTS, "{}") or "{}")
    inputs = _graph_inputs(model)
    names = [vi.name for vi in inputs]
    unknown = [k for k in input_shapes if k not in names]
    if unknown:
        raise ModelError(
            f"input_shapes names {', '.join(map(repr, unknown))} but the model "
            f"has no input of that name; its inputs are "
            f"{', '.join(map(repr, names))}"
        )
    shapes: dict[str, tuple[int, ...]] = {}
    notes: list[str] = []
    fixed_one: list[str] = []
    # A symbol names one size across all inputs (bert's S in input_ids and attention_mask),
    # so a size given for it anywhere binds it everywhere.
    bound: dict[str, int] = {}
    per_input: list[tuple[Any, list[int | str], list[int | None]]] = []
    for vi in inputs:
        model_dims = _dims_of(vi) if vi.type.tensor_type.HasField("shape") else None
        given = input_shapes.get(vi.name)
        if model_dims is None:
            if given is None:
                raise ModelError(
                    f"input {vi.name!r} has no declared shape; set input_shapes, "
                    f"e.g. input_shapes: {{{vi.name}: [N, ...]}}"
                )
            model_dims = ["?"] * len(given)
        if given is not None and len(given) != len(model_dims):
            raise ModelError(
                f"input_shapes[{vi.name!r}] has {len(given)} dims but the model's "
                f"input has {len(model_dims)}: {model_dims}"
            )
        wants: list[int | None] = []
        for j, md in enumerate(model_dims):
            want = given[j] if given is not None else None
            if isinstance(want, str) and want != "N":
                if want.isdigit():
                    want = int(want)
                elif want == md:
                    want = None  # the model's own symbol: resolve it as if not given
                else:
                    raise ModelError(
                        f"input_shapes[{vi.name!r}] dim {j} is {want!r}; use an int, 'N' for "
                        f"the batch size, or the model's own dim name {md!r}"
                    )
            if want == "N":
                want = batch_size
            if want is not None and (
                isinstance(want, bool) or not isinstance(want, int) or want <= 0
            ):
                raise ModelError(
                    f"input_shapes[{vi.name!r}] dim {j} is {want!r}; dims must "
                    "be positive ints or 'N'"
                )
            if j == 0 and want is not None and want != batch_size:
                raise ModelError(
                    f"input_shapes gives input {vi.name!r} dim 0 = {want} but "
                    f"batch_size is {batch_size}; write N for the batch dim"
                )
            if j == 0 and want is None and isinstance(md, str) and md != "?":
                want = batch_size
            named = isinstance(md, str) and md != "?"
            if named and want is not None and bound.setdefault(md, want) != want:
                raise ModelError(
                    f"dim {md!r} is given two sizes ({bound[md]} and {want}, "
                    f"the second for input {vi.name!r}); it must be one size"
                )
            wants.append(want)
        per_input.append((vi, model_dims, wants))

    default_noted: set[str] = set()
    for vi, model_dims, wants in per_input:
        dims: list[int | None] = []
        for j, (md, want) in enumerate(zip(model_dims, wants)):
            if isinstance(md, int) and md > 0:
                if j == 0 and md != batch_size:
                    if md != 1:
                        raise ModelError(
                            f"input {vi.name!r} has its batch dim fixed at {md}; "
                            f"run it with batch_size {md}"
                        )
                    fixed_one.append(vi.name)
                    dims.append(batch_size)
                    continue
                if want is not None and want != md:
                    raise ModelError(
                        f"input {vi.name!r} dim {j} is fixed at {md} in the "
                        f"model; input_shapes asks for {want}"
                    )
                dims.append(md)
            elif want is not None:
                dims.append(want)
            elif md in bound:
                dims.append(bound[md])
            elif md in defaults:
                dims.append(int(defaults[md]))
                if md not in default_noted:
                    default_noted.add(md)
                    notes.append(f"dim {md!r} set to its default {defaults[md]}")
            elif j == 0:
                dims.append(batch_size)
            else:
                dims.append(None)
        if any(d is None for d in dims):
            j = dims.index(None)
            example = ["N" if k == 0 else (d if d is not None else "?") for k, d in enumerate(dims)]
            raise ModelError(
                f"input {vi.name!r} dim {j} ({model_dims[j]!r}) is not fixed by the model; "
                f"set input_shapes, e.g. input_shapes: {{{vi.name}: "
                f"[{', '.join(map(str, example))}]}} with the ?s filled in"
            )
        shapes[vi.name] = tuple(int(d) for d in dims)  # type: ignore[arg-type]
    return shapes, notes, fixed_one


def _const_values(model: onnx.ModelProto) -> dict[str, Any]:
    from onnx import numpy_helper

    vals: dict[str, Any] = {}
    for init in model.graph.initializer:
        if init.data_type == 7 and math.prod(init.dims) <= 16:  # small int64 shape tensors
            vals[init.name] = numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == 7 and math.prod(a.t.dims) <= 16:
                    vals[node.output[0]] = numpy_helper.to_array(a.t)
    return vals


def _make_batch_symbolic(model: onnx.ModelProto, names: Sequence[str]) -> list[str]:
    """Make dim 0 of the named inputs (and of outputs fixed at 1) the symbol N, in place.

    Exporters that traced at batch 1 also bake the 1 into Reshape targets; a Reshape whose
    data has batch N but whose target starts with a literal 1 gets a 0 there ("copy dim 0").
    Fixing one Reshape can expose the next, so shape inference runs until nothing changes.
    Returns what was changed, for the notes.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    changes = []
    for vi in model.graph.input:
        if vi.name in names:
            vi.type.tensor_type.shape.dim[0].Clear()
            vi.type.tensor_type.shape.dim[0].dim_param = "N"
    for vi in model.graph.output:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].Clear()
            dims[0].dim_param = "N"
    del model.graph.value_info[:]
    fixed: set[str] = set()
    added: set[str] = set()
    for _ in range(16):
        inferred = _infer(_skeleton(model))
        # Inference renames symbols as they pass through ops (N becomes unk__3), so any
        # leading dim that is not a number counts as the batch.
        sym: dict[str, bool] = {}
        for vi in (*inferred.graph.value_info, *inferred.graph.input):
            tt = vi.type.tensor_type
            sym[vi.name] = (
                tt.HasField("shape")
                and len(tt.shape.dim) > 0
                and not tt.shape.dim[0].HasField("dim_value")
            )
        consts = _const_values(model)
        progress = False
        for node in model.graph.node:
            key = node.name or node.output[0]
            if node.op_type != "Reshape" or key in fixed or len(node.input) < 2:
                continue
            target = consts.get(node.input[1])
            if target is None or target.ndim != 1 or not len(target) or target[0] != 1:
                continue
            if not sym.get(node.input[0]):
                continue
            allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
            new = target.copy()
            if not allowzero:
                new[0] = 0
            elif -1 not in target:
                new[0] = -1
            else:
                continue
            new_name = f"{node.input[1]}__batchN"
            if new_name not in consts and new_name not in added:
                added.add(new_name)
                model.graph.initializer.append(
                    numpy_helper.from_array(np.asarray(new, dtype=np.int64), new_name)
                )
                if model.ir_version < 4:  # IR 3 requires every initializer among the inputs
                    model.graph.input.append(
                        helper.make_tensor_value_info(new_name, TensorProto.INT64, [len(new)])
                    )
            node.input[1] = new_name
            fixed.add(key)
            changes.append(f"Reshape {key!r} target {target.tolist()} -> {new.tolist()}")
            progress = True
        if not progress:
            break
    # Drop the replaced targets: ORT warns about unused initializers, and in IR < 4 files
    # they are also listed as graph inputs.
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    dropped = {i.name for i in model.graph.initializer if i.name not in used}
    if dropped:
        kept = [i for i in model.graph.initializer if i.name not in dropped]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
        kept_inputs = [vi for vi in model.graph.input if vi.name not in dropped]
        del model.graph.input[:]
        model.graph.input.extend(kept_inputs)
    return changes


def _batch_rewrite(
    model_path: Path, sha: str, names: Sequence[str], cache_dir: str | os.PathLike[str] | None
) -> tuple[Path, list[str]]:
    import onnx

    d = _models_dir(cache_dir)
    out = d / f"{_safe_stem(model_path.stem)}-{sha[:16]}-batchN.v{REWRITE_VERSION}.onnx"
    log = out.with_suffix(".json")
    if out.exists() and log.exists():
        return out, json.loads(log.read_text())
    model = onnx.load(str(model_path))  # with external data: the copy must be whole
    changes = _make_batch_symbolic(model, names)
    _save_model(model, out)
    _write_atomic(log, json.dumps(changes).encode())
    return out, changes


def _zoo_image_size(name: str, input_shapes: Mapping[str, Sequence[int | str]]) -> int | None:
    """The image size a zoo model must be built at to match `input_shapes`, if not default."""
    entry = _ZOO[name]
    if entry.image_size is None:
        return None
    input_name = "images" if name == "yolo-s" else "input"
    dims = input_shapes.get(input_name)
    if dims is None or len(dims) != 4:
        return None  # the general resolution reports what is wrong
    h, w = dims[2], dims[3]
    if not (isinstance(h, int) and isinstance(w, int)) or (h, w) == (entry.image_size,) * 2:
        return None
    if h != w:
        raise ModelError(
            f"built-in model {name!r} takes square inputs; input_shapes asks for {h}x{w}"
        )
    if h < 32 or h % 32:
        raise ModelError(
            f"built-in model {name!r} needs an image size that is a multiple of "
            f"32; input_shapes asks for {h}"
        )
    return h


def resolve(
    model: str | os.PathLike[str],
    *,
    batch_size: int,
    input_shapes: Mapping[str, Sequence[int | str]] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ModelInfo:
    """Find the ONNX file for `model` and resolve its inputs for `batch_size`.

    `model` is a built-in name (built and cached under `cache_root(cache_dir)/models`) or a
    path to an .onnx file. Dims the model leaves open come from `input_shapes`, where "N"
    stands for the batch size; dim 0 is taken as the batch dim. A model traced with a fixed
    batch of 1 that is asked for a larger batch is run from a cached copy with a symbolic
    batch dim (`notes` says so). Raises ModelError, naming the problem, for a missing file,
    a file that is not ONNX, missing external data, unknown input names, or dims that stay
    open.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ModelError(f"batch_size must be a positive int, got {batch_size!r}")
    input_shapes = dict(input_shapes or {})
    key = os.fspath(model)
    notes: list[str] = []
    if key in _ZOO:
        image_size = _zoo_image_size(key, input_shapes)
        path, sha = _zoo_file(key, image_size, cache_dir)
        name = key
        if image_size:
            notes.append(f"built at image size {image_size} to match input_shapes")
    else:
        path = Path(key).expanduser()
        if not path.exists():
            raise ModelError(
                f"model {key!r} does not exist: it is neither a file nor a "
                f"built-in model ({', '.join(ZOO)})"
            )
        if not path.is_file():
            raise ModelError(f"model {key!r} is a directory, not an .onnx file")
        sha = _sha256_file(path)
        name = path.stem
    proto = _load_proto(path)
    _check_external_data(proto, path)
    shapes, dim_notes, fixed_one = _resolve_dims(proto, batch_size, input_shapes)
    notes += dim_notes
    run_path, run_sha = path, sha
    if fixed_one:
        run_path, changes = _batch_rewrite(path, sha, fixed_one, cache_dir)
        run_sha = _sha256_file(run_path)
        for n in fixed_one:
            notes.append(
                f"batch dim of input {n!r} was fixed at 1; made symbolic to run batch {batch_size}"
            )
        notes += [f"rewrote {c}" for c in changes]
        proto = _load_proto(run_path)
    analysis = _analyze(proto, shapes, batch_size)
    c = analysis.cost
    if c["uncounted_ops"]:
        notes.append(
            "cost leaves out nodes with unknown shapes or no FLOP rule: "
            + ", ".join(f"{k} x{v}" for k, v in c["uncounted_ops"].items())
        )
    inputs = tuple(
        TensorSpec(vi.name, shapes[vi.name], _dtype_name(vi.type.tensor_type.elem_type))
        for vi in _graph_inputs(proto)
    )
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ModelInfo(
        name=name,
        path=run_path,
        sha256=run_sha,
        inputs=inputs,
        outputs=analysis.outputs,
        kind=_kind(inputs),
        notes=tuple(notes),
        flops_per_sample=c["flops_per_sample"],
        param_bytes=c["param_bytes"],
        activation_bytes_per_sample=c["activation_bytes_per_sample"],
        batch_size=batch_size,
        source=key,
        source_sha256=sha,
        opset=opset,
        macs_per_sample=c["macs_per_sample"],
        node_count=c["node_count"],
        metadata=tuple(sorted(_metadata(proto).items())),
    )


def random_inputs(
    model: ModelInfo | Sequence[TensorSpec], *, seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded inputs matching the resolved specs: N(0, 1) floats (U(0, 1) for detectors, which
    take 0-1 pixels), token ids below the vocabulary size, all-ones attention masks."""
    import numpy as np

    rng = np.random.default_rng(seed)
    specs = model.inputs if isinstance(model, ModelInfo) else tuple(model)
    meta = dict(model.metadata) if isinstance(model, ModelInfo) else {}
    vocab = int(meta.get(META_VOCAB, 100))
    unit_range = meta.get(META_TASK) == "detection"
    feeds = {}
    for t in specs:
        dtype = np.dtype(t.dtype)
        if dtype.kind == "f":
            a = rng.uniform(0, 1, t.shape) if unit_range else rng.standard_normal(t.shape)
            feeds[t.name] = a.astype(dtype)
        elif dtype.kind in "iu":
            if "mask" in t.name.lower():
                feeds[t.name] = np.ones(t.shape, dtype)
            else:
                feeds[t.name] = rng.integers(0, vocab, t.shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[t.name] = rng.integers(0, 2, t.shape).astype(bool)
        else:
            raise ModelError(f"cannot make random data for input {t.name!r} of dtype {t.dtype}")
    return feeds


# ---------------------------------------------------------------------------------------------
# Precision conversion
# ---------------------------------------------------------------------------------------------

#: Static (QDQ) int8 recipes by the engine that will run them: (activation type, symmetric
#: activations). Weights are always S8, symmetric, per channel.
#: - "cpu": U8 asymmetric activations. Measured with ORT 1.31 on an AVX512-VNNI CPU (AMD EPYC,
#:   2 threads, resnet18 batch 8, median): fp32 155 ms, U8 activations 46 ms, S8 symmetric
#:   activations 180 ms, because ORT's x86 int8 kernels are built around U8 x S8 products.
#:   OpenVINO runs this form too.
#: - "tensorrt": S8 symmetric activations (zero point 0), the only QDQ form TensorRT's explicit
#:   quantization accepts.
INT8_RECIPES = {"cpu": ("QUInt8", False), "tensorrt": ("QInt8", True)}
#: Calibration batches made from seeded random inputs when the caller gives none.
DEFAULT_CALIBRATION_BATCHES = 4


@dataclass(frozen=True)
class Converted:
    """A model file in a given precision, as `convert` made (or found) it.

    `method` says how: "none" (fp32, the source file), "fp16" (float16 weights and compute,
    fp32 inputs and outputs), "int8-static-qdq" (QuantizeLinear/DequantizeLinear pairs from
    calibration), "int8-dynamic" (weights int8, activations quantized at run time). `notes`
    says why a fallback was taken and what the calibration was. A Converted is os.PathLike,
    so it can be passed where a path is expected.
    """

    path: Path
    precision: str
    method: str
    sha256: str
    notes: tuple[str, ...] = ()

    def __fspath__(self) -> str:
        return os.fspath(self.path)


def _calibration_fingerprint(batches: Sequence[Mapping[str, Any]]) -> str:
    import numpy as np

    h = hashlib.sha256()
    for batch in batches:
        for k in sorted(batch):
            a = np.ascontiguousarray(batch[k])
            h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _preprocess_for_quant(src: Path, dst: Path) -> list[str]:
    """ORT's recommended pre-pass (shape inference + graph optimization) before quantizing.

    Symbolic shape inference is skipped: it matters for transformer graphs, which get
    dynamic quantization here anyway; it needs sympy, which perflab does not depend on; and
    when it gives up it writes a file into the current directory.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        return []
    except Exception as e:  # noqa: BLE001 - the pre-pass is an optimization, not required
        dst.write_bytes(src.read_bytes())
        return [f"quantization pre-process failed ({_one_line(e)}); quantized the model as is"]


class _Batches:
    """CalibrationDataReader protocol over a list of feed dicts (re-iterable by `rewind`)."""

    def __init__(self, batches: Sequence[Mapping[str, Any]]) -> None:
        self.batches = batches
        self.it = iter(batches)

    def get_next(self) -> dict[str, Any] | None:
        return next(self.it, None)

    def rewind(self) -> None:
        self.it = iter(self.batches)


def _quantize_static(
    src: Path,
    dst: Path,
    batches: Sequence[Mapping[str, Any]],
    per_channel: bool = True,
    target: str = "cpu",
) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    activation, symmetric = INT8_RECIPES[target]
    reader_cls = type("_Reader", (_Batches, CalibrationDataReader), {})
    quantize_static(
        str(src),
        str(dst),
        reader_cls(batches),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,  # per-channel conv/gemm weights: the usual CNN accuracy fix
        activation_type=getattr(QuantType, activation),
        weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
        calibrate_method=CalibrationMethod.MinMax,
    )


def _try_static(
    src: Path, dst: Path, batches: Sequence[Mapping[str, Any]], target: str
) -> tuple[str, list[str]]:
    """Static QDQ, per-channel first, then per-tensor; returns the method label and notes.

    Per-tensor is the fallback because ORT's per-channel bias-scale fix-up fails on some
    MatMul+Add graphs. Each result must load in ORT: the quantizer can write graphs that do
    not (per-channel DequantizeLinear in an opset below 13).
    """
    notes: list[str] = []
    upgraded = _with_opset_at_least(src, 13, dst.parent / "opset13.onnx")
    if upgraded is None:
        notes.append("could not raise the opset to 13 for per-channel QDQ")
    errors = []
    for per_channel in (True, False):
        source = upgraded if per_channel and upgraded is not None else src
        try:
            _quantize_static(source, dst, batches, per_channel=per_channel, target=target)
            _check_loads(dst)
        except Exception as e:  # noqa: BLE001 - any quantizer failure: try the next way
            errors.append(_one_line(e))
            continue
        activation, symmetric = INT8_RECIPES[target]
        notes.append(
            f"int8 recipe {target!r}: {activation[1:]} {'symmetric' if symmetric else 'asymmetric'}"
            f" activations, Int8 symmetric {'per-channel' if per_channel else 'per-tensor'} weights"
        )
        if not per_channel:
            notes.append(f"per-tensor weight scales (per-channel failed: {errors[0]})")
        return "int8-static-qdq", notes
    return "int8-dynamic", [*notes, f"static quantization failed ({errors[-1]}); used dynamic"]


def _with_opset_at_least(src: Path, opset: int, dst: Path) -> Path | None:
    """`src` if its default-domain opset is >= `opset`, else a converted copy (None if the
    version converter cannot)."""
    import onnx

    model = onnx.load(str(src))
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if current >= opset:
        return src
    try:
        converted = onnx.version_converter.convert_version(model, opset)
    except Exception:  # noqa: BLE001 - the converter lacks adapters for some old ops
        return None
    converted.ir_version = max(converted.ir_version, model.ir_version)
    _save_model(converted, dst)
    return dst


def _check_loads(path: Path) -> None:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # load check only
    so.log_severity_level = 3
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _without_initializer_inputs(src: Path, tmp_dir: Path) -> Path:
    """`src`, or a copy whose graph inputs no longer list the initializers.

    IR < 4 files list every initializer as a graph input. The converters then take weights
    for inputs: fp16 with kept I/O types leaves them fp32 behind Casts, and the quantizer's
    opset conversion rejects them.
    """
    import onnx

    model = onnx.load(str(src))
    inits = {i.name for i in model.graph.initializer}
    if not any(vi.name in inits for vi in model.graph.input):
        return src
    kept = [vi for vi in model.graph.input if vi.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.ir_version = max(model.ir_version, 4)
    out = tmp_dir / "source.onnx"
    _save_model(model, out)
    return out


def _quantize_dynamic(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def _to_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    # keep_io_types: callers keep feeding fp32 and reading fp32; the casts sit in the graph.
    m16 = convert_float_to_float16(model, keep_io_types=True)
    m16.ir_version = min(m16.ir_version, max(model.ir_version, IR_VERSION))
    _save_model(m16, dst)


def convert(
    info: ModelInfo,
    precision: str,
    *,
    calibration: Iterable[Mapping[str, Any]] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    method: str | None = None,
    int8_target: str = "cpu",
) -> Converted:
    """Make (or find in the cache) `info`'s model in `precision`: fp32, fp16 or int8.

    fp32 returns the source file. fp16 converts weights and compute to float16 with fp32
    inputs and outputs. int8 quantizes statically to QDQ with MinMax calibration over
    `calibration` (an iterable of input feed dicts; seeded random batches when None), in the
    form `int8_target` runs best (see INT8_RECIPES: "cpu" for ORT CPU and OpenVINO,
    "tensorrt" for TensorRT). Sequence models, and models whose static quantization fails,
    get dynamic quantization instead; `method` forces "static" or "dynamic". The returned
    Converted says which method ran and why. Results are cached by (source sha256,
    precision, method, recipe, calibration fingerprint). Raises Unsupported for precisions
    this module cannot produce (bf16 and "best" are up to the engine).
    """
    if precision not in PRECISIONS:
        raise Unsupported(
            f"cannot convert a model to precision {precision!r}; convert makes "
            f"{', '.join(PRECISIONS)} (bf16 and best are an engine's own "
            "conversion)"
        )
    if precision == "fp32":
        return Converted(info.path, "fp32", "none", info.sha256)
    if method not in (None, "static", "dynamic"):
        raise ModelError(f"int8 method {method!r} is not one of static, dynamic")
    if int8_target not in INT8_RECIPES:
        raise ModelError(f"int8_target {int8_target!r} is not one of {', '.join(INT8_RECIPES)}")
    notes: list[str] = []
    batches: list[Mapping[str, Any]] = []
    if precision == "fp16":
        chosen = "fp16"
    else:
        chosen = method or ("dynamic" if info.kind == "sequence" else "static")
        if chosen == "static":
            if calibration is None:
                batches = [random_inputs(info, seed=i) for i in range(DEFAULT_CALIBRATION_BATCHES)]
                notes.append(f"calibrated on {len(batches)} batches of seeded random inputs")
            else:
                batches = list(calibration)
                if not batches:
                    raise ModelError("calibration is empty; give at least one input batch")
                notes.append(f"calibrated on {len(batches)} given batches")
        elif info.kind == "sequence" and method is None:
            notes.append(
                "sequence model: dynamic quantization (static QDQ calibration of "
                "attention is unreliable)"
            )
    import onnxruntime as ort

    key = hashlib.sha256(
        json.dumps(
            {
                "source": info.sha256,
                "precision": precision,
                "method": chosen,
                "calibration": _calibration_fingerprint(batches) if batches else None,
                "convert_version": CONVERT_VERSION,
                "onnxruntime": ort.__version__,
                "int8_recipe": INT8_RECIPES[int8_target] if chosen == "static" else None,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    d = _models_dir(cache_dir)
    stem = f"{_safe_stem(info.name)}-{info.sha256[:12]}-{precision}-{key[:12]}"
    out, manifest = d / f"{stem}.onnx", d / f"{stem}.json"
    if out.exists() and manifest.exists():
        m = json.loads(manifest.read_text())
        return Converted(out, precision, m["method"], m["sha256"], tuple(m["notes"]))

    with tempfile.TemporaryDirectory(dir=d, prefix=".convert.") as tmp:
        tmp_out = Path(tmp) / "out.onnx"
        src = _without_initializer_inputs(info.path, Path(tmp))
        if precision == "fp16":
            _to_fp16(src, tmp_out)
            label = "fp16"
        else:
            pre = Path(tmp) / "pre.onnx"
            notes += _preprocess_for_quant(src, pre)
            label = "int8-dynamic"
            if chosen == "static":
                label, static_notes = _try_static(pre, tmp_out, batches, int8_target)
                notes += static_notes
            if label == "int8-dynamic":
                try:
                    _quantize_dynamic(pre, tmp_out)
                except Exception as e:  # noqa: BLE001 - the last resort failed: say so
                    raise Unsupported(
                        f"cannot quantize model {info.name!r} to int8: {_one_line(e)}"
                    ) from None
        data = tmp_out.read_bytes()
    _write_atomic(out, data)
    sha = hashlib.sha256(data).hexdigest()
    _write_atomic(
        manifest,
        json.dumps(
            {"method": label, "sha256": sha, "notes": notes, "source": os.fspath(info.path)}
        ).encode(),
    )
    return Converted(out, precision, label, sha, tuple(notes))


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
