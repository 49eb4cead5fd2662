"""Tests for perflab.models: the zoo, resolution of user models, cost, precision conversion."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from perflab import models as M
from perflab.errors import ModelError, Unsupported
from perflab.models import conversion

ort = pytest.importorskip("onnxruntime")

REALDATA = Path(__file__).parents[1] / ".." / "shared" / "realdata"
REAL_MODELS = REALDATA.resolve() / "models"


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="session")
def models_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session: each zoo model is built and written once."""
    return tmp_path_factory.mktemp("models-cache")


@pytest.fixture(scope="session")
def models_resolve(models_cache: Path):
    memo: dict = {}

    def get(name: str, batch_size: int = 1, **kw) -> M.ModelInfo:
        key = (name, batch_size, repr(sorted(kw.items())))
        if key not in memo:
            memo[key] = M.resolve(name, batch_size=batch_size, cache_dir=models_cache, **kw)
        return memo[key]

    return get


def models_session(path: os.PathLike | str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    return ort.InferenceSession(os.fspath(path), so, providers=["CPUExecutionProvider"])


def models_assert_batch_is_singles(batched_model, single_model, name, x, *, rtol, atol) -> None:
    """The batched model on all of x gives what the batch-1 model gives one item at a time."""
    batched = models_session(batched_model).run(None, {name: x})[0]
    one = models_session(single_model)
    singles = np.concatenate([one.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])
    np.testing.assert_allclose(batched, singles, rtol=rtol, atol=atol)


def models_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def models_tiny(path: Path, input_dims: list, *, reshape_to: list[int] | None = None) -> Path:
    """A Relu model with input 'x' of the given dims, optionally followed by a Reshape."""
    nodes = [helper.make_node("Relu", ["x"], ["r"])]
    inits = []
    out_name, out_dims = "r", input_dims
    if reshape_to is not None:
        inits.append(numpy_helper.from_array(np.array(reshape_to, np.int64), "target"))
        nodes.append(helper.make_node("Reshape", ["r", "target"], ["y"]))
        out_name, out_dims = "y", reshape_to
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_dims)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_dims)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", M.OPSET)])
    model.ir_version = M.IR_VERSION
    onnx.save(model, path)
    return path


def models_real(name: str) -> Path:
    path = REAL_MODELS / name
    if not path.is_file():
        pytest.skip(f"real-data model {path} is absent")
    return path


# ----------------------------------------------------------------------------- the zoo


def test_import_stays_light():
    code = (
        "import sys, perflab, perflab.models; "
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'openvino', 'torch') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_list_models_describes_every_zoo_model():
    rows = M.list_models()
    assert [r["name"] for r in rows] == list(M.ZOO)
    by = {r["name"]: r for r in rows}
    for r in rows:
        assert {"task", "kind", "inputs", "outputs", "params", "flops_per_sample"} <= set(r)
        assert r["params"] > 0 and r["flops_per_sample"] > 0
    # torchvision's counts, less the BN parameters that folding removes.
    assert by["resnet18"]["params"] == pytest.approx(11.69e6, rel=0.01)
    assert by["resnet50"]["params"] == pytest.approx(25.56e6, rel=0.01)
    assert by["mobilenetv2"]["params"] == pytest.approx(3.50e6, rel=0.01)
    assert by["bert-mini"]["params"] == pytest.approx(11.2e6, rel=0.02)
    assert by["bert-mini"]["kind"] == "sequence"
    assert by["yolo-s"]["outputs"] == "output float32[N,85,2100]"
    assert by["bert-mini"]["inputs"] == "input_ids int64[N,S], attention_mask int64[N,S]"


@pytest.mark.parametrize("name", ["mlp", "resnet18"])
def test_build_is_deterministic(name):
    a = M.build_model(name).SerializeToString()
    b = M.build_model(name).SerializeToString()
    assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()


