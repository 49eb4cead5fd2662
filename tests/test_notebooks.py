"""Every report notebook executes on the shapes of results users have: a small study, a study
whose runs all failed, no folders at all, and two devices with traces and imported profiles.

Each data set is executed the way `perflab report` executes it (`report.execute`: one kernel,
namespace reset between notebooks), so one kernel start serves all six notebooks.
"""

from __future__ import annotations

import os

os.environ["MPLBACKEND"] = "Agg"  # this process; the kernels select the inline backend

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from perflab import report, store

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"

# resnet18-like cost, so that rooflines and projections have something to work on.
MODEL_COST = {
    "model_flops_per_sample": 3.6e9,
    "model_param_bytes": 46.8e6,
    "model_activation_bytes_per_sample": 20e6,
}


def patch_runs(out: Path, **values) -> list[str]:
    """Rewrite every runs row of a folder with some columns changed; returns the run ids."""
    ids = []
    for path in store.table_files(out, "runs"):
        row = store.read_run(path)
        row.update(values)
        store.write(out, "runs", str(row["run_id"]), row)
        ids.append(str(row["run_id"]))
    return ids


def add_traces(out: Path, run_id: str) -> None:
    """A small Nsight-like trace, a layer profile and reported statistics for one run."""
    samples = store.read(out, "samples")
    mine = samples[(samples["run_id"] == run_id) & (samples["phase"] == "measure")]
    offset = 5_000_000_000
    ranges, kernels = [], []
    for r in mine[mine["stage"].isin(["h2d", "compute", "d2h"])].itertuples(index=False):
        start = int(r.start_ns) + offset
        ranges.append(
            {
                "name": str(r.stage),
                "domain": "perflab",
                "pid": 1,
                "tid": 1,
                "start_ns": start,
                "end_ns": start + int(r.host_ns),
                "duration_ns": int(r.host_ns),
                "depth": 2,
                "gpu_start_ns": start + 1000,
                "gpu_end_ns": start + int(r.host_ns) - 1000,
                "gpu_duration_ns": int(r.host_ns) - 2000,
                "n_gpu_ops": 2,
                "iteration": int(r.iteration),
                "stage": str(r.stage),
            }
        )
        if r.stage == "compute":
            for k, name in enumerate(("volta_sgemm_128x64_nn", "relu_kernel")):
                s = start + 2000 + k * 60_000
                kernels.append(
                    {
                        "name": name,
                        "device": 0,
                        "stream": 7,
                        "start_ns": s,
                        "end_ns": s + 50_000,
                        "duration_ns": 50_000,
                        "correlation_id": len(kernels),
                        "range": "compute",
                    }
                )
    store.write(out, "trace_ranges", run_id, pd.DataFrame(ranges).assign(run_id=run_id))
    store.write(out, "trace_kernels", run_id, pd.DataFrame(kernels).assign(run_id=run_id))
    layers = pd.DataFrame(
        {
            "layer": ["conv1", "layer1.0.conv1", "fc"],
            "op_type": ["Conv", "Conv", "Gemm"],
            "provider": "trt",
            "precision": ["fp16", "fp16", "fp32"],
            "count": 40,
            "total_ms": [4.0, 2.5, 0.5],
            "median_ms": [0.1, 0.0625, 0.0125],
        }
    )
    store.write(out, "layers", run_id, layers.assign(run_id=run_id))
    reported = pd.DataFrame(
        {"stage": ["compute", "compute"], "statistic": ["median", "mean"], "value_ms": [0.28, 0.29]}
    )
    store.write(out, "reported", run_id, reported.assign(run_id=run_id))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, run_synthetic) -> list[Path]:
    out = run_synthetic(tmp_path_factory.mktemp("nb") / "tiny")
    patch_runs(out, **MODEL_COST)
    return [out]


@pytest.fixture(scope="module")
def failed_only(tmp_path_factory, run_synthetic, synthetic_options) -> list[Path]:
    out = tmp_path_factory.mktemp("nb") / "failed"
    run_synthetic(
        out,
        study="failed",
        batch_sizes=(1,),
        options={**synthetic_options, "crash": "exception", "crash_at": 0},
    )
    # An engine missing on this machine, as the runner records it (written directly: on a
    # machine where the engine exists the run would be ok).
    row = store.read(out, "runs").iloc[0].to_dict()
    row.update(
        run_id=store.new_run_id(),
        backend="trt",
        status="unsupported",
        batch_size=2,
        label="resnet18 trt fp16 b2",
        precision="fp16",
        error="trt unavailable: the tensorrt package is not installed (pip install "
        "perflab[tensorrt])",
    )
    store.write_run(out, row)
    statuses = set(store.read(out, "runs")["status"])
    assert statuses == {"failed", "unsupported"}
    return [out]


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory, run_synthetic, synthetic_options) -> list[Path]:
    base = tmp_path_factory.mktemp("nb")
    folders = []
    for name, scale in (("GTX 1070", 1.0), ("RTX 3090", 0.5)):
        # The faster device is simulated with shorter compute; its runs then record the first
        # device's options, as the same experiment file run on two machines would.
        opts = {**synthetic_options, "compute_ms": 0.3 * scale, "compute_ms_per_item": 0.1 * scale}
        out = run_synthetic(
            base / name.replace(" ", "_"), study="devices", batch_sizes=(1, 2), options=opts
        )
        ids = patch_runs(
            out,
            device="cuda:0",
            device_name=name,
            options=store.json_text(synthetic_options),
            **MODEL_COST,
        )
        folders.append(out)
    add_traces(folders[-1], ids[0])
    return folders


