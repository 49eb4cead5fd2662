"""When does a run reach steady state? Changepoint segmentation and classification per run.

The method follows Barrett et al., "Virtual Machine Warmup Blows Hot and Cold" (OOPSLA 2017, the
warmup_stats tool): clean outliers, segment the per-iteration series with PELT, treat segments
whose levels differ by less than a tolerance as equal, then classify by comparing the final
segment with the earlier ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from perflab.analysis.overview import label_map
from perflab.analysis.stats import ok_run_ids
from perflab.errors import PerflabError

CLASSIFICATIONS: tuple[str, ...] = ("flat", "warmup", "slowdown", "no steady state")
MODELS: tuple[str, ...] = ("l2", "rbf")

WARMUP_COLUMNS: tuple[str, ...] = (
    "run_id",
    "classification",
    "steady_iteration",
    "steady_ms_to_reach",
    "steady_p50_ms",
    "n_changepoints",
    "changepoints",
    "segment_p50_ms",
    "first_ms",
    "cold_start_ratio",
    "recommended_warmup",
    "n_outliers",
    "n_iterations",
)

# Barrett et al. call a series without a steady state when its last changepoint falls within
# the final 500 of 2000 iterations (a quarter). Shorter series scale that down: the final segment
# must span min(500, 25% of the series).
MIN_STEADY_ITERATIONS = 500
MIN_STEADY_FRACTION = 0.25
# Penalty factors (see warmup()): tuned on seeded series of 200-2000 iterations with 1% and 5%
# jitter, normal and t(3) noise, so that flat series stay one segment while a 30-iteration warmup
# ramp and a 5% step are found.
DEFAULT_PENALTY: dict[str, float] = {"l2": 4.0, "rbf": 1.0}
# Below this many iterations there is too little to tell a steady state from noise.
MIN_SERIES = 20
# The changepoint position is uncertain by a few iterations and warmup varies between
# processes: recommend the steady iteration plus 20% of it, and at least 5 iterations more.
MARGIN_FRACTION = 0.2
MIN_MARGIN = 5


@dataclass(frozen=True)
class WarmupMethod:
    """The knobs of the method warmup() describes, step by step: the outlier filter
    (outlier_k, outlier_window), the segmentation (model, penalty, min_size, max_points) and
    the equivalence of segments (rel_tol, abs_tol_ms)."""

    model: str = "l2"
    penalty: float | None = None
    min_size: int = 5
    rel_tol: float = 0.01
    abs_tol_ms: float = 0.001
    outlier_k: float = 5.0
    outlier_window: int = 7
    max_points: int = 1000

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise PerflabError(
                f"unknown changepoint model {self.model!r}; choose one of {list(MODELS)}"
            )
        if self.min_size < 2:
            raise PerflabError(f"min_size must be at least 2 iterations, got {self.min_size}")


def warmup(
    samples: pd.DataFrame,
    *,
    runs: pd.DataFrame | None = None,
    stage: str = "e2e",
    **method: Any,
) -> pd.DataFrame:
    """Classify each run's per-iteration series (warmup iterations included) as in warmup_stats.

    Input: samples (run_id, iteration, stage, host_ns; every phase is used); runs optional
    (keeps ok runs, adds runs.first_ms-based columns); `method`: the knobs of the steps below
    as keywords of WarmupMethod (model, penalty, min_size, rel_tol, abs_tol_ms, outlier_k,
    outlier_window, max_points), which holds their defaults.

    Output, one row per run::

        run_id classification steady_iteration steady_ms_to_reach steady_p50_ms n_changepoints
        r1     warmup         30               452.1              10.02         6
        r2     flat           0                0.0                10.01         0
               changepoints          segment_p50_ms            first_ms cold_start_ratio
               [5, 10, ..., 30]      [24.8, 21.5, ..., 10.02]  29.9     2.98
               []                    [10.01]                   10.2     1.02
               recommended_warmup n_outliers n_iterations
               36                 1          2000
               5                  0          2000

    Steps, per run:

    1. Outliers: a Hampel filter. A point further than `outlier_k` robust standard deviations
       (1.4826 x MAD of the residuals) from the centred rolling median of `outlier_window`
       iterations is replaced by that median and counted in n_outliers. A rolling median follows
       sustained level changes (warmup, slowdowns) but not isolated spikes, so only the latter
       are removed. The cold first iteration is often one of them; first_ms keeps it.
    2. Segmentation: PELT with the l2 cost (a change in mean; `model="rbf"` for a change in
       distribution), `min_size` iterations per segment at least, penalty
       `penalty * sigma^2 * ln(n)` for l2 (default penalty 4), where sigma is a robust estimate
       of the noise (MAD of first differences / sqrt 2), so the same penalty works at any latency
       and jitter; for rbf, whose cost is unitless, `penalty * ln(n)` (default 1). ruptures'
       KernelCPD runs PELT in C (its linear kernel is exactly the l2 cost), about a thousand
       times faster than ruptures' pure-Python Pelt (37 s for 2000 points).
       Series longer than `max_points` are binned to medians of equal blocks first (PELT's cost
       grows with the square of a flat series' length), and each changepoint found is then moved
       to the best split within a block of it in the unbinned series.
    3. Equivalence: adjacent segments whose medians differ by at most
       max(abs_tol_ms, rel_tol x the smaller median) are merged (closest pair first); n_changepoints
       and changepoints (first iteration of each new segment) are counted after merging.
    4. Classification: `flat` one segment; `no steady state` the final segment is shorter than
       min(500, 25% of the series) iterations (Barrett et al. use the last 500 of 2000), or the
       series has fewer than 20 iterations; `slowdown` an earlier segment is faster than the
       final one by more than the tolerance; otherwise `warmup` (the final segment is the fastest).

    Columns: steady_iteration is the first iteration of the final segment (the steady state;
    for `slowdown` the degraded final state; NA for `no steady state`); steady_ms_to_reach the sum
    of the stage's times before it; steady_p50_ms the median in it; first_ms the first
    iteration's time; cold_start_ratio = first_ms / steady_p50_ms. recommended_warmup =
    steady_iteration + max(5, ceil(0.2 x steady_iteration)) for `flat` and `warmup` (NA
    otherwise: more warmup does not help). With runs: runs_first_ms (the runner's setup stage
    `first`) and runs_cold_start_ratio = runs_first_ms / steady_p50_ms as well.
    """
    how = WarmupMethod(**method)
    for col in ("run_id", "iteration", "stage", "host_ns"):
        if col not in samples.columns:
            raise PerflabError(
                f"samples frame lacks column {col!r}; it has {list(samples.columns)}"
            )

    mask = (samples["stage"] == stage).to_numpy(dtype=bool, na_value=False)
    ok = ok_run_ids(runs)
    if ok is not None:
        mask = mask & samples["run_id"].isin(ok).to_numpy(dtype=bool, na_value=False)
    run_id = samples["run_id"].to_numpy()[mask].astype(str)
    iteration = samples["iteration"].to_numpy()[mask].astype(np.int64)
    ms = samples["host_ns"].to_numpy(dtype=np.float64)[mask] / 1e6
    order = np.lexsort((iteration, run_id))
    run_id, iteration, ms = run_id[order], iteration[order], ms[order]
    # Run boundaries; none without samples (imported runs hold summaries only).
    bounds = (
        np.flatnonzero(np.concatenate(([True], run_id[1:] != run_id[:-1], [True])))
        if len(run_id)
        else np.zeros(0, dtype=np.int64)
    )

    rows = [
        {"run_id": run_id[a], **classify_series(iteration[a:b], ms[a:b], how)}
        for a, b in pairwise(bounds)
    ]
    out = pd.DataFrame(rows, columns=list(WARMUP_COLUMNS))
    for col in ("steady_iteration", "recommended_warmup"):
        out[col] = out[col].astype("Int64")
    for col in ("n_changepoints", "n_outliers", "n_iterations"):
        out[col] = out[col].astype(np.int64)
    if runs is not None and "first_ms" in runs.columns:
        first = (
            runs.assign(run_id=runs["run_id"].astype(str))
            .drop_duplicates("run_id")
            .set_index("run_id")["first_ms"]
            .astype(float)
        )
        out["runs_first_ms"] = out["run_id"].map(first).astype(float)
        out["runs_cold_start_ratio"] = out["runs_first_ms"] / out["steady_p50_ms"]
    return out


def classify_series(
    iteration: np.ndarray, ms: np.ndarray, how: WarmupMethod = WarmupMethod()
) -> dict[str, object]:
    """Classify one series (iterations ascending, times in ms); see warmup() for the method."""
    n = len(ms)
    result: dict[str, object] = {
        "classification": "no steady state",
        "steady_iteration": pd.NA,
        "steady_ms_to_reach": np.nan,
        "steady_p50_ms": np.nan,
        "n_changepoints": 0,
        "changepoints": [],
        "segment_p50_ms": [],
        "first_ms": float(ms[0]) if n else np.nan,
        "cold_start_ratio": np.nan,
        "recommended_warmup": pd.NA,
        "n_outliers": 0,
        "n_iterations": n,
    }
    if n < max(MIN_SERIES, 2 * how.min_size):
        return result
    clean, n_outliers = hampel(ms, window=how.outlier_window, k=how.outlier_k)
    result["n_outliers"] = n_outliers

    starts = segment_starts(
        clean,
        model=how.model,
        penalty=how.penalty,
        min_size=how.min_size,
        max_points=how.max_points,
    )
    starts, medians = merge_equivalent(
        clean, starts, rel_tol=how.rel_tol, abs_tol_ms=how.abs_tol_ms
    )
    result["n_changepoints"] = len(starts) - 1
    result["changepoints"] = [int(iteration[s]) for s in starts[1:]]
    result["segment_p50_ms"] = [float(m) for m in medians]

    last = starts[-1]
    final = medians[-1]
    tol = max(how.abs_tol_ms, how.rel_tol * final)
    min_steady = min(MIN_STEADY_ITERATIONS, math.ceil(MIN_STEADY_FRACTION * n))
    if len(starts) == 1:
        label = "flat"
    elif n - last < min_steady:
        label = "no steady state"
    elif any(m < final - tol for m in medians[:-1]):
        label = "slowdown"
    else:
        label = "warmup"
    result["classification"] = label
    if label == "no steady state":
        return result
    steady_iteration = int(iteration[last])
    steady_p50 = float(np.median(ms[last:]))
    result.update(
        steady_iteration=steady_iteration,
        steady_ms_to_reach=float(ms[:last].sum()),
        steady_p50_ms=steady_p50,
        cold_start_ratio=float(ms[0]) / steady_p50 if steady_p50 > 0 else np.nan,
    )
    if label in ("flat", "warmup"):
        margin = max(MIN_MARGIN, math.ceil(MARGIN_FRACTION * steady_iteration))
        result["recommended_warmup"] = steady_iteration + margin
    return result


def hampel(x: np.ndarray, *, window: int = 7, k: float = 5.0) -> tuple[np.ndarray, int]:
    """Replace isolated outliers by the centred rolling median; return (cleaned, count).

    A point is an outlier when |x - rolling median| > k * 1.4826 * median(|x - rolling median|).
    The scale has a floor of 0.1% of the series median, so an almost constant series (a
    synthetic backend without jitter) does not turn its tiny wobbles into outliers.
    """
    med = pd.Series(x).rolling(window, center=True, min_periods=1).median().to_numpy()
    resid = x - med
    scale = 1.4826 * np.median(np.abs(resid))
    scale = max(scale, 1e-3 * abs(float(np.median(x))), np.finfo(float).tiny)
    out = np.abs(resid) > k * scale
    return np.where(out, med, x), int(out.sum())


def robust_sigma(x: np.ndarray) -> float:
    """Noise standard deviation from first differences (insensitive to level shifts)."""
    d = np.diff(x)
    if len(d) == 0:
        return 0.0
    return 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2)


def segment_starts(
    x: np.ndarray,
    *,
    model: str = "l2",
    penalty: float | None = None,
    min_size: int = 5,
    max_points: int = 1000,
) -> list[int]:
    """Start indices of the PELT segments of x (the first is always 0)."""
    import ruptures as rpt  # on use, keeping `import perflab` light

    n = len(x)
    block = max(1, math.ceil(n / max_points))
    if block > 1:
        # Medians of equal blocks (the last one may be shorter) keep PELT's cost bounded.
        full = n // block
        signal = np.median(x[: full * block].reshape(full, block), axis=1)
        if full * block < n:
            signal = np.append(signal, np.median(x[full * block :]))
    else:
        signal = x
    m = len(signal)
    seg_min = max(2, math.ceil(min_size / block))
    if m < 2 * seg_min:
        return [0]
    if penalty is None:
        penalty = DEFAULT_PENALTY[model]
    if model == "l2":
        level = abs(float(np.median(signal)))
        sigma = max(robust_sigma(signal), 1e-4 * level, 1e-9)
        pen = penalty * sigma * sigma * math.log(m)
        algo = rpt.KernelCPD(kernel="linear", min_size=seg_min)
    else:
        pen = penalty * math.log(m)
        algo = rpt.KernelCPD(kernel="rbf", min_size=seg_min)
    ends = algo.fit(signal.reshape(-1, 1)).predict(pen=pen)
    starts = [0] + [int(e) * block for e in ends[:-1] if int(e) * block < n]
    return refine(x, starts, radius=block) if block > 1 else starts


def refine(x: np.ndarray, starts: list[int], *, radius: int) -> list[int]:
    """Move each changepoint found on binned data to the best split within `radius` iterations.

    "Best" is the least squared error of the two neighbouring segments about their means, so the
    positions regain single-iteration resolution at the cost of a few cumulative sums.
    """
    c1 = np.concatenate(([0.0], np.cumsum(x)))
    c2 = np.concatenate(([0.0], np.cumsum(x * x)))

    def sse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        s = c1[b] - c1[a]
        return (c2[b] - c2[a]) - s * s / (b - a)

    out = list(starts)
    bounds = out + [len(x)]
    for i in range(1, len(out)):
        lo, hi = bounds[i - 1], bounds[i + 1]
        cand = np.arange(max(lo + 1, out[i] - radius), min(hi - 1, out[i] + radius) + 1)
        if len(cand):
            out[i] = int(
                cand[
                    np.argmin(sse(np.full_like(cand, lo), cand) + sse(cand, np.full_like(cand, hi)))
                ]
            )
            bounds[i] = out[i]
    return out


def merge_equivalent(
    x: np.ndarray, starts: list[int], *, rel_tol: float = 0.01, abs_tol_ms: float = 0.001
) -> tuple[list[int], list[float]]:
    """Merge adjacent segments whose medians are within tolerance, closest pair first."""
    starts = list(starts)
    bounds = starts + [len(x)]
    medians = [float(np.median(x[a:b])) for a, b in pairwise(bounds)]
    while len(starts) > 1:
        gaps = [abs(medians[i + 1] - medians[i]) for i in range(len(medians) - 1)]
        i = int(np.argmin(gaps))
        tol = max(abs_tol_ms, rel_tol * min(medians[i], medians[i + 1]))
        if gaps[i] > tol:
            break
        del starts[i + 1]
        end = starts[i + 1] if i + 1 < len(starts) else len(x)
        medians[i : i + 2] = [float(np.median(x[starts[i] : end]))]
    return starts, medians


def warmup_table(warmup: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Warmup classification per run, with whether the run's own warmup phase was long enough
    (its n_warmup against the recommended number of warmup iterations)."""
    cols = [
        "label",
        "classification",
        "steady_iteration",
        "n_warmup",
        "recommended_warmup",
        "warmup enough",
        "steady_p50_ms",
        "cold_start_ratio",
        "n_changepoints",
    ]
    if warmup.empty:
        return pd.DataFrame(columns=cols)
    labels = label_map(runs)
    n_warm = (
        dict(zip(runs["run_id"].astype(str), runs["n_warmup"], strict=True))
        if "n_warmup" in runs.columns
        else {}
    )
    out = warmup.assign(
        label=warmup["run_id"].astype(str).map(labels),
        n_warmup=warmup["run_id"].astype(str).map(n_warm),
    )

    def enough(r: pd.Series) -> str:
        if pd.isna(r["recommended_warmup"]) or pd.isna(r["n_warmup"]):
            return ""
        return "yes" if int(r["n_warmup"]) >= int(r["recommended_warmup"]) else "no"

    out["warmup enough"] = out.apply(enough, axis=1) if len(out) else []
    return out[[c for c in cols if c in out.columns]].sort_values("label").reset_index(drop=True)