def test_build_rejects_unknown_names_and_bad_sizes():
    with pytest.raises(ModelError, match=r"unknown model 'resnet19'; built-in models: resnet18"):
        M.build_model("resnet19")
    with pytest.raises(ModelError, match="multiple of 32"):
        M.build_model("yolo-s", image_size=300)
    with pytest.raises(ModelError, match="no image size"):
        M.build_model("bert-mini", image_size=224)


@pytest.mark.parametrize("name", M.ZOO)
def test_zoo_model_is_valid_and_runs_at_batch_1_and_2(name, models_resolve):
    info1 = models_resolve(name, 1)
    model = onnx.load(info1.path, load_external_data=False)
    onnx.checker.check_model(os.fspath(info1.path))
    assert model.ir_version == M.IR_VERSION
    assert model.opset_import[0].version == M.OPSET
    assert hashlib.sha256(info1.path.read_bytes()).hexdigest() == info1.sha256
    assert info1.sha256[:16] in info1.path.name  # cached under its content hash
    sess = models_session(info1.path)
    for batch in (1, 2):
        info = models_resolve(name, batch)
        assert info.path == info1.path  # the batch dim is symbolic: one file serves all
        outs = sess.run(None, M.random_inputs(info, seed=batch))
        for spec, out in zip(info.outputs, outs):
            assert out.shape == spec.shape
            assert out.shape[0] == batch
            assert np.isfinite(out).all()
            assert np.abs(out).max() < 1e4  # scaled weights: activations stay in range


def test_zoo_infos_have_kind_and_cost(models_resolve):
    assert models_resolve("resnet18").kind == "image"
    assert models_resolve("yolo-s").kind == "image"
    assert models_resolve("bert-mini").kind == "sequence"
    assert models_resolve("mlp").kind == "tensor"
    bert = models_resolve("bert-mini", 2)
    assert [t.shape for t in bert.inputs] == [(2, 128), (2, 128)]
    assert [t.dtype for t in bert.inputs] == ["int64", "int64"]
    assert "dim 'S' set to its default 128" in bert.notes
    info = models_resolve("resnet18", 2)
    assert info.flops_per_sample == pytest.approx(3.64e9, rel=0.01)
    assert info.param_bytes == pytest.approx(4 * 11.68e6, rel=0.01)
    assert info.activation_bytes_per_sample > 0


def test_yolo_passes_a_bounded_number_of_candidates(models_resolve):
    info = models_resolve("yolo-s", 2)
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:320, 0:320] / 320.0
    images = np.stack([rng.uniform(0, 1, (3, 320, 320)), np.stack([xx, yy, (xx + yy) / 2])]).astype(
        np.float32
    )
    out = models_session(info.path).run(None, {"images": images})[0]
    assert out.shape == (2, 85, 2100)
    for pred in out:
        conf = pred[4] * pred[5:].max(axis=0)
        n = int((conf > 0.25).sum())
        assert 1 <= n <= 0.1 * pred.shape[1], n
        assert (pred[4:] >= 0).all() and (pred[4:] <= 1).all()  # scores after sigmoid
        assert (pred[2:4] > 0).all() and (pred[2:4] <= 16 * 32).all()  # w, h in pixels
        assert pred[0].min() > -64 and pred[0].max() < 320 + 64  # cx near the image


def test_yolo_builds_at_640_when_input_shapes_ask(models_resolve):
    info = models_resolve("yolo-s", 1, input_shapes={"images": ["N", 3, 640, 640]})
    assert info.inputs[0].shape == (1, 3, 640, 640)
    assert info.outputs[0].shape == (1, 85, 8400)
    assert any("image size 640" in n for n in info.notes)
    small = models_resolve("yolo-s", 1)
    assert info.flops_per_sample == pytest.approx(4 * small.flops_per_sample, rel=0.01)
    with pytest.raises(ModelError, match="square"):
        models_resolve("yolo-s", 1, input_shapes={"images": ["N", 3, 640, 320]})


