"""PyTorch backends and the ONNX->torch converter: zoo and real models agree with ONNX Runtime's
CPU reference, precisions, refusals, and torch-cuda's timing on a GPU."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from perflab import models, pipelines
from perflab.backends.base import create
from perflab.backends.onnx_torch import SUPPORTED_OPS, convert, unsupported_ops
from perflab.backends.registry import unavailable_reason
from perflab.backends.torch import TorchBackend, parse_options
from perflab.errors import BackendUnavailable, SpecError, Unsupported
from perflab.reference import reference_outputs
from perflab.spec import RunConfig
from perflab.timing import Recorder, SetupTimer


def agreement(got: dict, ref: dict) -> tuple[float, float, float]:
    """(max abs error, largest reference magnitude, cosine) over all outputs."""
    a = np.concatenate([np.asarray(got[k], np.float64).ravel() for k in ref])
    b = np.concatenate([np.asarray(ref[k], np.float64).ravel() for k in ref])
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return float(np.max(np.abs(a - b))), float(np.max(np.abs(b))), cos


def run_once(backend, pipeline, batch_size):
    rec = Recorder(batch_size)
    x = pipeline.preprocess(pipeline.make_inputs())
    out = backend.run(x, rec)
    return rec, x, out


@pytest.mark.parametrize(
    ("model", "batch"),
    [("mlp", 4), ("mobilenetv2", 1), ("resnet18", 1), ("bert-mini", 2), ("yolo-s", 1)],
)
def test_torch_cpu_matches_onnxruntime_fp32(set_up, make_config, stage_counts, model, batch):
    backend, info, pipeline, timer = set_up(make_config(model, "torch-cpu", batch_size=batch))
    assert "load" in timer.ms and "build" not in timer.ms
    rec, x, out = run_once(backend, pipeline, batch)
    assert stage_counts(rec) == {"compute": 1}  # no h2d/d2h: the data stays in host memory
    ref = reference_outputs(info.path, x)
    assert set(out) == set(ref)
    for k in ref:
        assert out[k].shape == ref[k].shape and out[k].dtype == ref[k].dtype
    err, scale, cos = agreement(out, ref)
    # fp32 with different kernels: resnet18 and bert differ by ~1e-6 of the output scale; yolo-s
    # by ~1e-4 (its decoded box sizes, up to ~500 px, amplify sigmoid rounding).
    assert err <= 3e-4 * max(1.0, scale), (err, scale)
    assert cos > 0.99999
    facts = backend.facts()
    assert facts["device"] == "cpu" and facts["precision_effective"] == "fp32"


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_torch_cpu_reduced_precision(set_up, make_config, precision):
    backend, info, pipeline, _ = set_up(
        make_config("bert-mini", "torch-cpu", precision, batch_size=1)
    )
    _, x, out = run_once(backend, pipeline, 1)
    assert backend.facts()["precision_effective"] == precision
    assert all(v.dtype == np.float32 for v in out.values())  # outputs keep the graph's dtype
    _, _, cos = agreement(out, reference_outputs(info.path, x))
    assert 0.99 < cos < 1.0 + 1e-9


def test_bf16_autocast_is_stated(set_up, make_config):
    backend, *_ = set_up(make_config("mlp", "torch-cpu", "bf16", batch_size=2))
    assert "autocast" in backend.facts()["meta"]


@pytest.mark.parametrize("precision", ["int8", "best"])
def test_torch_refuses_int8_and_best(make_config, precision):
    with pytest.raises(Unsupported, match="torch-cpu: "):
        create(make_config("mlp", "torch-cpu", precision))


def test_options_validation():
    assert parse_options("torch-cpu", {"threads": 2}).threads == 2
    with pytest.raises(SpecError, match="unknown option 'streams' \\(a torch-cuda option\\)"):
        parse_options("torch-cpu", {"streams": 2})
    with pytest.raises(SpecError, match="'compile_mode': 'fast' is not one of"):
        parse_options("torch-cpu", {"compile_mode": "fast"})
    with pytest.raises(SpecError, match="unknown option 'fp16'"):
        parse_options("torch-cuda", {"fp16": True})
    assert parse_options("torch-cuda", {"streams": 3, "tf32": False}).tf32 is False


def test_torch_cuda_unavailable_without_a_gpu(make_config):
    reason = unavailable_reason("torch-cuda")
    if reason is None:
        pytest.skip("torch-cuda is available on this machine")
    assert "GPU" in reason or "CUDA" in reason or "torch" in reason
    with pytest.raises(BackendUnavailable, match="torch-cuda unavailable: "):
        create(make_config("mlp", "torch-cuda"))


def test_compile_is_timed_as_build(monkeypatch, set_up, make_config):
    """torch.compile wraps the module and one call on zeros runs inside `build`."""
    calls = []

    def fake_compile(module, mode="default"):
        def compiled(*xs):
            calls.append(("call", [tuple(x.shape) for x in xs]))
            return module(*xs)

        compiled._orig_mod = module
        calls.append(("compile", mode))
        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    backend, _, pipeline, timer = set_up(
        make_config("mlp", "torch-cpu", batch_size=2, compile=True, compile_mode="max-autotune")
    )
    assert calls == [("compile", "max-autotune"), ("call", [(2, 256)])]
    assert "build" in timer.ms
    run_once(backend, pipeline, 2)
    assert backend.facts()["precision_effective"] == "fp32"
    assert backend.facts()["meta"]["compile_mode"] == "max-autotune"


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("PERFLAB_SLOW"),
    reason="torch.compile (inductor) takes ~45 s on a 2-core CPU; set PERFLAB_SLOW=1 to run it",
)
def test_real_torch_compile_on_cpu(set_up, make_config):
    backend, info, pipeline, timer = set_up(
        make_config("mlp", "torch-cpu", batch_size=2, compile=True)
    )
    _, x, out = run_once(backend, pipeline, 2)
    assert timer.ms["build"] > 0
    _, _, cos = agreement(out, reference_outputs(info.path, x))
    assert cos > 0.99999


# ------------------------------------------------------------------------- real models


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "atol_rel"), [("mnist-8.onnx", 1e-5), ("yolox_nano.onnx", 1e-5)])
def test_real_models_match_onnxruntime(realdata, make_config, name, atol_rel):
    path = realdata / "models" / name
    info = models.resolve(str(path), batch_size=1)
    pipeline = pipelines.create("raw", info.inputs, batch_size=1)
    backend = TorchBackend(make_config(str(path), "torch-cpu"))
    backend.setup(info, pipeline, SetupTimer())
    _, x, out = run_once(backend, pipeline, 1)
    err, scale, cos = agreement(out, reference_outputs(info.path, x))
    assert err <= atol_rel * max(1.0, scale) and cos > 0.99999


@pytest.mark.realdata
def test_real_models_with_other_ops_convert(realdata):
    """HardSigmoid, ConvTranspose, Resize (nearest, asymmetric), Sum, ConstantOfShape weights,
    Shape/Slice/Cast arithmetic: converted and agreeing with ONNX Runtime."""
    import onnx

    rng = np.random.default_rng(0)
    cases = [
        ("ch_ppocr_mobile_v2.0_cls_infer.onnx", (2, 3, 48, 192)),
        ("light_resnet50.onnx", (1, 3, 224, 224)),
    ]
    for name, shape in cases:
        path = realdata / "models" / name
        model = onnx.load(path)
        module = convert(model).eval()
        x = rng.random(shape, dtype=np.float32)
        with torch.inference_mode():
            got = dict(zip(module.output_names, (y.numpy() for y in module(torch.from_numpy(x)))))
        ref = reference_outputs(path, {module.input_names[0]: x})
        err, scale, cos = agreement(got, ref)
        assert err <= 1e-4 * max(1.0, scale) and cos > 0.99999, name


# ------------------------------------------------------------------------- converter


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    from onnx import helper

    g = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    m = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)]
    )
    m.ir_version = 8
    return m


def test_unsupported_ops_are_named(tmp_path, make_config):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    m = _model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("FusedGemm", ["a"], ["b"], domain="com.microsoft"),
            helper.make_node("LpPool", ["b"], ["y"]),
        ],
        [x],
        [y],
    )
    assert unsupported_ops(m) == ["com.microsoft.FusedGemm", "LpPool"]
    with pytest.raises(Unsupported, match="does not support ops com.microsoft.FusedGemm, LpPool"):
        convert(m)
    # Through the backend, the run becomes `unsupported` with the same reason.
    import onnx

    path = tmp_path / "odd.onnx"
    onnx.save(m, path)
    info = models.resolve(str(path), batch_size=1)
    with pytest.raises(Unsupported, match="LpPool"):
        TorchBackend(make_config(str(path), "torch-cpu")).setup(info, None, SetupTimer())


def test_converter_covers_the_zoo_ops():
    needed = {
        "Conv",
        "BatchNormalization",
        "Relu",
        "Clip",
        "Add",
        "Mul",
        "MaxPool",
        "GlobalAveragePool",
        "AveragePool",
        "Flatten",
        "Gemm",
        "MatMul",
        "Reshape",
        "Transpose",
        "Concat",
        "Sigmoid",
        "Softmax",
        "Gather",
        "LayerNormalization",
        "Erf",
        "Div",
        "Sub",
        "Pow",
        "Sqrt",
        "ReduceMean",
        "Unsqueeze",
        "Squeeze",
        "Shape",
        "Slice",
        "Cast",
        "Where",
        "Expand",
        "Resize",
        "Upsample",
        "Split",
        "Identity",
        "Constant",
        "ConstantOfShape",
        "Tanh",
        "InstanceNormalization",
        "CumSum",
        "HardSigmoid",
        "HardSwish",
        "ConvTranspose",
        "Sum",
        "Range",
        "Pad",
        "Einsum",
    }
    assert needed <= set(SUPPORTED_OPS)
    for name in ("mlp", "resnet18", "mobilenetv2", "yolo-s", "bert-mini"):
        assert unsupported_ops(models.build_model(name, materialize=False)) == []


def _run_both(model, feeds):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, feeds)
    module = convert(model).eval()
    with torch.inference_mode():
        got = module(*[torch.from_numpy(feeds[n]) for n in module.input_names])
    return [g.numpy() for g in got], ref


@pytest.mark.parametrize(
    ("op", "attrs", "extra", "in_shape"),
    [
        ("Resize", {"mode": "nearest"}, ("", "scales"), (1, 2, 3, 5)),
        (
            "Resize",
            {
                "mode": "nearest",
                "coordinate_transformation_mode": "asymmetric",
                "nearest_mode": "floor",
            },
            ("", "scales"),
            (1, 2, 3, 5),
        ),
        (
            "Resize",
            {
                "mode": "nearest",
                "coordinate_transformation_mode": "half_pixel",
                "nearest_mode": "round_prefer_ceil",
            },
            ("", "scales15"),
            (1, 2, 4, 6),
        ),
        ("Resize", {"mode": "linear"}, ("", "scales"), (1, 2, 3, 5)),
        (
            "Resize",
            {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
            ("", "scales"),
            (1, 2, 3, 5),
        ),
        (
            "Resize",
            {"mode": "linear", "coordinate_transformation_mode": "asymmetric"},
            ("", "scales"),
            (1, 2, 3, 5),
        ),
        ("Resize", {"mode": "cubic"}, ("", "scales"), (1, 2, 4, 5)),
        (
            "MaxPool",
            {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 1, 1]},
            (),
            (1, 2, 7, 7),
        ),
        ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, (), (1, 2, 8, 8)),
        (
            "AveragePool",
            {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
            (),
            (1, 2, 7, 7),
        ),
        (
            "AveragePool",
            {"kernel_shape": [3, 3], "pads": [0, 1, 2, 0], "count_include_pad": 0},
            (),
            (1, 2, 6, 6),
        ),
        ("Conv", {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, ("w",), (1, 2, 7, 8)),
        ("Conv", {"pads": [1, 0, 0, 1]}, ("w",), (1, 2, 5, 5)),
        (
            "ConvTranspose",
            {"strides": [2, 2], "pads": [1, 0, 0, 1], "output_padding": [1, 1]},
            ("wt",),
            (1, 2, 4, 4),
        ),
        ("ConvTranspose", {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, ("wt",), (1, 2, 4, 5)),
        ("ConvTranspose", {"strides": [2, 2], "auto_pad": "SAME_LOWER"}, ("wt",), (1, 2, 4, 5)),
        ("ConvTranspose", {"strides": [2, 2], "output_shape": [8, 9]}, ("wt",), (1, 2, 4, 4)),
        ("Softmax", {"axis": 1}, (), (2, 3, 4)),
        ("HardSwish", {}, (), (2, 3, 4)),
        ("Softplus", {}, (), (2, 3, 4)),
        ("Softsign", {}, (), (2, 3, 4)),
        ("Mish", {}, (), (2, 3, 4)),
        ("LayerNormalization", {"axis": -1, "epsilon": 1e-5}, ("gamma", "beta"), (2, 3, 4)),
        ("DepthToSpace", {"blocksize": 2}, (), (1, 8, 2, 3)),
        ("DepthToSpace", {"blocksize": 2, "mode": "CRD"}, (), (1, 8, 2, 3)),
        ("SpaceToDepth", {"blocksize": 2}, (), (1, 2, 4, 6)),
        ("Slice", {}, ("starts", "ends", "axes", "steps"), (4, 6)),
        ("Pad", {"mode": "reflect"}, ("pads",), (1, 2, 4, 5)),
        ("Pad", {"mode": "edge"}, ("pads",), (1, 2, 4, 5)),
        ("Gemm", {"alpha": 0.5, "beta": 2.0, "transA": 1}, ("gb", "gc"), (4, 3)),
        ("ReduceMean", {"keepdims": 0}, ("axes",), (2, 3, 4)),
        ("CumSum", {"exclusive": 1, "reverse": 1}, ("axis",), (2, 5)),
        ("TopK", {"axis": -1}, ("k",), (2, 6)),
        ("Split", {"axis": 1, "num_outputs": 3}, (), (2, 7)),
    ],
)
def test_ops_match_onnxruntime(op, attrs, extra, in_shape):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    c = in_shape[1] if len(in_shape) > 1 else 1
    inits = {
        "scales": np.array([1, 1, 2, 1.5], np.float32),
        "scales15": np.array([1, 1, 0.5, 1.5], np.float32),
        "w": rng.standard_normal((3, c, 3, 3)).astype(np.float32),
        "wt": rng.standard_normal((c, 3, 3, 3)).astype(np.float32),
        "gamma": rng.standard_normal(in_shape[-1]).astype(np.float32),
        "beta": rng.standard_normal(in_shape[-1]).astype(np.float32),
        "starts": np.array([-1, 1], np.int64),
        "ends": np.array([-100, 5], np.int64),
        "axes": np.array([0, 1], np.int64) if op == "Slice" else np.array([1], np.int64),
        "steps": np.array([-2, 2], np.int64),
        "pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64),
        "gb": rng.standard_normal((4, 5)).astype(np.float32),
        "gc": rng.standard_normal(5).astype(np.float32),
        "axis": np.array(1, np.int64),
        "k": np.array([3], np.int64),
    }
    ins = ["x", *extra]
    n_out = {"TopK": 2, "Split": 3}.get(op, 1)
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, ins, outs, **attrs)
    initializers = [numpy_helper.from_array(inits[n], n) for n in extra if n]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))
    ys = [
        helper.make_tensor_value_info(
            o, TensorProto.INT64 if (op, i) == ("TopK", 1) else TensorProto.FLOAT, None
        )
        for i, o in enumerate(outs)
    ]
    model = _model([node], [x], ys, initializers, opset=18)
    feed = rng.standard_normal(in_shape).astype(np.float32)
    got, ref = _run_both(model, {"x": feed})
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_converter_fp16_compute_dtype():
    info_model = models.build_model("mlp")
    module = convert(info_model).eval().set_compute_dtype(torch.float16)
    x = torch.randn(2, 256)
    with torch.inference_mode():
        (y,) = module(x)
    assert y.dtype == torch.float32  # cast back to the declared output type
    assert {b.dtype for k, b in module.named_buffers() if k != "_anchor"} == {torch.float16}


def test_constants_are_folded():
    """Weights made by ConstantOfShape (as in light_resnet50) are folded at conversion; what
    depends on the input still runs."""
    from onnx import TensorProto, helper, numpy_helper

    shape = numpy_helper.from_array(np.array([4, 4], np.int64), "wshape")
    m = _model(
        [
            helper.make_node(
                "ConstantOfShape",
                ["wshape"],
                ["w"],
                value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5]),
            ),
            helper.make_node("MatMul", ["x", "w"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [shape],
    )
    module = convert(m)
    assert module.op_counts == {"MatMul": 1}
    x = np.ones((2, 4), np.float32)
    got, ref = _run_both(m, {"x": x})
    np.testing.assert_allclose(got[0], ref[0])


def test_importing_the_converter_imports_no_torch(engines_loaded_by):
    modules = ["perflab.backends.onnx_torch", "perflab.backends.torch"]
    assert engines_loaded_by(modules, ["torch"]) == []


# ------------------------------------------------------------------------- on a GPU


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_cuda_times_stages_on_a_gpu(gpu, set_up, make_config, stage_counts, precision):
    reason = unavailable_reason("torch-cuda")
    if reason:
        pytest.skip(reason)
    backend, info, pipeline, _ = set_up(
        make_config("resnet18", "torch-cuda", precision, batch_size=2)
    )
    rec = Recorder(2)
    x = pipeline.preprocess(pipeline.make_inputs())
    for _ in range(5):
        out = backend.run(x, rec)
        rec.next_iteration()
    counts = stage_counts(rec)
    assert counts["h2d"] == counts["compute"] == counts["d2h"] == counts["enqueue"] == 5
    t = rec.table("r").to_pandas()
    dev = t.dropna(subset=["device_ns"])
    assert set(dev["stage"].astype(str)) == {"h2d", "compute", "d2h"}
    assert (dev["device_ns"] > 0).all() and (dev["host_ns"] >= dev["device_ns"]).all()
    _, _, cos = agreement(out, reference_outputs(info.path, x))
    assert cos > (0.99999 if precision == "fp32" else 0.999)
    backend.measure_begin()
    backend.measure_end()
    facts = backend.facts()
    assert facts["device"] == "cuda:0" and facts["precision_effective"] == precision
    tables = backend.tables()
    if "telemetry" in tables:
        assert tables["telemetry"]["sm_clock_mhz"].notna().any()


@pytest.mark.gpu
def test_torch_cuda_throughput_on_a_gpu(gpu, resolved):
    reason = unavailable_reason("torch-cuda")
    if reason:
        pytest.skip(reason)
    config = RunConfig(
        study="t",
        model="resnet18",
        pipeline="raw",
        backend="torch-cuda",
        precision="fp16",
        batch_size=2,
        mode="throughput",
        inflight=2,
    )
    info = resolved("resnet18", 2)
    pipeline = pipelines.create("raw", info.inputs, batch_size=2)
    backend = create(config)
    backend.setup(info, pipeline, SetupTimer())
    rec = Recorder(2)
    x = pipeline.preprocess(pipeline.make_inputs())
    pending = []
    for _ in range(8):
        pending.append(backend.submit(x, rec))
        rec.next_iteration()
        if len(pending) >= 2:
            backend.wait(pending.pop(0), rec)
    while pending:
        backend.wait(pending.pop(0), rec)
    t = rec.table("r").to_pandas()
    assert (t["stage"].astype(str) == "compute").sum() == 8
    backend.close()


def test_zoo_models_resolve_here():
    """The cache the fixtures use is per test session (tests/conftest.py)."""
    assert Path(models.cache_root()).name
