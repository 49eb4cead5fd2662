"""Explaining differences: the waterfall's arithmetic, matching across tools, and the real
trtexec logs of one model on two GPUs beside a perflab study of it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

import perflab
from perflab import cli, plots
from perflab.analysis import explain
from perflab.importers import import_file
from perflab.stages import ITERATION_STAGES

REALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata"
TRTEXEC = REALDATA / "trtexec"
RTX3090 = TRTEXEC / "trt8.6.0_rtx3090_mnist_load_fp32_verbose.log"
GTX1070 = TRTEXEC / "trt8.2.3_gtx1070_mnist_load_fp32_verbose.txt"
MNIST = REALDATA / "models" / "mnist-8.onnx"
needs_realdata = pytest.mark.skipif(not RTX3090.exists(), reason="../shared/realdata is absent")


def _side(total, covers, stages, residual="harness gap: e2e - stages", source="measured here"):
    return explain.Side("r", "run", "e2e", total, covers, stages, source, residual)


def test_waterfall_parts_add_up_and_name_their_sources():
    a = _side(1.0, ("compute",), {"compute": 1.0}, residual="", source="reported by trtexec")
    b = _side(
        5.0,
        ITERATION_STAGES,
        {"preprocess": 2.0, "compute": 2.5, "postprocess": 0.25},
    )
    parts = explain.waterfall(a, b)
    body = parts[~parts["kind"].isin(("start", "end"))].set_index("name")
    assert body.loc["preprocess (only in B)", "ms"] == 2.0
    assert body.loc["compute: B - A", "ms"] == 1.5
    assert body.loc["postprocess (only in B)", "ms"] == 0.25
    assert body.loc["harness gap: e2e - stages (B)", "ms"] == pytest.approx(0.25)
    assert body["ms"].sum() == pytest.approx(5.0 - 1.0)
    assert body.loc["compute: B - A", "source"] == "B measured here; A reported by trtexec"


def test_waterfall_keeps_what_a_side_cannot_split_as_unexplained():
    # trtexec's Latency spans h2d + compute + d2h; its parts' medians need not add up to it.
    a = _side(
        0.060,
        ("h2d", "compute", "d2h"),
        {"h2d": 0.004, "compute": 0.044, "d2h": 0.004},
        residual="latency: not split into stages",
        source="reported by trtexec",
    )
    b = _side(0.050, ("compute",), {"compute": 0.050}, residual="")
    parts = explain.waterfall(a, b)
    body = parts[~parts["kind"].isin(("start", "end"))]
    unexplained = body[body["kind"] == "unexplained"]
    assert len(unexplained) == 1 and unexplained["ms"].iloc[0] == pytest.approx(-0.008)
    assert body["ms"].sum() == pytest.approx(0.050 - 0.060)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    if not RTX3090.exists():
        pytest.skip("../shared/realdata is absent")
    out = tmp_path_factory.mktemp("imports")
    for log in (RTX3090, GTX1070):
        import_file("trtexec", log, out, model=MNIST)
    return out


@pytest.fixture(scope="module")
def mnist_study(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    if not MNIST.exists():
        pytest.skip("../shared/realdata is absent")
    out = tmp_path_factory.mktemp("mnist")
    spec = out / "mnist.yaml"
    spec.write_text(
        "study: mnist\n"
        f"model: {MNIST}\n"
        "pipeline: raw\n"
        "backend: ort-cpu\n"
        "batch_size: 4\n"  # the logs' batch
        "warmup: {iterations: 5}\n"
        "measure: {iterations: 30}\n"
        "options: {threads: 1, profile_iterations: 5}\n"
    )
    assert cli.main(["run", str(spec), "-o", str(out / "data"), "--no-isolation"]) == 0
    return out / "data"


@needs_realdata
def test_imported_regions_never_take_a_perflab_stage_name_that_means_something_else(imported):
    reported = perflab.open(imported).reported
    assert "e2e" not in set(reported["stage"])
    latency = reported[(reported["stage"] == "latency") & (reported["statistic"] == "median")]
    assert sorted(latency["value_ms"]) == [0.0517578, 0.15918]  # as the two logs print them


@needs_realdata
def test_show_works_on_an_import_folder(imported, capsys):
    assert cli.main(["show", str(imported)]) == 0
    out = capsys.readouterr().out
    assert "latency" in out and "h2d + compute + d2h" in out and "0.0518" in out


@needs_realdata
def test_warmup_of_an_import_folder_is_empty_not_an_error(imported):
    res = perflab.open(imported).ok()
    assert res.warmup().empty and res.warmup_table().empty


@needs_realdata
def test_two_trtexec_logs_from_two_gpus_compare_like_two_runs(imported):
    res = perflab.open(imported).ok()
    assert res.device_column() == "device_name"
    speedups = res.speedups("device_name").set_index("stage")
    # GPU Compute Time medians: 0.043945 ms (RTX 3090) and 0.152588 ms (GTX 1070).
    compute = speedups.loc["compute"]
    assert {compute["a"], compute["b"]} == {"NVIDIA GeForce RTX 3090", "NVIDIA GeForce GTX 1070"}
    ratio = 0.043945 / 0.152588
    expected = ratio if compute["a"] == "NVIDIA GeForce RTX 3090" else 1 / ratio
    assert compute["speedup"] == pytest.approx(expected, rel=1e-4)
    assert compute["verdict"] == ("slower" if expected < 1 else "faster")
    chart = res.speedup_chart("device_name")
    assert (chart["kind"] == "measured").any()


@needs_realdata
def test_import_meets_the_perflab_run_of_its_configuration(imported, mnist_study):
    res = perflab.open([imported, mnist_study]).ok()
    matched = res.matches()
    assert len(matched) == 2 and not matched["same_device"].any()
    table = res.reported_vs_measured()
    compute = table[
        (table["region"] == "compute")
        & (table["statistic"] == "median")
        & table["label"].str.contains("3090")
    ]
    assert len(compute) == 1
    own = res.summary(ci=None)
    own = own[(own["stage"] == "compute") & (own["backend"] == "ort-cpu")]["p50_ms"].iloc[0]
    assert compute["perflab ms"].iloc[0] == pytest.approx(own)
    assert compute["difference ms"].iloc[0] == pytest.approx(own - 0.0439453, abs=1e-6)
    # The engine's own timer sits beside compute in the same table, for the same run.
    model_run = table[(table["region"] == "model_run") & (table["statistic"] == "median")]
    assert len(model_run) == 1 and model_run["perflab ms"].iloc[0] == pytest.approx(own)
    headline = res.summary_table()
    marked = headline[headline["label"].str.endswith("(imported)")]
    assert len(marked) == 2 and set(marked["p50 ms"]) == {0.0517578, 0.15918}
    assert (headline["region"] == "perflab e2e").sum() == 1


@needs_realdata
def test_waterfall_from_trtexec_gpu_compute_to_perflab_e2e(imported, mnist_study, capsys):
    res = perflab.open([imported, mnist_study]).ok()
    a, b = res.explain_pair()
    assert res.runs.set_index("run_id").loc[a, "backend"] == "trtexec"
    parts = res.explain(a, b)
    summ = res.summary(ci=None).set_index(["run_id", "stage"])["p50_ms"]
    assert parts.attrs["a_ms"] == 0.0439453 and parts.attrs["b_ms"] == summ[(b, "e2e")]
    body = parts[~parts["kind"].isin(("start", "end"))]
    diff = parts.attrs["b_ms"] - parts.attrs["a_ms"]
    assert body["ms"].sum() == pytest.approx(diff, rel=1e-9)
    assert any("device_name" in n for n in parts.attrs["notes"])
    ax = plots.waterfall(parts)
    assert len(ax.patches) == len(parts)
    # The command line gives the same parts as JSON.
    argv = ["explain", a, b, "-d", str(imported), "-d", str(mnist_study), "--json"]
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert math.isclose(sum(p["ms"] for p in out["parts"]), out["b_ms"] - out["a_ms"])
    assert {p["source"] for p in out["parts"]} >= {"measured here"}


@needs_realdata
def test_layer_chart_shares_sum_to_100_percent():
    from perflab.importers.ort_profile import parse_ort_profile

    profile = next((REALDATA / "ortprofile").glob("*mnist-8*.json"))
    layers = parse_ort_profile(profile).layers
    assert layers["layer"].str.startswith("op:").any()  # both kinds in one table
    nodes = ~layers["layer"].str.startswith("op:")
    for level, n in (("layer", int(nodes.sum())), ("op", int((~nodes).sum()))):
        ax = plots.layer_profile(layers, top=n, level=level)
        shares = [float(t.get_text().strip().rstrip("%")) for t in ax.texts]
        assert len(shares) == n and sum(shares) == pytest.approx(100, abs=n * 0.5 + 0.5)


@needs_realdata
def test_folders_imported_with_the_old_region_names_read_under_the_new_ones(imported, tmp_path):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    old = tmp_path / "old"
    shutil.copytree(imported, old)
    old_names = {"latency": "e2e", "end_to_end": "e2e_end_to_end", "host_walltime": "e2e"}
    for path in (old / "reported").glob("*.parquet"):
        table = pq.read_table(path)
        stages = [old_names.get(s, s) for s in table.column("stage").to_pylist()]
        index = table.schema.get_field_index("stage")
        table = table.set_column(index, table.schema.field(index), pa.array(stages))
        pq.write_table(table, path)
    assert "e2e" in set(
        pq.read_table(next((old / "reported").glob("*.parquet")))["stage"].to_pylist()
    )
    now = perflab.open(imported).reported.sort_values(["run_id", "stage", "statistic"])
    then = perflab.open(old).reported.sort_values(["run_id", "stage", "statistic"])
    assert then["stage"].tolist() == now["stage"].tolist()
