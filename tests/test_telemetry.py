"""GPU telemetry: clocks-event reason decoding and the NVML sampler, against a fake NVML."""

from __future__ import annotations

import time
from itertools import count

import pytest

from fakes import FakeNvmlSession
from perflab import store
from perflab.telemetry import (
    CLOCK_EVENT_REASONS,
    COLUMNS,
    GpuSampler,
    _nvml_bus_id,
    decode_throttle_reasons,
)

# nvmlClocksEventReason* / nvmlClocksThrottleReason* as nvidia-ml-py 13.615.71 (pynvml.py) and
# nvml.h define them; BoardLimit and Reliability exist only under the Throttle names.
NVML_BITS = {
    "GpuIdle": 0x0000000000000001,
    "ApplicationsClocksSetting": 0x0000000000000002,
    "SwPowerCap": 0x0000000000000004,
    "HwSlowdown": 0x0000000000000008,
    "SyncBoost": 0x0000000000000010,
    "SwThermalSlowdown": 0x0000000000000020,
    "HwThermalSlowdown": 0x0000000000000040,
    "HwPowerBrakeSlowdown": 0x0000000000000080,
    "DisplayClockSetting": 0x0000000000000100,
    "BoardLimit": 0x0000000000000200,
    "Reliability": 0x0000000000000400,
}
NVML_EVENT_REASON_ALL = 0x1FF  # nvmlClocksEventReasonAll


def test_reason_table_matches_nvml_constants():
    assert {name: bit for bit, name, _ in CLOCK_EVENT_REASONS} == NVML_BITS


@pytest.mark.parametrize(
    ("mask", "names", "throttled"),
    [
        (0x0, (), False),
        (0x1, ("GpuIdle",), False),
        (0x2, ("ApplicationsClocksSetting",), False),
        (0x100, ("DisplayClockSetting",), False),
        (0x1 | 0x2 | 0x100, ("GpuIdle", "ApplicationsClocksSetting", "DisplayClockSetting"), False),
        (0x4, ("SwPowerCap",), True),
        (0x8, ("HwSlowdown",), True),
        (0x10, ("SyncBoost",), True),
        (0x20, ("SwThermalSlowdown",), True),
        (0x40, ("HwThermalSlowdown",), True),
        (0x80, ("HwPowerBrakeSlowdown",), True),
        (0x200, ("BoardLimit",), True),
        (0x400, ("Reliability",), True),
        # A power-capped GPU that also runs at application clocks: throttled.
        (0x2 | 0x4, ("ApplicationsClocksSetting", "SwPowerCap"), True),
        (0x24, ("SwPowerCap", "SwThermalSlowdown"), True),
        # Bits NVML may add later: named by value, not counted as throttling.
        (0x800, ("0x800",), False),
        (0x1 | 0x1000, ("GpuIdle", "0x1000"), False),
    ],
)
def test_decode_throttle_reasons(mask, names, throttled):
    assert decode_throttle_reasons(mask) == (names, throttled)


def test_decode_all_reasons():
    names, throttled = decode_throttle_reasons(NVML_EVENT_REASON_ALL)
    assert len(names) == 9 and throttled


def test_nvml_bus_id_from_cuda_form():
    assert _nvml_bus_id("0000:3b:00.0") == "00000000:3B:00.0"
    assert _nvml_bus_id("00000000:3B:00.0") == "00000000:3B:00.0"


# ---------------------------------------------------------------------------- fake NVML


class NVMLError(Exception):
    def __init__(self, value: int):
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {
            3: "Not Supported",
            12: "NVML Shared Library Not Found",
            13: "Function Not Found",
        }.get(self.value, f"NVML error {self.value}")


