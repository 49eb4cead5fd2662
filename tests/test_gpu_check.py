"""benchmarks/gpu_check.py: its comparisons, verdicts, JSON and time budget against fakes, and
the real command on this machine (every check `unavailable` without a GPU)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from argparse import Namespace
from itertools import count
from types import SimpleNamespace

import numpy as np
import pytest

from benchmark_scripts import BENCHMARKS, load_benchmark
from fakes import FakeNvmlSession
from perflab.cuda import driver_unavailable_reason
from perflab.telemetry import GpuSampler
from perflab.timing import VirtualClock, use_clock

SCRIPT = BENCHMARKS / "gpu_check.py"
gc = load_benchmark("gpu_check")
wheels = load_benchmark("gpu_check_wheels")


# ---------------------------------------------------------------------------- comparisons


def test_rel_diff_and_clock_agreement():
    assert gc.rel_diff(102, 100) == pytest.approx(0.02)
    assert gc.rel_diff(0, 0) == 0 and gc.rel_diff(1, 0) == math.inf
    assert gc.clocks_agree(10_150_000, 10_000_000)  # 1.5 %
    assert not gc.clocks_agree(10_300_000, 10_000_000)  # 3 %
    # Below the event resolution a relative test means nothing: 1.5 us apart agree ...
    assert gc.clocks_agree(11_500, 10_000)
    # ... but not 3 us apart.
    assert not gc.clocks_agree(13_000, 10_000)


@pytest.mark.parametrize(
    ("gen", "width", "gbs"),
    [
        (3, 16, 15.754),  # 8 GT/s x16, 128b/130b: the familiar 15.75 GB/s
        (4, 16, 31.508),
        (5, 16, 63.015),
        (4, 8, 15.754),
        (2, 16, 8.0),  # 8b/10b
        (6, 16, 121.0),
    ],
)
def test_pcie_bandwidth(gen, width, gbs):
    assert gc.pcie_bandwidth_gbs(gen, width) == pytest.approx(gbs, rel=1e-3)


def test_pcie_bandwidth_unknown():
    assert gc.pcie_bandwidth_gbs(None, 16) is None
    assert gc.pcie_bandwidth_gbs(5, None) is None
    assert gc.pcie_bandwidth_gbs(9, 16) is None


@pytest.mark.parametrize(
    ("measured", "status", "words"),
    [
        (52.0, "ok", None),
        (20.0, "failed", "only 32%"),
        (70.0, "failed", "faster than the link"),
    ],
)
def test_bandwidth_verdict(measured, status, words):
    got, reason = gc.bandwidth_verdict(measured, gc.pcie_bandwidth_gbs(5, 16))
    assert got == status
    assert (reason is None) if words is None else (words in reason)


def test_bandwidth_verdict_without_a_link_figure():
    status, reason = gc.bandwidth_verdict(50.0, None)
    assert status == "failed" and "PCIe generation" in reason


def test_output_agreement():
    ref = {"y": np.array([1.0, 2.0, 3.0]), "z": np.array([4.0])}
    got = {"y": np.array([1.0, 2.0, 3.001]), "z": np.array([4.0]), "extra": np.ones(2)}
    out = gc.output_agreement(got, ref)
    assert out["output_max_abs_err"] == pytest.approx(0.001)
    assert out["output_max_abs_ref"] == 4.0
    assert 0.99999 < out["output_cosine"] < 1.0
    assert gc.output_agreement({}, ref) == {}


# ---------------------------------------------------------------------------- verdicts


def test_clock_result_agreeing_clocks():
    rows = [(5_000_000 + i, 5_010_000, 5_020_000, 5_100_000) for i in range(10)]
    out = gc.clock_result(rows, bytes_copied=10 * 2**30)
    assert out["status"] == "ok" and out["reason"] is None
    assert out["perflab_device_ms"] == pytest.approx(5.0000045)
    assert out["device_copy_gbs"] == pytest.approx(2 * 10 * 2**30 / 5_000_004.5)


def test_clock_result_names_the_clock_that_disagrees():
    rows = [(5_000_000, 5_010_000, 5_200_000, 5_300_000)] * 5  # torch 4 % longer
    out = gc.clock_result(rows, 2**30)
    assert out["status"] == "failed"
    assert "torch" in out["reason"] and "CuPy" not in out["reason"]
    assert out["rel_diff_torch"] == pytest.approx(0.2 / 5.2)  # relative to torch's figure


def test_clock_result_host_shorter_than_device_fails():
    out = gc.clock_result([(5_000_000, 5_000_000, 5_000_000, 4_000_000)] * 3, 2**30)
    assert out["status"] == "failed" and "host duration is shorter" in out["reason"]


def _copies(h2d_gbs, d2h_gbs):
    return {"by_size": [{"mib": 256, "h2d_gbs": h2d_gbs, "d2h_gbs": d2h_gbs}]}


def test_copies_result_uses_the_current_link_when_known():
    gpu = {"pcie_gen_max": 5, "pcie_width_max": 16}
    # 25 GB/s is fine on the gen4 link the GPU trained to, too slow for its gen5 maximum.
    out = gc.copies_result(_copies(25.0, 26.0), gpu, {"pcie_gen": 4, "pcie_width": 16})
    assert out["status"] == "ok" and out["pcie_gen"] == 4
    assert out["h2d_share_of_link"] == pytest.approx(25.0 / 31.508, rel=1e-3)
    out = gc.copies_result(_copies(25.0, 26.0), gpu, None)
    assert out["status"] == "failed" and out["pcie_gen"] == 5
    assert "h2d:" in out["reason"] and "d2h:" in out["reason"]


def _latency_run(**overrides):
    run = {"mode": "latency", "output_cosine": 0.999999}
    for stage in ("h2d", "compute", "d2h"):
        run.update({f"{stage}_device_ms": 1.0, f"{stage}_torch_ms": 1.01, f"{stage}_host_ms": 1.1})
    run.update(overrides)
    return run


def test_torch_latency_run_problems():
    assert gc.torch_run_problems(_latency_run()) == []
    problems = gc.torch_run_problems(_latency_run(compute_torch_ms=1.05))
    assert len(problems) == 1 and problems[0].startswith("compute median")
    problems = gc.torch_run_problems(_latency_run(d2h_host_ms=0.9))
    assert problems == ["d2h: host median below device median"]
    problems = gc.torch_run_problems(_latency_run(output_cosine=0.99))
    assert len(problems) == 1 and "cosine" in problems[0]
    run = _latency_run()
    del run["output_cosine"]
    assert gc.torch_run_problems(run) == ["no outputs to compare with ONNX Runtime"]


def test_torch_throughput_run_problems():
    good = {
        "mode": "throughput",
        "submitted": 120,
        "completed": 120,
        "outside_window": 0,
        "outputs_match_latency": True,
    }
    assert gc.torch_run_problems(good) == []
    bad = {**good, "completed": 119, "outside_window": 2, "outputs_match_latency": False}
    problems = gc.torch_run_problems(bad)
    assert len(problems) == 3 and "119 of 120" in problems[0]


class FakeNVML(FakeNvmlSession):
    """One GPU whose readings change per sample; power readings unsupported when asked."""

    def __init__(self, power=True):
        super().__init__()
        self.n = count()
        self.power = power

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1980 - 10 * next(self.n) if kind == 1 else 2619

    def nvmlDeviceGetTemperatureV(self, h, sensor):
        return 55

    def nvmlDeviceGetPowerUsage(self, h):
        if not self.power:
            raise type("NVMLError_NotSupported", (Exception,), {})("Not Supported")
        return 450_000

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=100)

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return 0x4  # SwPowerCap


def _sampled(nvml, samples):
    sampler = GpuSampler(0, 20, nvml=nvml, clock=count(0, 20_000_000).__next__)
    sampler._nvml, sampler._handle = nvml, 0
    for _ in range(samples):
        sampler.sample_once()
    return sampler


def test_telemetry_result_from_sampled_rows():
    sampler = _sampled(FakeNVML(), 150)
    out = gc.telemetry_result(sampler.rows(), sampler.errors, None, 3.0, sampler)
    assert out["status"] == "ok", out["reason"]
    assert out["samples"] == 150
    assert out["sm_clock_mhz"] == {"min": 490, "median": 1235.0, "max": 1980}
    assert out["power_w"]["median"] == 450.0
    assert out["throttle_reasons_seen"] == ["SwPowerCap"] and out["throttled_samples"] == 150


def test_telemetry_result_names_missing_metrics_and_few_samples():
    sampler = _sampled(FakeNVML(power=False), 10)
    out = gc.telemetry_result(sampler.rows(), sampler.errors, None, 3.0, sampler)
    assert out["status"] == "failed"
    assert "10 samples in 3.0 s, expected about 150" in out["reason"]
    assert "no values for power_w" in out["reason"]
    assert "power" in out["errors"]


def test_environment_result_lists_missing_gpu_fields():
    gpu = {
        "name": "NVIDIA H200",
        "driver_version": "580.1",
        "cuda_driver_version": "13.0",
        "compute_capability": "9.0",
        "pcie_gen_max": 5,
        "pcie_width_max": 16,
    }
    out = gc.environment_result({"fingerprint": {"gpus": [gpu]}, "perflab_backends_rc": 0})
    assert out["status"] == "ok" and out["gpu"]["name"] == "NVIDIA H200"
    del gpu["pcie_gen_max"]
    out = gc.environment_result({"fingerprint": {"gpus": [gpu]}, "perflab_backends_rc": 0})
    assert out["status"] == "failed" and out["reason"] == "fingerprint lacks pcie_gen_max"
    out = gc.environment_result({"fingerprint": {"gpus": []}, "perflab_backends_rc": 2})
    assert out["status"] == "failed" and "`perflab backends` exited 2" in out["reason"]


# ---------------------------------------------------------------------------- fake GPU
# A device timeline on the harness's virtual clock: work on a stream starts when the stream and
# the host have both reached it; an event completes when the stream reaches it; waiting for an
# event moves the host clock to it. That is how real events behave, idle gaps included.


class FakeGPU:
    def __init__(self, clock, h2d_gbs=50.0, d2h_gbs=52.0, hbm_gbs=4000.0, torch_skew=1.0):
        self.clock = clock
        self.h2d_gbs, self.d2h_gbs, self.hbm_gbs = h2d_gbs, d2h_gbs, hbm_gbs
        self.torch_skew = torch_skew
        self.streams = {}
        self.current = None
        gpu = self

        class Stream:
            _ptr = count(0x7000)

            def __init__(self, null=False, non_blocking=False, **_):
                self.ptr, self.t = next(self._ptr), 0
                gpu.streams[self.ptr] = self

            def run(self, ns):
                self.t = max(self.t, gpu.clock.now) + int(ns)

            def synchronize(self):
                gpu.clock.now = max(gpu.clock.now, self.t)

            def __enter__(self):
                self._outer, gpu.current = gpu.current, self
                return self

            def __exit__(self, *exc):
                gpu.current = self._outer

        class Event:
            def __init__(self, *_, **__):
                self.t = None

            def record(self, stream):
                self.t = max(stream.t, gpu.clock.now)

            def synchronize(self):
                gpu.clock.now = max(gpu.clock.now, self.t)

            done = property(lambda self: self.t is not None)

        class Array:
            def __init__(self, shape, dtype):
                self.a = np.zeros(shape, dtype)
                self.data = SimpleNamespace(ptr=id(self))

            def set(self, host, stream):
                self.a[...] = host
                stream.run(self.a.nbytes / gpu.h2d_gbs)

            def get(self, stream, out, blocking):
                out[...] = self.a
                stream.run(self.a.nbytes / gpu.d2h_gbs)

            def __setitem__(self, key, other):
                self.a[key] = other.a
                gpu.current.run(2 * self.a.nbytes / gpu.hbm_gbs)  # read + write

        self.cupy = SimpleNamespace(
            empty=lambda shape, dtype: Array(shape, dtype),
            cuda=SimpleNamespace(
                Device=lambda i: _Nothing(),
                Stream=Stream,
                Event=Event,
                get_elapsed_time=lambda a, b: (b.t - a.t) / 1e6,
                alloc_pinned_memory=lambda n: bytearray(n),
            ),
        )

        class TorchEvent(Event):
            def elapsed_time(self, other):
                return (other.t - self.t) / 1e6 * gpu.torch_skew

        self.torch = SimpleNamespace(
            cuda=SimpleNamespace(
                ExternalStream=lambda ptr, device=None: gpu.streams[ptr],
                Event=lambda enable_timing=False: TorchEvent(),
            )
        )


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _args(**kw):
    base = {
        "device_id": 0,
        "clock_mib": 64,
        "clock_copies": 10,
        "clock_repeats": 5,
        "copy_mib": [1, 16],
        "copy_repeats": 3,
    }
    return Namespace(**{**base, **kw})


def test_event_clock_check_on_a_fake_gpu():
    clock = VirtualClock()
    with use_clock(clock):
        gpu = FakeGPU(clock)
        out = gc.check_event_clock(_args(), cp=gpu.cupy, torch=gpu.torch)
    assert out["status"] == "ok", out["reason"]
    # 10 copies of 64 MiB, read and written at 4000 GB/s (the fake rounds each copy to 1 ns)
    expected_ms = 10 * 2 * 64 * 2**20 / 4000.0 / 1e6
    assert out["perflab_device_ms"] == pytest.approx(expected_ms, abs=1e-5)
    # The outer pairs also hold the host's clock reads around the call (virtual: 50 ns each).
    assert out["cupy_events_ms"] == pytest.approx(expected_ms, abs=1e-3)
    assert out["torch_events_ms"] == pytest.approx(expected_ms, abs=1e-3)
    assert out["device_copy_gbs"] == pytest.approx(4000.0, rel=1e-4)
    assert out["repeats"] == 5


def test_event_clock_check_catches_a_clock_off_by_five_percent():
    clock = VirtualClock()
    with use_clock(clock):
        gpu = FakeGPU(clock, torch_skew=1.05)
        out = gc.check_event_clock(_args(), cp=gpu.cupy, torch=gpu.torch)
    assert out["status"] == "failed" and "torch" in out["reason"]
    assert out["rel_diff_torch"] == pytest.approx(0.05 / 1.05, rel=1e-2)


def test_copies_check_on_a_fake_gpu(monkeypatch):
    monkeypatch.setattr(gc, "_current_pcie", lambda device_id: None)
    clock = VirtualClock()
    gpu_facts = {"pcie_gen_max": 5, "pcie_width_max": 16}
    with use_clock(clock):
        gpu = FakeGPU(clock, h2d_gbs=50.0, d2h_gbs=52.0)
        out = gc.check_copies(_args(), cp=gpu.cupy, gpu=gpu_facts)
    assert out["status"] == "ok", out["reason"]
    big = out["by_size"][-1]
    assert big["mib"] == 16
    assert big["h2d_gbs"] == pytest.approx(50.0, rel=1e-5)
    assert big["d2h_gbs"] == pytest.approx(52.0, rel=1e-5)
    assert big["h2d_ms"] == pytest.approx(16 * 2**20 / 50.0 / 1e6, rel=1e-6)
    assert out["link_gbs"] == pytest.approx(63.015, rel=1e-3)
    with use_clock(clock):
        slow = FakeGPU(clock, h2d_gbs=12.0, d2h_gbs=52.0)
        out = gc.check_copies(_args(), cp=slow.cupy, gpu=gpu_facts)
    assert out["status"] == "failed" and out["reason"].startswith("h2d: 12.0 GB/s")


# ---------------------------------------------------------------------------- budget, JSON


def _check(name, timeout_s=30.0):
    return gc.Check(name, timeout_s, (), False, lambda args: {}, f"the {name} check")


def test_run_checks_bounds_each_check_by_its_timeout_and_the_budget():
    t = [0.0]
    given = {}

    def run_one(check, timeout_s):
        given[check.name] = timeout_s
        t[0] += 40.0  # each check takes 40 s
        return {"status": "ok", "figure": 1.5}

    written = []
    checks = [_check("a", 30), _check("b", 60), _check("c", 60), _check("d", 60)]
    doc = gc.run_checks(
        checks,
        run_one,
        budget_s=100,
        reason_of=lambda c: None,
        clock=lambda: t[0],
        write=lambda d: written.append(json.loads(json.dumps(d))),
        say=lambda line: None,
    )
    assert given == {"a": 30, "b": 60, "c": 20}  # c gets what is left of the 100 s
    statuses = [c["status"] for c in doc["checks"]]
    assert statuses == ["ok", "ok", "ok", "unavailable"]
    assert "time budget of 100 s spent" in doc["checks"][3]["reason"]
    assert [c["seconds"] for c in doc["checks"]] == [40, 40, 40, 0]
    assert doc["checks"][0]["figure"] == 1.5 and doc["checks"][0]["what"] == "the a check"
    # written after every check, so a crash later keeps what was measured
    assert [len(d["checks"]) for d in written] == [1, 2, 3, 4]
    assert written[-1]["total_s"] == 120


def test_run_checks_skips_with_the_reason_without_running():
    ran = []
    doc = gc.run_checks(
        [_check("a"), _check("b")],
        lambda c, t: ran.append(c.name) or {"status": "ok"},
        reason_of=lambda c: "no GPU" if c.name == "a" else None,
        say=lambda line: None,
    )
    assert ran == ["b"]
    assert doc["checks"][0] == {
        "name": "a",
        "what": "the a check",
        "status": "unavailable",
        "reason": "no GPU",
        "seconds": doc["checks"][0]["seconds"],
    }
    assert gc.summary_line(doc) == "skipped: a (no GPU)"


def test_precondition_reasons():
    check = gc.Check("x", 1, ("cupy", "nvtx"), True, lambda a: {}, "")
    missing = gc.precondition(check, find_spec=lambda m: None if m == "cupy" else object())
    assert missing == "package(s) not installed: cupy"
    driver = gc.precondition(check, find_spec=lambda m: object(), driver_reason=lambda: "no GPU")
    assert driver == "no GPU"
    ready = gc.precondition(check, find_spec=lambda m: object(), driver_reason=lambda: None)
    assert ready is None


def test_a_check_that_hangs_is_failed_by_its_timeout(monkeypatch):
    def hang(*a, **kw):
        raise subprocess.TimeoutExpired(a[0], kw["timeout"])

    monkeypatch.setattr(gc.subprocess, "run", hang)
    out = gc.run_child(gc.CHECKS[0], [], 12.0)
    assert out == {"status": "failed", "reason": "timed out after 12 s"}


def test_the_budget_fits_twice_in_a_loan():
    # A loan is about 15 minutes, machine start included: the check must fit twice.
    assert gc.BUDGET_S <= 360
    assert sum(c.timeout_s for c in gc.CHECKS) <= gc.BUDGET_S


# ---------------------------------------------------------------------------- the command


@pytest.mark.skipif(driver_unavailable_reason() is None, reason="a GPU is present here")
def test_the_command_without_a_gpu_reports_every_check_unavailable(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    names = [c["name"] for c in doc["checks"]]
    assert names == [c.name for c in gc.CHECKS]
    for c in doc["checks"]:
        assert c["status"] == "unavailable" and c["reason"], c
        assert c["seconds"] >= 0
    env = doc["checks"][0]
    assert env["fingerprint"]["python"] and env["backends"]["synthetic"] == "available"
    assert "skipped: " in proc.stdout and "of a 360 s budget" in proc.stdout


def test_carried_wheels_stay_under_the_limit(tmp_path, capsys):
    (tmp_path / "a-1-py3-none-any.whl").write_bytes(b"x" * (2 << 20))
    assert wheels.report(tmp_path) == 0
    assert "2.00 MiB  total in 1 wheels" in capsys.readouterr().out
    (tmp_path / "b-1-py3-none-any.whl").write_bytes(b"x" * (59 << 20))
    assert wheels.report(tmp_path) == 1
    assert "too large" in capsys.readouterr().err


# ---------------------------------------------------------------------------- torch-cuda
# The real TorchBackend run/submit/wait code on a fake torch whose CUDA events, streams and
# copies run on the FakeGPU timeline; every clock (recorder, EventClock anchor, the check's own
# windows) reads the same virtual clock, so the arithmetic is exact.

COPY_GBS = 25.0
FORWARD_NS = 400_000


class FakeTensor:
    def __init__(self, gpu, a, device):
        self.gpu, self.a, self.device = gpu, a, device
        self.shape, self.dtype = a.shape, a.dtype

    def copy_(self, other, non_blocking=False):
        assert non_blocking
        self.a[...] = other.a
        self.gpu.current.run(self.a.nbytes / COPY_GBS)

    def numpy(self):
        return self.a


class FakeModule:
    """y = 2 * sum(x) per sample, FORWARD_NS on the current stream."""

    compute_dtype = None

    def __init__(self, gpu):
        self.gpu = gpu

    def __call__(self, x):
        self.gpu.current.run(FORWARD_NS)
        y = 2 * x.a.reshape(len(x.a), -1).sum(axis=1, keepdims=True)
        return [FakeTensor(self.gpu, y.astype(np.float32), "cuda")]

    def buffers(self):
        return []

    def parameters(self):
        return []


def _fake_torch(gpu):
    def stream(s):
        return s  # FakeGPU streams are their own context managers

    return SimpleNamespace(
        cuda=SimpleNamespace(
            Event=lambda enable_timing=False: gpu.torch.cuda.Event(enable_timing),
            stream=stream,
            profiler=SimpleNamespace(start=lambda: None, stop=lambda: None),
            synchronize=lambda *a: None,
        ),
        inference_mode=_Nothing,
    )


def _fake_torch_backend(gpu, model, mode, inflight=1):
    from perflab.backends import torch as tb
    from perflab.cuda import SlotPool

    torch = gpu.fake_torch
    backend = object.__new__(tb.TorchBackend)
    backend.__dict__.update(
        backend="torch-cuda",
        gpu=True,
        precision="fp32",
        device="cuda:0",
        _device_name="fake",
        _torch=torch,
        _module=FakeModule(gpu),
        _in_names=("x",),
        _out_names=("y",),
        _autocast_dtype=None,
        _meta={},
        _notes=[],
        _sampler=None,
        _t0_ns=None,
        _pool=None,
        _clock=None,
        _slots=[],
    )
    n_slots = SlotPool.size_for(inflight) if mode == "throughput" else 1
    streams = [gpu.cupy.cuda.Stream() for _ in range(min(2, n_slots))]
    for k in range(n_slots):
        pin = FakeTensor(gpu, np.zeros((model.batch_size, 3, 32, 32), np.float32), "cpu")
        out = FakeTensor(gpu, np.zeros((model.batch_size, 1), np.float32), "cpu")
        slot = tb._Slot(
            streams[k % len(streams)],
            [pin],
            [pin.a],
            [FakeTensor(gpu, np.zeros_like(pin.a), "cuda")],
            {"y": out},
            [torch.cuda.Event(enable_timing=True) for _ in range(6)],
        )
        slot.out_np = {"y": out.a}
        backend._slots.append(slot)
    if mode == "throughput":
        backend._pool = SlotPool(n_slots)
        backend._clock = tb._torch_clock(torch, backend._slots[0].stream)
    return backend


@pytest.fixture
def fake_torch_gpu(monkeypatch):
    import time

    from perflab.backends import torch as tb

    clock = VirtualClock()
    gpu = FakeGPU(clock)
    gpu.fake_torch = _fake_torch(gpu)
    monkeypatch.setattr(time, "perf_counter_ns", clock)
    monkeypatch.setattr(tb, "perf_counter_ns", clock)
    monkeypatch.setattr(
        gc,
        "_torch_backend",
        lambda model, args, mode, inflight=1: _fake_torch_backend(gpu, model, mode, inflight),
    )
    with use_clock(clock):
        yield gpu


def _torch_args():
    return Namespace(warmup=3, iterations=20, inflight=2)


def test_torch_latency_and_throughput_on_a_fake_gpu(fake_torch_gpu):
    model = SimpleNamespace(name="fake", batch_size=4)
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    args = _torch_args()
    latency = gc._torch_latency(fake_torch_gpu.fake_torch, args, model, {"x": x})
    copy_ms = x.nbytes / COPY_GBS / 1e6
    assert latency["compute_device_ms"] == pytest.approx(FORWARD_NS / 1e6, abs=1e-3)
    assert latency["compute_torch_ms"] == pytest.approx(FORWARD_NS / 1e6, abs=1e-3)
    assert latency["h2d_device_ms"] == pytest.approx(copy_ms, abs=1e-3)
    outputs = latency.pop("outputs")
    expected = 2 * x.reshape(4, -1).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(outputs["y"], expected, rtol=1e-5)
    latency.update(gc.output_agreement(outputs, {"y": expected}))
    assert gc.torch_run_problems(latency) == []

    thr = gc._torch_throughput(fake_torch_gpu.fake_torch, args, model, {"x": x}, latency, outputs)
    assert thr["submitted"] == thr["completed"] == 23
    assert thr["outside_window"] == 0 and thr["outputs_match_latency"]
    assert gc.torch_run_problems(thr) == []


def test_torch_throughput_outputs_that_differ_are_caught(fake_torch_gpu):
    model = SimpleNamespace(name="fake", batch_size=2)
    x = np.ones((2, 3, 32, 32), np.float32)
    wrong = {"y": np.zeros((2, 1), np.float32)}
    thr = gc._torch_throughput(fake_torch_gpu.fake_torch, _torch_args(), model, {"x": x}, {}, wrong)
    assert not thr["outputs_match_latency"]
    assert "outputs differ" in " ".join(gc.torch_run_problems(thr))


def test_an_output_folder_that_does_not_exist_is_one_line_and_exit_2(tmp_path, capsys):
    assert gc.main(["-o", str(tmp_path / "missing" / "gpu.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpu_check: error: folder") and err.count("\n") == 1


BLOCKED = ("pandas", "pyarrow", "duckdb", "scipy", "cv2", "matplotlib")


def test_the_check_path_runs_without_the_heavy_dependencies(tmp_path):
    """A lent GPU machine lacks pandas, pyarrow and duckdb: everything the checks import, a
    zoo model, its ONNX Runtime reference and a Recorder work with them blocked."""
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(SCRIPT.parent)!r})
import gpu_check as gc
from perflab import cuda, env, nvtx, telemetry
from perflab.backends import torch
from perflab.reference import reference_outputs
from perflab.models import resolve
from perflab.timing import COMPUTE, Recorder
model = resolve("mlp", batch_size=2, cache_dir={str(tmp_path)!r})
ref = reference_outputs(model.path, gc._inputs(model, seed=1))
rec = Recorder(1)
rec.end(COMPUTE, rec.begin(COMPUTE))
assert rec.arrays()["host_ns"][0] >= 0
assert env.fingerprint()["python"]
print("ok", ref["logits"].shape)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok (2, 10)"