def test_bert_sequence_length_binds_every_input(models_resolve):
    info = models_resolve("bert-mini", 2, input_shapes={"input_ids": ["N", 32]})
    assert [t.shape for t in info.inputs] == [(2, 32), (2, 32)]
    assert info.outputs[0].shape == (2, 32, 256)
    outs = models_session(info.path).run(None, M.random_inputs(info))
    assert outs[0].shape == (2, 32, 256) and np.isfinite(outs[0]).all()
    with pytest.raises(ModelError, match=r"dim 'S' is given two sizes \(32 and 16"):
        models_resolve(
            "bert-mini", 2, input_shapes={"input_ids": ["N", 32], "attention_mask": ["N", 16]}
        )
    same = models_resolve("bert-mini", 2, input_shapes={"input_ids": ["N", "S"]})
    assert same.inputs[0].shape == (2, 128)


def test_random_inputs_are_seeded_and_in_range(models_resolve):
    info = models_resolve("bert-mini", 2)
    a, b = M.random_inputs(info, seed=3), M.random_inputs(info, seed=3)
    assert np.array_equal(a["input_ids"], b["input_ids"])
    assert a["input_ids"].max() < M.BERT_VOCAB and a["input_ids"].min() >= 0
    assert (a["attention_mask"] == 1).all()
    img = M.random_inputs(models_resolve("yolo-s"), seed=0)["images"]
    assert img.dtype == np.float32 and img.min() >= 0 and img.max() <= 1


# ----------------------------------------------------------------------------- cost


def test_cost_of_the_mlp_matches_hand_count():
    c = M.cost(M.build_model("mlp"), {"input": [4, 256]})
    macs = 256 * 512 + 512 * 512 + 512 * 10
    biases, relus = 512 + 512 + 10, 512 + 512
    assert c["macs_per_sample"] == macs
    assert c["flops_per_sample"] == 2 * macs + biases + relus
    assert c["param_count"] == macs + biases
    assert c["param_bytes"] == 4 * (macs + biases)
    assert c["activation_bytes_per_sample"] == 4 * (512 + 512 + 512 + 512 + 10)
    assert c["uncounted_ops"] == {}


def _conv_model(cin: int, cout: int, group: int, bias: bool) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((cout, cin // group, 3, 3), np.float32), "w")
    inits = [w]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), "b"))
        inputs.append("b")
    node = helper.make_node(
        "Conv", inputs, ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=group
    )
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", M.OPSET)])


def test_cost_of_a_single_conv_matches_hand_count():
    c = M.cost(_conv_model(3, 4, 1, bias=True), {"x": [2, 3, 8, 8]})
    out = 4 * 8 * 8
    assert c["macs_per_sample"] == out * 3 * 3 * 3
    assert c["flops_per_sample"] == 2 * out * 27 + out  # + the bias add
    assert c["param_bytes"] == 4 * (4 * 3 * 9 + 4)
    assert c["activation_bytes_per_sample"] == 4 * out
    depthwise = M.cost(_conv_model(4, 4, 4, bias=False), {"x": [1, 4, 8, 8]})
    assert depthwise["flops_per_sample"] == 2 * out * 9  # groups divide the input channels


def test_cost_of_a_batched_matmul_and_softmax():
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["a", "b"], ["c"]),
            helper.make_node("Softmax", ["c"], ["d"], axis=-1),
        ],
        "mm",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4, 8, 16]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 4, 16, 32]),
        ],
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", M.OPSET)])
    c = M.cost(model, {"a": [2, 4, 8, 16], "b": [2, 4, 16, 32]})
    assert c["macs_per_sample"] == 4 * 8 * 32 * 16
    assert c["flops_by_op"]["Softmax"] == 5 * 4 * 8 * 32
    assert c["param_bytes"] == 0


