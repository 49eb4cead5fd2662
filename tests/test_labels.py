"""Run labels name every setting that differs between the runs shown together, swept or not."""

from __future__ import annotations

import pandas as pd
import pytest

from experiments import experiment, write_spec
from perflab import cli
from perflab.errors import PerflabError
from perflab.labels import run_labels, setting_names, varying_settings, with_settings


def runs(**columns) -> pd.DataFrame:
    n = max(len(v) for v in columns.values() if isinstance(v, list))
    base = {
        "run_id": [f"r{i}" for i in range(n)],
        "label": "m ort-cpu fp32 b1",
        "model": "m",
        "backend": "ort-cpu",
        "precision": "fp32",
        "batch_size": 1,
        "options": "{}",
    }
    return pd.DataFrame({**base, **columns})


def test_labels_name_an_option_that_differs_without_a_sweep():
    table = runs(options=['{"threads": 1}', '{"threads": 2}'])
    assert run_labels(table, table["run_id"]) == {
        "r0": "m ort-cpu fp32 b1 threads=1",
        "r1": "m ort-cpu fp32 b1 threads=2",
    }
    table = runs(
        options=['{"graph_optimization": "basic"}', '{"graph_optimization": "all"}'],
        seed=[3, 3],
    )
    assert list(run_labels(table, table["run_id"]).values()) == [
        "m ort-cpu fp32 b1 graph_optimization=basic",
        "m ort-cpu fp32 b1 graph_optimization=all",
    ]


def test_labels_count_only_true_repeats_and_do_not_repeat_swept_settings():
    table = runs(
        label=["m ort-cpu fp32 b1 threads=1", "m ort-cpu fp32 b1 threads=2"] * 2,
        options=['{"threads": 1}', '{"threads": 2}'] * 2,
    )
    assert list(run_labels(table, table["run_id"]).values()) == [
        "m ort-cpu fp32 b1 threads=1",
        "m ort-cpu fp32 b1 threads=2",
        "m ort-cpu fp32 b1 threads=1 #2",
        "m ort-cpu fp32 b1 threads=2 #2",
    ]


def test_labels_name_seed_policies_and_pipeline_options():
    table = runs(
        seed=[0, 1],
        pipeline_options=['{"image_size": 224}', '{"image_size": 320}'],
        measure_policy=['{"iterations": 100}', '{"iterations": 100}'],
    )
    assert list(run_labels(table, table["run_id"]).values()) == [
        "m ort-cpu fp32 b1 seed=0 image_size=224",
        "m ort-cpu fp32 b1 seed=1 image_size=320",
    ]
    assert varying_settings(table) == ["seed", "pipeline_options.image_size"]


def test_settings_as_the_experiment_file_names_them():
    table = runs(options=['{"threads": 1}', '{"threads": 2, "inter_threads": 1}'])
    assert "options.inter_threads" in setting_names(table)
    wide = with_settings(table, ["options.threads", "options.inter_threads"])
    assert list(wide["options.threads"]) == [1, 2]
    assert list(wide["options.inter_threads"]) == [None, 1]
    with pytest.raises(PerflabError, match="options.sead"):
        with_settings(table, ["options.sead"])


@pytest.fixture
def two_folders(tmp_path):
    """Two studies that differ only in a backend option that neither sweeps."""
    folders = []
    for compute_ms in (0.2, 0.4):
        spec = write_spec(
            tmp_path,
            experiment("same", warmup=2, iterations=30, options={"compute_ms": compute_ms}),
            f"spec{compute_ms}.yaml",
        )
        out = tmp_path / f"out{compute_ms}"
        assert cli.main(["run", str(spec), "-o", str(out), "--no-isolation"]) == 0
        folders.append(out)
    return folders


def test_show_results_and_compare_tell_the_folders_apart(two_folders, capsys, monkeypatch):
    import perflab

    monkeypatch.setenv("COLUMNS", "200")
    capsys.readouterr()
    assert cli.main(["show", *map(str, two_folders)]) == 0
    out = capsys.readouterr().out
    assert "compute_ms=0.2" in out and "compute_ms=0.4" in out
    assert "#2" not in out
    res = perflab.open(two_folders)
    labels = set(res.summary()["label"])
    assert labels == {
        "synthetic synthetic fp32 b1 compute_ms=0.2",
        "synthetic synthetic fp32 b1 compute_ms=0.4",
    }
    assert res.comparison_axes() == ["options.compute_ms"]
    compared = res.compare(by="options.compute_ms", stage="compute")
    assert list(compared[["a", "b"]].iloc[0]) == ["0.2", "0.4"]
    assert compared["ratio"].iloc[0] == pytest.approx(2.0, rel=0.25)
