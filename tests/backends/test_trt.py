"""Native TensorRT backend: the pure parts (options, precision plans per version, profile
shapes, cache keys, inspector parsing), the I/O API dispatch, and the whole backend driven
against a fake `tensorrt` and a fake `cupy` (so every Python path runs without a GPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fakes import (
    FLAGS_8,
    FLAGS_10,
    FLAGS_11,
    NET_8,
    NET_10,
    NET_11,
    fake_cupy,
    fake_tensorrt,
    inspector_layer,
)
from perflab import cuda, models, pipelines
from perflab.backends.trt import (
    BindingApi,
    PrecisionPlan,
    TensorApi,
    TensorRTBackend,
    engine_cache_key,
    io_api,
    layer_precision_counts,
    layer_rows,
    parse_engine_layers,
    parse_options,
    precision_plan,
    profile_shapes,
    profiles_needed,
    timing_cache_name,
    trt_version,
)
from perflab.errors import BackendUnavailable, ModelError, SpecError, Unsupported
from perflab.models import TensorSpec
from perflab.precisions import precision_effective
from perflab.spec import RunConfig
from perflab.timing import Recorder, SetupTimer

REALDATA_GRAPH = (
    Path(__file__).resolve().parents[2]
    / ".."
    / "shared"
    / "realdata"
    / "trtexec"
    / "json_exports"
    / "trex_mobilenet.qat.onnx.engine.graph.json"
).resolve()

# ---------------------------------------------------------------------------- options


def test_options_defaults_and_validation():
    o = parse_options({}, batch_size=4)
    assert (o.typing, o.streams, o.cuda_graph, o.tf32, o.cache) == ("auto", 2, False, True, True)
    assert parse_options({"max_batch": 8, "streams": 3}, 4).max_batch == 8
    with pytest.raises(SpecError, match="unknown option 'threads'; valid: device_id"):
        parse_options({"threads": 2})
    with pytest.raises(SpecError, match="smaller than the batch size 4"):
        parse_options({"max_batch": 2}, 4)
    with pytest.raises(SpecError, match="'typing': 'loose' is not one of auto, strong, weak"):
        parse_options({"typing": "loose"})
    with pytest.raises(SpecError, match="'streams': 0 must be an integer >= 1"):
        parse_options({"streams": 0})
    with pytest.raises(SpecError, match="builder_optimization_level"):
        parse_options({"builder_optimization_level": 6})
    with pytest.raises(SpecError, match="'cuda_graph': 'yes' must be true or false"):
        parse_options({"cuda_graph": "yes"})


def test_trt_version_parsing():
    assert trt_version(SimpleNamespace(__version__="10.16.1.11")) == (10, 16, 1, 11)
    assert trt_version(SimpleNamespace(__version__="8.6.1.post1")) == (8, 6, 1)
    assert trt_version(SimpleNamespace(__version__="11.0.0rc1")) == (11, 0, 0)
    assert trt_version(SimpleNamespace()) == (0,)


# ---------------------------------------------------------------------------- precision plans


@pytest.mark.parametrize(
    ("version", "flags", "net", "precision", "typing", "expected"),
    [
        # TensorRT 8: weak typing only.
        ((8, 6), FLAGS_8, NET_8, "fp32", "auto", (False, (), "fp32")),
        ((8, 6), FLAGS_8, NET_8, "fp16", "auto", (False, ("FP16",), "fp32")),
        ((8, 6), FLAGS_8, NET_8, "int8", "auto", (False, ("INT8",), "int8")),
        ((8, 6), FLAGS_8, NET_8, "best", "auto", (False, ("FP16", "INT8"), "int8")),
        # TensorRT 10 before 10.12: flags still current.
        ((10, 8), FLAGS_10, NET_10, "fp16", "auto", (False, ("FP16",), "fp32")),
        ((10, 8), FLAGS_10, NET_10, "bf16", "auto", (False, ("BF16",), "fp32")),
        ((10, 8), FLAGS_10, NET_10, "fp16", "strong", (True, (), "fp16")),
        # 10.12+: flags deprecated, strong typing preferred where it can express the precision.
        ((10, 12), FLAGS_10, NET_10, "fp32", "auto", (True, (), "fp32")),
        ((10, 16), FLAGS_10, NET_10, "fp16", "auto", (True, (), "fp16")),
        ((10, 16), FLAGS_10, NET_10, "int8", "auto", (True, (), "int8")),
        ((10, 16), FLAGS_10, NET_10, "bf16", "auto", (False, ("BF16",), "fp32")),
        ((10, 16), FLAGS_10, NET_10, "best", "auto", (False, ("FP16", "INT8"), "int8")),
        ((10, 16), FLAGS_10, NET_10, "fp16", "weak", (False, ("FP16",), "fp32")),
        # TensorRT 11: strong typing only.
        ((11, 0), FLAGS_11, NET_11, "fp16", "auto", (True, (), "fp16")),
        ((11, 0), FLAGS_11, NET_11, "int8", "auto", (True, (), "int8")),
    ],
)
def test_precision_plan(version, flags, net, precision, typing, expected):
    plan = precision_plan(precision, version, flags, net, typing)
    assert (plan.strongly_typed, plan.builder_flags, plan.model_precision) == expected
    assert plan.typing == ("strong" if expected[0] else "weak")


@pytest.mark.parametrize(
    ("version", "flags", "net", "precision", "typing", "message"),
    [
        ((8, 6), FLAGS_8, NET_8, "fp16", "strong", "no strongly typed networks"),
        ((8, 6), FLAGS_8, NET_8, "bf16", "auto", "no BuilderFlag BF16"),
        ((11, 0), FLAGS_11, NET_11, "fp16", "weak", "no BuilderFlag FP16"),
        ((11, 0), FLAGS_11, NET_11, "bf16", "auto", "bf16 ONNX model"),
        ((11, 0), FLAGS_11, NET_11, "best", "auto", "cannot let TensorRT pick"),
        ((10, 16), FLAGS_10, NET_10, "best", "strong", "cannot let TensorRT pick"),
    ],
)
def test_precision_plan_unsupported(version, flags, net, precision, typing, message):
    with pytest.raises(Unsupported, match=message):
        precision_plan(precision, version, flags, net, typing)


def test_profiles_needed_per_version():
    assert profiles_needed((10, 3), 3, dynamic=True) == 1  # shared by all contexts
    assert profiles_needed((8, 6), 3, dynamic=True) == 3  # one per context
    assert profiles_needed((8, 6), 1, dynamic=True) == 1
    assert profiles_needed((10, 3), 3, dynamic=False) == 0


# ---------------------------------------------------------------------------- profile shapes


def test_profile_shapes_batch_dim():
    inputs = [TensorSpec("input", (8, 3, 224, 224), "float32")]
    shapes = profile_shapes(inputs, 8, 32, {"input": (-1, 3, 224, 224)})
    assert shapes == {"input": ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))}
    # max_batch defaults to the batch size
    assert profile_shapes(inputs, 8)["input"][2] == (8, 3, 224, 224)


def test_profile_shapes_other_dynamic_dims_are_pinned():
    inputs = [
        TensorSpec("input_ids", (4, 128), "int64"),
        TensorSpec("attention_mask", (4, 128), "int64"),
    ]
    net = {"input_ids": (-1, -1), "attention_mask": (-1, -1)}
    shapes = profile_shapes(inputs, 4, 16, net)
    assert shapes["input_ids"] == ((1, 128), (4, 128), (16, 128))
    assert shapes["attention_mask"] == shapes["input_ids"]


def test_profile_shapes_static_inputs_need_no_profile():
    inputs = [TensorSpec("Input3", (1, 1, 28, 28), "float32")]
    assert profile_shapes(inputs, 1, None, {"Input3": (1, 1, 28, 28)}) == {}
    with pytest.raises(ModelError, match="static shape"):
        profile_shapes(
            [TensorSpec("Input3", (4, 1, 28, 28), "float32")], 4, None, {"Input3": (1, 1, 28, 28)}
        )


def test_profile_shapes_errors():
    inputs = [TensorSpec("x", (2, 3), "float32")]
    with pytest.raises(SpecError, match="smaller than the batch size"):
        profile_shapes(inputs, 2, 1)
    with pytest.raises(ModelError, match="not an input of the TensorRT network"):
        profile_shapes(inputs, 2, None, {"y": (-1, 3)})
    with pytest.raises(ModelError, match="rank"):
        profile_shapes(inputs, 2, None, {"x": (-1, 3, 4)})
    with pytest.raises(ModelError, match="dim 1 is fixed at 5"):
        profile_shapes(inputs, 2, None, {"x": (-1, 5)})


# ---------------------------------------------------------------------------- cache keys


def _key(**changes):
    base = {
        "model_sha256": "ab" * 32,
        "plan": PrecisionPlan("fp16", True, (), "fp16"),
        "inputs": [TensorSpec("input", (8, 3, 224, 224), "float32")],
        "batch_size": 8,
        "max_batch": None,
        "n_profiles": 1,
        "trt_version": "10.16.1.11",
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "compute_capability": "9.0",
        "build_options": {"tf32": True, "workspace_mb": 0},
    }
    base.update(changes)
    return engine_cache_key(**base)


def test_engine_cache_key_is_stable_and_covers_every_input():
    key = _key()
    assert key == _key() and len(key) == 32
    assert key == _key(max_batch=8)  # max_batch defaults to the batch size
    assert key == _key(build_options={"workspace_mb": 0, "tf32": True})  # order-free
    variants = [
        _key(model_sha256="cd" * 32),
        _key(plan=PrecisionPlan("fp16", False, ("FP16",), "fp32")),
        _key(plan=PrecisionPlan("int8", True, (), "int8")),
        _key(inputs=[TensorSpec("input", (8, 3, 256, 256), "float32")]),
        _key(batch_size=4),
        _key(max_batch=32),
        _key(n_profiles=3),
        _key(trt_version="10.13.2.6"),
        _key(gpu_name="NVIDIA GeForce RTX 4090"),
        _key(compute_capability="8.9"),
        _key(build_options={"tf32": False, "workspace_mb": 0}),
    ]
    assert len({key, *variants}) == len(variants) + 1


def test_timing_cache_name():
    assert (
        timing_cache_name("10.16.1.11", "NVIDIA H100 80GB HBM3", "9.0")
        == "timing-trt10.16.1.11-nvidia-h100-80gb-hbm3-sm90.cache"
    )


# ---------------------------------------------------------------------------- I/O API dispatch


def test_io_api_by_version():
    class Ctx10:
        def execute_async_v3(self, stream_handle): ...
        def set_tensor_address(self, name, memory): ...
        def execute_v2(self, bindings): ...

    class Ctx8:
        def execute_async_v2(self, bindings, stream_handle): ...
        def set_binding_shape(self, index, shape): ...

    class Ctx7:
        def execute(self, batch_size, bindings): ...

    assert io_api(SimpleNamespace(IExecutionContext=Ctx10)) is TensorApi
    assert io_api(SimpleNamespace(IExecutionContext=Ctx8)) is BindingApi
    with pytest.raises(BackendUnavailable, match="neither execute_async_v3 nor execute_async_v2"):
        io_api(SimpleNamespace(IExecutionContext=Ctx7, __version__="7.2"))


def test_binding_api_offsets_per_profile():
    calls = []

    class Engine:
        num_bindings = 4  # 2 tensors x 2 profiles
        num_optimization_profiles = 2

        def get_binding_name(self, i):
            return ["x", "y"][i]

        def binding_is_input(self, i):
            return i == 0

        def get_binding_dtype(self, i):
            return "float32"

    class Ctx:
        def set_optimization_profile_async(self, profile, stream):
            calls.append(("profile", profile, stream))

        def set_binding_shape(self, i, shape):
            calls.append(("shape", i, shape))
            return True

        def get_binding_shape(self, i):
            return (2, 3)

        def execute_async_v2(self, bindings, stream_handle):
            calls.append(("exec", list(bindings), stream_handle))
            return True

    api = BindingApi(SimpleNamespace(nptype=lambda t: np.dtype(t).type), Engine())
    assert (api.inputs, api.outputs) == (["x"], ["y"])
    ctx = Ctx()
    state = api.new_slot(ctx, 1, 99)
    api.set_input_shape(ctx, state, "x", (2, 3))
    api.bind(ctx, state, "x", 0x100)
    api.bind(ctx, state, "y", 0x200)
    api.execute(ctx, state, 99)
    assert calls == [("profile", 1, 99), ("shape", 2, (2, 3)), ("exec", [0, 0, 0x100, 0x200], 99)]
    assert api.dtype("y") == np.float32


# ---------------------------------------------------------------------------- inspector


def test_parse_engine_layers_trt10_detailed():
    info = json.dumps(
        {
            "Layers": [
                inspector_layer("conv1 + relu", "CaskConvolution", "Row major linear FP16 format"),
                inspector_layer(
                    "Reformatting CopyNode",
                    "Reformat",
                    "Row major linear FP32",
                    "Row major linear FP16 format",
                ),
                inspector_layer(
                    "fc", "CaskGemm", "Thirty-two wide channel vectorized row major Int8 format."
                ),
                inspector_layer("softmax", "Softmax", "Float"),
                inspector_layer("pool", "CaskPooling", "Row major linear FP16 format"),
            ],
            "Bindings": ["input", "output"],
        }
    )
    layers = parse_engine_layers(info)
    assert [(r["layer"], r["op_type"], r["precision"]) for r in layers] == [
        ("conv1 + relu", "CaskConvolution", "fp16"),
        ("Reformatting CopyNode", "Reformat", "fp32"),
        ("fc", "CaskGemm", "int8"),
        ("softmax", "Softmax", "fp32"),
        ("pool", "CaskPooling", "fp16"),
    ]
    # Reformat is bookkeeping; fp16 has 2 of 4 compute layers: short of 90%, so mixed
    counts = layer_precision_counts(layers)
    assert counts == {"fp16": 2, "fp32": 1, "int8": 1}
    assert precision_effective(counts) == "mixed"
    assert precision_effective(layer_precision_counts(layers[:1])) == "fp16"


def test_parse_engine_layers_names_only_and_trt11():
    names_only = parse_engine_layers({"Layers": ["conv1", "fc"], "Bindings": ["x", "y"]})
    assert names_only == [
        {"layer": "conv1", "op_type": "", "precision": ""},
        {"layer": "fc", "op_type": "", "precision": ""},
    ]
    assert layer_precision_counts(names_only) == {}
    trt11 = parse_engine_layers(
        {
            "Layers": [inspector_layer("conv", "Convolution", "Row major FP16")],
            "I/O Tensors": [{"Name": "x", "IOMode": "Input"}],
        }
    )
    assert trt11[0]["precision"] == "fp16"


def test_layer_rows_merge_inspector_and_profiler():
    layers = [
        {"layer": "conv", "op_type": "CaskConvolution", "precision": "fp16"},
        {"layer": "fc", "op_type": "CaskGemm", "precision": "fp16"},
    ]
    rows = layer_rows(layers, {"conv": [0.5, 0.25, 0.75], "Reformat 1": [0.1]})
    by = {r["layer"]: r for r in rows}
    assert by["conv"]["count"] == 3 and by["conv"]["total_ms"] == pytest.approx(1.5)
    assert by["conv"]["median_ms"] == pytest.approx(0.5)
    assert by["fc"]["count"] == 0 and np.isnan(by["fc"]["total_ms"])
    assert by["Reformat 1"]["provider"] == "tensorrt" and by["Reformat 1"]["count"] == 1
    from perflab import store

    assert set(rows[0]) == {n for n in store.schema("layers").names if n != "run_id"}


@pytest.mark.realdata
def test_parse_a_real_qat_engine_graph():
    """trex's mobilenet QAT engine (trtexec --exportLayerInfo, detailed): mostly int8."""
    if not REALDATA_GRAPH.exists():
        pytest.skip(f"{REALDATA_GRAPH} is absent")
    layers = parse_engine_layers(REALDATA_GRAPH.read_text())
    assert len(layers) > 20
    counts = layer_precision_counts(layers)
    eff = precision_effective(counts)
    assert counts.get("int8", 0) > 0
    assert eff in ("int8", "mixed")


