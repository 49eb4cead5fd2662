"""Host load and steal time around a run, on fake /proc readings: stored, flagged, said out loud."""

from __future__ import annotations

from pathlib import Path

import pytest

import perflab
from experiments import experiment
from perflab import cli, host, runner, spec
from perflab.timing import VirtualClock, use_clock

STUDY = experiment("busy", warmup=2, iterations=20, options={"compute_ms": 0.5})


def fake_proc(folder: Path, load: float, total: int = 10_000, steal: int = 0) -> Path:
    """/proc/loadavg and the `cpu` line of /proc/stat with the given load and jiffies."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loadavg").write_text(f"{load:.2f} {load:.2f} {load:.2f} 2/300 12345\n")
    user = total - steal
    (folder / "stat").write_text(
        f"cpu  {user} 0 0 0 0 0 0 {steal} 0 0\ncpu0 {user} 0 0 0 0 0 0 {steal} 0 0\n"
    )
    return folder


@pytest.fixture
def busy_proc(tmp_path, monkeypatch):
    proc = fake_proc(tmp_path / "proc", load=8.0)
    monkeypatch.setenv("PERFLAB_PROC", str(proc))
    monkeypatch.setattr(host, "cpus", lambda: 2)
    return proc


def test_readings_and_steal_percentage(tmp_path, monkeypatch):
    proc = fake_proc(tmp_path / "p", load=1.25, total=1000, steal=100)
    monkeypatch.setenv("PERFLAB_PROC", str(proc))
    assert host.load1() == 1.25
    before = host.cpu_times()
    assert before == (1000, 100)
    fake_proc(proc, load=1.25, total=3000, steal=500)
    assert host.steal_pct(before, host.cpu_times()) == pytest.approx(100 * 400 / 2000)
    monkeypatch.setenv("PERFLAB_PROC", str(tmp_path / "absent"))
    assert host.cpu_times() is None and host.load1() != host.load1()  # NaN: unknown, not 0


def test_busy_rule():
    # 2 CPUs: other work above 1.0 (half the CPUs); the run's own thread is taken off "during".
    assert not host.busy(0.4, 1.9, 0.0, n_cpus=2)
    assert host.busy(1.2, 1.0, 0.0, n_cpus=2)
    assert host.busy(0.2, 2.5, 0.0, n_cpus=2)
    assert host.busy(0.0, 0.0, 12.0, n_cpus=2)
    assert not host.busy(float("nan"), float("nan"), float("nan"), n_cpus=2)


def test_sampler_stores_before_during_after_and_steal(tmp_path, monkeypatch):
    proc = fake_proc(tmp_path / "p", load=0.1, total=1000, steal=0)
    monkeypatch.setenv("PERFLAB_PROC", str(proc))
    monkeypatch.setattr(host, "cpus", lambda: 2)
    sampler = host.HostSampler(every_s=0.01).start()
    fake_proc(proc, load=3.5, total=2000, steal=300)
    import time

    deadline = time.monotonic() + 5
    while not sampler.loads or max(sampler.loads) < 3.5:
        assert time.monotonic() < deadline, "the sampler thread never read the load"
        time.sleep(0.01)
    fake_proc(proc, load=2.0, total=2000, steal=300)
    sampler.stop()
    cols = sampler.columns()
    assert cols["host_load_before"] == 0.1 and cols["host_load_during"] == 3.5
    assert cols["host_load_after"] == 2.0
    assert cols["host_steal_pct"] == pytest.approx(30.0) and cols["host_busy"]
    note = host.busy_note(cols)
    assert "load average 0.10 before, 3.50 during, 2.00 after on 2 CPUs" in note
    assert "30.0% CPU time stolen" in note


def test_a_busy_run_is_stored_flagged_and_noted(tmp_path, busy_proc):
    with use_clock(VirtualClock()):
        result = runner.run_study(spec.parse(STUDY), tmp_path / "out", isolate=False)
    row = result.rows[0]
    assert row["status"] == "ok" and row["host_busy"]
    res = perflab.open(tmp_path / "out")
    runs = res.runs
    assert bool(runs["host_busy"].iloc[0]) and runs["host_load_before"].iloc[0] == 8.0
    assert any("busy host: load average 8.00 before" in n for n in runs["notes"].map(eval).iloc[0])
    # The report's Overview: the busy-host table and the headline caveat.
    busy = res.busy_hosts()
    assert len(busy) == 1 and busy["host_load_during"].iloc[0] == 8.0
    assert "busy host" in res.ok().summary_table()["caveat"].iloc[0]


def test_a_quiet_run_is_not_flagged(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFLAB_PROC", str(fake_proc(tmp_path / "p", load=0.2)))
    monkeypatch.setattr(host, "cpus", lambda: 2)
    with use_clock(VirtualClock()):
        row = runner.run_study(spec.parse(STUDY), tmp_path / "out", isolate=False).rows[0]
    assert not row["host_busy"]
    assert perflab.open(tmp_path / "out").busy_hosts().empty


def test_terminal_says_busy_host_in_run_and_show(tmp_path, busy_proc, capsys):
    path = tmp_path / "s.yaml"
    import yaml

    path.write_text(yaml.safe_dump(STUDY))
    out = tmp_path / "out"
    assert cli.main(["run", str(path), "-o", str(out), "--no-isolation"]) == 0
    text = capsys.readouterr().out
    assert "busy host: load average 8.00 before" in text
    assert "1 of 1 runs were measured on a busy host" in text
    assert cli.main(["show", str(out)]) == 0
    assert "1 of 1 runs were measured on a busy host" in capsys.readouterr().out


def test_quiet_stop_skips_the_run_and_stops_the_study(tmp_path, busy_proc):
    data = {**STUDY, "sweep": {"seed": [1, 2]}, "quiet": {"max_load": 0.5, "max_wait_s": 0}}
    result = runner.run_study(spec.parse(data), tmp_path / "out", isolate=False)
    assert len(result.rows) == 1 and result.rows[0]["status"] == "skipped"
    assert "host busy: load average 8.00 on 2 CPUs stayed above 1.00" in result.rows[0]["error"]
    assert result.stopped == result.rows[0]["error"]


def test_quiet_then_run_measures_anyway_and_says_so(tmp_path, busy_proc):
    data = {**STUDY, "quiet": {"max_load": 0.5, "max_wait_s": 0, "then": "run"}}
    with use_clock(VirtualClock()):
        result = runner.run_study(spec.parse(data), tmp_path / "out", isolate=False)
    row = result.rows[0]
    assert row["status"] == "ok" and row["host_busy"] and result.stopped is None
    assert "measured anyway" in row["notes"]


def test_quiet_host_starts_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFLAB_PROC", str(fake_proc(tmp_path / "p", load=0.3)))
    monkeypatch.setattr(host, "cpus", lambda: 2)
    assert host.wait_quiet(0.5, 60.0) == (True, 0.3)
