"""Experiment files: sweep expansion, stable spec ids, and validation messages."""

from __future__ import annotations

import re

import pytest

from benchmark_scripts import load_benchmark
from perflab import spec
from perflab.errors import SpecError

# The alias bomb refused below is the one benchmarks/hostile_inputs.py times.
hostile_inputs = load_benchmark("hostile_inputs")


def parse(**data):
    return spec.parse({"study": "s", "model": "mlp", **data}, source="f.yaml")


def test_sweep_is_a_cartesian_product_of_frozen_configs():
    study = parse(
        sweep={
            "backend": ["ort-cpu", "openvino"],
            "precision": ["fp32", "int8"],
            "batch_size": [1, 4, 16],
        }
    )
    assert len(study.configs) == 12
    combos = {(c.backend, c.precision, c.batch_size) for c in study.configs}
    assert len(combos) == 12
    config = study.configs[0]
    with pytest.raises(AttributeError):
        config.batch_size = 2  # frozen
    assert len({hash(c) for c in study.configs}) == 12


def test_option_axes_and_labels():
    study = parse(options={"threads": 2}, sweep={"options.threads": [1, 2]})
    assert [c.option_dict["threads"] for c in study.configs] == [1, 2]
    assert [c.label for c in study.configs] == [
        "mlp ort-cpu fp32 b1 threads=1",
        "mlp ort-cpu fp32 b1 threads=2",
    ]


def test_spec_id_is_stable_and_ignores_the_study_name():
    a = parse(batch_size=4).configs[0]
    b = spec.parse({"study": "other", "model": "mlp", "batch_size": 4}).configs[0]
    assert a.spec_id == b.spec_id
    assert a.spec_id == parse(batch_size=4).configs[0].spec_id  # same content, same id, every time
    assert parse(batch_size=8).configs[0].spec_id != a.spec_id
    assert parse(batch_size=4, measure={"iterations": 201}).configs[0].spec_id != a.spec_id


def test_config_survives_the_trip_to_a_worker():
    for config in parse(sweep={"options.threads": [1, 2]}, input_shapes={"x": ["N", 3]}).configs:
        again = spec.RunConfig.from_json(config.to_json())
        assert again == config and again.label == config.label and again.spec_id == config.spec_id


def test_policies():
    c = parse(warmup={"seconds": 0.5}, measure={"target_rel_ci": 0.01, "max_seconds": 3}).configs[0]
    assert (
        c.warmup.seconds == 0.5 and c.measure.target_rel_ci == 0.01 and c.measure.max_seconds == 3
    )
    assert parse(warmup={"iterations": 0}).configs[0].warmup.iterations == 0


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"modle": "x"}, "unknown key 'modle'; valid keys: study, model"),
        (
            {"backend": "onnx"},
            "'backend': 'onnx' is not a known backend; known backends: synthetic, ort-cpu",
        ),
        ({"batch_size": 0}, "'batch_size': 0 must be a positive integer"),
        ({"sweep": {"batch_size": [1, -2]}}, "'batch_size': -2 must be a positive integer"),
        (
            {"precision": "fp8"},
            "'precision': 'fp8' is not a precision; valid: fp32, fp16, bf16, int8, best",
        ),
        ({"warmup": 10}, "key 'warmup': 10 is not a policy"),
        (
            {"measure": {"iterations": 10, "seconds": 2}},
            "give exactly one of iterations, seconds, target_rel_ci",
        ),
        ({"measure": {"iterationz": 10}}, "'measure.iterationz': unknown; valid: iterations"),
        ({"measure": {"iterations": 0}}, "must measure at least one iteration"),
        ({"measure": {"target_rel_ci": 5}}, "must be between 0 and 1"),
        ({"sweep": {"batch_size": []}}, "'sweep.batch_size': empty list"),
        ({"sweep": {"study": ["a"]}}, "'sweep.study': not a sweepable key"),
        (
            {"batch_size": 2, "sweep": {"batch_size": [1]}},
            "given both at the top level and under sweep",
        ),
        ({"options": {"threads": [1, 2]}}, "'options.threads': [1, 2] must be a scalar"),
        ({"timeout_s": -1}, "'timeout_s': -1 must be a positive number"),
        (
            {"input_shapes": {"x": [0, 3]}},
            "'input_shapes.x': [0, 3] must be a list of positive integers",
        ),
    ],
)
def test_validation_names_file_key_value_and_choices(data, needle):
    with pytest.raises(SpecError) as err:
        parse(**data)
    message = str(err.value)
    assert message.startswith("f.yaml: ")
    assert needle in message
    assert "\n" not in message