# ---------------------------------------------------------------------------- the backend on fakes


@pytest.fixture
def tiny_model(tmp_path):
    """y = 2 * x with x [N, 4]: resolved for batch 2."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path / "double.onnx"
    onnx.save(m, path)
    return path


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    """Installs fake tensorrt and cupy modules; returns a function to swap the TRT fake."""
    monkeypatch.setattr(cuda, "require_gpu", lambda *a, **k: None)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())

    def install(**kwargs):
        trt = fake_tensorrt(**kwargs)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt

    install()
    return install


def _setup(model_path, tmp_path, precision="fp32", mode="latency", inflight=1, batch=2, **options):
    options.setdefault("cache_dir", str(tmp_path / "trt-cache"))
    options.setdefault("telemetry", False)
    config = RunConfig(
        study="t",
        model=str(model_path),
        pipeline="raw",
        backend="trt",
        precision=precision,
        batch_size=batch,
        mode=mode,
        inflight=inflight,
        options=tuple(sorted(options.items())),
    )
    info = models.resolve(str(model_path), batch_size=batch)
    pipe = pipelines.create("raw", info.inputs, batch_size=batch)
    backend = TensorRTBackend(config)
    timer = SetupTimer()
    backend.setup(info, pipe, timer)
    return backend, timer


def _table(rec):
    t = rec.table("r").to_pandas()
    t["stage"] = t["stage"].astype(str)
    return t


def test_fake_trt_latency_run_build_cache_and_audit(fake_gpu, tiny_model, tmp_path):
    trt = sys.modules["tensorrt"]
    backend, timer = _setup(tiny_model, tmp_path, max_batch=8)
    assert set(timer.ms) == {"build", "load"}
    assert trt.engine.plan["profiles"] == [{"x": [[1, 4], [2, 4], [8, 4]]}]
    assert trt.engine.plan["detailed"] == "DETAILED" and trt.engine.plan["strong"]
    cache = tmp_path / "trt-cache"
    assert len(list(cache.glob("*.engine"))) == 1 and len(list(cache.glob("timing-*.cache"))) == 1
    rec = Recorder(2)
    for i in range(3):
        x = np.full((2, 4), i + 1, np.float32)
        out = backend.run({"x": x}, rec)
        np.testing.assert_array_equal(out["y"], 2 * x)
        rec.next_iteration()
    t = _table(rec)
    assert t.groupby("stage").size().to_dict() == {"compute": 3, "d2h": 3, "enqueue": 3, "h2d": 3}
    dev = t.dropna(subset=["device_ns"]).groupby("stage")["device_ns"].first().to_dict()
    assert dev == {"compute": 1_500_000, "d2h": 125_000, "h2d": 250_000}
    facts = backend.facts()
    assert facts["device"] == "cuda:0" and facts["device_name"] == "Fake GPU"
    assert facts["precision_effective"] == "fp32"
    assert facts["meta"]["engine_cache"] == "miss" and facts["meta"]["typing"] == "strong"
    assert facts["meta"]["io_api"] == "v3"
    layers = backend.tables()["layers"]
    assert layers["layer"].tolist() == ["mul"] and layers["count"].tolist() == [0]
    backend.close()

    # The same config again: the engine comes from the cache, nothing is built.
    trt.log.clear()
    again, timer = _setup(tiny_model, tmp_path, max_batch=8)
    assert set(timer.ms) == {"load"} and "build" not in trt.log
    assert again.facts()["meta"]["engine_cache"] == "hit"
    again.close()


def test_fake_trt_weak_fp16_sets_the_flag_and_reads_back_fp16(fake_gpu, tiny_model, tmp_path):
    trt = fake_gpu(version="10.8.0.43")
    backend, _ = _setup(tiny_model, tmp_path, precision="fp16")
    assert trt.engine.plan["flags"] == ["FP16"] and not trt.engine.plan["strong"]
    facts = backend.facts()
    assert facts["precision_effective"] == "fp16"
    assert facts["meta"]["builder_flags"] == ["FP16"] and facts["meta"]["typing"] == "weak"
    backend.close()


def test_fake_trt_bf16_needs_ampere(monkeypatch, fake_gpu, tiny_model, tmp_path):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(cc=(7, 5)))
    with pytest.raises(Unsupported, match="bf16 needs compute capability 8.0"):
        _setup(tiny_model, tmp_path, precision="bf16")


def test_fake_trt_throughput_submit_wait(fake_gpu, tiny_model, tmp_path):
    backend, _ = _setup(tiny_model, tmp_path, mode="throughput", inflight=2, streams=2)
    assert backend.supports_throughput
    meta = backend.facts()["meta"]
    assert meta["slots"] == 3 and meta["streams"] == 2
    rec = Recorder(2)
    pending, results = [], {}
    for it in range(6):  # the runner's order: submit, then wait for the oldest at `inflight`
        pending.append((it, backend.submit({"x": np.full((2, 4), it, np.float32)}, rec)))
        rec.next_iteration()
        if len(pending) >= 2:
            i, h = pending.pop(0)
            results[i] = backend.wait(h, rec)["y"].copy()
    while pending:
        i, h = pending.pop(0)
        results[i] = backend.wait(h, rec)["y"].copy()
    for it in range(6):
        np.testing.assert_array_equal(results[it], np.full((2, 4), 2 * it))
    t = _table(rec)
    assert t.groupby("stage").size().to_dict() == {"compute": 6, "d2h": 6, "enqueue": 6, "h2d": 6}
    device_rows = t[t["stage"].isin(["h2d", "compute", "d2h"])]
    assert (device_rows["host_ns"] == device_rows["device_ns"]).all()
    assert t[t["stage"] == "enqueue"]["device_ns"].isna().all()
    backend.close()


def test_fake_trt_cuda_graph(fake_gpu, tiny_model, tmp_path):
    trt = sys.modules["tensorrt"]
    backend, timer = _setup(tiny_model, tmp_path, cuda_graph=True)
    slot = backend._slots[0]
    assert slot.graph is not None and "build" in timer.ms
    rec = Recorder(2)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    out = backend.run({"x": x}, rec)
    np.testing.assert_array_equal(out["y"], 2 * x)
    assert slot.graph.launches == 1
    ctx = trt.engine.contexts[0]
    assert ctx.executions == 2  # the warm enqueue before capture, and the one graph launch
    backend.close()


def test_fake_trt_layer_profile_pass(fake_gpu, tiny_model, tmp_path):
    backend, _ = _setup(tiny_model, tmp_path, layer_profile=True, layer_profile_iterations=4)
    backend.run({"x": np.ones((2, 4), np.float32)}, Recorder(2))
    backend.measure_begin()
    backend.measure_end()
    layers = backend.tables()["layers"].set_index("layer")
    assert layers.loc["mul", "count"] == 4
    assert layers.loc["mul", "total_ms"] == pytest.approx(2.0)
    assert layers.loc["mul", "precision"] == "fp32"
    assert layers.loc["Reformatting CopyNode for y", "count"] == 4
    notes = backend.facts()["meta"].get("notes", [])
    assert any("cudaProfilerStart" in n for n in notes)  # no CUDA profiler API here
    backend.close()


def test_fake_trt8_binding_api_with_a_profile_per_context(fake_gpu, tiny_model, tmp_path):
    trt = fake_gpu(version="8.4.3.1", v3=False, flags=FLAGS_8, net=NET_8)
    backend, _ = _setup(tiny_model, tmp_path, mode="throughput", inflight=2)
    assert backend.facts()["meta"]["io_api"] == "v2"
    assert len(trt.engine.plan["profiles"]) == 3  # one per slot before TensorRT 10
    assert [c.profile for c in trt.engine.contexts] == [0, 1, 2]
    rec = Recorder(2)
    handles = [backend.submit({"x": np.full((2, 4), k, np.float32)}, rec) for k in range(2)]
    for k, h in enumerate(handles):
        np.testing.assert_array_equal(backend.wait(h, rec)["y"], np.full((2, 4), 2 * k))
    with pytest.raises(Unsupported, match="strongly typed"):
        _setup(tiny_model, tmp_path, typing="strong")
    backend.close()


def test_fake_trt_without_nvml_notes_no_telemetry(fake_gpu, tiny_model, tmp_path):
    backend, _ = _setup(tiny_model, tmp_path, telemetry=True)
    notes = backend.facts()["meta"].get("notes", [])
    if backend._sampler is not None and backend._sampler.note:
        assert any("no GPU telemetry" in n for n in notes)
    backend.close()


# ---------------------------------------------------------------------------- registry, GPU


def test_trt_unavailable_here_says_why(make_config):
    from perflab.backends.base import create
    from perflab.backends.registry import unavailable_reason

    reason = unavailable_reason("trt")
    if reason is None:
        pytest.skip("trt is available on this machine")
    with pytest.raises(BackendUnavailable, match="trt unavailable: "):
        create(make_config("mlp", "trt"))


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_trt_on_a_gpu(gpu, set_up, make_config, run_iterations, stage_counts, precision, tmp_path):
    from perflab.backends.registry import unavailable_reason
    from perflab.reference import reference_outputs

    reason = unavailable_reason("trt")
    if reason:
        pytest.skip(reason)
    config = make_config(
        "resnet18",
        "trt",
        precision,
        batch_size=2,
        max_batch=4,
        layer_profile=True,
        cache_dir=str(tmp_path),
    )
    backend, model, pipeline, timer = set_up(config)
    assert "load" in timer.ms
    rec, out = run_iterations(backend, pipeline, 5, 2)
    counts = stage_counts(rec)
    assert counts["h2d"] == counts["compute"] == counts["d2h"] == 5
    t = rec.table("r").to_pandas()
    dev = t.dropna(subset=["device_ns"])
    assert (dev["device_ns"] > 0).all() and (dev["host_ns"] >= dev["device_ns"]).all()
    x = pipeline.preprocess(pipeline.make_inputs())
    out = backend.run(x, Recorder(2))
    ref = reference_outputs(model.path, x)
    a, b = out["logits"].ravel().astype(np.float64), ref["logits"].ravel().astype(np.float64)
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > (
        0.9999 if precision == "fp32" else 0.999
    )
    backend.measure_begin()
    backend.measure_end()
    facts = backend.facts()
    assert facts["precision_effective"] in (precision, "mixed")
    tables = backend.tables()
    assert len(tables["layers"]) > 0 and tables["layers"]["count"].max() > 0
