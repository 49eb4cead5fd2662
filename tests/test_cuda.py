"""perflab.cuda: availability reasons, GPU facts, slot and clock arithmetic, and DeviceIO's
timing logic against a fake CuPy (device clock advanced by each copy and engine call)."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from fakes import (
    COMPUTE_MS,
    D2H_MS,
    H2D_MS,
    FakeDeviceArray,
    FakeNvmlSession,
    FakeStream,
    fake_cupy,
)
from perflab import cuda
from perflab.errors import BackendUnavailable
from perflab.models import TensorSpec
from perflab.timing import Recorder


def doubling_engine(io):
    """An 'engine' that writes y = 2 * x on the device and takes COMPUTE_MS."""

    def enqueue():
        io.device_outputs["y"].a[...] = 2 * io.device_inputs["x"].a
        io.stream.t_ms += COMPUTE_MS
        return "enqueued"

    return enqueue


SPECS_IN = (TensorSpec("x", (2, 3), "float32"),)
SPECS_OUT = (TensorSpec("y", (2, 3), "float32"),)


def stages(rec):
    t = rec.table("r").to_pandas()
    t["stage"] = t["stage"].astype(str)
    return t


# ---------------------------------------------------------------------------- DeviceIO


def test_device_io_latency_stages_and_device_times():
    cp = fake_cupy()
    io = cuda.DeviceIO(SPECS_IN, SPECS_OUT, 0, cupy_module=cp)
    enqueue = doubling_engine(io)
    rec = Recorder(2)
    allocs = dict(cp.allocs)
    for i in range(3):
        x = np.full((2, 3), i, np.float32)
        io.h2d({"x": x}, rec)
        assert io.compute(enqueue, rec) == "enqueued"
        out = io.d2h(rec)
        np.testing.assert_array_equal(out["y"], 2 * x)
        rec.next_iteration()
    assert cp.allocs == allocs  # nothing allocated in the loop
    t = stages(rec)
    assert t.groupby("stage").size().to_dict() == {"h2d": 3, "compute": 3, "enqueue": 3, "d2h": 3}
    dev = t.set_index(["iteration", "stage"])["device_ns"]
    for i in range(3):
        assert dev[(i, "h2d")] == round(H2D_MS * 1e6)
        assert dev[(i, "compute")] == round(COMPUTE_MS * 1e6)
        assert dev[(i, "d2h")] == round(D2H_MS * 1e6)
        assert np.isnan(dev[(i, "enqueue")])
    # Each stage ends with a host wait on its end event.
    assert [e.syncs for e in io.events] == [0, 3, 0, 3, 0, 3]
    # enqueue lies inside compute
    host = t.set_index(["iteration", "stage"])
    assert host.loc[(0, "enqueue"), "start_ns"] >= host.loc[(0, "compute"), "start_ns"]


def test_device_io_buffers_for_engines():
    cp = fake_cupy()
    io = cuda.DeviceIO(SPECS_IN, SPECS_OUT, 0, cupy_module=cp)
    assert io.stream_ptr == io.stream.ptr
    assert FakeDeviceArray.by_ptr[io.device_ptr("x")] is io.device_inputs["x"]
    assert FakeDeviceArray.by_ptr[io.device_ptr("y")] is io.device_outputs["y"]
    assert io.shape("y") == (2, 3) and io.np_dtype("x") is np.float32
    with pytest.raises(KeyError, match="no buffer 'z'"):
        io.device_ptr("z")
    # Writing straight into the pinned buffer skips the staging copy.
    io.host_inputs["x"][...] = 7
    io.h2d(io.host_inputs, Recorder(1))
    assert (io.device_inputs["x"].a == 7).all()


def test_device_io_casts_inputs_of_the_same_kind():
    cp = fake_cupy()
    io = cuda.DeviceIO(
        (TensorSpec("x", (2,), "float16"),), (TensorSpec("y", (2,), "float16"),), cupy_module=cp
    )
    io.h2d({"x": np.array([1.5, 2.0], np.float32)}, Recorder(1))
    assert io.device_inputs["x"].a.dtype == np.float16
    assert io.device_inputs["x"].a.tolist() == [1.5, 2.0]


def test_device_io_refuses_unresolved_shapes():
    with pytest.raises(ValueError, match="unresolved shape"):
        cuda.DeviceIO((TensorSpec("x", (-1, 3), "float32"),), SPECS_OUT, cupy_module=fake_cupy())


def test_device_io_throughput_enqueue_and_complete():
    cp = fake_cupy()
    stream = FakeStream()
    slots = [cuda.DeviceIO(SPECS_IN, SPECS_OUT, 0, stream=stream, cupy_module=cp) for _ in range(2)]
    clock = cuda.EventClock.for_cupy(cp, stream)
    rec = Recorder(2)
    for k, io in enumerate(slots):
        io.enqueue({"x": np.full((2, 3), k + 1, np.float32)}, doubling_engine(io))
        rec.next_iteration()
    # Both requests are on one stream: the second starts where the first ended.
    assert slots[1].events[0].t_ms == slots[0].events[5].t_ms
    for k, io in enumerate(slots):
        out = io.complete(rec, k, clock)
        np.testing.assert_array_equal(out["y"], np.full((2, 3), 2 * (k + 1)))
    t = stages(rec).set_index(["iteration", "stage"])
    per_request = H2D_MS + COMPUTE_MS + D2H_MS
    for k in range(2):
        for stage, ms in (("h2d", H2D_MS), ("compute", COMPUTE_MS), ("d2h", D2H_MS)):
            row = t.loc[(k, stage)]
            assert row["host_ns"] == row["device_ns"] == round(ms * 1e6)
        # Stage starts are the device timeline mapped onto the host clock.
        assert t.loc[(k, "h2d"), "start_ns"] - t.loc[(0, "h2d"), "start_ns"] == round(
            k * per_request * 1e6
        )
        assert t.loc[(k, "compute"), "start_ns"] - t.loc[(k, "h2d"), "start_ns"] == round(
            H2D_MS * 1e6
        )


def test_complete_without_clock_lays_stages_back_to_back():
    cp = fake_cupy()
    io = cuda.DeviceIO(SPECS_IN, SPECS_OUT, 0, cupy_module=cp)
    rec = Recorder(1)
    io.enqueue({"x": np.ones((2, 3), np.float32)}, doubling_engine(io))
    io.complete(rec, 0)
    t = stages(rec).set_index("stage")
    assert t.loc["compute", "start_ns"] - t.loc["h2d", "start_ns"] == round(H2D_MS * 1e6)
    assert t.loc["d2h", "start_ns"] - t.loc["compute", "start_ns"] == round(COMPUTE_MS * 1e6)


# ---------------------------------------------------------------------------- pure helpers


def test_ms_to_ns_rounds():
    assert cuda.ms_to_ns(1.0) == 1_000_000
    assert cuda.ms_to_ns(0.0123456) == 12_346
    assert cuda.ms_to_ns(0) == 0


def test_slot_pool_round_robin_and_ownership():
    pool = cuda.SlotPool(cuda.SlotPool.size_for(2))
    assert pool.size == 3
    assert [pool.acquire(i) for i in range(3)] == [0, 1, 2]
    with pytest.raises(RuntimeError, match="slot 0 still holds iteration 0"):
        pool.acquire(3)
    pool.release(0)
    assert pool.acquire(3) == 0 and pool.in_flight == 3
    with pytest.raises(RuntimeError, match="not in use"):
        pool.release(0) or pool.release(0)
    with pytest.raises(ValueError):
        cuda.SlotPool(0)


def test_slot_pool_keeps_last_outputs_with_runner_order():
    """The runner: submit until `inflight` are pending, then wait for the oldest, post-process,
    submit the next. With size_for(inflight) slots the next submit never takes the slot whose
    outputs are being post-processed."""
    inflight = 2
    pool = cuda.SlotPool(cuda.SlotPool.size_for(inflight))
    pending, last_waited = [], None
    for it in range(20):
        slot = pool.acquire(it)
        assert slot != last_waited
        pending.append(slot)
        if len(pending) >= inflight:
            last_waited = pending.pop(0)
            pool.release(last_waited)


def test_stream_of_cycles():
    assert [cuda.stream_of(k, 2) for k in range(5)] == [0, 1, 0, 1, 0]
    assert cuda.stream_of(3, 0) == 0


def test_starts_before_and_record_device_stages():
    assert cuda.starts_before(1_000, [100, 200, 50]) == [650, 750, 950]
    rec = Recorder(4)
    cuda.record_device_stages(rec, 7, [10, 20, 30], [1, 2, 3])
    t = stages(rec)
    assert t["iteration"].tolist() == [7, 7, 7]
    assert t["stage"].tolist() == ["h2d", "compute", "d2h"]
    assert (t["host_ns"] == t["device_ns"]).all()


def test_event_clock_maps_events_to_host_time():
    anchor, ev = SimpleNamespace(t=1.0), SimpleNamespace(t=3.5)
    clock = cuda.EventClock(anchor, 10_000_000, lambda a, b: b.t - a.t)
    assert clock.host_ns(ev) == 12_500_000


def test_version_texts_and_bus_ids():
    assert cuda._cuda_version_text(13000) == "13.0"
    assert cuda._cuda_version_text(12040) == "12.4"
    assert cuda._cuda_version_text(0) == "none"
    assert cuda._cudnn_version_text(90100) == "9.1.0"
    assert cuda._cudnn_version_text(91300) == "9.13.0"
    assert cuda._cudnn_version_text(8906) == "8.9.6"
    assert (
        cuda._parse_bus_id("00000000:3B:00.0") == cuda._parse_bus_id("0000:3b:00.0") == (0, 0x3B, 0)
    )
    assert cuda._parse_bus_id("garbage") is None


# ---------------------------------------------------------------------------- availability


def test_availability_reason_on_this_machine():
    reason = cuda.gpu_unavailable_reason()
    if reason is not None:
        assert isinstance(reason, str) and reason
        with pytest.raises(BackendUnavailable, match="unavailable: "):
            cuda.require_gpu(0, "trt")


def test_reason_without_cupy(monkeypatch):
    monkeypatch.setattr(cuda.importlib.util, "find_spec", lambda name: None)
    assert "cupy is not installed" in cuda.gpu_unavailable_reason()


def test_reason_without_driver(monkeypatch):
    monkeypatch.setattr(cuda.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(cuda.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(cuda.shutil, "which", lambda name: None)
    assert "no NVIDIA GPU or driver" in cuda.gpu_unavailable_reason()


@pytest.mark.parametrize(
    ("count_fn", "device", "expected"),
    [
        (
            lambda: (_ for _ in ()).throw(RuntimeError("cudaErrorInsufficientDriver")),
            0,
            "sees no usable GPU: RuntimeError: cudaErrorInsufficientDriver",
        ),
        (lambda: 0, 0, "sees no GPU"),
        (lambda: 1, 3, "device 3 asked for, but 1 device(s)"),
        (lambda: 2, 1, None),
    ],
)
def test_reason_from_the_cuda_runtime(monkeypatch, count_fn, device, expected):
    fake = types.ModuleType("cupy")
    fake.cuda = SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=count_fn))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(cuda.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(cuda.glob, "glob", lambda pattern: ["/dev/nvidia0"])
    reason = cuda.gpu_unavailable_reason(device)
    if expected is None:
        assert reason is None
    else:
        assert expected in reason


def test_profiler_calls_never_raise():
    for fn in (cuda.profiler_start, cuda.profiler_stop):
        result = fn()
        assert result is None or "unavailable" in result


# ---------------------------------------------------------------------------- GPU facts


class FactsNVML(FakeNvmlSession):
    def __init__(self, fail=()):
        super().__init__()
        self.fail = set(fail)

    def _f(self, name, value):
        if name in self.fail:
            raise RuntimeError("Not Supported")
        return value

    def nvmlSystemGetDriverVersion(self):
        return "580.65.06"

    def nvmlSystemGetCudaDriverVersion(self):
        return 13000

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, h):
        return "GPU-1234"

    def nvmlDeviceGetPciInfo(self, h):
        return SimpleNamespace(busId="00000000:3B:00.0")

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return (9, 0)

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(total=85520809984)

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return {1: 1980, 2: 2619}[kind]

    def nvmlDeviceGetApplicationsClock(self, h, kind):
        return self._f("app", 1755)

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return 700000

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h):
        return 700000

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h):
        return 5

    def nvmlDeviceGetMaxPcieLinkWidth(self, h):
        return 16

    def nvmlDeviceGetEccMode(self, h):
        return (1, 1)

    def nvmlDeviceGetPersistenceMode(self, h):
        return self._f("persistence", 1)

    def nvmlDeviceGetVbiosVersion(self, h):
        return "96.00.99.00.01"


def facts_cupy():
    attrs = {50: 0, 33: 0x3B, 34: 0, 16: 132, 38: 52428800, 37: 5120}
    runtime = SimpleNamespace(
        runtimeGetVersion=lambda: 13000,
        getDeviceCount=lambda: 1,
        deviceGetAttribute=lambda attr, dev: attrs[attr],
        cudaDevAttrPciDomainId=50,
        cudaDevAttrPciBusId=33,
        cudaDevAttrPciDeviceId=34,
        cudaDevAttrMultiProcessorCount=16,
        cudaDevAttrL2CacheSize=38,
        cudaDevAttrGlobalMemoryBusWidth=37,
    )
    return SimpleNamespace(cuda=SimpleNamespace(runtime=runtime))


def test_gpu_facts_from_nvml_and_cuda():
    nvml = FactsNVML(fail={"app"})
    (gpu,) = cuda.gpu_facts(nvml=nvml, cupy_module=facts_cupy())
    assert gpu["name"] == "NVIDIA H100 80GB HBM3"
    assert gpu["compute_capability"] == "9.0"
    assert gpu["memory_total_mib"] == 81559
    assert gpu["sm_clock_max_mhz"] == 1980 and gpu["mem_clock_max_mhz"] == 2619
    assert gpu["power_limit_w"] == 700.0
    assert (gpu["pcie_gen_max"], gpu["pcie_width_max"]) == (5, 16)
    assert gpu["driver_version"] == "580.65.06" and gpu["cuda_driver_version"] == "13.0"
    assert gpu["cuda_runtime_version"] == "13.0"
    assert gpu["cuda_index"] == 0 and gpu["multiprocessor_count"] == 132
    assert gpu["memory_bus_width_bits"] == 5120
    assert (
        "sm_clock_app_mhz" not in gpu and "Not Supported" in gpu["unavailable"]["sm_clock_app_mhz"]
    )
    assert nvml.shutdowns == 1
    # Nothing that changes from moment to moment, so env_id stays stable.
    assert not {"temp_c", "power_w", "sm_clock_mhz", "pcie_gen"} & set(gpu)


def test_gpu_facts_empty_without_nvml():
    class NoDriver:
        def nvmlInit(self):
            raise RuntimeError("NVML Shared Library Not Found")

    assert cuda.gpu_facts(nvml=NoDriver()) == []


def test_gpu_facts_on_this_machine_never_raise():
    facts = cuda.gpu_facts()
    assert isinstance(facts, list)


# ---------------------------------------------------------------------------- on a GPU


@pytest.mark.gpu
def test_device_io_on_a_real_gpu():
    reason = cuda.gpu_unavailable_reason()
    if reason:
        pytest.skip(reason)
    import cupy as cp

    io = cuda.DeviceIO(SPECS_IN, SPECS_OUT, 0)
    rec = Recorder(2)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)

    def enqueue():
        with io.stream:
            cp.multiply(io.device_inputs["x"], 2, out=io.device_outputs["y"])

    for _ in range(5):
        io.h2d({"x": x}, rec)
        io.compute(enqueue, rec)
        out = io.d2h(rec)
        rec.next_iteration()
    np.testing.assert_array_equal(out["y"], 2 * x)
    t = stages(rec)
    dev = t.dropna(subset=["device_ns"])
    assert set(dev["stage"]) == {"h2d", "compute", "d2h"}
    assert (dev["device_ns"] > 0).all()
    assert (dev["host_ns"] >= dev["device_ns"]).all()  # each stage waited for its end event
    facts = cuda.gpu_facts()
    assert facts and facts[0]["name"]
    assert cuda.profiler_start() is None and cuda.profiler_stop() is None
    io.close()
