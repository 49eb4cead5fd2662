"""Seeded generators of samples/runs frames shaped like `store.read` returns them, with known truth.

The durations follow the synthetic backend's model: compute = compute_ms + compute_ms_per_item *
batch, each stage with seeded relative jitter, extra warmup time decaying linearly to zero over
`warmup_iterations`, and e2e = the sum of the stages plus a small harness gap.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest

DEFAULT_STAGES_MS: dict[str, float] = {
    "preprocess": 0.5,
    "h2d": 0.2,
    "compute": 2.0,
    "d2h": 0.1,
    "postprocess": 0.3,
}


def generate_samples(
    run_id: str = "r0",
    *,
    n_warmup: int = 0,
    n_measure: int = 200,
    batch: int = 1,
    stages_ms: Mapping[str, float] | None = None,
    compute_ms_per_item: float = 0.0,
    jitter: float = 0.01,
    warmup_iterations: int = 0,
    warmup_extra_ms: float = 0.0,
    gap_ms: float = 0.02,
    gpu: bool = True,
    device: bool = False,
    enqueue_ms: float | None = None,
    step_at: int | None = None,
    step_ms: float = 0.0,
    spikes: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """Rows run x iteration x stage with iteration 0..n_warmup+n_measure-1.

    warmup extra: iteration i < warmup_iterations gets warmup_extra_ms * (1 - i/warmup_iterations)
    added to compute. step_at/step_ms: compute gets step_ms more from iteration step_at on (a
    slowdown when positive). spikes: that many random iterations get a 3x compute outlier.
    """
    rng = np.random.default_rng(seed)
    base = dict(DEFAULT_STAGES_MS if stages_ms is None else stages_ms)
    if not gpu:
        base.pop("h2d", None)
        base.pop("d2h", None)
    base["compute"] = base.get("compute", 0.0) + compute_ms_per_item * batch
    n = n_warmup + n_measure
    it = np.arange(n)
    extra = np.zeros(n)
    if warmup_iterations:
        w = it < warmup_iterations
        extra[w] = warmup_extra_ms * (1 - it[w] / warmup_iterations)
    if step_at is not None:
        extra[it >= step_at] += step_ms
    spike = np.zeros(n, dtype=bool)
    if spikes:
        spike[rng.choice(np.arange(1, n), size=spikes, replace=False)] = True

    durations: dict[str, np.ndarray] = {}
    for stage, ms in base.items():
        d = np.full(n, ms) + (extra if stage == "compute" else 0.0)
        d = d * np.maximum(1 + jitter * rng.standard_normal(n), 0.05)
        if stage == "compute":
            d = np.where(spike, 3 * d, d)
        durations[stage] = d
    gap = gap_ms * np.maximum(1 + jitter * rng.standard_normal(n), 0.05)

    ns = {s: np.round(d * 1e6).astype(np.int64) for s, d in durations.items()}
    gap_ns = np.round(gap * 1e6).astype(np.int64)
    e2e_ns = sum(ns.values()) + gap_ns
    e2e_start = np.concatenate(([0], np.cumsum(e2e_ns)[:-1]))
    frames = []
    offset = np.zeros(n, dtype=np.int64)
    for stage, d in ns.items():
        frames.append(_rows(run_id, it, n_warmup, stage, e2e_start + offset, d, batch, device))
        if stage == "compute" and enqueue_ms is not None:
            enq = np.round(enqueue_ms * 1e6 * np.maximum(1 + jitter * rng.standard_normal(n), 0.05))
            frames.append(
                _rows(
                    run_id,
                    it,
                    n_warmup,
                    "enqueue",
                    e2e_start + offset,
                    enq.astype(np.int64),
                    batch,
                    False,
                )
            )
        offset = offset + d
    frames.append(_rows(run_id, it, n_warmup, "e2e", e2e_start, e2e_ns, batch, False))
    out = pd.concat(frames, ignore_index=True).sort_values(["iteration", "start_ns"], kind="stable")
    return as_stored(out.reset_index(drop=True))


def _rows(run_id, it, n_warmup, stage, start, host, batch, device) -> pd.DataFrame:
    dev = host * 0.97 if device and stage in ("h2d", "compute", "d2h") else np.full(len(it), np.nan)
    return pd.DataFrame(
        {
            "run_id": run_id,
            "iteration": it.astype(np.int32),
            "phase": np.where(it < n_warmup, "warmup", "measure"),
            "stage": stage,
            "start_ns": start.astype(np.int64),
            "host_ns": host.astype(np.int64),
            "device_ns": np.round(dev),
            "items": np.full(len(it), batch, dtype=np.int32),
        }
    )


def as_stored(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical run_id/phase/stage, as the store's dictionary columns come back."""
    frame = frame.copy()
    for col in ("run_id", "phase", "stage"):
        frame[col] = frame[col].astype(str).astype("category")
    return frame


def concat_frames(*frames: pd.DataFrame) -> pd.DataFrame:
    """Concatenate generated frames, keeping the categorical columns categorical."""
    out = pd.concat(
        [f.astype({c: str for c in ("run_id", "phase", "stage")}) for f in frames],
        ignore_index=True,
    )
    return as_stored(out)


def generate_runs(run_ids, **columns) -> pd.DataFrame:
    """A runs frame: one row per run id, status ok, plus columns (scalars or per-run lists)."""
    run_ids = list(run_ids)
    data = {
        "run_id": run_ids,
        "status": "ok",
        "label": run_ids,
        "model": "m",
        "pipeline": "raw",
        "backend": "synthetic",
        "mode": "latency",
        "device_name": "cpu0",
        "precision": "fp32",
        "batch_size": 1,
        "options": "{}",
        "host": "h1",
        "study": "s",
    }
    data.update(columns)
    return pd.DataFrame(data)


# Fixtures hand the generators to tests (a test module importing "conftest" by name would be
# ambiguous once other test folders have their own conftest.py).
@pytest.fixture
def make_samples():
    return generate_samples


@pytest.fixture
def make_runs():
    return generate_runs


@pytest.fixture
def concat_samples():
    return concat_frames
