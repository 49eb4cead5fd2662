"""ONNX Runtime backends: options, the CPU run, precision audit, fallback detection, profiling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fakes import COMPUTE_MS, D2H_MS, H2D_MS, FakeStream, fake_cupy
from perflab.backends.base import create
from perflab.backends.ort import (
    OPTIONS,
    OrtBackend,
    _check_providers,
    node_precision,
    parse_options,
)
from perflab.backends.registry import unavailable_reason
from perflab.errors import BackendUnavailable, SpecError, Unsupported
from perflab.reference import reference_outputs

ort = pytest.importorskip("onnxruntime")

LAYER_COLUMNS = ["layer", "op_type", "provider", "precision", "count", "total_ms", "median_ms"]


# ----------------------------------------------------------------------------- options


def test_options_map_onto_session_options(make_config):
    config = make_config(
        "mlp",
        "ort-cpu",
        threads=2,
        inter_threads=3,
        graph_optimization="basic",
        execution_mode="parallel",
    )
    so = OrtBackend(config)._session_options(ort)
    assert so.intra_op_num_threads == 2
    assert so.inter_op_num_threads == 3
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert so.execution_mode == ort.ExecutionMode.ORT_PARALLEL


def test_default_options_leave_ort_defaults(make_config):
    so = OrtBackend(make_config("mlp", "ort-cpu"))._session_options(ort)
    assert so.intra_op_num_threads == 0  # ORT's own choice
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert so.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL


def test_unknown_option_names_the_valid_ones(make_config):
    with pytest.raises(SpecError, match="unknown option 'thread'") as err:
        OrtBackend(make_config("mlp", "ort-cpu", thread=2))
    for name in OPTIONS:
        assert name in str(err.value)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"threads": -1}, "'threads'"),
        ({"threads": True}, "'threads'"),
        ({"graph_optimization": "max"}, "disable, basic, extended, layout, all"),
        ({"execution_mode": "async"}, "sequential, parallel"),
        ({"profile": "yes"}, "true or false"),
        ({"cuda.enable_cuda_graph": 1}, "apply to ort-cuda and ort-trt"),
        ({"device_id": 1}, "applies to ort-cuda and ort-trt"),
    ],
)
def test_bad_option_values_are_spec_errors(make_config, options, match):
    with pytest.raises(SpecError, match=match):
        OrtBackend(make_config("mlp", "ort-cpu", **options))


def test_gpu_provider_options_pass_through():
    opts = parse_options(
        "ort-trt",
        {
            "cuda.cudnn_conv_algo_search": "HEURISTIC",
            "trt.fp16_enable": True,
            "trt.trt_engine_cache_enable": True,
            "trt.engine_cache_path": "/tmp/engines",
            "trt.timing_cache_enable": True,
            "device_id": 1,
        },
    )
    assert opts.cuda == {"cudnn_conv_algo_search": "HEURISTIC"}
    assert opts.trt == {
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": "/tmp/engines",
        "trt_timing_cache_enable": True,
    }
    assert opts.device_id == 1
    assert parse_options("ort-cuda", {"cuda.enable_cuda_graph": 1}).cuda == {"enable_cuda_graph": 1}


@pytest.mark.parametrize(
    ("backend", "options", "match"),
    [
        ("ort-cuda", {"cuda.cudnn_algo": "x"}, "unknown CUDA provider option 'cuda.cudnn_algo'"),
        ("ort-cuda", {"trt.fp16_enable": True}, "applies to ort-trt only"),
        ("ort-trt", {"trt.fp61_enable": True}, "unknown TensorRT provider option"),
        ("ort-cuda", {"cuda.user_compute_stream": "1"}, "set by perflab"),
        ("ort-trt", {"trt.device_id": 1}, "set by perflab"),
    ],
)
def test_bad_provider_options(backend, options, match):
    with pytest.raises(SpecError, match=match):
        parse_options(backend, options)


# --------------------------------------------------------------------------- precision


def test_bf16_on_ort_cpu_is_unsupported_with_the_reason(make_config):
    with pytest.raises(Unsupported, match="no bf16 kernels"):
        OrtBackend(make_config("mlp", "ort-cpu", "bf16"))


@pytest.mark.parametrize("backend", ["ort-cpu", "ort-cuda"])
def test_best_is_unsupported_off_tensorrt(make_config, backend):
    with pytest.raises(Unsupported, match="no 'engine picks the precision' mode"):
        OrtBackend(make_config("mlp", backend, "best"))


def test_trt_flag_contradicting_precision_is_refused(make_config):
    with pytest.raises(SpecError, match="contradicts precision fp32"):
        OrtBackend(make_config("mlp", "ort-trt", "fp32", **{"trt.fp16_enable": True}))
    # The flag the precision sets anyway is fine.
    OrtBackend(make_config("mlp", "ort-trt", "fp16", **{"trt.fp16_enable": True}))


def test_node_precision_reads_op_and_input_types():
    assert node_precision("Conv", ("float", "float", "float")) == "fp32"
    assert node_precision("Conv", ("float16", "float16")) == "fp16"
    assert node_precision("QLinearConv", ("uint8", "float", "uint8", "float", "int8")) == "int8"
    assert node_precision("MatMulInteger", ("uint8", "int8")) == "int8"
    assert node_precision("Relu", ("float",)) is None


def test_int8_runs_quantized_kernels(set_up, make_config, run_iterations):
    backend, *_ = set_up(
        make_config("mobilenetv2", "ort-cpu", "int8", threads=1, calibration_batches=1)
    )
    facts = backend.facts()
    assert facts["precision_effective"] == "int8"
    meta = facts["meta"]
    assert meta["conversion"] == "int8-static-qdq"
    assert set(meta["heavy_ops_per_precision"]) == {"int8"}
    assert "QLinearConv" in meta["op_types"]


def test_fp32_model_reports_fp32(set_up, make_config):
    backend, *_ = set_up(make_config("mobilenetv2", "ort-cpu", threads=1))
    facts = backend.facts()
    assert facts["precision_effective"] == "fp32"
    assert facts["meta"]["heavy_ops_per_precision"] == {"fp32": 53}
    assert "conversion" not in facts["meta"]


def test_unfused_qdq_is_caught_as_fake_quantization(set_up, make_config):
    # With graph optimizations off, QDQ pairs stay unfused: Conv runs in fp32 between them.
    config = make_config(
        "mlp", "ort-cpu", "int8", graph_optimization="disable", calibration_batches=1
    )
    with pytest.raises(Unsupported, match="fake quantization"):
        set_up(config)
    loose = make_config(
        "mlp",
        "ort-cpu",
        "int8",
        graph_optimization="disable",
        calibration_batches=1,
        strict_precision=False,
    )
    backend, *_ = set_up(loose)
    assert backend.facts()["precision_effective"] == "fp32"
    assert backend.facts()["meta"]["quantize_nodes"] > 0


def test_fp16_on_x86_cpu_falls_back_and_is_refused(set_up, make_config):
    # ORT's CPU provider has no fp16 Conv/Gemm on x86: it wraps fp32 kernels in Cast nodes.
    with pytest.raises(Unsupported, match="fp16.*inserted Cast nodes"):
        set_up(make_config("mlp", "ort-cpu", "fp16"))


# --------------------------------------------------------------------------- running


@pytest.mark.parametrize("model", ["mlp", "mobilenetv2"])
def test_cpu_run_records_compute_only(set_up, make_config, run_iterations, stage_counts, model):
    backend, info, pipeline, timer = set_up(make_config(model, "ort-cpu", batch_size=2, threads=1))
    assert timer.ms["load"] > 0
    assert "build" not in timer.ms  # fp32: nothing to convert
    rec, out = run_iterations(backend, pipeline, 3, 2)
    assert stage_counts(rec) == {"compute": 3}
    assert (rec.table("r").to_pandas()["host_ns"] > 0).all()
    assert set(out) == {t.name for t in info.outputs}
    for t in info.outputs:
        assert out[t.name].shape == tuple(t.shape)
    facts = backend.facts()
    assert facts["device"] == "cpu"
    assert facts["meta"]["providers"] == ["CPUExecutionProvider"]
    assert facts["meta"]["nodes_per_provider"].keys() == {"CPUExecutionProvider"}
    assert facts["meta"]["threads"] == 1


def test_int8_conversion_is_timed_as_build(set_up, make_config):
    _, _, _, timer = set_up(make_config("mlp", "ort-cpu", "int8", calibration_batches=1))
    assert timer.ms["build"] > 0 and timer.ms["load"] > 0


def test_reference_outputs_match_the_fp32_run(set_up, make_config, resolved):
    backend, info, pipeline, _ = set_up(make_config("mlp", "ort-cpu", batch_size=2))
    inputs = pipeline.calibration_batches(1)[0]
    from perflab.timing import Recorder

    got = backend.run(inputs, Recorder(2))
    ref = reference_outputs(info.path, inputs)
    assert ref.keys() == got.keys()
    for name in ref:
        assert ref[name].dtype == np.float32
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-5)


def test_profiled_pass_is_kept_apart_from_the_timed_runs(
    set_up, make_config, run_iterations, stage_counts
):
    backend, _, pipeline, _ = set_up(
        make_config("mlp", "ort-cpu", profile=True, profile_iterations=4)
    )
    rec, _ = run_iterations(backend, pipeline, 2, 1)
    backend.measure_end()
    layers = backend.tables()["layers"]
    assert stage_counts(rec) == {"compute": 2}  # the profiled runs left no samples
    assert list(layers.columns) == LAYER_COLUMNS
    nodes = layers[~layers["layer"].str.startswith("op:")]
    assert len(nodes) > 0
    assert (nodes["count"] == 4).all()  # warmup runs of the profiled session are left out
    assert (nodes["provider"] == "CPUExecutionProvider").all()
    assert (layers["total_ms"] >= layers["median_ms"]).all()
    assert backend.facts()["meta"]["profile_iterations"] == 4


def test_no_layers_without_profile(set_up, make_config):
    backend, *_ = set_up(make_config("mlp", "ort-cpu", engine_timer=False))
    assert backend.tables() == {}


def test_engine_timer_stores_model_run_beside_compute(
    set_up, make_config, run_iterations, stage_counts
):
    backend, _, pipeline, _ = set_up(make_config("mlp", "ort-cpu", profile_iterations=6))
    rec, _ = run_iterations(backend, pipeline, 3, 1)
    backend.measure_end()
    tables = backend.tables()
    assert stage_counts(rec) == {"compute": 3}  # the profiled pass left no samples
    assert "layers" not in tables  # profile is off: the engine timer alone
    stats = tables["reported"].set_index("statistic")["value_ms"]
    assert set(tables["reported"]["stage"]) == {"model_run"}
    assert stats["count"] == 6  # the profiled session's warmup runs are left out
    assert 0 < stats["min"] <= stats["median"] <= stats["max"]


# ------------------------------------------------------------------- provider fallback


@pytest.mark.parametrize("backend", ["ort-cuda", "ort-trt"])
def test_gpu_backends_unavailable_here_say_why(make_config, backend):
    if unavailable_reason(backend) is None:
        pytest.skip(f"{backend} is available on this machine")
    with pytest.raises(BackendUnavailable, match=backend):
        create(make_config("mlp", backend))


def test_check_providers_accepts_what_was_asked():
    _check_providers(["CUDAExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"])
    _check_providers(["CPUExecutionProvider"], ["CPUExecutionProvider"])


def test_check_providers_names_the_provider_that_fell_back():
    with pytest.raises(
        BackendUnavailable,
        match="did not load TensorrtExecutionProvider and fell back to CUDAExecutionProvider",
    ):
        _check_providers(
            ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
            "ort-trt",
        )


def test_silent_cpu_fallback_of_a_real_session_is_detected(resolved):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has the CUDA provider; no fallback to provoke")
    path = str(resolved("mlp").path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ORT warns that the provider is not in this build
        sess = ort.InferenceSession(
            path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
        )
    assert sess.get_providers() == ["CPUExecutionProvider"]  # the silent fallback itself
    with pytest.raises(BackendUnavailable, match="did not load CUDAExecutionProvider"):
        _check_providers(["CUDAExecutionProvider"], sess.get_providers(), "ort-cuda")


def test_module_import_leaves_engines_out(engines_loaded_by):
    modules = ["perflab.backends.ort", "perflab.backends.openvino"]
    assert engines_loaded_by(modules, ["onnxruntime", "openvino", "cupy"]) == []


# ------------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["ort-cuda", "ort-trt"])
def test_gpu_run_times_h2d_compute_d2h(
    gpu, set_up, make_config, run_iterations, stage_counts, backend
):
    reason = unavailable_reason(backend)
    if reason:
        pytest.skip(reason)
    b, info, pipeline, _ = set_up(make_config("mobilenetv2", backend, batch_size=2))
    rec, out = run_iterations(b, pipeline, 3, 2)
    assert stage_counts(rec) == {"h2d": 3, "compute": 3, "d2h": 3}
    samples = rec.table("r").to_pandas()
    assert samples["device_ns"].notna().all()
    device_ms = samples.groupby(samples["stage"].astype(str))["device_ns"].max() / 1e6
    assert device_ms.to_dict() == {"compute": COMPUTE_MS, "d2h": D2H_MS, "h2d": H2D_MS}
    facts = b.facts()
    assert facts["device"] == "cuda:0"
    assert facts["meta"]["providers"][0] == b.provider
    ref = reference_outputs(info.path, pipeline.preprocess(pipeline.make_inputs()))
    for name in ref:
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-2, atol=1e-2)


# ------------------------------------------------- GPU wiring, on a fake CuPy and session
# No GPU here: the shared fake CuPy and this fake ORT CUDA session stand in, so that the IOBinding
# calls, the stage sequence and the data path of the GPU backends run in CI. Whether ORT really
# computes on the given stream is for the @gpu test above.


class _FakeBinding:
    def __init__(self):
        self.inputs, self.outputs = {}, {}

    def bind_input(self, name, device, device_id, dtype, shape, ptr):
        self.inputs[name] = (device, device_id, dtype, tuple(shape), ptr)

    def bind_output(self, name, device, device_id, dtype=None, shape=None, ptr=None):
        self.outputs[name] = (device, device_id, dtype, shape, ptr)


class _FakeCudaSession:
    """Computes y = 2 * x on the bound device buffers, as a CUDA session would on the GPU."""

    def __init__(self, buffers, stream):
        self.buffers = buffers  # ptr -> FakeDeviceArray
        self.stream = stream  # the run's stream: its device clock advances by COMPUTE_MS
        self.runs = 0

    def io_binding(self):
        return _FakeBinding()

    def get_outputs(self):
        return [type("O", (), {"name": "y", "type": "tensor(float)"})()]

    def run_with_iobinding(self, binding, run_options=None):
        x = self.buffers[binding.inputs["x"][4]]
        y = self.buffers[binding.outputs["y"][4]]
        y.a[...] = 2 * x.a
        self.stream.t_ms += COMPUTE_MS
        self.runs += 1


def test_gpu_stage_sequence_and_binding_on_fakes(monkeypatch, make_config, stage_counts):
    from perflab import cuda
    from perflab.models import TensorSpec
    from perflab.timing import Recorder

    made = []
    real_device_io = cuda.DeviceIO
    cp = fake_cupy()

    def fake_io(inputs, outputs, device_id=0, *, stream=None):
        io = real_device_io(inputs, outputs, device_id, stream=stream, cupy_module=cp)
        made.append(io)
        return io

    monkeypatch.setattr(cuda, "DeviceIO", fake_io)
    backend = OrtBackend(make_config("mlp", "ort-cuda", batch_size=2, device_id=0))
    backend._stream = FakeStream()
    model = type("M", (), {"outputs": (TensorSpec("y", (2, 3), "float32"),)})()
    backend._output_names = ["y"]
    # Binding needs the buffers' addresses, so the fake session sees them through the DeviceIO.
    sess = _FakeCudaSession({}, backend._stream)
    backend._bind_device_buffers(sess, model, [("x", (2, 3), np.dtype(np.float32))])
    io = made[0]
    sess.buffers.update(
        {a.data.ptr: a for a in (*io.device_inputs.values(), *io.device_outputs.values())}
    )
    assert backend._binding.inputs["x"][:4] == ("cuda", 0, np.float32, (2, 3))
    assert backend._binding.outputs["y"][:4] == ("cuda", 0, np.float32, (2, 3))

    rec = Recorder(2)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for _ in range(2):
        out = backend.run({"x": x}, rec)
        rec.next_iteration()
    np.testing.assert_array_equal(out["y"], 2 * x)
    assert sess.runs == 2
    assert stage_counts(rec) == {"h2d": 2, "compute": 2, "d2h": 2}
    samples = rec.table("r").to_pandas()
    assert samples["device_ns"].notna().all()
    device_ms = samples.groupby(samples["stage"].astype(str))["device_ns"].max() / 1e6
    assert device_ms.to_dict() == {"compute": COMPUTE_MS, "d2h": D2H_MS, "h2d": H2D_MS}