def test_cost_counts_constant_of_shape_weights_as_parameters():
    shape = numpy_helper.from_array(np.array([4, 3, 3, 3], np.int64), "wshape")
    nodes = [
        helper.make_node(
            "ConstantOfShape",
            ["wshape"],
            ["w"],
            value=numpy_helper.from_array(np.array([0.1], np.float32)),
        ),
        helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3]),
    ]
    graph = helper.make_graph(
        nodes,
        "cos",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", M.OPSET)])
    c = M.cost(model, {"x": [1, 3, 8, 8]})
    assert c["param_bytes"] == 4 * 4 * 27  # the weight it makes, not its shape argument
    assert c["macs_per_sample"] == 4 * 6 * 6 * 27


@pytest.mark.parametrize(
    ("name", "gmacs"), [("resnet18", 1.814), ("resnet50", 4.09), ("mobilenetv2", 0.30)]
)
def test_cost_of_known_networks(name, gmacs):
    skeleton = M.build_model(name, materialize=False)
    c = M.cost(skeleton, {"input": [1, 3, 224, 224]})
    assert c["macs_per_sample"] == pytest.approx(gmacs * 1e9, rel=0.10)
    assert c["flops_per_sample"] == pytest.approx(2 * gmacs * 1e9, rel=0.10)
    assert c["uncounted_ops"] == {}
    per_sample_at_4 = M.cost(skeleton, {"input": [4, 3, 224, 224]})
    assert per_sample_at_4["flops_per_sample"] == pytest.approx(c["flops_per_sample"])
    assert per_sample_at_4["param_bytes"] == c["param_bytes"]


def test_cost_of_a_skeleton_equals_cost_of_the_weighted_model():
    shapes = {"input": [1, 256]}
    assert M.cost(M.build_model("mlp"), shapes) == M.cost(
        M.build_model("mlp", materialize=False), shapes
    )


# ----------------------------------------------------------------------------- resolve


def test_resolve_reports_a_missing_path(tmp_path):
    with pytest.raises(ModelError, match=r"nope\.onnx' does not exist.*built-in model"):
        M.resolve(str(tmp_path / "nope.onnx"), batch_size=1, cache_dir=tmp_path)


@pytest.mark.parametrize(
    "content", [b"this is a text file, not a model\n", bytes(range(256)) * 8, b""]
)
def test_resolve_reports_a_file_that_is_not_onnx(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=r"bad\.onnx is not an ONNX model") as e:
        M.resolve(path, batch_size=1, cache_dir=tmp_path)
    assert "\n" not in str(e.value)


def test_resolve_reports_a_truncated_model(tmp_path, models_resolve):
    data = models_resolve("mlp").path.read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"cut\.onnx is not an ONNX model \(truncated"):
        M.resolve(path, batch_size=1, cache_dir=tmp_path)


def test_resolve_reports_an_unknown_input_name(models_resolve):
    with pytest.raises(
        ModelError,
        match=r"names 'images' but the model has no input of that "
        r"name; its inputs are 'input'",
    ):
        models_resolve("mlp", 1, input_shapes={"images": ["N", 3, 224, 224]})


def test_resolve_reports_an_open_dim_and_accepts_input_shapes(tmp_path):
    path = models_tiny(tmp_path / "open.onnx", ["N", 3, "H", "W"])
    with pytest.raises(
        ModelError,
        match=r"input 'x' dim 2 \('H'\) is not fixed by the model; "
        r"set input_shapes, e\.g\. input_shapes: \{x: \[N, 3, "
        r"\?, \?\]\}",
    ):
        M.resolve(path, batch_size=2, cache_dir=tmp_path)
    info = M.resolve(path, batch_size=2, input_shapes={"x": ["N", 3, 32, 48]}, cache_dir=tmp_path)
    assert info.inputs == (M.TensorSpec("x", (2, 3, 32, 48), "float32"),)
    assert info.outputs == (M.TensorSpec("r", (2, 3, 32, 48), "float32"),)
    assert info.kind == "image" and info.name == "open" and info.path == path
    assert info.source_sha256 == info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"input": ["N", 256, 1]}, r"has 3 dims but the model's input has 2"),
        (
            {"input": ["N", 128]},
            r"input 'input' dim 1 is fixed at 256 in the model; input_shapes asks for 128",
        ),
        ({"input": ["N", "K"]}, r"dim 1 is 'K'; use an int, 'N' for the batch size"),
        ({"input": [3, 256]}, r"dim 0 = 3 but batch_size is 2; write N for the batch dim"),
        ({"input": ["N", -4]}, r"dim 1 is -4; dims must be positive"),
    ],
)
def test_resolve_rejects_bad_input_shapes(models_resolve, shapes, message):
    with pytest.raises(ModelError, match=message):
        models_resolve("mlp", 2, input_shapes=shapes)


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, True])
def test_resolve_rejects_a_bad_batch_size(batch_size, models_cache):
    with pytest.raises(ModelError, match="batch_size must be a positive int"):
        M.resolve("mlp", batch_size=batch_size, cache_dir=models_cache)