class FakeNVML:
    """Returns recorded values in turn: per sample (sm MHz, mem MHz, temp C, power mW, util %,
    clocks-event mask). Counts calls, so tests can see what the sampler asked for."""

    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def __init__(self, samples, *, unsupported=(), modern=True, init_error=None):
        self.samples = list(samples)
        self.i = -1
        self.unsupported = set(unsupported)
        self.calls: dict[str, int] = {}
        self.inits = self.shutdowns = 0
        self.init_error = init_error
        if not modern:  # an older driver: only the deprecated names
            self.nvmlDeviceGetTemperatureV = None
            self.nvmlDeviceGetCurrentClocksEventReasons = None

    def _count(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1
        if name in self.unsupported:
            raise NVMLError(3)

    def _sample(self):
        return self.samples[min(self.i, len(self.samples) - 1)]

    def nvmlInit(self):
        if self.init_error:
            raise self.init_error
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("gpu", i)

    def nvmlDeviceGetHandleByPciBusId(self, bus):
        if bus != "00000000:3B:00.0":
            raise NVMLError(6)
        return ("gpu", bus)

    def nvmlDeviceGetClockInfo(self, h, kind):
        if kind == 1:  # the SM clock is read first: a new sample starts
            self.i += 1
            self._count("sm")
            return self._sample()[0]
        self._count("mem")
        return self._sample()[1]

    def nvmlDeviceGetTemperatureV(self, h, sensor):
        self._count("tempV")
        return self._sample()[2]

    def nvmlDeviceGetTemperature(self, h, sensor):
        self._count("temp")
        return self._sample()[2]

    def nvmlDeviceGetPowerUsage(self, h):
        self._count("power")
        return self._sample()[3]

    def nvmlDeviceGetUtilizationRates(self, h):
        self._count("util")

        class U:
            gpu = self._sample()[4]
            memory = 0

        return U()

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        self._count("reasons")
        return self._sample()[5]

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):
        self._count("reasons_old")
        return self._sample()[5]


# Recorded from a loaded GPU: boost clocks, then a power cap, then idle.
RECORDED = [
    (1980, 10501, 61, 311250, 98, 0x0),
    (1755, 10501, 74, 450120, 100, 0x4),
    (210, 405, 45, 31050, 0, 0x1),
]


def ticking(start=1_000, step=1_000):
    c = count()
    return lambda: start + step * next(c)


def test_sampler_rows_from_recorded_values():
    nvml = FakeNVML(RECORDED)
    sampler = GpuSampler(0, interval_ms=60_000, nvml=nvml, clock=ticking())
    assert sampler.start() is None
    sampler.sample_once()  # the long interval keeps the thread quiet: samples are ours
    sampler.stop()  # takes the last one
    rows = sampler.rows(t0_ns=1_500)
    assert [r["t_ns"] for r in rows] == [-500, 500, 1_500]
    assert [r["sm_clock_mhz"] for r in rows] == [1980.0, 1755.0, 210.0]
    assert [r["mem_clock_mhz"] for r in rows] == [10501.0, 10501.0, 405.0]
    assert [r["temp_c"] for r in rows] == [61.0, 74.0, 45.0]
    assert [r["power_w"] for r in rows] == pytest.approx([311.25, 450.12, 31.05])
    assert [r["util_pct"] for r in rows] == [98.0, 100.0, 0.0]
    assert [r["throttle_reasons"] for r in rows] == ["", "SwPowerCap", "GpuIdle"]
    assert [r["throttled"] for r in rows] == [False, True, False]
    assert nvml.inits == 1 and nvml.shutdowns == 1
    assert "reasons_old" not in nvml.calls and "temp" not in nvml.calls


def test_frame_has_the_telemetry_table_columns():
    sampler = GpuSampler(0, interval_ms=60_000, nvml=FakeNVML(RECORDED), clock=ticking())
    sampler.start()
    sampler.stop()
    frame = sampler.frame(t0_ns=0)
    table_columns = [n for n in store.schema("telemetry").names if n != "run_id"]
    assert list(frame.columns) == table_columns == list(COLUMNS)
    assert str(frame["t_ns"].dtype) == "int64"
    assert frame["throttled"].tolist() == [False, True]


