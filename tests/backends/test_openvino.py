"""OpenVINO backend: precisions read back from the compiled model, options, layers, the run."""

from __future__ import annotations

import numpy as np
import pytest

from perflab.backends.openvino import OPTIONS, OpenVinoBackend, heavy_precisions, parse_options
from perflab.errors import SpecError, Unsupported
from perflab.reference import reference_outputs

ov = pytest.importorskip("openvino")

LAYER_COLUMNS = ["layer", "op_type", "provider", "precision", "count", "total_ms", "median_ms"]


def capabilities() -> list[str]:
    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def test_unknown_option_names_the_valid_ones(make_config):
    with pytest.raises(SpecError, match="unknown option 'hints'") as err:
        OpenVinoBackend(make_config("mlp", "openvino", hints="latency"))
    for name in OPTIONS:
        assert name in str(err.value)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"hint": "fastest"}, "latency, throughput"),
        ({"threads": -2}, "'threads'"),
        ({"streams": 1.5}, "'streams'"),
        ({"profile": 1}, "true or false"),
    ],
)
def test_bad_option_values(options, match):
    with pytest.raises(SpecError, match=match):
        parse_options(options)


def test_fp32_runs_fp32_and_records_compute_only(
    set_up, make_config, run_iterations, stage_counts, resolved
):
    backend, info, pipeline, timer = set_up(
        make_config("mobilenetv2", "openvino", batch_size=2, threads=1)
    )
    assert timer.ms["load"] > 0
    rec, out = run_iterations(backend, pipeline, 3, 2)
    assert stage_counts(rec) == {"compute": 3}
    facts = backend.facts()
    assert facts["device"] == "cpu" and facts["device_name"]
    # The CPU plugin may default to bf16 on CPUs that have it; fp32 is asked for explicitly.
    assert facts["precision_effective"] == "fp32"
    meta = facts["meta"]
    assert meta["inference_precision"] == "f32"
    assert meta["performance_hint"] == "LATENCY"
    assert meta["threads"] == 1
    assert set(meta["heavy_layers_per_precision"]) == {"fp32"}
    ref = reference_outputs(info.path, pipeline.preprocess(pipeline.make_inputs()))
    for name in ref:
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-3, atol=1e-3)


def test_outputs_are_copies_safe_to_keep(set_up, make_config):
    from perflab.timing import Recorder

    backend, _, pipeline, _ = set_up(make_config("mlp", "openvino"))
    a, b = pipeline.calibration_batches(2)
    first = backend.run(a, Recorder(1))
    kept = {k: v.copy() for k, v in first.items()}
    backend.run(b, Recorder(1))
    for name, value in kept.items():
        np.testing.assert_array_equal(first[name], value)


def test_bf16_runs_bf16_where_the_cpu_has_it(set_up, make_config):
    config = make_config("mobilenetv2", "openvino", "bf16", threads=1)
    if "BF16" not in capabilities():
        with pytest.raises(Unsupported, match="without BF16"):
            set_up(config)
        return
    backend, *_ = set_up(config)
    assert backend.facts()["precision_effective"] == "bf16"
    assert backend.facts()["meta"]["inference_precision"] == "bf16"


def test_fp16_needs_native_fp16(set_up, make_config):
    config = make_config("mlp", "openvino", "fp16")
    if "FP16" in capabilities():
        backend, *_ = set_up(config)
        assert backend.facts()["precision_effective"] == "fp16"
    else:
        with pytest.raises(Unsupported, match="without FP16"):
            set_up(config)


def test_int8_runs_the_qdq_model_in_int8(set_up, make_config, run_iterations, stage_counts):
    backend, _, pipeline, timer = set_up(
        make_config("mobilenetv2", "openvino", "int8", threads=1, calibration_batches=1)
    )
    assert timer.ms["build"] > 0  # the QDQ conversion
    facts = backend.facts()
    assert facts["precision_effective"] == "int8"
    assert facts["meta"]["conversion"] == "int8-static-qdq"
    assert set(facts["meta"]["heavy_layers_per_precision"]) == {"int8"}
    rec, _ = run_iterations(backend, pipeline, 2, 1)
    assert stage_counts(rec) == {"compute": 2}


def test_throughput_hint_is_accepted(set_up, make_config, run_iterations):
    backend, _, pipeline, _ = set_up(make_config("mlp", "openvino", hint="throughput"))
    assert backend.facts()["meta"]["performance_hint"] == "THROUGHPUT"
    run_iterations(backend, pipeline, 2, 1)


def test_layers_carry_precision_without_times(set_up, make_config):
    backend, *_ = set_up(make_config("mlp", "openvino"))
    layers = backend.tables()["layers"]
    assert list(layers.columns) == LAYER_COLUMNS
    assert (layers["provider"] == "openvino").all()
    assert layers["total_ms"].isna().all() and layers["count"].isna().all()
    fc = layers[layers["op_type"] == "FullyConnected"]
    assert len(fc) == 3 and (fc["precision"] == "fp32").all()


def test_profiled_pass_gives_layer_times(set_up, make_config, run_iterations, stage_counts):
    backend, _, pipeline, _ = set_up(
        make_config("mlp", "openvino", profile=True, profile_iterations=3)
    )
    rec, _ = run_iterations(backend, pipeline, 2, 1)
    backend.measure_end()
    layers = backend.tables()["layers"]
    assert stage_counts(rec) == {"compute": 2}
    assert list(layers.columns) == LAYER_COLUMNS
    assert len(layers) > 0 and (layers["count"] == 3).all()
    assert (layers["total_ms"] >= 0).all()
    assert "FullyConnected" in set(layers["op_type"])


def test_engine_timer_stores_infer_latency_beside_compute(
    set_up, make_config, run_iterations, stage_counts
):
    backend, _, pipeline, _ = set_up(make_config("mlp", "openvino"))
    run_iterations(backend, pipeline, 2, 1)  # warmup: not counted
    backend.measure_begin()
    rec, _ = run_iterations(backend, pipeline, 5, 1)
    backend.measure_end()
    reported = backend.tables()["reported"]
    assert stage_counts(rec) == {"compute": 5}
    assert set(reported["stage"]) == {"infer_latency"}
    stats = reported.set_index("statistic")["value_ms"]
    assert stats["count"] == 5  # one per measured iteration
    assert 0 < stats["min"] <= stats["median"] <= stats["max"]
    # The engine's own time lies inside perflab's compute region of the same calls.
    compute = rec.table("r").to_pandas()["host_ns"] / 1e6
    assert stats["median"] <= compute.max()


def test_heavy_precisions_counts_only_heavy_layers():
    rows = [
        {"op_type": "Convolution", "precision": "int8"},
        {"op_type": "FullyConnected", "precision": "int8"},
        {"op_type": "Reorder", "precision": "fp32"},
        {"op_type": "Const", "precision": "fp32"},
    ]
    assert heavy_precisions(rows) == {"int8": 2}