def test_resolve_reports_missing_external_data(tmp_path):
    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", M.OPSET)])
    model.ir_version = M.IR_VERSION
    path = tmp_path / "ext.onnx"
    onnx.save_model(
        model, path, save_as_external_data=True, location="ext.weights", size_threshold=0
    )
    assert M.resolve(path, batch_size=2, cache_dir=tmp_path).param_bytes == 64 * 64 * 4
    (tmp_path / "ext.weights").unlink()
    with pytest.raises(
        ModelError,
        match=r"external data file 'ext\.weights' of initializer 'w' "
        r"is missing",
    ):
        M.resolve(path, batch_size=2, cache_dir=tmp_path)


def test_resolve_makes_a_fixed_batch_of_one_symbolic(tmp_path):
    path = models_tiny(tmp_path / "fixed.onnx", [1, 4], reshape_to=[1, 2, 2])
    same = M.resolve(path, batch_size=1, cache_dir=tmp_path)
    assert same.path == path and same.notes == ()
    info = M.resolve(path, batch_size=3, cache_dir=tmp_path)
    assert info.path != path and info.path.parent == tmp_path / "models"
    assert info.source_sha256 == same.sha256 != info.sha256
    assert "batch dim of input 'x' was fixed at 1; made symbolic to run batch 3" in info.notes
    assert any("Reshape" in n and "[1, 2, 2] -> [0, 2, 2]" in n for n in info.notes)
    assert info.inputs[0].shape == (3, 4) and info.outputs[0].shape == (3, 2, 2)
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 6
    out = models_session(info.path).run(None, {"x": x})[0]
    np.testing.assert_array_equal(out, np.maximum(x, 0).reshape(3, 2, 2))
    assert M.resolve(path, batch_size=3, cache_dir=tmp_path).path == info.path  # cached


def test_resolve_refuses_a_batch_fixed_above_one(tmp_path):
    path = models_tiny(tmp_path / "fixed2.onnx", [2, 4])
    with pytest.raises(
        ModelError,
        match=r"input 'x' has its batch dim fixed at 2; run it with "
        r"batch_size 2",
    ):
        M.resolve(path, batch_size=3, cache_dir=tmp_path)


def test_resolve_uses_the_environment_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFLAB_CACHE", str(tmp_path / "envcache"))
    info = M.resolve("mlp", batch_size=1)
    assert info.path.parent == tmp_path / "envcache" / "models"
    again = M.resolve("mlp", batch_size=4)
    assert again.path == info.path and again.sha256 == info.sha256
    assert len(list((tmp_path / "envcache" / "models").glob("*.onnx"))) == 1


def test_resolve_reports_an_unknown_zoo_name_as_missing(models_cache):
    with pytest.raises(
        ModelError,
        match=r"'resnet-18' does not exist.*built-in model "
        r"\(resnet18, resnet50",
    ):
        M.resolve("resnet-18", batch_size=1, cache_dir=models_cache)


# ----------------------------------------------------------------------------- real models


@pytest.mark.realdata
def test_mnist_with_fixed_batch_runs_at_batch_4(models_cache):
    path = models_real("mnist-8.onnx")
    info = M.resolve(path, batch_size=4, cache_dir=models_cache)
    assert "batch dim of input 'Input3' was fixed at 1; made symbolic to run batch 4" in info.notes
    assert info.inputs[0].shape == (4, 1, 28, 28)
    assert info.outputs[0].shape == (4, 10)
    assert info.kind == "image"
    x = np.random.default_rng(0).uniform(0, 255, (4, 1, 28, 28)).astype(np.float32)
    models_assert_batch_is_singles(info.path, path, "Input3", x, rtol=1e-5, atol=1e-4)


