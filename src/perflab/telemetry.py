"""GPU telemetry during a run: clocks, temperature, power, utilization and throttling, via NVML.

A `GpuSampler` polls NVML (the `pynvml` module of the nvidia-ml-py package) from a background
thread every `interval_ms` and keeps one row per sample for the `telemetry` table. Without
NVML or a driver it records nothing and says why in `note`; it never raises into the run.

Cost to the run being measured: NVML calls are ctypes calls, which release the GIL while the
driver answers, so the measured thread only loses the few microseconds of Python work per sample
(about 10 per second at the default interval). NVML refreshes some values slower than we poll:
utilization is averaged over 1/6 s to 1 s and board power over 1 s on Ampere and later, so
neighbouring samples may repeat a value.

    sampler = GpuSampler(device_index=0, interval_ms=100)
    sampler.start()          # None, or a note (e.g. why there will be no telemetry)
    ...                      # the run
    sampler.stop()
    frame = sampler.frame(t0_ns=recorder.t0_ns)   # `telemetry` rows without run_id
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CLOCK_EVENT_REASONS",
    "COLUMNS",
    "GpuSampler",
    "decode_throttle_reasons",
]

#: NVML clocks-event ("throttle") reason bits: (bit, name, lowers clocks?). Values and names are
#: NVML's `nvmlClocksEventReason*` / `nvmlClocksThrottleReason*` constants (nvml.h, pynvml.py).
#: Idle, application-clock and display settings are states, not slowdowns; every other reason
#: holds the clocks below what the load asks for, so samples with one of them count as throttled.
CLOCK_EVENT_REASONS: tuple[tuple[int, str, bool], ...] = (
    (0x0001, "GpuIdle", False),
    (0x0002, "ApplicationsClocksSetting", False),
    (0x0004, "SwPowerCap", True),
    (0x0008, "HwSlowdown", True),
    (0x0010, "SyncBoost", True),
    (0x0020, "SwThermalSlowdown", True),
    (0x0040, "HwThermalSlowdown", True),
    (0x0080, "HwPowerBrakeSlowdown", True),
    (0x0100, "DisplayClockSetting", False),
    (0x0200, "BoardLimit", True),
    (0x0400, "Reliability", True),
)

#: Columns of the rows this module produces (the `telemetry` table without run_id).
COLUMNS = (
    "t_ns",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "temp_c",
    "power_w",
    "util_pct",
    "throttle_reasons",
    "throttled",
)

DEFAULT_INTERVAL_MS = 100
MIN_INTERVAL_MS = 10

# NVML constants (stable across NVML versions; repeated here so a fake NVML needs only functions).
_NVML_CLOCK_SM = 1
_NVML_CLOCK_MEM = 2
_NVML_TEMPERATURE_GPU = 0


def decode_throttle_reasons(mask: int) -> tuple[tuple[str, ...], bool]:
    """NVML clocks-event reason bitmask -> (reason names, whether any of them lowers clocks).

    Unknown bits are named by their hex value and do not count as throttling.

    >>> decode_throttle_reasons(0x1)
    (('GpuIdle',), False)
    >>> decode_throttle_reasons(0x24)
    (('SwPowerCap', 'SwThermalSlowdown'), True)
    """
    mask = int(mask)
    names: list[str] = []
    throttled = False
    known = 0
    for bit, name, slows in CLOCK_EVENT_REASONS:
        known |= bit
        if mask & bit:
            names.append(name)
            throttled = throttled or slows
    rest = mask & ~known
    bit = 1
    while rest:
        if rest & bit:
            names.append(f"0x{bit:x}")
            rest &= ~bit
        bit <<= 1
    return tuple(names), throttled


class GpuSampler:
    """Samples one GPU through NVML in a daemon thread (see the module docstring).

    `device_index` is NVML's index; pass `pci_bus_id` (as CUDA reports it, e.g. "0000:3b:00.0")
    to pick the same GPU CUDA uses when CUDA_VISIBLE_DEVICES or the device order differ from
    NVML's PCI order. `nvml` replaces the pynvml module (tests pass a fake); `clock` replaces
    time.perf_counter_ns, the clock the run's recorder uses.
    """

    def __init__(
        self,
        device_index: int = 0,
        interval_ms: float = DEFAULT_INTERVAL_MS,
        *,
        pci_bus_id: str | None = None,
        nvml: Any = None,
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        if not interval_ms >= MIN_INTERVAL_MS:
            raise ValueError(f"telemetry interval {interval_ms!r} ms: must be >= {MIN_INTERVAL_MS}")
        self.device_index = device_index
        self.interval_s = interval_ms / 1000.0
        self.pci_bus_id = pci_bus_id
        self.clock = clock
        self.note: str | None = None
        self._nvml = nvml
        self._handle: Any = None
        self._rows: list[tuple[Any, ...]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._initialized = False
        self._skip: set[str] = set()  # metrics NVML said it does not support on this GPU
        self._errors: dict[str, str] = {}

    # -- lifecycle

    def start(self) -> str | None:
        """Initialize NVML and start sampling. Returns None, or a note for the run: why nothing
        is sampled, or that the GPU was found by index because its PCI bus id was not."""
        if self._thread is not None:
            return self.note
        try:
            nvml = self._nvml if self._nvml is not None else _import_pynvml()
            self._nvml = nvml
            nvml.nvmlInit()
            self._initialized = True
            self._handle = self._device_handle(nvml)
        except Exception as exc:  # noqa: BLE001 - no package/driver/GPU: no telemetry, no crash
            self.note = f"no GPU telemetry: {_describe(exc)}"
            self._shutdown()
            return self.note
        self.sample_once()
        self._thread = threading.Thread(
            target=self._loop, name="perflab-gpu-telemetry", daemon=True
        )
        self._thread.start()
        return self.note

    def stop(self) -> None:
        """Stop sampling (takes one last sample first); safe to call more than once."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=max(5.0, 5 * self.interval_s))
            if self._handle is not None:
                self.sample_once()
        self._shutdown()

    def __enter__(self) -> GpuSampler:  # noqa: PYI034 - final class in practice
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def n_samples(self) -> int:
        return len(self._rows)

    # -- sampling

    def sample_once(self) -> None:
        """Read every metric once and append a row; a metric that fails is left empty (NaN)."""
        nvml, h = self._nvml, self._handle
        t = self.clock()
        sm = self._read("sm_clock", lambda: nvml.nvmlDeviceGetClockInfo(h, _NVML_CLOCK_SM))
        mem = self._read("mem_clock", lambda: nvml.nvmlDeviceGetClockInfo(h, _NVML_CLOCK_MEM))
        temp = self._read("temperature", lambda: _temperature(nvml, h))
        power_mw = self._read("power", lambda: nvml.nvmlDeviceGetPowerUsage(h))
        util = self._read("utilization", lambda: nvml.nvmlDeviceGetUtilizationRates(h).gpu)
        mask = self._read("clocks_event_reasons", lambda: _clock_event_reasons(nvml, h))
        self._rows.append(
            (t, sm, mem, temp, None if power_mw is None else power_mw / 1000.0, util, mask)
        )

    def _read(self, metric: str, fn: Callable[[], Any]) -> Any:
        if metric in self._skip:
            return None
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - one metric failing must not end the sampling
            if _is_not_supported(exc):
                self._skip.add(metric)
            self._errors.setdefault(metric, _describe(exc))
            return None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample_once()

    def _device_handle(self, nvml: Any) -> Any:
        if self.pci_bus_id:
            try:
                return nvml.nvmlDeviceGetHandleByPciBusId(_nvml_bus_id(self.pci_bus_id))
            except Exception:  # noqa: BLE001 - fall back to the index; the note says so
                self.note = (
                    f"GPU telemetry: PCI bus id {self.pci_bus_id} not found by NVML; "
                    f"sampling NVML device {self.device_index}"
                )
        return nvml.nvmlDeviceGetHandleByIndex(self.device_index)

    def _shutdown(self) -> None:
        if self._initialized:
            self._initialized = False
            with suppress(Exception):  # shutting down a half-initialized NVML is best effort
                self._nvml.nvmlShutdown()

    # -- results

    @property
    def errors(self) -> dict[str, str]:
        """Metric -> the first error NVML gave for it (metrics left empty in the rows)."""
        return dict(self._errors)

    def rows(self, t0_ns: int = 0) -> list[dict[str, Any]]:
        """Samples as `telemetry` rows; t_ns counts from `t0_ns` (negative: before it)."""
        out = []
        for t, sm, mem, temp, power, util, mask in list(self._rows):
            if mask is None:
                names, throttled = (), None
            else:
                names, throttled = decode_throttle_reasons(mask)
            out.append(
                {
                    "t_ns": int(t - t0_ns),
                    "sm_clock_mhz": _num(sm),
                    "mem_clock_mhz": _num(mem),
                    "temp_c": _num(temp),
                    "power_w": _num(power),
                    "util_pct": _num(util),
                    "throttle_reasons": ",".join(names) if mask is not None else None,
                    "throttled": throttled,
                }
            )
        return out

    def frame(self, t0_ns: int = 0) -> pd.DataFrame:
        """`rows` as a DataFrame with the table's columns and dtypes (empty when no samples)."""
        import pandas as pd

        frame = pd.DataFrame(self.rows(t0_ns), columns=list(COLUMNS))
        return frame.astype(
            {
                "t_ns": "int64",
                "sm_clock_mhz": "float64",
                "mem_clock_mhz": "float64",
                "temp_c": "float64",
                "power_w": "float64",
                "util_pct": "float64",
                "throttle_reasons": "object",
                "throttled": "boolean",
            }
        )


