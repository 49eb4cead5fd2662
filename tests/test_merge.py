"""`perflab merge`: result folders of one study from several machines, combined."""

from __future__ import annotations

import pytest

from experiments import experiment
from perflab import cli, env, merge, runner, spec, store
from perflab.errors import PerflabError
from perflab.results import open as open_results


@pytest.fixture
def two_machines(tmp_path, synthetic_options):
    """The same study run on two machines named box-1050ti and box-3070 (the second's
    fingerprint differs in its GPU)."""
    study = spec.parse(
        experiment("gen", iterations=40, sweep={"batch_size": [1, 2]}, options=synthetic_options)
    )
    folders = []
    for name in ("box-1050ti", "box-3070"):
        out = tmp_path / name
        fp = env.fingerprint(gpu=False, providers=False)
        if name == "box-3070":
            fp["gpus"] = [{"name": "NVIDIA GeForce RTX 3070"}]
        row = env.row(fp)
        store.write(out, "env", row["env_id"], row)
        for config in study.configs:
            runner.execute(config, out, env_id=row["env_id"], machine=name)
        folders.append(out)
    return tuple(folders)


def test_merge_keeps_every_run_and_every_fingerprint(two_machines, tmp_path, capsys):
    a, b = two_machines
    out = tmp_path / "fleet"
    assert cli.main(["merge", str(a), str(b), "-o", str(out)]) == 0
    assert "merged 4 run(s) and 2 fingerprint(s) from 2 folders" in capsys.readouterr().out
    runs = store.read(out, "runs")
    expected = set(store.read(a, "runs")["run_id"]) | set(store.read(b, "runs")["run_id"])
    assert set(runs["run_id"]) == expected
    samples = store.read(out, "samples")
    assert len(samples) == len(store.read(a, "samples")) + len(store.read(b, "samples"))
    assert set(store.read(out, "env")["gpu_name"].fillna("none")) == {
        "NVIDIA GeForce RTX 3070",
        store.read(a, "env")["gpu_name"].fillna("none").iloc[0],
    }
    # the machines compare config by config
    compared = open_results(out).compare(by="machine")
    assert len(compared) == 2 and set(compared["a"]) == {"box-1050ti"}
    assert set(compared["b"]) == {"box-3070"} and compared["ratio"].notna().all()
    # and their fingerprints diff within the one folder
    assert cli.main(["env", "diff", f"{out}@box-1050ti", f"{out}@box-3070"]) == 0
    assert "NVIDIA GeForce RTX 3070" in capsys.readouterr().out
    with pytest.raises(
        PerflabError, match="no run on machine 'box-9'; machines: box-1050ti, box-3070"
    ):
        env.load(f"{out}@box-9")
    # merged again (say after an interruption): each run is kept once
    again = merge.merge([a, b], out)
    assert again.runs == 0 and again.duplicates == 4
    assert len(store.read(out, "runs")) == 4


def test_different_specs_are_refused_unless_asked(tmp_path, run_synthetic):
    a = run_synthetic(tmp_path / "a", batch_sizes=(1, 2))
    b = run_synthetic(tmp_path / "b", batch_sizes=(1, 4))
    with pytest.raises(PerflabError, match="hold different specs .*1 config.* only in the first"):
        merge.merge([a, b], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    done = merge.merge([a, b], tmp_path / "out", allow_different=True)
    assert done.runs == 4 and len(store.read(tmp_path / "out", "runs")) == 4


def test_the_output_cannot_be_an_input(two_machines):
    a, b = two_machines
    with pytest.raises(PerflabError, match="both an input and the output"):
        merge.merge([a, b], a)