def test_unsupported_metric_is_empty_and_not_asked_again():
    nvml = FakeNVML(RECORDED, unsupported={"power"})
    sampler = GpuSampler(0, interval_ms=60_000, nvml=nvml, clock=ticking())
    sampler.start()
    sampler.sample_once()
    sampler.stop()
    rows = sampler.rows()
    assert all(r["power_w"] != r["power_w"] for r in rows)  # NaN
    assert [r["sm_clock_mhz"] for r in rows] == [1980.0, 1755.0, 210.0]
    assert nvml.calls["power"] == 1
    assert "power" in sampler.errors and "Not Supported" in sampler.errors["power"]


def test_older_driver_uses_deprecated_functions():
    nvml = FakeNVML(RECORDED, modern=False)
    sampler = GpuSampler(0, interval_ms=60_000, nvml=nvml, clock=ticking())
    sampler.start()
    sampler.stop()
    assert [r["throttle_reasons"] for r in sampler.rows()] == ["", "SwPowerCap"]
    assert nvml.calls["reasons_old"] == 2 and nvml.calls["temp"] == 2


def test_pci_bus_id_picks_the_device_and_falls_back_with_a_note():
    sampler = GpuSampler(0, interval_ms=60_000, pci_bus_id="0000:3b:00.0", nvml=FakeNVML(RECORDED))
    assert sampler.start() is None
    assert sampler._handle == ("gpu", "00000000:3B:00.0")
    sampler.stop()
    other = GpuSampler(1, interval_ms=60_000, pci_bus_id="0000:af:00.0", nvml=FakeNVML(RECORDED))
    assert "not found" in other.start()
    assert other._handle == ("gpu", 1)
    other.stop()


def test_no_nvml_library_means_a_note_and_no_rows():
    nvml = FakeNVML(RECORDED, init_error=NVMLError(12))
    sampler = GpuSampler(0, nvml=nvml)
    note = sampler.start()
    assert note is not None and "no GPU telemetry" in note and "Library Not Found" in note
    sampler.stop()
    assert sampler.rows() == [] and len(sampler.frame()) == 0
    assert list(sampler.frame().columns) == list(COLUMNS)


def test_real_environment_never_raises():
    """Without nvidia-ml-py or a driver (this machine): a note. With a GPU: samples."""
    sampler = GpuSampler(0, interval_ms=50)
    note = sampler.start()
    sampler.stop()
    if note is None:
        assert sampler.n_samples >= 2
    else:
        assert note.startswith("no GPU telemetry") and sampler.n_samples == 0


def test_background_thread_samples_until_stopped():
    nvml = FakeNVML(RECORDED)
    sampler = GpuSampler(0, interval_ms=10, nvml=nvml)
    sampler.start()
    deadline = time.monotonic() + 30  # liveness only: the loop is expected within milliseconds
    while sampler.n_samples < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    n = sampler.n_samples
    assert n >= 5 and not sampler.running
    time.sleep(0.05)
    assert sampler.n_samples == n  # stopped means stopped
    t = [r["t_ns"] for r in sampler.rows()]
    assert t == sorted(t)


def test_interval_must_be_sane():
    with pytest.raises(ValueError, match="interval"):
        GpuSampler(0, interval_ms=1)


def test_busy_gpu_note_names_other_processes():
    import os
    from types import SimpleNamespace

    from perflab.telemetry import gpu_busy_note

    class FakeNvml(FakeNvmlSession):
        def __init__(self, pids):
            super().__init__()
            self.pids = pids

        def nvmlDeviceGetComputeRunningProcesses(self, handle):
            return [SimpleNamespace(pid=p) for p in self.pids]

    note = gpu_busy_note(0, nvml=FakeNvml([4242, os.getpid()]))
    assert (
        note
        == "busy GPU: 1 other process(es) computing on GPU 0 at the start of the run (pid 4242)"
    )
    assert gpu_busy_note(0, nvml=FakeNvml([os.getpid()])) is None
    assert gpu_busy_note(0, nvml=FakeNvml([])) is None
