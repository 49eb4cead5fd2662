"""The built-in model zoo: seeded ONNX graphs built in code (no weights are downloaded)."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perflab.errors import ModelError
from perflab.models.files import (
    META_DIM_DEFAULTS,
    META_POSTPROCESS,
    META_TASK,
    META_VOCAB,
    _models_dir,
    _safe_stem,
    _write_atomic,
)

if TYPE_CHECKING:  # onnx and numpy stay out of `import perflab`'s import time
    import numpy as np
    import onnx


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

    def _shape_only(self, name: str, shape: Sequence[int]) -> str:
        """A float32 initializer with its dims and no data (the skeleton's weights)."""
        from onnx import TensorProto

        self.initializers.append(
            TensorProto(name=name, dims=list(shape), data_type=TensorProto.FLOAT)
        )
        return name

    def weight(
        self, name: str, shape: Sequence[int], std: float | np.ndarray, mean: float = 0.0
    ) -> str:
        """A float32 initializer drawn from N(mean, std^2); std may vary along axis 0."""
        import numpy as np

        if not self.materialize:
            return self._shape_only(name, shape)
        a = self.rng.standard_normal(tuple(shape), dtype=np.float32)
        std = np.asarray(std, dtype=np.float32)
        if std.ndim:
            std = std.reshape((-1,) + (1,) * (len(shape) - 1))
        return self.tensor(name, (a * std + np.float32(mean)).astype(np.float32))

    def uniform(self, name: str, shape: Sequence[int], low: float, high: float) -> str:
        import numpy as np

        if not self.materialize:
            return self._shape_only(name, shape)
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
