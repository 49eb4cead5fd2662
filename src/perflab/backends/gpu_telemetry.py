"""GPU telemetry over a run, as the trt and torch-cuda backends take it.

The sampler (`perflab.telemetry.GpuSampler`, NVML) starts at setup and stops when the runner
reads the backend's tables after the measured phase; its rows are timed from the run's first
iteration. No NVML, driver or GPU is a note for the run, never a failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def start_sampler(
    device_id: int, interval_ms: float, pci_bus_id: str | None, notes: list[str]
) -> Any:
    """A started sampler for the GPU (found by PCI bus id where known, else by index); why it
    samples nothing, if so, goes into `notes`."""
    from perflab.telemetry import GpuSampler

    sampler = GpuSampler(device_id, interval_ms, pci_bus_id=pci_bus_id)
    note = sampler.start()
    if note:
        notes.append(note)
    return sampler


def telemetry_tables(sampler: Any, t0_ns: int | None) -> dict[str, pd.DataFrame]:
    """The `telemetry` table of the samples (the sampler is stopped first); empty without any."""
    if sampler is None:
        return {}
    sampler.stop()
    frame = sampler.frame(t0_ns or 0)
    return {"telemetry": frame} if len(frame) else {}
