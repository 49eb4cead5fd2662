"""ONNX Runtime profile importer: event layouts of several ORT versions, and the real profiles."""

from __future__ import annotations

import json

import pytest
from importer_helpers import files_under

from perflab import store
from perflab.errors import ImportFormatError
from perflab.importers.ort_profile import import_ort_profile, parse_ort_profile


def session(name, ts, dur):
    return {
        "cat": "Session",
        "pid": 1,
        "tid": 1,
        "dur": dur,
        "ts": ts,
        "ph": "X",
        "name": name,
        "args": {},
    }


def node(name, ts, dur, op=None, provider=None, *, args=True, out_type="float"):
    e = {"cat": "Node", "pid": 1, "tid": 1, "dur": dur, "ts": ts, "ph": "X", "name": name}
    if args:
        a = {"op_name": op, "output_type_shape": [{out_type: [1, 8]}], "node_index": "0"}
        if provider:
            a["provider"] = provider
        e["args"] = {k: v for k, v in a.items() if v is not None}
    return e


def profile(*, provider="CPUExecutionProvider", args=True, fences=False, runs=(300, 200, 250)):
    """Three runs of a 3-node graph: conv (2 nodes) + relu; per-run node durations in us."""
    events = [session("model_loading_uri", 3, 500), session("session_initialization", 600, 2500)]
    ts = 10_000
    for i, run_dur in enumerate(runs):
        events.append(session("model_run", ts, run_dur))
        for name, op, dur in (
            ("conv_a", "Conv", 100 + i),
            ("conv_b", "Conv", 50 + i),
            ("relu", "Relu", 10),
        ):
            if fences:
                events.append(node(f"{name}_fence_before", ts, 7, op, provider, args=args))
            events.append(node(f"{name}_kernel_time", ts, dur, op, provider, args=args))
            if fences:
                events.append(node(f"{name}_fence_after", ts, 5, op, provider, args=args))
        events.append(session("SequentialExecutor::Execute", ts, run_dur - 5))
        ts += 1_000
    return events


def write(tmp_path, events, name="ort.json"):
    path = tmp_path / name
    path.write_text(json.dumps(events))
    return path


def test_nodes_and_op_types():
    t = parse_ort_profile(profile())
    nodes = t.nodes.set_index("layer")
    assert nodes.loc["conv_a", "count"] == 3
    assert nodes.loc["conv_a", "total_ms"] == pytest.approx((100 + 101 + 102) / 1000)
    assert nodes.loc["conv_a", "median_ms"] == pytest.approx(0.101)
    assert nodes.loc["conv_a", "op_type"] == "Conv"
    assert nodes.loc["conv_a", "provider"] == "CPUExecutionProvider"
    assert nodes.loc["conv_a", "precision"] == "fp32"
    ops = t.op_types.set_index("layer")
    assert ops.loc["op:Conv", "count"] == 6
    assert ops.loc["op:Conv", "total_ms"] == pytest.approx((303 + 153) / 1000)
    assert ops.loc["op:Conv", "median_ms"] == pytest.approx((52 + 100) / 2 / 1000)
    assert ops.loc["op:Relu", "total_ms"] == pytest.approx(0.030)
    assert t.model_load_ms == 0.5 and t.session_init_ms == 2.5
    assert t.model_run_ms == [0.3, 0.2, 0.25]
    assert t.backend == "ort-cpu"
    assert len(t.layers) == 5


def test_fences_are_not_kernel_time():
    t = parse_ort_profile(profile(fences=True))
    assert t.nodes.set_index("layer").loc["relu", "total_ms"] == pytest.approx(0.030)
    assert t.facts["fence_events"] == 18
    assert t.facts["fence_ms"] == pytest.approx(9 * 0.012)


def test_without_provider_and_without_args():
    t = parse_ort_profile(profile(provider=None))
    assert t.providers == () and t.backend == "ort-cpu"
    assert t.nodes["provider"].isna().all()
    assert set(t.op_types["layer"]) == {"op:Conv", "op:Relu"}
    bare = parse_ort_profile(profile(provider=None, args=False))
    assert set(bare.nodes["layer"]) == {"conv_a", "conv_b", "relu"}
    assert bare.nodes["op_type"].isna().all()
    assert bare.op_types.empty
    assert bare.facts["nodes_without_op_type"] == ["conv_a", "conv_b", "relu"]


def test_backend_from_providers():
    assert parse_ort_profile(profile(provider="CUDAExecutionProvider")).backend == "ort-cuda"
    events = profile(provider="CUDAExecutionProvider") + [
        node("trt_graph_kernel_time", 10, 5, "TRTKernel_graph_main", "TensorrtExecutionProvider")
    ]
    assert parse_ort_profile(events).backend == "ort-trt"


