"""Property-based tests: any experiment data either parses into valid configs or fails cleanly."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perflab import spec
from perflab.errors import SpecError

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 50),
    st.floats(-1, 10, allow_nan=False),
    st.sampled_from(["fp32", "int8", "synthetic", "ort-cpu", "raw", "x", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
keys = st.one_of(st.sampled_from(spec.TOP_KEYS), st.text(max_size=10))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, values, max_size=6))
def test_arbitrary_data_parses_or_raises_spec_error(data):
    try:
        study = spec.parse(data, source="h.yaml")
    except SpecError as exc:
        message = str(exc)
        assert message.startswith("h.yaml: ") and "\n" not in message
        return
    for config in study.configs:
        assert config.batch_size >= 1
        assert config.precision in spec.PRECISIONS and config.pipeline in spec.PIPELINES
        assert spec.RunConfig.from_json(config.to_json()) == config


@settings(max_examples=100)
@given(
    batches=st.lists(st.integers(1, 64), min_size=1, max_size=5, unique=True),
    precisions=st.lists(
        st.sampled_from(["fp32", "fp16", "int8"]), min_size=1, max_size=3, unique=True
    ),
    threads=st.lists(st.integers(1, 8), min_size=1, max_size=3, unique=True),
)
def test_sweep_size_is_the_product_of_its_axes(batches, precisions, threads):
    study = spec.parse(
        {
            "model": "mlp",
            "sweep": {"batch_size": batches, "precision": precisions, "options.threads": threads},
        }
    )
    assert len(study.configs) == len(batches) * len(precisions) * len(threads)
    assert len({c.spec_id for c in study.configs}) == len(study.configs)
