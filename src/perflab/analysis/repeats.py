"""Repeated runs of one config: the between-run spread and CIs that include it.

One run's iterations share one process: one address-space layout, one turbo state, one
neighbour's load. Their spread says nothing about how much the next run will differ, which is
usually more (pyperf's reason for many worker processes). So a config measured in R runs gets:

- its centre: the mean of the R run medians (each run counts once, however long it ran);
- a two-stage (hierarchical) bootstrap: draw R runs with replacement, then resample the
  iterations of each drawn run; the statistic of a draw is the mean of those resampled medians;
- with R >= 2 runs, a t interval on the log scale from the bootstrap standard error: a
  bootstrap over R clusters underestimates the variance by (R - 1) / R, and the spread itself
  is estimated from only R values, so the half-width is sqrt(R / (R - 1)) x t(R - 1) x the
  bootstrap SE of the log statistic (the correction behind Hesterberg's expanded percentile
  interval, "What teachers should know about the bootstrap", 2015; a percentile interval cannot
  reach beyond the few run medians it resamples, a t interval can). With one run, the plain
  percentile interval of the iteration bootstrap (which holds no between-run variance).

Each group's sorted iterations are used one group at a time, so the arrays can come from any
read path (pandas in memory or DuckDB out of core).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

# The smallest number of iterations of a run for which a distribution-free 95% CI of its median
# exists: with n values, [min, max] covers the median with probability 1 - 2 x 0.5^n, which
# reaches 0.95 at n = 6. A run with fewer values gets no CI, and no ratio CI is built on it.
MIN_ITERATIONS_MEDIAN_CI = 6
# P(Z < -1): the percentiles one standard deviation either side of a normal distribution's mean.
ONE_SIGMA_LOW = 0.158655


def min_iterations_for_median_ci(ci: float = 0.95) -> int:
    """Smallest n for which [x_(1), x_(n)] covers the median with probability >= ci.

    >>> min_iterations_for_median_ci(0.95)
    6
    """
    return max(1, math.ceil(math.log2(2 / (1 - ci))))


def bootstrap_medians(sorted_x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """`n_boot` draws of the median of a bootstrap resample of `sorted_x` (ascending).

    Exact in distribution and O(n_boot), not O(n_boot x n): a resample of n values is
    x_(ceil(n U_i)) for n uniforms U_i, and the map is monotone, so its k-th smallest value is
    x_(ceil(n U_(k))), where the k-th smallest of n uniforms U_(k) ~ Beta(k, n - k + 1). For even
    n the next one is U_(k) + (1 - U_(k)) x Beta(1, n - k) (the smallest of the n - k uniforms
    above U_(k)).
    """
    n = len(sorted_x)
    k = (n + 1) // 2
    u1 = rng.beta(k, n - k + 1, size=n_boot)
    i1 = np.clip(np.ceil(n * u1).astype(np.int64) - 1, 0, n - 1)
    if n % 2:
        return sorted_x[i1].astype(np.float64)
    u2 = u1 + (1.0 - u1) * rng.beta(1, n - k, size=n_boot)
    i2 = np.clip(np.ceil(n * u2).astype(np.int64) - 1, 0, n - 1)
    return 0.5 * (sorted_x[i1].astype(np.float64) + sorted_x[i2])


def centre(runs: Sequence[np.ndarray]) -> float:
    """The mean of the run medians (the median itself for one run)."""
    return float(np.mean([np.median(x) for x in runs]))


def hierarchical_medians(
    runs: Sequence[np.ndarray], n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """`n_boot` two-stage bootstrap draws of centre(runs); each array in `runs` sorted ascending.

    Stage one draws len(runs) run indices with replacement per draw; stage two gives every drawn
    run (twice drawn: twice, independently) a bootstrap median of its own iterations. One run
    reduces to the plain bootstrap of its median.
    """
    r = len(runs)
    if r == 1:
        return bootstrap_medians(runs[0], n_boot, rng)
    pick = rng.integers(0, r, size=(n_boot, r))
    total = np.zeros(n_boot)
    for j, x in enumerate(runs):
        draw_of, _ = np.nonzero(pick == j)
        if len(draw_of):
            total += np.bincount(
                draw_of, weights=bootstrap_medians(x, len(draw_of), rng), minlength=n_boot
            )
    return total / r


def t_factor(n_runs: int, ci: float) -> float:
    """sqrt(R / (R - 1)) x the two-sided `ci` quantile of Student's t with R - 1 degrees of
    freedom: how many bootstrap SEs the half-width of an R-run interval spans."""
    from scipy.stats import t  # on use: scipy.stats takes about a second to import

    return math.sqrt(n_runs / (n_runs - 1)) * float(t.ppf(0.5 + ci / 2, n_runs - 1))


def interval(draws: np.ndarray, estimate: float, n_runs: int, ci: float) -> tuple[float, float]:
    """The `ci` interval of a positive statistic (a median, a ratio) from its bootstrap draws.

    n_runs: the number of runs behind it (for a ratio, the smaller side's). One run: the
    percentile interval. More: exp(log(estimate) +- t_factor x SE), where SE is half the
    distance between the 15.9th and 84.1st percentiles of log(draws): the standard deviation for
    a normal spread, and not blown up by the few draws whose resampled median lands in a heavy
    tail (a contended machine delays a third of the iterations of some runs by 5-10 x).
    """
    if n_runs < 2:
        lo, hi = np.quantile(draws, [(1 - ci) / 2, (1 + ci) / 2])
        return float(lo), float(hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        q16, q84 = np.quantile(np.log(draws), [ONE_SIGMA_LOW, 1 - ONE_SIGMA_LOW])
    se = float(q84 - q16) / 2
    half = t_factor(n_runs, ci) * se
    centre_log = math.log(estimate)
    return math.exp(centre_log - half), math.exp(centre_log + half)


REPEATS_COLUMNS: tuple[str, ...] = (
    "config",
    "stage",
    "n_runs",
    "n",
    "min_run_n",
    "median_ms",
    "ci_low_ms",
    "ci_high_ms",
    "between_cv_pct",
    "within_cv_pct",
    "busy_runs",
)


def sorted_per_run(samples: pd.DataFrame, runs: pd.DataFrame, stage: str) -> dict[str, np.ndarray]:
    """run_id -> that run's measured `stage` values (ns), sorted: one array per run."""
    from perflab.analysis.stats import integral_ns, select_rows, sort_groups

    rows = select_rows(samples, runs, phase="measure", stages=[stage])
    if len(rows) == 0:
        return {}
    sg = sort_groups(rows.rcode, integral_ns(rows.column("host_ns")))
    return {
        str(rows.runs[g]): sg.values[s : s + c] for g, s, c in zip(sg.gid, sg.starts, sg.counts)
    }


def values_of_runs(values: dict[str, np.ndarray], run_ids: Iterable[str]) -> list[np.ndarray]:
    """The arrays of `values` (sorted_per_run's) of those of `run_ids` that have any: the runs
    of one side, each counted once."""
    return [values[r] for r in run_ids if r in values and len(values[r])]


def has_median_ci(runs: Sequence[np.ndarray]) -> bool:
    """Whether every run has MIN_ITERATIONS_MEDIAN_CI iterations or more: otherwise neither the
    centre of these runs nor a ratio built on it gets a CI."""
    return min(map(len, runs)) >= MIN_ITERATIONS_MEDIAN_CI


def repeats(
    samples: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    stage: str = "e2e",
    ci: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per config (runs equal on their spec_id): its runs' spread and the CI over them.

    Input: samples and runs (ok runs are used). Output::

        config          stage n_runs n    min_run_n median_ms ci_low_ms ci_high_ms
        synthetic b1    e2e   5      1000 200       1.0012    0.9821    1.0203
                        between_cv_pct within_cv_pct busy_runs
                        1.02           0.31          0

    - median_ms: centre() of the run medians; ci_low_ms / ci_high_ms: the expanded two-stage
      bootstrap interval (see the module; NaN when a run has fewer than
      MIN_ITERATIONS_MEDIAN_CI iterations).
    - between_cv_pct: 100 x std / mean of the run medians (NaN for one run): how much a rerun
      moves the number. within_cv_pct: the median over runs of each run's own CV.
    - busy_runs: how many of the runs were measured on a busy host (runs.host_busy).
    """
    from perflab.analysis.stats import ok_run_ids

    runs_values = sorted_per_run(samples, runs, stage)
    rng = np.random.default_rng(seed)
    rows = []
    info = runs.assign(run_id=runs["run_id"].astype(str)).drop_duplicates("run_id")
    info = info[info["run_id"].isin(ok_run_ids(info))]
    key = "spec_id" if "spec_id" in info.columns else "label"
    for _, group in info.groupby(key, sort=False, dropna=False):
        values = values_of_runs(runs_values, group["run_id"])
        if not values:
            continue
        medians = np.array([np.median(v) for v in values], dtype=np.float64)
        cvs = [100 * np.std(v, ddof=1) / np.mean(v) if len(v) > 1 else np.nan for v in values]
        lo = hi = math.nan
        if has_median_ci(values):
            draws = hierarchical_medians(values, n_boot, rng)
            lo, hi = interval(draws, float(medians.mean()), len(values), ci)
        busy = group["host_busy"].fillna(False).astype(bool).sum() if "host_busy" in group else 0
        rows.append(
            {
                "config": str(group["label"].iloc[0]) if "label" in group else "",
                "stage": stage,
                "n_runs": len(values),
                "n": int(sum(len(v) for v in values)),
                "min_run_n": int(min(len(v) for v in values)),
                "median_ms": float(medians.mean()) / 1e6,
                "ci_low_ms": lo / 1e6,
                "ci_high_ms": hi / 1e6,
                "between_cv_pct": 100 * float(np.std(medians, ddof=1) / medians.mean())
                if len(medians) > 1
                else math.nan,
                "within_cv_pct": float(np.nanmedian(cvs)) if np.isfinite(cvs).any() else math.nan,
                "busy_runs": int(busy),
            }
        )
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in REPEATS_COLUMNS})
    return pd.DataFrame(rows, columns=list(REPEATS_COLUMNS))
