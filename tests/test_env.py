"""Environment fingerprint and its diff."""

from __future__ import annotations

import json

from perflab import env, store


def test_fingerprint_has_the_facts_that_change_measurements():
    fp = env.fingerprint(providers=False, gpu=False)
    for key in (
        "host",
        "cpu_model",
        "cpu_flags",
        "cpu_cores_physical",
        "cpu_threads",
        "memory_gib",
        "os",
        "python",
        "packages",
        "env_vars",
    ):
        assert key in fp, key
    assert fp["packages"]["numpy"]
    assert fp["cpu_threads"] >= 1
    json.dumps(fp)  # plain JSON data


def test_env_id_ignores_the_moment():
    fp = env.fingerprint(providers=False, gpu=False)
    later = {**fp, "load_average": [9.0, 9.0, 9.0], "memory_available_gib": 0.1}
    assert env.env_id(fp) == env.env_id(later)
    assert env.env_id(fp) != env.env_id({**fp, "python": "2.7"})


def test_diff_names_the_keys_that_differ(tmp_path):
    a = {"cpu_model": "EPYC", "packages": {"onnxruntime": "1.31.1", "numpy": "2.0"}, "gpus": []}
    b = {
        "cpu_model": "EPYC",
        "packages": {"onnxruntime": "1.20.0", "numpy": "2.0"},
        "gpus": [{"name": "NVIDIA GeForce RTX 3070"}],
    }
    rows = env.diff(a, b)
    assert ("packages.onnxruntime", "1.31.1", "1.20.0") in rows
    assert ("gpus[0].name", None, "NVIDIA GeForce RTX 3070") in rows
    assert all(k != "cpu_model" and k != "packages.numpy" for k, _, _ in rows)


def test_load_from_json_and_from_a_result_folder(tmp_path):
    fp = env.fingerprint(providers=False, gpu=False)
    path = tmp_path / "a.json"
    path.write_text(json.dumps(fp))
    assert env.load(path) == fp
    row = env.row(fp)
    store.write(tmp_path / "res", "env", row["env_id"], row)
    assert env.load(tmp_path / "res") == json.loads(json.dumps(fp))


def test_host_bandwidth_is_measured_once_per_machine(tmp_path, monkeypatch):
    from perflab import env

    monkeypatch.setenv("PERFLAB_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(env, "measure_host_bandwidth", lambda: calls.append(1) or 12.345)
    a = env.fingerprint(gpu=False, providers=False)
    b = env.fingerprint(gpu=False, providers=False)
    assert calls == [1]
    assert a["mem_bandwidth_gbs"] == b["mem_bandwidth_gbs"] == 12.3
    assert a["mem_bandwidth_source"].startswith("measured: numpy copy")
    assert env.env_id(a) == env.env_id(b)


def test_host_bandwidth_measurement_is_plausible():
    from perflab import env

    gbs = env.measure_host_bandwidth(mib=32, rounds=2)
    assert 0.1 < gbs < 5000  # GB/s: any real machine's DRAM or cache lies in here