@pytest.mark.realdata
def test_fully_dynamic_ocr_detector_needs_and_takes_input_shapes(models_cache):
    path = models_real("ch_PP-OCRv4_det_infer.onnx")
    with pytest.raises(ModelError, match=r"input 'x' dim 2 .* set input_shapes"):
        M.resolve(path, batch_size=1, cache_dir=models_cache)
    info = M.resolve(
        path, batch_size=1, input_shapes={"x": ["N", 3, 640, 640]}, cache_dir=models_cache
    )
    assert info.inputs[0].shape == (1, 3, 640, 640)
    assert info.outputs[0].shape == (1, 1, 640, 640)
    assert 1e9 < info.flops_per_sample < 2e10
    assert info.param_bytes == pytest.approx(4.7e6, rel=0.1)
    assert not any("leaves out" in n for n in info.notes)
    out = models_session(info.path).run(None, M.random_inputs(info))[0]
    assert out.shape == (1, 1, 640, 640)


@pytest.mark.realdata
def test_yolox_nano_resolves_and_its_batch_rewrite_is_exact(models_cache):
    path = models_real("yolox_nano.onnx")
    info1 = M.resolve(path, batch_size=1, cache_dir=models_cache)
    assert info1.outputs[0].shape == (1, 3549, 8)
    assert info1.param_bytes == pytest.approx(4 * 0.91e6, rel=0.05)
    assert info1.flops_per_sample == pytest.approx(1.04e9, rel=0.1)
    info2 = M.resolve(path, batch_size=2, cache_dir=models_cache)
    assert info2.outputs[0].shape == (2, 3549, 8)
    x = M.random_inputs(info2, seed=1)["images"]
    models_assert_batch_is_singles(info2.path, path, "images", x, rtol=1e-4, atol=1e-3)


@pytest.mark.realdata
def test_light_resnet50_counts_constant_of_shape_weights(models_cache):
    info = M.resolve(models_real("light_resnet50.onnx"), batch_size=1, cache_dir=models_cache)
    assert info.param_bytes / 4 == pytest.approx(25.5e6, rel=0.05)
    assert info.flops_per_sample / 2 == pytest.approx(4.1e9, rel=0.1)
    assert info.outputs[0].shape == (1, 1000)


# ----------------------------------------------------------------------------- convert


def test_convert_fp32_is_the_model_itself(models_resolve):
    info = models_resolve("mlp", 2)
    c = M.convert(info, "fp32")
    assert c.path == info.path and c.method == "none" and c.sha256 == info.sha256
    assert os.fspath(c) == os.fspath(info.path)


@pytest.mark.parametrize("precision", ["bf16", "best", "fp8"])
def test_convert_refuses_precisions_it_cannot_make(models_resolve, precision):
    with pytest.raises(
        Unsupported,
        match=rf"precision '{precision}'; convert makes fp32, "
        r"fp16, int8",
    ):
        M.convert(models_resolve("mlp"), precision)


def test_fp16_resnet18_keeps_fp32_io_and_agrees(models_resolve, models_cache):
    info = models_resolve("resnet18", 2)
    c = M.convert(info, "fp16", cache_dir=models_cache)
    assert c.method == "fp16" and c.path.parent == models_cache / "models"
    sess = models_session(c)
    assert sess.get_inputs()[0].type == sess.get_outputs()[0].type == "tensor(float)"
    feeds = M.random_inputs(info, seed=11)
    ref = models_session(info.path).run(None, feeds)[0]
    out = sess.run(None, feeds)[0]
    assert models_cosine(ref, out) > 0.99  # seen: 1.0000
    audit = M.audit_onnx_types(c.path)
    assert audit["precision"] == "fp16" and audit["float16_tensors"] > 0
    assert audit["quantize_linear"] == 0