def _import_pynvml() -> Any:
    try:
        import pynvml
    except ImportError as exc:
        raise RuntimeError(
            "package nvidia-ml-py (module pynvml) is not installed; pip install 'perflab[gpu]'"
        ) from exc
    return pynvml


def _temperature(nvml: Any, h: Any) -> Any:
    # nvmlDeviceGetTemperature is deprecated (removal announced for CUDA 14); older drivers lack
    # the V form, so fall back when the function is missing.
    getter = getattr(nvml, "nvmlDeviceGetTemperatureV", None)
    if getter is not None:
        try:
            return getter(h, _NVML_TEMPERATURE_GPU)
        except Exception as exc:
            if not (_is_not_supported(exc) or _is_function_not_found(exc)):
                raise
    return nvml.nvmlDeviceGetTemperature(h, _NVML_TEMPERATURE_GPU)


def _clock_event_reasons(nvml: Any, h: Any) -> int:
    # "ClocksEvent" is the current name; "ClocksThrottle" the deprecated one older drivers have.
    getter = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    if getter is not None:
        try:
            return int(getter(h))
        except Exception as exc:
            if not _is_function_not_found(exc):
                raise
    return int(nvml.nvmlDeviceGetCurrentClocksThrottleReasons(h))


def _nvml_bus_id(bus_id: str) -> str:
    """CUDA's "0000:3b:00.0" -> NVML's "00000000:3B:00.0" (NVML wants an 8-digit domain)."""
    domain, _, rest = bus_id.strip().partition(":")
    return f"{int(domain, 16):08X}:{rest.upper()}" if rest else bus_id