def _outputs(executed: report.Executed, section: report.Section) -> list[dict]:
    outs = []
    for index in section.cells:
        outs += executed.combined.cells[index].get("outputs", [])
    return outs


def _text(outputs: list[dict]) -> str:
    parts = []
    for o in outputs:
        if o.get("output_type") == "stream":
            parts.append(o.get("text", ""))
        for mime in ("text/html", "text/plain"):
            if mime in o.get("data", {}):
                parts.append(o["data"][mime])
    return "\n".join(parts)


def _check_clean(executed: report.Executed) -> None:
    assert [s.name for s in executed.sections] == list(report.NOTEBOOKS)
    for sec in executed.sections:
        assert sec.error is None, f"{sec.name}: {sec.error}"
        outs = _outputs(executed, sec)
        assert not [o for o in outs if o.get("output_type") == "error"], sec.name
        stderr = [o["text"] for o in outs if o.get("name") == "stderr"]
        assert not stderr, f"{sec.name} wrote to stderr: {stderr}"
        # An Axes left as a cell's value would print its repr under the figure.
        results = [o for o in outs if o.get("output_type") == "execute_result"]
        assert not [o for o in results if "<Axes" in o["data"].get("text/plain", "")], sec.name


def _images(executed: report.Executed, name: str) -> int:
    sec = next(s for s in executed.sections if s.name == name)
    return sum("image/png" in o.get("data", {}) for o in _outputs(executed, sec))


def _section_text(executed: report.Executed, name: str) -> str:
    return _text(_outputs(executed, next(s for s in executed.sections if s.name == name)))


# ---------------------------------------------------------------------------- the notebooks


def test_notebooks_are_committed_without_outputs_and_with_a_parameters_cell():
    for name in report.NOTEBOOKS:
        nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        # Set by perflab report and perflab lab; None finds the folders (display.load).
        assert tagged[0].source.startswith("results = None")
        assert "\ninteractive = True" in tagged[0].source
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
        # Thin: each code cell is a few calls into perflab, not analysis code.
        assert all(len(c.source.splitlines()) <= 16 for c in nb.cells if c.cell_type == "code")


def test_the_package_finds_the_canonical_notebooks():
    folder = report.notebook_dir()
    for name in report.NOTEBOOKS:
        assert (folder / f"{name}.ipynb").read_bytes() == (
            NOTEBOOK_DIR / f"{name}.ipynb"
        ).read_bytes()


def test_notebooks_on_a_small_study(tiny):
    executed = report.execute(tiny)
    _check_clean(executed)
    for name, at_least in (
        ("01_overview", 1),
        ("02_stage_breakdown", 2),
        ("03_warmup", 1),
        ("04_batching", 2),
        ("05_device_comparison", 2),
    ):
        assert _images(executed, name) >= at_least, name
    assert "Nothing to show" in _section_text(executed, "06_trace_correlation")
    overview = _section_text(executed, "01_overview")
    assert "Every run completed." in overview and "p50 ms" in overview
    assert "predicted" in _section_text(executed, "05_device_comparison")


def test_notebooks_on_a_study_whose_runs_all_failed(failed_only):
    executed = report.execute(failed_only)
    _check_clean(executed)
    overview = _section_text(executed, "01_overview")
    assert "synthetic failure injected at iteration 0" in overview
    assert "trt unavailable" in overview
    for name in report.NOTEBOOKS[1:5]:
        assert "Nothing to show: no run completed (1 failed, 1 unsupported)" in _section_text(
            executed, name
        ), name
        assert _images(executed, name) == 0


def test_notebooks_on_no_folders():
    executed = report.execute([])
    _check_clean(executed)
    for name in report.NOTEBOOKS:
        assert "Nothing to show: no result folders were given." in _section_text(executed, name), (
            name
        )


def test_notebooks_on_two_devices_with_traces(two_devices):
    executed = report.execute(two_devices)
    _check_clean(executed)
    comparison = _section_text(executed, "05_device_comparison")
    assert "RTX 3090 vs GTX 1070" in comparison
    assert _images(executed, "05_device_comparison") >= 3  # speedups, forest, roofline
    traces = _section_text(executed, "06_trace_correlation")
    for expected in ("volta_sgemm_128x64_nn", "reported ms", "range p50 ms", "trt fp16"):
        assert expected in traces
    assert _images(executed, "06_trace_correlation") >= 2  # kernel timeline, layer profile
    env_rows = json.dumps([c.get("outputs") for c in executed.combined.cells])
    assert "package numpy" in env_rows


@pytest.mark.slow
def test_device_and_trace_notebooks_interactive_on_two_devices(two_devices):
    """As JupyterLab runs them (interactive=True): the comparison, projection and kernel
    selectors are built from data with several devices and traces, without an error."""
    from nbclient import NotebookClient
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    for name in ("05_device_comparison", "06_trace_correlation"):
        nb = parameterize_notebook(
            load_notebook_node(str(NOTEBOOK_DIR / f"{name}.ipynb")),
            {"results": [str(f) for f in two_devices], "interactive": True},
            kernel_name="python3",
            language="python",
        )
        NotebookClient(nb, kernel_name="python3", timeout=300).execute()
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.output_type == "error"], name
        widgets = [
            o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
        ]
        assert widgets, name