def test_int8_resnet18_is_static_qdq_agrees_and_is_cached(
    models_resolve, models_cache, monkeypatch
):
    info = models_resolve("resnet18", 2)
    c = M.convert(info, "int8", cache_dir=models_cache)
    assert c.method == "int8-static-qdq"
    assert any("seeded random inputs" in n for n in c.notes)
    feeds = M.random_inputs(info, seed=12)
    ref = models_session(info.path).run(None, feeds)[0]
    out = models_session(c).run(None, feeds)[0]
    assert models_cosine(ref, out) > 0.95  # seen: 0.9999
    audit = M.audit_onnx_types(c.path)
    assert audit["precision"] == "int8"
    assert audit["quantize_linear"] > 0 and audit["dequantize_linear"] > 0
    assert audit["initializer_types"].get("int8", 0) > 0

    def fail(*args, **kwargs):
        raise AssertionError("a cached conversion must not quantize again")

    monkeypatch.setattr(conversion, "_quantize_static", fail)
    again = M.convert(info, "int8", cache_dir=models_cache)
    assert again == c


def test_int8_cache_key_follows_the_calibration(models_resolve, models_cache):
    info = models_resolve("mlp", 2)
    rng = np.random.default_rng(0)
    cal_a = [{"input": rng.standard_normal((2, 256)).astype(np.float32)} for _ in range(2)]
    cal_b = [{"input": 3 * rng.standard_normal((2, 256)).astype(np.float32)} for _ in range(2)]
    a = M.convert(info, "int8", calibration=iter(cal_a), cache_dir=models_cache)
    b = M.convert(info, "int8", calibration=cal_b, cache_dir=models_cache)
    assert a.path != b.path and a.method == b.method == "int8-static-qdq"
    assert a.notes[0] == "calibrated on 2 given batches" and len(a.notes) == 2
    recipe = "int8 recipe 'cpu': UInt8 asymmetric activations, Int8 symmetric per-channel weights"
    assert (
        a.notes[1].removesuffix(" (7-bit: reduce_range, since U8S8 saturates without VNNI)")
        == recipe
    )
    assert M.convert(info, "int8", calibration=cal_a, cache_dir=models_cache).path == a.path
    with pytest.raises(ModelError, match="calibration is empty"):
        M.convert(info, "int8", calibration=[], cache_dir=models_cache)


def test_int8_weights_are_7_bit_on_x86_without_vnni(monkeypatch):
    from perflab import env
    from perflab.models import conversion

    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    monkeypatch.setattr(env, "cpu_flags", lambda: ["avx2", "fma"])
    assert conversion._reduce_range("cpu") and not conversion._reduce_range("tensorrt")
    monkeypatch.setattr(env, "cpu_flags", lambda: ["avx2", "avx512_vnni"])
    assert not conversion._reduce_range("cpu")
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    monkeypatch.setattr(env, "cpu_flags", lambda: ["asimd"])
    assert not conversion._reduce_range("cpu")


def test_int8_sequence_model_uses_dynamic_quantization(models_resolve, models_cache):
    info = models_resolve("bert-mini", 1, input_shapes={"input_ids": ["N", 32]})
    c = M.convert(info, "int8", cache_dir=models_cache)
    assert c.method == "int8-dynamic"
    assert any("dynamic quantization" in n for n in c.notes)
    feeds = M.random_inputs(info, seed=5)
    ref = models_session(info.path).run(None, feeds)
    out = models_session(c).run(None, feeds)
    assert models_cosine(ref[0], out[0]) > 0.95  # seen: 0.9999
    audit = M.audit_onnx_types(c.path)
    assert audit["precision"] == "int8" and audit["dynamic_quant_nodes"] > 0


