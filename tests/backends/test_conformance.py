"""One conformance suite for every CPU backend: setup, run, teardown, setup again in one process,
outputs against ONNX Runtime at fp32, precision read from the engine, unsupported precisions
refused, and the threads option honoured; on the zoo models and on the shared real models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perflab import models, pipelines
from perflab.backends.base import create
from perflab.backends.registry import BACKENDS, unavailable_reason
from perflab.errors import Unsupported
from perflab.reference import reference_outputs
from perflab.spec import RunConfig
from perflab.timing import Recorder, SetupTimer

REALDATA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata" / "models").resolve()
CPU_BACKENDS = [name for name, info in BACKENDS.items() if not info.gpu and info.needs_model]
ZOO = ["resnet18", "mobilenetv2", "yolo-s", "mlp"]
#: Real models: file -> input shapes for the dims they leave open.
REAL = {
    "mnist-8.onnx": None,
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": {"x": ["N", 3, 48, 192]},
    "light_resnet50.onnx": None,
    "yolox_nano.onnx": None,
    "ch_PP-OCRv4_det_infer.onnx": {"x": ["N", 3, 640, 640]},
}
#: (backend, model) pairs the engine cannot run here, with a part of the reason it must give.
KNOWN_UNSUPPORTED = {
    # MNN 3.6.1's converter dies with an illegal instruction in its graph optimizer on this model.
    ("mnn", "yolo-s"): "SIGILL",
    # pnnx 20261020 leaves the model's strided slices as Tensor.slice, which ncnn cannot load.
    ("ncnn", "yolox_nano.onnx"): "Tensor.slice",
}
#: (backend, model) pairs whose outputs do not match ONNX Runtime's: known engine defects.
KNOWN_MISMATCH = {
    # ncnn's output map is ~1e-14 where ONNX Runtime's sigmoid gives exactly 0 (cosine 0.0099).
    ("ncnn", "ch_PP-OCRv4_det_infer.onnx"): "ncnn's detection map differs from ONNX Runtime's",
}
COSINE_MIN = 0.999


def _unavailable(backend: str) -> str | None:
    return unavailable_reason(backend)


def _resolve(model: str) -> tuple[models.ModelInfo, str]:
    if model in REAL:
        path = REALDATA / model
        if not path.is_file():
            pytest.skip(f"real model {path} is absent")
        return models.resolve(path, batch_size=1, input_shapes=REAL[model]), model
    return models.resolve(model, batch_size=1), model


def _set_up(backend: str, model: models.ModelInfo, precision: str = "fp32", **options):
    config = RunConfig(
        study="conformance",
        model=str(model.path),
        pipeline="raw",
        backend=backend,
        precision=precision,
        batch_size=1,
        options=tuple(sorted(options.items())),
    )
    pipeline = pipelines.create("raw", model.inputs, batch_size=1, seed=0)
    engine = create(config)
    try:
        engine.setup(model, pipeline, SetupTimer())
    except BaseException:
        engine.close()
        raise
    return engine, pipeline


def _cosine(got: dict, ref: dict) -> float:
    a = np.concatenate([np.asarray(got[k], np.float64).ravel() for k in ref])
    b = np.concatenate([np.asarray(ref[k], np.float64).ravel() for k in ref])
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(params=CPU_BACKENDS)
def backend(request) -> str:
    reason = _unavailable(request.param)
    if reason:
        pytest.skip(f"{request.param} unavailable: {reason}")
    return request.param


@pytest.mark.slow
@pytest.mark.parametrize("model", ZOO + [pytest.param(m, marks=pytest.mark.realdata) for m in REAL])
def test_runs_fp32_like_onnx_runtime(backend, model):
    info, name = _resolve(model)
    known = KNOWN_UNSUPPORTED.get((backend, name))
    if known:
        with pytest.raises(Unsupported, match=known):
            _set_up(backend, info, threads=1)
        return
    engine, pipeline = _set_up(backend, info, threads=1)
    try:
        x = pipeline.calibration_batches(1)[0]
        rec = Recorder(1)
        for _ in range(2):
            out = engine.run(x, rec)
            rec.next_iteration()
        stages = rec.table("r").to_pandas()
        assert set(stages["stage"].astype(str)) == {"compute"}
        assert len(stages) == 2 and (stages["host_ns"] > 0).all()
        ref = reference_outputs(info.path, x)
        assert set(ref) <= set(out)
        cosine = _cosine(out, ref)
        if (backend, name) in KNOWN_MISMATCH:
            # The day the engine gets it right, this says so.
            assert cosine < COSINE_MIN, "a known mismatch is fixed: drop it from KNOWN_MISMATCH"
            pytest.xfail(f"{KNOWN_MISMATCH[backend, name]} (cosine {cosine:.4f})")
        assert cosine >= COSINE_MIN
        facts = engine.facts()
        assert facts["device"] == "cpu"
        assert facts["precision_effective"] == "fp32"
        assert facts["meta"]["threads"] in (1, "1")
    finally:
        engine.close()


def test_set_up_again_in_one_process_gives_the_same_outputs(backend):
    info, _ = _resolve("mlp")
    results = []
    for _ in range(2):
        engine, pipeline = _set_up(backend, info)
        try:
            results.append(engine.run(pipeline.calibration_batches(1)[0], Recorder(1)))
        finally:
            engine.close()
    first, second = results
    assert set(first) == set(second)
    for name in first:
        np.testing.assert_allclose(first[name], second[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision", ["fp16", "bf16", "int8"])
def test_other_precisions_run_as_named_or_are_unsupported(backend, precision):
    info, _ = _resolve("mlp")
    try:
        engine, _ = _set_up(backend, info, precision)
    except Unsupported as exc:
        assert str(exc).strip(), "an unsupported precision must say why"
        return
    try:
        assert engine.facts()["precision_effective"] in (precision, "mixed")
    finally:
        engine.close()


def test_every_cpu_engine_is_in_the_suite():
    for name in ("ort-cpu", "openvino", "openvino-cpp", "opencv-dnn", "mnn", "ncnn", "torch-cpu"):
        assert name in CPU_BACKENDS