def test_import_writes_run_layers_samples_reported(tmp_path):
    out = tmp_path / "out"
    run_id = import_ort_profile(
        write(tmp_path, profile(provider="CUDAExecutionProvider")), out, model="m.onnx"
    )
    runs = store.read(out, "runs")
    row = runs.iloc[0]
    assert row["run_id"] == run_id and row["backend"] == "ort-cuda" and row["status"] == "ok"
    assert row["load_ms"] == 0.5 and row["build_ms"] == 2.5 and row["first_ms"] == 0.3
    assert row["n_measure"] == 3 and row["model"] == "m.onnx"
    samples = store.read(out, "samples").sort_values("iteration")
    assert list(samples["iteration"]) == [0, 1, 2]
    assert set(samples["stage"]) == {"compute"} and set(samples["phase"]) == {"measure"}
    assert list(samples["host_ns"]) == [300_000, 200_000, 250_000]
    assert list(samples["start_ns"]) == [10_000_000, 11_000_000, 12_000_000]
    rep = store.read(out, "reported")
    assert dict(zip(rep["stage"], rep["value_ms"])) == {"load": 0.5, "build": 2.5}
    layers = store.read(out, "layers")
    assert set(layers["layer"]) == {"conv_a", "conv_b", "relu", "op:Conv", "op:Relu"}


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty"),
        ('[{"cat": "Session", "name": "model_run", "dur": 1', "cut short"),
        ('{"hello": "world"}', "not an ONNX Runtime profile"),
        ('[{"name": "x", "ph": "X"}]', "not an ONNX Runtime profile"),
    ],
)
def test_malformed_profiles(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    out = tmp_path / "out"
    with pytest.raises(ImportFormatError, match=message) as err:
        import_ort_profile(path, out)
    assert "\n" not in str(err.value)
    assert files_under(out) == []


REAL = {
    # model_loading_uri / session_initialization durations (us) and the three model_run durations,
    # read from the files; node events per run counted from the files.
    "GENERATED_ort1.31.1_cpu_mnist-8_2026-11-21_13-25-46_080.json": (606, 4598, (351, 136, 132), 8),
    "GENERATED_ort1.31.1_cpu_yolox_nano_2026-11-21_13-25-46_100.json": (
        11257,
        18090,
        (13219, 11498, 10219),
        266,
    ),
}


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_profiles(realdata_dir, tmp_path, name):
    load_us, init_us, runs_us, n_nodes = REAL[name]
    out = tmp_path / "out"
    run_id = import_ort_profile(realdata_dir / "ortprofile" / name, out)
    row = store.read(out, "runs").iloc[0]
    assert row["run_id"] == run_id and row["backend"] == "ort-cpu"
    assert row["load_ms"] == pytest.approx(load_us / 1000) and row["build_ms"] == pytest.approx(
        init_us / 1000
    )
    samples = store.read(out, "samples").sort_values("iteration")
    assert list(samples["host_ns"]) == [d * 1000 for d in runs_us]
    layers = store.read(out, "layers")
    nodes = layers[~layers["layer"].str.startswith("op:")]
    assert len(nodes) == n_nodes
    assert set(nodes["count"]) == {3}
    assert set(nodes["provider"]) == {"CPUExecutionProvider"}
    ops = layers[layers["layer"].str.startswith("op:")]
    assert ops["total_ms"].sum() == pytest.approx(nodes["total_ms"].sum())


def ort_layout(events) -> str:
    """Events as ORT writes its profile: `[`, one event per line with a trailing comma, `]`."""
    return "[\n" + ",\n".join(json.dumps(e) for e in events) + "\n]\n"


def test_one_event_per_line_reads_as_the_whole_array(tmp_path):
    events = [
        session("model_loading_uri", 0, 600),
        session("session_initialization", 700, 4_000),
        *[node("conv_kernel_time", 5_000 + 100 * i, 40 + i, "Conv") for i in range(5)],
        session("model_run", 5_000, 900),
    ]
    by_line, whole = tmp_path / "lines.json", tmp_path / "whole.json"
    by_line.write_text(ort_layout(events))
    whole.write_text(json.dumps(events))
    a, b = parse_ort_profile(by_line), parse_ort_profile(whole)
    assert a.layers.equals(b.layers) and a.model_run_ms == b.model_run_ms == [0.9]
    assert a.facts == b.facts and a.facts["n_events"] == 8
    assert list(a.nodes["count"]) == [5] and a.nodes["median_ms"].iloc[0] == pytest.approx(0.042)


@pytest.mark.parametrize(
    "cut, message",
    [
        (lambda text: text[: text.rindex("]")], "cut short"),  # no closing bracket
        (lambda text: text.replace('"dur": 42', '"dur": 4', 1)[:-60] + "\n]\n", "not valid JSON"),
        (lambda text: text + "[]\n", "not valid JSON"),  # something after the array
    ],
)
def test_one_event_per_line_malformed(tmp_path, cut, message):
    events = [
        session("model_run", 0, 10),
        *[node(f"n{i}_kernel_time", i, 42, "Conv") for i in range(3)],
    ]
    path = tmp_path / "bad.json"
    path.write_text(cut(ort_layout(events)))
    out = tmp_path / "out"
    with pytest.raises(ImportFormatError, match=message):
        import_ort_profile(path, out)
    assert files_under(out) == []