# NVML error codes (nvml.h): NOT_SUPPORTED 3, FUNCTION_NOT_FOUND 13.
def _is_not_supported(exc: Exception) -> bool:
    return getattr(exc, "value", None) == 3 or type(exc).__name__ == "NVMLError_NotSupported"


def _is_function_not_found(exc: Exception) -> bool:
    return getattr(exc, "value", None) == 13 or type(exc).__name__ == "NVMLError_FunctionNotFound"


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def gpu_busy_note(device_index: int = 0, *, nvml: Any = None) -> str | None:
    """A note when other processes are computing on the GPU at the start of a run, else None.

    Another process's kernels share the SMs and memory bandwidth, so a run measured beside them is
    slower than the same run alone. Best effort: without NVML (or a driver) it says nothing.
    """
    import contextlib
    import os

    try:
        nvml = nvml or _import_pynvml()
        nvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no NVML, no driver: nothing to say
        return None
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(device_index)
        others = sorted(
            {p.pid for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)} - {os.getpid()}
        )
    except Exception:  # noqa: BLE001 - a query this driver lacks is not a reason to stop a run
        return None
    finally:
        with contextlib.suppress(Exception):  # shutting NVML down is best effort too
            nvml.nvmlShutdown()
    if not others:
        return None
    shown = ", ".join(map(str, others[:5])) + (" ..." if len(others) > 5 else "")
    return f"busy GPU: {len(others)} other process(es) computing on GPU {device_index} at the start of the run (pid {shown})"
