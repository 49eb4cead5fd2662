"""Per-run, per-stage statistics of stored samples: percentiles, confidence intervals, warnings.

Everything here is DataFrame -> DataFrame and fast enough for whole studies (ten million samples
in about a second): rows are put in (run, stage) groups with one stable sort of integer group
codes and sorted within their group once; every percentile, order-statistic confidence bound and
moment is then read off that array with vectorized numpy, never with a per-group Python loop.
The same helpers (select_rows, sort_groups) serve the other analysis modules.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from perflab import scan
from perflab.errors import PerflabError
from perflab.stages import NESTED_STAGES, TRANSFER_STAGES, stage_rank

# Columns of `runs` that describe what was run and where; two runs equal on all of them (and on
# batch_size) are repeats of one config. Ids, timestamps, policies and results are not config.
WHAT_COLUMNS: tuple[str, ...] = (
    "model",
    "pipeline",
    "backend",
    "mode",
    "inflight",
    "precision",
    "options",
    "pipeline_options",
    "seed",
)
WHERE_COLUMNS: tuple[str, ...] = ("device_name", "device", "host", "machine")
CONFIG_COLUMNS: tuple[str, ...] = WHAT_COLUMNS + WHERE_COLUMNS + ("batch_size",)

PERCENTILES: tuple[float, ...] = (0.50, 0.90, 0.95, 0.99)

# Warning thresholds (DESIGN.md "Statistics").
CV_WARN_PCT = 2.5
ENQUEUE_WARN_RATIO = 0.8
TRANSFER_WARN_RATIO = 1.0
# Distribution-free sample sizes: the smallest n for which the second-largest of n samples is a
# one-sided 99%-confidence upper bound of the q-quantile, i.e. P(Binomial(n, q) <= n - 2) >= 0.99.
# The second-largest rather than the maximum, so that one stray sample cannot be the bound.
# q = 0.99 gives 662 and q = 0.90 gives 64 (min_samples_for_bound() recomputes them; a test checks).
MIN_SAMPLES_P99 = 662
MIN_SAMPLES_P90 = 64

SUMMARY_COLUMNS: tuple[str, ...] = (
    "run_id",
    "stage",
    "n",
    "mean_ms",
    "std_ms",
    "cv_pct",
    "min_ms",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "p50_ci_low_ms",
    "p50_ci_high_ms",
    "p99_ci_low_ms",
    "p99_ci_high_ms",
    "throughput_items_s",
    "wall_throughput_items_s",
    "device_n",
    "device_mean_ms",
    "device_p50_ms",
    "device_p99_ms",
)
# summarize(wall_throughput=False): what each run's samples alone decide, and the total items.
SUMMARY_GROUP_COLUMNS: tuple[str, ...] = (
    *(c for c in SUMMARY_COLUMNS if c != "wall_throughput_items_s"),
    "items_total",
)

WARNING_COLUMNS: tuple[str, ...] = ("run_id", "stage", "warning", "value", "threshold", "message")


# --------------------------------------------------------------------------------------------
# Grouped, sorted values: the one expensive step, shared by every statistic.


def factorize_sorted(column: pd.Series, key=None) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (int64, -1 for missing) and sorted unique values of a column.

    Categorical columns (as `store.read` returns dictionary columns) are handled through their
    codes, which is what makes ten million rows cheap.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        cats = np.asarray(column.cat.categories, dtype=object)
        order = np.array(
            sorted(range(len(cats)), key=lambda i: key(cats[i]) if key else cats[i]), dtype=np.int64
        )
        rank = np.empty(len(cats) + 1, dtype=np.int64)
        rank[order] = np.arange(len(cats))
        rank[-1] = -1  # code -1 (missing) indexes the last slot
        return rank[column.cat.codes.to_numpy().astype(np.int64)], cats[order]
    codes, uniques = pd.factorize(column, sort=key is None, use_na_sentinel=True)
    uniques = np.asarray(uniques, dtype=object)
    if key is not None:
        order = np.array(sorted(range(len(uniques)), key=lambda i: key(uniques[i])), dtype=np.int64)
        rank = np.empty(len(uniques) + 1, dtype=np.int64)
        rank[order] = np.arange(len(uniques))
        rank[-1] = -1
        return rank[codes.astype(np.int64)], uniques[order]
    return codes.astype(np.int64), uniques


@dataclass(frozen=True)
class SortedGroups:
    """Values sorted within groups: group `gid[i]` holds `values[starts[i]:starts[i] + counts[i]]`.

    `order` maps group order back to input rows (rows of one group are contiguous in it, in input
    order, not sorted by value): `column[order]` lines any other column up with the groups for
    per-group reductions (`np.add.reduceat(column[order], starts)`).
    """

    gid: np.ndarray
    values: np.ndarray
    starts: np.ndarray
    counts: np.ndarray
    order: np.ndarray

    def quantile(self, q: float) -> np.ndarray:
        """Per-group quantile with linear interpolation (numpy's default method)."""
        pos = q * (self.counts - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, self.counts - 1)
        frac = pos - lo
        v_lo = self.values[self.starts + lo].astype(np.float64)
        v_hi = self.values[self.starts + hi].astype(np.float64)
        return v_lo + frac * (v_hi - v_lo)

    def order_stat(self, k: np.ndarray) -> np.ndarray:
        """Per-group k-th smallest value (0-based); NaN where k is outside 0..n-1."""
        ok = (k >= 0) & (k < self.counts)
        out = np.full(len(self.counts), np.nan)
        out[ok] = self.values[self.starts[ok] + k[ok]]
        return out

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-group mean and sample standard deviation (ddof=1; NaN for one sample)."""
        if not len(self.counts):
            return np.empty(0), np.empty(0)
        # Shift each group by its minimum before squaring, so large offsets do not cost precision.
        base = self.values[self.starts].astype(np.float64)
        d = self.values.astype(np.float64) - np.repeat(base, self.counts)
        s1 = np.add.reduceat(d, self.starts)
        s2 = np.add.reduceat(d * d, self.starts)
        n = self.counts.astype(np.float64)
        mean = base + s1 / n
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.maximum(s2 - s1 * s1 / n, 0.0) / (n - 1)
        return mean, np.sqrt(var)

    def reduce(self, column: np.ndarray, ufunc: np.ufunc = np.add) -> np.ndarray:
        """Per-group reduction of another column of the same input rows."""
        if not len(self.counts):
            return np.empty(0)
        return ufunc.reduceat(np.asarray(column)[self.order], self.starts)


def sort_groups(gcode: np.ndarray, values: np.ndarray) -> SortedGroups:
    """Group rows by integer code (>= 0) and sort the values within each group.

    Rows are first put in group order with a stable sort of the codes (a radix sort when the codes
    fit 16 bits), then each group is sorted on its own: in one vectorized call on a 2-D view when
    all groups have the same size (every stage of a run has one row per iteration), else group by
    group. Sorting many short groups is cheaper than one global sort of (group, value) pairs.
    """
    gcode = np.asarray(gcode, dtype=np.int64)
    values = np.asarray(values)
    if len(values) == 0:
        e = np.empty(0, dtype=np.int64)
        return SortedGroups(e, values.astype(np.float64), e, e, e)
    gmax = int(gcode.max())
    narrow = gcode.astype(np.uint16) if gmax < 2**16 else gcode
    order = np.argsort(narrow, kind="stable")
    g = gcode[order]
    starts = np.flatnonzero(np.concatenate(([True], g[1:] != g[:-1])))
    counts = np.diff(np.append(starts, len(g)))
    v = values[order]
    if counts.min() == counts.max():
        v.reshape(len(counts), int(counts[0])).sort(axis=1)
    else:
        for s, c in zip(starts.tolist(), counts.tolist()):
            v[s : s + c].sort()
    return SortedGroups(g[starts], v, starts, counts, order)


def integral_ns(values: np.ndarray) -> np.ndarray:
    """Nanosecond durations as int64 when they are whole numbers: integer sorts are faster, and
    sums of them exact. (Nullable columns arrive as float64 with NaN.)"""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64)
    if len(values) and np.all(np.isfinite(values)) and np.all(values == np.round(values)):
        return values.astype(np.int64)
    return values.astype(np.float64)


# --------------------------------------------------------------------------------------------
# Confidence intervals.


def order_stat_ci_ranks(n: np.ndarray, q: float, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """0-based ranks (lo, hi) such that [x_(lo), x_(hi)] covers the q-quantile with >= ci.

    Distribution-free: the number of samples below the true quantile is Binomial(n, q), so the
    interval between two order statistics has an exact, known coverage. A rank outside 0..n-1
    means no such bound exists for this n (reported as NaN, never as the min or max).
    """
    n = np.asarray(n, dtype=np.int64)
    alpha = 1.0 - ci
    lo = binomial_ppf(alpha / 2, n, q) - 1
    hi = binomial_ppf(1 - alpha / 2, n, q)
    return lo, hi


def binomial_ppf(p: float, n: np.ndarray, q: float) -> np.ndarray:
    """The smallest k with P(Binomial(n, q) <= k) >= p, per n (scipy.stats.binom.ppf's
    definition; a test checks they agree). Bisection on scipy.special's binomial CDF, because
    scipy.stats takes seconds to import and a summary needs nothing else from it."""
    from scipy.special import bdtr

    n = np.asarray(n, dtype=np.int64)
    below = np.full(n.shape, -1, dtype=np.int64)  # CDF < p here (the CDF of -1 is 0)
    above = n.copy()  # CDF >= p here (the CDF of n is 1)
    while np.any(above - below > 1):
        mid = (below + above) // 2
        # A CDF equal to p in exact arithmetic (p = 0.5 with q = 0.5 and odd n) may compute a
        # hair below it: such a k counts as reaching p, as it does for scipy.stats.
        reached = bdtr(mid, n, q) >= p * (1 - 1e-12)
        above = np.where(reached, mid, above)
        below = np.where(reached, below, mid)
    return above


def min_samples_for_bound(q: float, confidence: float = 0.99, skip: int = 1) -> int:
    """Smallest n for which the (skip+1)-th largest of n samples bounds the q-quantile from above.

    >>> min_samples_for_bound(0.99), min_samples_for_bound(0.90)
    (662, 64)
    """
    from scipy.stats import binom

    n = skip + 1
    while binom.cdf(n - 1 - skip, n, q) < confidence:
        n += 1
    return n


def _bootstrap_ci(
    sg: SortedGroups, q: float, ci: float, n_boot: int, seed: int, names: Sequence[str]
):
    """Percentile-bootstrap CI of the q-quantile per group (resampling; loops over groups).

    Each group draws from its own generator, seeded by `seed` and the group's name, so a group's
    interval does not depend on which other groups are summarized with it (a selection, or the
    chunks of runs an out-of-core summary reads one at a time, give the same numbers)."""
    lo = np.full(len(sg.counts), np.nan)
    hi = np.full(len(sg.counts), np.nan)
    a = (1 - ci) / 2
    for i, (s, n) in enumerate(zip(sg.starts, sg.counts)):
        rng = np.random.default_rng([seed, zlib.crc32(names[i].encode())])
        x = sg.values[s : s + n].astype(np.float64)
        # Chunks bound the memory of the (n_boot, n) index matrix for long runs.
        per_chunk = max(1, 4_000_000 // max(n, 1))
        est = np.concatenate(
            [
                np.quantile(x[rng.integers(0, n, size=(min(per_chunk, n_boot - j), n))], q, axis=1)
                for j in range(0, n_boot, per_chunk)
            ]
        )
        lo[i], hi[i] = np.quantile(est, [a, 1 - a])
    return lo, hi


# --------------------------------------------------------------------------------------------
# Input handling.


def ok_run_ids(runs: pd.DataFrame | None) -> np.ndarray | None:
    """Run ids whose status is "ok" (all of them when runs has no status); None without runs."""
    if runs is None:
        return None
    _require(runs, ("run_id",), "runs")
    if "status" in runs.columns:
        runs = runs[runs["status"].astype(str) == "ok"]
    return runs["run_id"].astype(str).to_numpy()


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PerflabError(f"{what} frame lacks column(s) {missing}; it has {list(frame.columns)}")


@dataclass(frozen=True)
class Rows:
    """The selected sample rows as plain arrays, with run and stage codes.

    Built without copying the samples frame: only the columns an analysis needs are masked.
    `rcode` indexes `runs`, `scode` indexes `stages` (pipeline order); both are >= 0.
    """

    rcode: np.ndarray
    scode: np.ndarray
    runs: np.ndarray
    stages: np.ndarray
    mask: np.ndarray | None
    frame: pd.DataFrame

    def column(self, name: str, dtype=None, na_value=None) -> np.ndarray:
        col = self.frame[name]
        arr = col.to_numpy(dtype=dtype, na_value=na_value) if dtype is not None else col.to_numpy()
        return arr if self.mask is None else arr[self.mask]

    @functools.cached_property
    def gcode(self) -> np.ndarray:
        """One code per (run, stage): rcode * len(stages) + scode."""
        return self.rcode * max(len(self.stages), 1) + self.scode

    def __len__(self) -> int:
        return len(self.rcode)


def select_rows(
    samples: pd.DataFrame,
    runs: pd.DataFrame | None = None,
    *,
    phase: str | None = "measure",
    stages: Iterable[str] | str | None = None,
) -> Rows:
    """Rows of one phase (None: all) and some stages (None: all), of ok runs when `runs` is given:
    other runs have no trustworthy samples, and samples without a runs row are leftovers of an
    interrupted run."""
    _require(samples, ("run_id", "stage", "host_ns"), "samples")
    rcode, runs_u = factorize_sorted(samples["run_id"])
    scode, stages_u = factorize_sorted(samples["stage"], key=stage_rank)
    runs_u = runs_u.astype(str)
    stages_u = stages_u.astype(str)
    mask = (rcode >= 0) & (scode >= 0)
    if phase is not None:
        if "phase" not in samples.columns:
            raise PerflabError("samples have no 'phase' column; pass phase=None to use all rows")
        mask &= (samples["phase"] == phase).to_numpy(dtype=bool, na_value=False)
    if stages is not None:
        wanted = [stages] if isinstance(stages, str) else [str(x) for x in stages]
        keep = np.isin(stages_u, wanted)
        mask &= keep[scode] & (scode >= 0)
    ok = ok_run_ids(runs)
    if ok is not None:
        keep = np.isin(runs_u, ok)
        mask &= keep[rcode] & (rcode >= 0)
    if mask.all():
        return Rows(rcode, scode, runs_u, stages_u, None, samples)
    return Rows(rcode[mask], scode[mask], runs_u, stages_u, mask, samples)


def select_samples(
    samples: pd.DataFrame,
    runs: pd.DataFrame | None = None,
    *,
    phase: str | None = "measure",
    stages: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    """The rows `select_rows` selects, as a frame (a copy only when rows are dropped)."""
    rows = select_rows(samples, runs, phase=phase, stages=stages)
    return samples if rows.mask is None else samples[rows.mask]


# --------------------------------------------------------------------------------------------
# summarize


def summarize(
    samples: pd.DataFrame | scan.Catalog | None,
    runs: pd.DataFrame | None = None,
    *,
    phase: str | None = "measure",
    stages: Iterable[str] | str | None = None,
    ci: float | None = 0.95,
    ci_method: str = "binomial",
    n_boot: int = 1000,
    seed: int = 0,
    wall_throughput: bool = True,
) -> pd.DataFrame:
    """One row per run and stage: count, moments, percentiles, CIs and throughput.

    Input (`samples`, as `store.read(..., "samples")` returns it)::

        run_id  iteration  phase    stage    host_ns   device_ns  items
        r1      10         measure  compute  2010000   1990000.0  8
        r1      10         measure  e2e      3120000   NaN        8
        ...

    Output (times in ms, one row per run x stage, runs sorted by id, stages in pipeline order)::

        run_id stage   n    mean_ms std_ms cv_pct min_ms p50_ms p90_ms p95_ms p99_ms max_ms
        r1     compute 1000 2.01    0.02   1.0    1.95   2.01   2.04   2.05   2.07   2.11
        r1     e2e     1000 3.12    ...
               p50_ci_low_ms p50_ci_high_ms p99_ci_low_ms p99_ci_high_ms
               2.008         2.012          2.06           2.09
               throughput_items_s wall_throughput_items_s device_n device_mean_ms device_p50_ms ...
               3980.1             NaN                     1000     1.99           1.99

    - Percentiles use linear interpolation (numpy's default); std is the sample std (ddof=1);
      cv_pct = 100 * std / mean. Integer nanoseconds (every stored sample) are summed exactly,
      so mean and std are the correctly rounded values of the exact ones.
    - CIs (`ci` level; None skips them): `ci_method="binomial"` (default) gives distribution-free
      order-statistic intervals for p50 and p99. The number of samples below a true quantile is
      Binomial(n, q), so the interval between the order statistics at binomial-quantile ranks
      covers it with probability >= `ci` for any continuous distribution: exact, no resampling.
      Where n is too small for a bound to exist (for p99 at 95%, the upper bound needs n >= 367)
      that bound is NaN. `ci_method="bootstrap"` gives percentile-bootstrap intervals from
      `n_boot` resamples seeded by `seed` (slower: it resamples each group in turn; meant for
      small studies and cross-checks), NaN wherever the binomial bound does not exist either: a
      median CI from 3 values is no CI.
    - throughput_items_s: median over iterations of items / duration, on e2e and compute rows
      (NaN on other stages). wall_throughput_items_s (e2e rows, needs `runs` with
      measure_wall_s, and phase="measure"): total items / measure_wall_s.
    - device_*: statistics of device_ns where the backend recorded device events (device_n 0 and
      NaN elsewhere).
    - With `runs`, only samples of runs whose status is "ok" are summarized.

    `samples` may also be a `scan.Catalog` (what `Results.summary` passes): the stored files are
    then read by the same query without being loaded, and give the same numbers. The
    per-(run, stage) work is one grouped DuckDB query per batch of runs: counts, exact integer
    sums for the moments, min and max, the percentiles (quantile_cont, numpy's linear
    interpolation), the median throughput and the device statistics. Order-statistic CIs need
    values at ranks that depend on each group's n (known beforehand from the counts), so with
    them a batch holds groups of one n, whose ranks are read with quantile_disc. Only the
    bootstrap pulls sample values into Python, a chunk of whole runs at a time.

    `wall_throughput=False` leaves out what needs the runs table: the rows then have
    `items_total` (items summed over the group; NaN where a row lacks its count) instead of
    wall_throughput_items_s, and depend on each run's own samples only (`runs` only selects the
    ok runs), so Results keeps them per file in the folder index; `with_wall_throughput()` makes
    them summarize()'s rows.
    """
    src = _as_source(samples, ("run_id", "stage", "host_ns"), phase)
    if ci_method not in ("binomial", "bootstrap"):
        raise PerflabError(f"unknown ci_method {ci_method!r}; choose 'binomial' or 'bootstrap'")
    if ci is not None and not 0 < ci < 1:
        raise PerflabError(f"ci must lie strictly between 0 and 1, got {ci!r}")
    stages = [stages] if isinstance(stages, str) else stages
    ok = ok_run_ids(runs)
    flt = scan.Filter(
        None if ok is None else [str(r) for r in ok],
        phase,
        None if stages is None else [str(s) for s in stages],
    )
    counts = scan.group_counts(src, flt)
    if counts.empty:
        empty = pd.DataFrame(
            {
                c: pd.Series(dtype=object if c in ("run_id", "stage") else float)
                for c in SUMMARY_GROUP_COLUMNS
            }
        )
        return with_wall_throughput(empty, runs, phase) if wall_throughput else empty
    binomial = ci is not None and ci_method == "binomial"
    cols = _sample_columns(src)
    parts, wide = [], False
    for n_class, batch in _batches(counts, by_n=binomial):
        fractions = _rank_fractions(n_class, ci) if binomial else None
        tables, wide = _summary_batch(src, flt, cols, fractions, batch, wide)
        for table in tables:
            part = table.to_pandas()
            parts.append(part if n_class is None else part[part["n"] == n_class])
    raw = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    raw = raw.sort_values(
        ["run_id", "stage"], key=lambda s: s.map(stage_rank) if s.name == "stage" else s
    ).reset_index(drop=True)
    out = _summary_columns(raw, cols.host_int, ci, binomial)
    if ci is not None and not binomial:
        _bootstrap_columns(out, src, flt, runs, ci, n_boot, seed)
    total = raw["items_sum"].to_numpy(dtype=np.float64, na_value=np.nan)
    out["items_total"] = np.where(raw["items_n"].to_numpy() == raw["n"].to_numpy(), total, np.nan)
    out = out[list(SUMMARY_GROUP_COLUMNS)]
    return with_wall_throughput(out, runs, phase) if wall_throughput else out


def _as_source(samples, required: Sequence[str], phase: str | None):
    """The samples as a scan source: a frame (checked) read through DuckDB, or stored files."""
    if samples is None or isinstance(samples, scan.Catalog):
        return samples
    _require(samples, required, "samples")
    if phase is not None and "phase" not in samples.columns:
        raise PerflabError("samples have no 'phase' column; pass phase=None to use all rows")
    return scan.Frame(samples)


# Quantiles read by rank (0-based k among n values) with quantile_disc: DuckDB's discrete quantile
# of fraction f is the value at rank ceil(n * f) - 1, so f = (k + 0.5) / n lands on k with half a
# rank of margin either way (tests/analysis/test_stats.py checks the rule on every rank of many n).
def rank_fraction(k: int, n: int) -> float:
    """The quantile_disc fraction that reads the value at 0-based rank k of n."""
    return (k + 0.5) / n


def _rank_fractions(n: int, ci: float) -> list[float]:
    """Fractions of the p50 and p99 CI ranks (low, high each); a rank with no bound reads any
    value, masked afterwards."""
    fractions = []
    for q in (0.5, 0.99):
        klo, khi = order_stat_ci_ranks(np.array([n]), q, ci)
        fractions += [rank_fraction(min(max(int(k[0]), 0), n - 1), n) for k in (klo, khi)]
    return fractions


def _batches(counts: pd.DataFrame, *, by_n: bool) -> list[tuple[int | None, list[str]]]:
    """(n, run ids) batches of whole runs (scan.pack); with by_n, one batch holds only the
    groups of one n (n None otherwise)."""
    if not by_n:
        return [(None, batch) for batch in scan.pack(counts, scan.AGGREGATE_ROWS)]
    return [
        (int(n), batch)
        for n, part in counts.groupby("n", sort=True)
        for batch in scan.pack(part, scan.AGGREGATE_ROWS)
    ]


@dataclass(frozen=True)
class _SampleColumns:
    """SQL for the columns a summary reads, worked out once per source (a frame's float column
    is checked for whole numbers, which costs a pass over it)."""

    host: str
    host_int: bool
    items: str
    device: tuple[str, bool] | None


def _sample_columns(src: scan.Catalog | scan.Frame) -> _SampleColumns:
    cols = scan.source_columns(src)
    host, host_int = _ns_expression(src, "host_ns")
    device = _ns_expression(src, "device_ns") if "device_ns" in cols else None
    return _SampleColumns(host, host_int, '"items"' if "items" in cols else "1", device)


def _summary_batch(src, flt, cols: _SampleColumns, fractions, batch, wide: bool):
    """The summary query's tables for one batch, and whether squares are now HUGEINT: BIGINT
    squares overflow on a sample over 3 s, and the batch is then asked again."""
    import duckdb

    select = _summary_select(cols, fractions, wide=wide)
    query = f"SELECT run_id, stage, {select} FROM {{rows}} GROUP BY run_id, stage"
    try:
        return list(scan.aggregate(src, flt, query, [batch])), wide
    except duckdb.OutOfRangeException:
        if wide:
            raise
        return _summary_batch(src, flt, cols, fractions, batch, True)


def _ns_expression(src: scan.Catalog | scan.Frame, name: str) -> tuple[str, bool]:
    """SQL for a nanosecond column, and whether it holds integers. A frame's float column of
    whole numbers (nullable integers arrive so) is read as integers, as the stored files are."""
    if scan.integer_column(src, name):
        return f'"{name}"', True
    if isinstance(src, scan.Frame):
        values = src.frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        values = values[~np.isnan(values)]
        if np.all(np.isfinite(values)) and np.array_equal(values, np.round(values)):
            return f'CAST("{name}" AS BIGINT)', True
    return f'CAST("{name}" AS DOUBLE)', False


def _moment_sql(
    expr: str, integer: bool, prefix: str, *, squares: bool = True, wide: bool = False
) -> str:
    """Sums for the mean (and the std, with `squares`). Integers: DuckDB sums BIGINT into a
    HUGEINT, exactly, and the moments are formed from the sums in Python. Squares are BIGINT
    products unless `wide` (HUGEINT, slower): a product over 2^63 (a sample over 3 s) is an
    overflow error, on which the caller asks again with `wide`."""
    if not integer:
        std = f", stddev_samp({expr}) AS {prefix}std" if squares else ""
        return f"avg({expr}) AS {prefix}mean{std}"
    sums = f"sum({expr}) AS {prefix}s1"
    if not squares:
        return sums
    factor = f"CAST({expr} AS HUGEINT)" if wide else f"({expr})"
    return f"{sums}, sum({factor} * ({expr})) AS {prefix}s2"


def _summary_select(cols: _SampleColumns, fractions: list[float] | None, *, wide: bool) -> str:
    host, items = cols.host, cols.items
    quantiles = ", ".join(repr(q) for q in PERCENTILES)
    parts = [
        "count(*) AS n",
        _moment_sql(host, cols.host_int, "", wide=wide),
        f"min({host}) AS lo",
        f"max({host}) AS hi",
        f"quantile_cont({host}, [{quantiles}]) AS q",
        (
            f"quantile_cont({items} * 1e9 / {host}, 0.5) "
            "FILTER (WHERE stage IN ('e2e', 'compute')) AS tput"
        ),
        f"count({items}) AS items_n",
        f"sum({items}) AS items_sum",
    ]
    if fractions is not None:
        parts.append(f"quantile_disc({host}, [{', '.join(map(repr, fractions))}]) AS ci")
    if cols.device is not None:
        dev, dev_int = cols.device
        parts += [
            f"count({dev}) AS dn",
            _moment_sql(dev, dev_int, "d", squares=False),
            f"quantile_cont({dev}, [0.5, 0.99]) AS dq",
        ]
    return ", ".join(parts)


def _exact_moments(
    n: np.ndarray, s1: pd.Series, s2: pd.Series | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std (ddof=1; NaN without the sum of squares) from exact integer sums,
    each rounded once."""
    mean = np.full(len(n), np.nan)
    std = np.full(len(n), np.nan)
    squares = s2.tolist() if s2 is not None else [None] * len(n)
    for i, (k, a, b) in enumerate(zip(n.tolist(), s1.tolist(), squares)):
        if k == 0 or a is None:
            continue
        a = int(a)
        mean[i] = a / k
        if k > 1 and b is not None:
            b = int(b)
            std[i] = math.sqrt((k * b - a * a) / (k * (k - 1)))
    return mean, std


def _summary_columns(raw: pd.DataFrame, host_int: bool, ci: float | None, binomial: bool):
    n = raw["n"].to_numpy(dtype=np.int64)
    out: dict[str, object] = {
        "run_id": raw["run_id"].to_numpy(dtype=object),
        "stage": raw["stage"].to_numpy(dtype=object),
        "n": n,
    }
    if host_int:
        mean, std = _exact_moments(n, raw["s1"], raw["s2"])
    else:
        mean = raw["mean"].to_numpy(dtype=np.float64)
        std = raw["std"].to_numpy(dtype=np.float64, na_value=np.nan)
    out["mean_ms"] = mean / 1e6
    out["std_ms"] = std / 1e6
    with np.errstate(invalid="ignore", divide="ignore"):
        out["cv_pct"] = 100.0 * std / mean
    out["min_ms"] = raw["lo"].to_numpy(dtype=np.float64) / 1e6
    q = np.array(raw["q"].tolist(), dtype=np.float64).reshape(len(raw), len(PERCENTILES))
    for i, p in enumerate(PERCENTILES):
        out[f"p{round(p * 100)}_ms"] = q[:, i] / 1e6
    out["max_ms"] = raw["hi"].to_numpy(dtype=np.float64) / 1e6
    for i, (p, name) in enumerate(((0.5, "p50"), (0.99, "p99"))):
        lo = hi = np.full(len(raw), np.nan)
        if binomial:
            values = np.array(raw["ci"].tolist(), dtype=np.float64).reshape(len(raw), 4)
            klo, khi = order_stat_ci_ranks(n, p, ci)
            lo = np.where(klo >= 0, values[:, 2 * i], np.nan)
            hi = np.where(khi < n, values[:, 2 * i + 1], np.nan)
        out[f"{name}_ci_low_ms"] = lo / 1e6
        out[f"{name}_ci_high_ms"] = hi / 1e6
    tput = raw["tput"].to_numpy(dtype=np.float64, na_value=np.nan)
    # A row without its batch size has no throughput (as a NaN would give in numpy).
    out["throughput_items_s"] = np.where(raw["items_n"].to_numpy() == n, tput, np.nan)
    out.update(_device_columns(raw))
    return pd.DataFrame(out)


def _device_columns(raw: pd.DataFrame) -> dict[str, np.ndarray]:
    g = len(raw)
    if "dn" not in raw.columns:
        return {
            "device_n": np.zeros(g, dtype=np.int64),
            "device_mean_ms": np.full(g, np.nan),
            "device_p50_ms": np.full(g, np.nan),
            "device_p99_ms": np.full(g, np.nan),
        }
    dn = raw["dn"].to_numpy(dtype=np.int64)
    if "ds1" in raw.columns:
        mean, _ = _exact_moments(dn, raw["ds1"])
    else:
        mean = raw["dmean"].to_numpy(dtype=np.float64, na_value=np.nan)
    dq = np.array(
        [v if v is not None else [np.nan, np.nan] for v in raw["dq"].tolist()], dtype=np.float64
    ).reshape(g, 2)
    has = dn > 0
    return {
        "device_n": dn,
        "device_mean_ms": np.where(has, mean, np.nan) / 1e6,
        "device_p50_ms": np.where(has, dq[:, 0], np.nan) / 1e6,
        "device_p99_ms": np.where(has, dq[:, 1], np.nan) / 1e6,
    }


def with_wall_throughput(
    groups: pd.DataFrame, runs: pd.DataFrame | None, phase: str | None = "measure"
) -> pd.DataFrame:
    """summarize()'s rows from summarize(wall_throughput=False)'s: wall_throughput_items_s, total items /
    measure_wall_s on e2e rows of the measure phase (NaN elsewhere, and without runs)."""
    tp = np.full(len(groups), np.nan)
    if runs is not None and phase == "measure" and "measure_wall_s" in runs.columns:
        wall = (
            runs.assign(run_id=runs["run_id"].astype(str))
            .drop_duplicates("run_id")
            .set_index("run_id")["measure_wall_s"]
            .astype(float)
        )
        wall_s = wall.reindex(groups["run_id"].astype(str)).to_numpy()
        total = groups["items_total"].to_numpy(dtype=np.float64)
        keep = (groups["stage"].to_numpy() == "e2e") & (wall_s > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            tp[keep] = total[keep] / wall_s[keep]
    return groups.assign(wall_throughput_items_s=tp)[list(SUMMARY_COLUMNS)]


def _bootstrap_columns(out, src, flt, runs, ci, n_boot, seed) -> None:
    """Percentile-bootstrap CIs of p50 and p99 into `out`: the one statistic that needs the
    values themselves, read a chunk of whole runs at a time."""
    if isinstance(src, scan.Frame):
        frames = [src.frame]
    else:
        frames = scan.chunks(src, flt, ("run_id", "phase", "stage", "host_ns"))
    found: dict[tuple[str, str], list[float]] = {}
    for frame in frames:
        rows = select_rows(frame, runs, phase=flt.phase, stages=flt.stages)
        if not len(rows):
            continue
        n_stage = len(rows.stages)
        sg = sort_groups(rows.gcode, integral_ns(rows.column("host_ns")))
        run_of = rows.runs[sg.gid // n_stage]
        stage_of = rows.stages[sg.gid % n_stage]
        names = [f"{r}\0{st}" for r, st in zip(run_of, stage_of)]
        bounds = [_bootstrap_ci(sg, q, ci, n_boot, seed, names) for q in (0.5, 0.99)]
        for i, key in enumerate(zip(run_of, stage_of)):
            found[key] = [bounds[0][0][i], bounds[0][1][i], bounds[1][0][i], bounds[1][1][i]]
    keys = list(zip(out["run_id"], out["stage"]))
    values = np.array([found.get(k, [np.nan] * 4) for k in keys], dtype=np.float64).reshape(-1, 4)
    n = out["n"].to_numpy()
    for i, (q, name) in enumerate(((0.5, "p50"), (0.99, "p99"))):
        # Resampling 3 values still gives an interval, but not one that covers anything with
        # the confidence asked for: where no order-statistic bound exists, neither is given.
        klo, khi = order_stat_ci_ranks(n, q, ci)
        out[f"{name}_ci_low_ms"] = np.where(klo < 0, np.nan, values[:, 2 * i]) / 1e6
        out[f"{name}_ci_high_ms"] = np.where(khi >= n, np.nan, values[:, 2 * i + 1]) / 1e6


# harness gap


HARNESS_GAP_COLUMNS = (
    "run_id", "n", "e2e_p50_ms", "stages_p50_ms", "gap_p50_ms", "gap_mean_ms", "gap_pct",
)  # fmt: skip


def harness_gap(
    samples: pd.DataFrame | scan.Catalog | None,
    runs: pd.DataFrame | None = None,
    *,
    phase: str | None = "measure",
) -> pd.DataFrame:
    """Per run: e2e minus the sum of the stages inside it, per iteration, summarized.

    The stages summed are every stage except e2e and the nested ones (enqueue lies inside
    compute). Input: samples (or a `scan.Catalog` of stored files, as for summarize). Output,
    one row per run that has e2e rows::

        run_id n    e2e_p50_ms stages_p50_ms gap_p50_ms gap_mean_ms gap_pct
        r1     1000 3.120      3.080         0.040      0.041       1.28

    gap_p50_ms is the median of the per-iteration gaps; stages_p50_ms the median of the
    per-iteration stage sums; gap_pct = 100 * gap_p50_ms / e2e_p50_ms. Iterations without
    exactly one e2e row are left out. Per run and iteration the e2e and stage sums, then per run
    their medians: one grouped DuckDB query.
    """
    src = _as_source(samples, ("run_id", "stage", "host_ns", "iteration"), phase)
    ok = ok_run_ids(runs)
    flt = scan.Filter(None if ok is None else [str(r) for r in ok], phase, None)
    counts = scan.group_counts(src, flt)
    if counts.empty:
        return pd.DataFrame(
            {c: pd.Series(dtype=object if c == "run_id" else float) for c in HARNESS_GAP_COLUMNS}
        )
    host, host_int = _ns_expression(src, "host_ns")
    inside = ", ".join(repr(s) for s in ("e2e", *NESTED_STAGES))
    e2e = f"sum({host}) FILTER (WHERE stage = 'e2e')"
    stages = f"coalesce(sum({host}) FILTER (WHERE stage NOT IN ({inside})), 0)"
    if host_int:  # per-iteration sums of nanoseconds fit BIGINT (quantiles of HUGEINT are slow)
        e2e, stages = f"CAST({e2e} AS BIGINT)", f"CAST({stages} AS BIGINT)"
    query = f"""
        SELECT run_id, count(*) AS n, quantile_cont(e2e, 0.5) AS e2e_p50,
               quantile_cont(parts, 0.5) AS parts_p50, quantile_cont(e2e - parts, 0.5) AS gap_p50,
               {_moment_sql("e2e - parts", host_int, "gap_", squares=False)}
        FROM (
            SELECT run_id, iteration, {e2e} AS e2e, {stages} AS parts,
                   count(*) FILTER (WHERE stage = 'e2e') AS n_e2e
            FROM {{rows}} GROUP BY run_id, iteration
        )
        WHERE n_e2e = 1 GROUP BY run_id"""
    parts = [
        t.to_pandas()
        for t in scan.aggregate(src, flt, query, scan.pack(counts, scan.AGGREGATE_ROWS))
    ]
    raw = pd.concat(parts, ignore_index=True).sort_values("run_id", ignore_index=True)
    n = raw["n"].to_numpy(dtype=np.int64)
    if host_int:
        mean, _ = _exact_moments(n, raw["gap_s1"])
    else:
        mean = raw["gap_mean"].to_numpy(dtype=np.float64)
    out = pd.DataFrame(
        {
            "run_id": raw["run_id"].to_numpy(dtype=object),
            "n": n,
            "e2e_p50_ms": raw["e2e_p50"].to_numpy(dtype=np.float64) / 1e6,
            "stages_p50_ms": raw["parts_p50"].to_numpy(dtype=np.float64) / 1e6,
            "gap_p50_ms": raw["gap_p50"].to_numpy(dtype=np.float64) / 1e6,
            "gap_mean_ms": mean / 1e6,
        }
    )
    out["gap_pct"] = 100.0 * out["gap_p50_ms"] / out["e2e_p50_ms"]
    return out[list(HARNESS_GAP_COLUMNS)]


def iteration_sums(rows: Rows) -> pd.DataFrame:
    """Per (run, iteration) of the selected rows: e2e_ns, stages_ns, has_e2e.

    stages_ns sums every stage but e2e and the nested ones. Columns: run_code (indexes
    rows.runs), iteration, e2e_ns, stages_ns, has_e2e (exactly one e2e row in the iteration).
    """
    cols = ["run_code", "iteration", "e2e_ns", "stages_ns", "has_e2e"]
    if len(rows) == 0:
        return pd.DataFrame(
            {c: pd.Series(dtype=bool if c == "has_e2e" else np.int64) for c in cols}
        )
    is_e2e_stage = rows.stages == "e2e"
    is_part_stage = ~np.isin(rows.stages, ("e2e",) + NESTED_STAGES)
    it = rows.column("iteration").astype(np.int64)
    host = rows.column("host_ns").astype(np.float64)
    it_min = int(it.min())
    span = int(it.max()) - it_min + 1
    key = rows.rcode * span + (it - it_min)
    size = int(key.max()) + 1
    if size > 4 * len(key) + 1024:
        # Sparse iteration numbers: compress the keys rather than allocate a huge bincount.
        present_keys, key = np.unique(key, return_inverse=True)
        size = len(present_keys)
    else:
        present_keys = None
    sc = rows.scode
    e2e_sum = np.bincount(key, weights=np.where(is_e2e_stage[sc], host, 0.0), minlength=size)
    e2e_n = np.bincount(key, weights=is_e2e_stage[sc].astype(float), minlength=size)
    parts = np.bincount(key, weights=np.where(is_part_stage[sc], host, 0.0), minlength=size)
    present = np.flatnonzero(np.bincount(key, minlength=size))
    full = present if present_keys is None else present_keys[present]
    return pd.DataFrame(
        {
            "run_code": full // span,
            "iteration": full % span + it_min,
            "e2e_ns": integral_ns(e2e_sum[present]),
            "stages_ns": integral_ns(parts[present]),
            "has_e2e": e2e_n[present] == 1,
        }
    )


# --------------------------------------------------------------------------------------------
# warnings


def warnings(
    samples: pd.DataFrame | None,
    runs: pd.DataFrame | None = None,
    telemetry: pd.DataFrame | None = None,
    *,
    summary: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Everything in a study that makes its numbers less trustworthy, with the numbers.

    Output, one row per finding::

        run_id stage   warning         value  threshold message
        r1     e2e     few_samples_p99 200    662       200 samples < 662 needed to bound p99 ...
        r1     compute high_cv         3.4    2.5       compute CV 3.4% > 2.5% ...

    Warnings (value / threshold):
    - `high_cv`: cv_pct of a run's stage > 2.5 (%).
    - `few_samples_p99` / `few_samples_p90`: measured iterations of a run below 662 / 64, the
      smallest counts for which the second-largest sample is a 99%-confidence upper bound of the
      percentile (MIN_SAMPLES_P99 explains the arithmetic). One row per run and percentile, on
      the run's e2e stage.
    - `enqueue_bound`: p50 enqueue / p50 compute > 0.8: the host spends nearly the whole compute
      time issuing work, so the device waits on the CPU (launch-bound).
    - `transfer_bound`: p50 h2d or d2h / p50 compute >= 1: copies cost as much as the model.
    - `throttled`: percentage of telemetry samples with `throttled` true for the run (> 0).
    - `precision_mismatch`: the engine ran another precision than the one asked for (needs runs).
    - `empty_postprocess`: a detect run kept 0 detections per iteration: its postprocess time is
      that of an empty NMS, not of real results (needs runs).

    `summary` may pass a summarize() result already computed for these samples (samples may
    then be None: nothing else here reads them).
    """
    if summary is None and samples is None:
        raise PerflabError("warnings() needs the samples or their summarize() result")
    rows: list[dict[str, object]] = []
    summ = summary if summary is not None else summarize(samples, runs, ci=None)
    if not summ.empty:
        # Only the columns read: itertuples builds every column of every row it yields.
        noisy = summ.loc[summ["cv_pct"] > CV_WARN_PCT, ["run_id", "stage", "cv_pct"]]
        for r in noisy.itertuples(index=False):
            rows.append(
                _warning(
                    r.run_id,
                    r.stage,
                    "high_cv",
                    r.cv_pct,
                    CV_WARN_PCT,
                    f"{r.stage} CV {r.cv_pct:.1f}% > {CV_WARN_PCT}%: noisy run; "
                    "pin clocks and threads, close other work, or measure longer",
                )
            )
        per_run = summ.sort_values("stage", key=lambda s: s.map(lambda x: x != "e2e"))
        per_run = per_run.drop_duplicates("run_id")[["run_id", "stage", "n"]]
        for r in per_run.itertuples(index=False):
            for q, need in (("p99", MIN_SAMPLES_P99), ("p90", MIN_SAMPLES_P90)):
                if r.n < need:
                    rows.append(
                        _warning(
                            r.run_id,
                            r.stage,
                            f"few_samples_{q}",
                            r.n,
                            need,
                            f"{r.n} samples < {need} needed for a 99%-confidence bound on {q}; "
                            f"measure at least {need} iterations",
                        )
                    )
        p50 = summ.pivot_table(index="run_id", columns="stage", values="p50_ms", observed=True)
        if "compute" in p50.columns:
            if "enqueue" in p50.columns:
                ratio = (p50["enqueue"] / p50["compute"]).dropna()
                for run_id, v in ratio[ratio > ENQUEUE_WARN_RATIO].items():
                    rows.append(
                        _warning(
                            run_id,
                            "enqueue",
                            "enqueue_bound",
                            v,
                            ENQUEUE_WARN_RATIO,
                            f"enqueue is {v:.2f} x compute (> {ENQUEUE_WARN_RATIO}): "
                            "launch-bound, the device waits on the host",
                        )
                    )
            for stage in TRANSFER_STAGES:
                if stage in p50.columns:
                    ratio = (p50[stage] / p50["compute"]).dropna()
                    for run_id, v in ratio[ratio >= TRANSFER_WARN_RATIO].items():
                        rows.append(
                            _warning(
                                run_id,
                                stage,
                                "transfer_bound",
                                v,
                                TRANSFER_WARN_RATIO,
                                f"{stage} is {v:.2f} x compute (>= 1): copies cost "
                                "as much as the model; pin memory or batch more",
                            )
                        )
    if telemetry is not None and len(telemetry) and "throttled" in telemetry.columns:
        tel = telemetry
        ok = ok_run_ids(runs)
        if ok is not None:
            tel = tel[tel["run_id"].astype(str).isin(ok)]
        flag = tel["throttled"].astype("boolean").fillna(False).astype(bool)
        pct = 100.0 * flag.groupby(tel["run_id"].astype(str)).mean()
        for run_id, v in pct[pct > 0].items():
            rows.append(
                _warning(
                    run_id,
                    "compute",
                    "throttled",
                    v,
                    0.0,
                    f"{v:.1f}% of GPU telemetry samples throttled: clocks were lowered "
                    "during the run",
                )
            )
    if runs is not None and "detections_per_iteration" in runs.columns:
        kept = pd.to_numeric(runs["detections_per_iteration"], errors="coerce")
        for r in runs[kept == 0].itertuples(index=False):
            rows.append(
                _warning(
                    r.run_id,
                    "postprocess",
                    "empty_postprocess",
                    0.0,
                    0.0,
                    "the detector kept no boxes in any iteration, so postprocess timed an empty "
                    "NMS; give real inputs (pipeline_options images: FOLDER or video: FILE)",
                )
            )
    if runs is not None and "precision_mismatch" in runs.columns:
        mism = runs[runs["precision_mismatch"].astype("boolean").fillna(False).astype(bool)]
        for r in mism.itertuples(index=False):
            rows.append(
                _warning(
                    r.run_id,
                    "compute",
                    "precision_mismatch",
                    np.nan,
                    np.nan,
                    f"asked for {getattr(r, 'precision', '?')}, engine ran "
                    f"{getattr(r, 'precision_effective', '?')}",
                )
            )
    if not rows:
        return pd.DataFrame(
            {
                c: pd.Series(dtype=float if c in ("value", "threshold") else object)
                for c in WARNING_COLUMNS
            }
        )
    out = pd.DataFrame(rows, columns=list(WARNING_COLUMNS))
    return out.sort_values(["run_id", "warning"], kind="stable").reset_index(drop=True)


def _warning(run_id, stage, warning, value, threshold, message) -> dict[str, object]:
    return {
        "run_id": str(run_id),
        "stage": str(stage),
        "warning": warning,
        "value": float(value),
        "threshold": float(threshold),
        "message": message,
    }


# --------------------------------------------------------------------------------------------
# Config keys shared by batching and compare.


def config_columns(runs: pd.DataFrame, exclude: Iterable[str] = ()) -> list[str]:
    """The config columns present in `runs`, minus `exclude`."""
    exclude = set(exclude)
    return [c for c in CONFIG_COLUMNS if c in runs.columns and c not in exclude]


def key_frame(runs: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The key columns as strings, with missing values as "" so that they group and compare."""
    return pd.DataFrame(
        {c: runs[c].astype(object).where(runs[c].notna(), "").astype(str) for c in columns},
        index=runs.index,
    )