def test_int8_falls_back_to_dynamic_when_static_fails(models_resolve, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("calibration\nexploded")

    monkeypatch.setattr(conversion, "_quantize_static", broken)
    c = M.convert(models_resolve("mlp", 2), "int8", cache_dir=tmp_path)
    assert c.method == "int8-dynamic"
    assert (
        "static quantization failed (RuntimeError: calibration exploded); used dynamic" in c.notes
    )
    out = models_session(c).run(None, {"input": np.ones((2, 256), np.float32)})[0]
    assert out.shape == (2, 10) and np.isfinite(out).all()


def test_audit_of_an_fp32_model(models_resolve):
    audit = M.audit_onnx_types(models_resolve("mlp").path)
    assert audit["precision"] == "fp32"
    assert audit["initializer_types"] == {"float32": 6}
    assert audit["initializer_bytes"] == {"float32": 4 * 399370}
    assert audit["quantize_linear"] == audit["dequantize_linear"] == 0
    assert audit["float16_tensors"] == 0


def test_export_writes_loadable_files(tmp_path, models_cache):
    p = M.export("mlp", tmp_path / "out" / "mlp.onnx", cache_dir=models_cache)
    assert p == tmp_path / "out" / "mlp.onnx"
    onnx.checker.check_model(os.fspath(p))
    q = M.export("mlp", tmp_path / "mlp_int8.onnx", precision="int8", cache_dir=models_cache)
    assert M.audit_onnx_types(q)["precision"] == "int8"
    with pytest.raises(ModelError, match="unknown model 'resnet'"):
        M.export("resnet", tmp_path / "x.onnx", cache_dir=models_cache)
    with pytest.raises(Unsupported, match="bf16"):
        M.export("mlp", tmp_path / "x.onnx", precision="bf16", cache_dir=models_cache)


def test_int8_of_an_opset_11_conv_model_stays_per_channel(tmp_path):
    model = _conv_model(3, 8, 1, bias=True)
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", 11))
    model.ir_version = 6
    path = tmp_path / "conv11.onnx"
    onnx.save(model, path)
    info = M.resolve(path, batch_size=2, input_shapes={"x": ["N", 3, 8, 8]}, cache_dir=tmp_path)
    c = M.convert(info, "int8", cache_dir=tmp_path)
    # Per-channel DequantizeLinear needs opset 13: the model is raised to it, not degraded.
    assert c.method == "int8-static-qdq" and not any("per-tensor" in n for n in c.notes)
    feeds = M.random_inputs(info, seed=2)
    ref = models_session(path).run(None, feeds)[0]
    assert models_cosine(ref, models_session(c).run(None, feeds)[0]) > 0.99


@pytest.mark.realdata
def test_mnist_converts_to_fp16_and_int8(models_cache):
    info = M.resolve(models_real("mnist-8.onnx"), batch_size=4, cache_dir=models_cache)
    feeds = {"Input3": np.random.default_rng(3).uniform(0, 255, (4, 1, 28, 28)).astype("f4")}
    ref = models_session(info.path).run(None, feeds)[0]
    # IR 3 lists weights among the graph inputs; the conversions must still see them as weights.
    fp16 = M.convert(info, "fp16", cache_dir=models_cache)
    assert M.audit_onnx_types(fp16.path)["precision"] == "fp16"
    assert models_cosine(ref, models_session(fp16).run(None, feeds)[0]) > 0.99
    rng = np.random.default_rng(4)
    calibration = [{"Input3": rng.uniform(0, 255, (4, 1, 28, 28)).astype("f4")} for _ in range(4)]
    int8 = M.convert(info, "int8", calibration=calibration, cache_dir=models_cache)
    assert int8.method == "int8-static-qdq"
    assert models_cosine(ref, models_session(int8).run(None, feeds)[0]) > 0.95  # seen: 0.9994


def test_int8_for_tensorrt_is_symmetric_int8(models_resolve, models_cache):
    info = models_resolve("mlp", 2)
    c = M.convert(info, "int8", int8_target="tensorrt", cache_dir=models_cache)
    assert c.method == "int8-static-qdq"
    assert c.path != M.convert(info, "int8", cache_dir=models_cache).path
    model = onnx.load(c.path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    with pytest.raises(ModelError, match="int8_target 'gpu' is not one of cpu, tensorrt"):
        M.convert(info, "int8", int8_target="gpu", cache_dir=models_cache)