def test_load_errors(tmp_path):
    with pytest.raises(SpecError, match="experiment file not found"):
        spec.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: x\nsweep: [unclosed\n")
    with pytest.raises(SpecError, match=r"bad.yaml: YAML syntax error at line \d+, column \d+"):
        spec.load(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(SpecError, match="expected a mapping of keys .* got nothing"):
        spec.load(empty)


def test_study_name_defaults_to_file_stem(tmp_path):
    path = tmp_path / "quick.yaml"
    path.write_text("model: mlp\n")
    assert spec.load(path).name == "quick"


def test_a_list_of_sweeps_runs_each_product_in_order():
    study = parse(sweep=[{"batch_size": [1, 2]}, {"batch_size": [8], "precision": ["int8"]}])
    assert [(c.batch_size, c.precision) for c in study.configs] == [
        (1, "fp32"),
        (2, "fp32"),
        (8, "int8"),
    ]


def test_repeat_order_and_quiet_are_study_keys_not_config():
    data = {"backend": "synthetic", "sweep": {"seed": [1, 2, 3]}}
    plain = spec.parse(data)
    study = spec.parse(
        {**data, "repeat": 4, "order": "random", "order_seed": 7, "quiet": {"max_load": 0.3}}
    )
    # How often and when a config runs leaves its identity alone.
    assert [c.spec_id for c in study.configs] == [c.spec_id for c in plain.configs]
    runs = study.schedule()
    assert len(runs) == 12 and all(r.order_seed == 7 for r in runs)
    for k in range(4):  # round by round: every config once per round, shuffled within it
        rnd = runs[3 * k : 3 * k + 3]
        assert {r.repetition for r in rnd} == {k}
        assert {r.spec_id for r in rnd} == {c.spec_id for c in plain.configs}
    assert runs == study.schedule()  # the recorded seed gives the same order again
    assert [r.spec_id for r in plain.schedule()] == [c.spec_id for c in plain.configs]
    assert runs[0].quiet == spec.Quiet(max_load=0.3, max_wait_s=60.0, then="stop")
    again = spec.RunConfig.from_json(runs[5].to_json())
    assert again == runs[5] and again.repetition == runs[5].repetition


def test_repetitions_continue_after_those_a_folder_holds():
    study = spec.parse({"backend": "synthetic", "repeat": 2})
    sid = study.configs[0].spec_id
    assert [r.repetition for r in study.schedule({sid: 3})] == [3, 4]


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"repeat": 0}, "'repeat': 0 must be an integer from 1 to 1000"),
        ({"repeat": 2.5}, "'repeat': 2.5 must be an integer"),
        ({"order": "sorted"}, "'order': 'sorted' is not an order"),
        ({"order_seed": "x"}, "'order_seed': 'x' must be an integer"),
        ({"quiet": 0.5}, "'quiet': 0.5 must be a mapping"),
        ({"quiet": {"max_lod": 1}}, "'quiet.max_lod': unknown"),
        ({"quiet": {"max_load": -1}}, "'quiet.max_load': -1 must be a non-negative number"),
        ({"sweep": {"repeat": [1, 2]}}, "not a sweepable key"),
    ],
)
def test_bad_study_keys(extra, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        spec.parse({"backend": "synthetic", **extra})


# ----------------------------------------------------------------------------- hostile files


def load_text(tmp_path, text: str, name: str = "x.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return spec.load(path)


def test_an_alias_bomb_is_refused_in_a_short_message(tmp_path):
    with pytest.raises(SpecError, match="YAML aliases expand to more than") as err:
        load_text(tmp_path, hostile_inputs.billion_laughs())
    assert len(str(err.value)) < 300


def test_a_sweep_of_a_billion_configs_is_counted_not_built(tmp_path):
    axes = {"seed": list(range(1000)), "batch_size": list(range(1, 1001))}
    axes["options.compute_ms"] = [0.1 * k for k in range(1, 1001)]
    data = {"study": "big", "backend": "synthetic", "sweep": axes}
    with pytest.raises(SpecError, match="expands to 1000000000 configs") as err:
        spec.parse(data)
    assert len(str(err.value)) < 300
    with pytest.raises(SpecError, match="more than 1000; pass --yes"):
        spec.parse({**data, "sweep": {"seed": list(range(1001))}}, max_configs=1000)


def test_aliases_that_stay_small_are_fine(tmp_path):
    text = "study: a\nbackend: synthetic\noptions: &o {compute_ms: 1}\nsweep: {seed: [1, 2]}\n"
    assert load_text(tmp_path, text).configs[0].option_dict == {"compute_ms": 1}


@pytest.mark.parametrize(
    "data, where",
    [
        ({"timeout_s": float("nan")}, "'timeout_s'"),
        ({"timeout_s": float("inf")}, "'timeout_s'"),
        ({"measure": {"seconds": float("nan")}}, "'measure.seconds'"),
        ({"warmup": {"seconds": float("-inf")}}, "'warmup.seconds'"),
        ({"options": {"compute_ms": float("nan")}}, "'options.compute_ms'"),
        ({"sweep": {"seed": [1, float("nan")]}}, r"'sweep.seed\[1\]'"),
    ],
)
def test_non_finite_numbers_are_refused_anywhere(data, where):
    with pytest.raises(SpecError, match=f"key {where}: -?(nan|inf) is not a finite number"):
        spec.parse({"study": "n", "backend": "synthetic", **data})


@pytest.mark.parametrize(
    "name", ["..", ".", "", "a/b", "a\\b", "a\x00b", "a\x1b[2Jb", " x", "x" * 101]
)
def test_study_names_must_be_one_safe_path_component(name):
    with pytest.raises(SpecError, match="'study': .* must be a name of 1 to 100") as err:
        spec.parse({"study": name, "backend": "synthetic"})
    assert "\x1b" not in str(err.value) and "\x00" not in str(err.value)


def test_a_duplicate_key_is_refused_with_both_lines(tmp_path):
    with pytest.raises(
        SpecError, match=r"duplicate key 'batch_size' at line 4 \(first given at line 2\)"
    ):
        load_text(tmp_path, "study: d\nbatch_size: 1\nbackend: synthetic\nbatch_size: 2\n")
    # a merge key (<<) overriding a merged value is not a duplicate
    text = (
        "study: d\nbackend: synthetic\noptions: {<<: {compute_ms: 1, jitter: 0.1}, compute_ms: 3}\n"
    )
    assert load_text(tmp_path, text).configs[0].option_dict == {"compute_ms": 3, "jitter": 0.1}


def test_quoted_values_are_cut_to_a_readable_length():
    with pytest.raises(SpecError) as err:
        spec.parse({"study": "q", "backend": "synthetic", "precision": "p" * 100_000})
    assert len(str(err.value)) < 300 and "(100002 characters)" in str(err.value)
