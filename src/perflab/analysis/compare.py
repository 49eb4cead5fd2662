"""Is B faster than A? Ratios of medians with bootstrap CIs and a rank test, like against like."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from perflab.analysis.repeats import (
    centre,
    has_median_ci,
    hierarchical_medians,
    interval,
    sorted_per_run,
    values_of_runs,
)
from perflab.analysis.stats import (
    WHERE_COLUMNS,
    config_columns,
    key_frame,
    ok_run_ids,
)
from perflab.errors import PerflabError
from perflab.labels import MAPPING_SETTINGS, readable_labels, setting_names, with_settings

# Columns that say where (or when) a run happened. Comparing by one of them compares places, so
# runs are then matched on what was run only: the other where-columns differ between machines too.
LOCATION_COLUMNS: tuple[str, ...] = (*WHERE_COLUMNS, "study", "env_id")
# Backends whose rows are imported from another tool's own measurement (another timed region,
# another clock), not measured by perflab's stage timers.
IMPORTED_BACKENDS: tuple[str, ...] = ("trtexec",)
VERDICTS: tuple[str, ...] = (
    "faster",
    "slower",
    "same",
    "indicative",
    "too few samples",
    "not comparable",
    "no data",
)
# A confident verdict needs the between-run variance, so at least this many runs per side.
MIN_RUNS_FOR_VERDICT = 2
# Default practical-equivalence band: +-1%. Timing noise between processes is about 1% even on a
# quiet machine, so smaller differences are not worth acting on; a 5% difference measured with
# 1% jitter lies far outside it.
DEFAULT_THRESHOLD = 0.01

COMPARE_COLUMNS: tuple[str, ...] = (
    "by",
    "a",
    "b",
    "config",
    "stage",
    "n_runs_a",
    "n_runs_b",
    "n_a",
    "n_b",
    "median_a_ms",
    "median_b_ms",
    "ratio",
    "ci_low",
    "ci_high",
    "p_value",
    "verdict",
    "threshold",
    "comparable",
)


def verdict(ci_low: float, ci_high: float, threshold: float, n_runs: int = 2) -> str:
    """`same` when the CI of B/A spans 1 or lies inside [1 - threshold, 1 + threshold] (the
    practical-equivalence band); `faster` (B takes less time) or `slower` otherwise;
    `indicative` whatever the CI when the side with fewer runs has fewer than
    MIN_RUNS_FOR_VERDICT (`n_runs`): its CI holds no between-run variance."""
    if not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return "no data"
    if n_runs < MIN_RUNS_FOR_VERDICT:
        return "indicative"
    if ci_low <= 1.0 <= ci_high or (ci_low >= 1.0 - threshold and ci_high <= 1.0 + threshold):
        return "same"
    return "faster" if ci_high < 1.0 else "slower"


def _level_label(values: Sequence[object]) -> str:
    return " / ".join(
        "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values
    )


def compare(
    samples: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    by: str | Iterable[str],
    baseline: object = None,
    stage: str = "e2e",
    threshold: float = DEFAULT_THRESHOLD,
    ci: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    match: Iterable[str] | None = None,
    allow_imported: bool = False,
) -> pd.DataFrame:
    """Compare the levels of `by` (A = `baseline`, B = each other level) config by config.

    Input: samples and runs (any folders together: two machines or two days are runs with other
    host/study values). `by`: one setting or several, as the experiment file names them
    (backend, precision, model, seed, options.threads, pipeline_options.image_size, ...; see
    `perflab.labels`), or any other runs column (device_name, study, host, ...). By an entry of
    `options` (or `pipeline_options`), runs are matched on the mapping's other entries.

    Output, one row per matched config and level B::

        by      a       b    config       stage n_runs_a n_runs_b n_a  n_b  median_a_ms
        backend ort-cpu trt  m · fp32 ... e2e   1        1        1000 1000 10.00
                median_b_ms ratio ci_low ci_high p_value verdict threshold comparable
                9.50        0.950 0.948  0.952   1e-300  faster  0.01      True

    plus the match columns themselves (model, precision, batch_size, ...), after `b`.

    - Matching: runs are compared only with runs equal on every config column (model, pipeline,
      backend, mode, precision, options, device_name, device, host, batch_size) except the `by`
      columns. When a `by` column says where a run happened (device_name, device, host, study,
      env_id), the other where-columns are dropped from the match too, since another machine
      differs in all of them. `match` overrides the match columns. The runs of one side (the
      repetitions of a config) each count once: see perflab.analysis.repeats.
    - baseline: the A level (a tuple or "x / y" for several `by` columns); default the first
      level in sorted order. Each other level is B.
    - median_a_ms / median_b_ms: the mean of each side's run medians of the measured `stage`
      (a single run's median). ratio = median_b_ms / median_a_ms: below 1 means B takes less
      time. ci_low/ci_high: a two-stage bootstrap (runs, then iterations within runs) of each
      side, seeded by `seed`; with runs on both sides, a t interval of the log ratio whose
      degrees of freedom come from the side with fewer runs (repeats.interval); with one run
      on a side, the plain `ci` percentile bootstrap of the iterations. Each run needs at least
      MIN_ITERATIONS_MEDIAN_CI (6) iterations, else there is no CI (verdict `too few samples`).
    - p_value: two-sided Mann-Whitney U test (scipy.stats.mannwhitneyu) of the two samples. It
      treats iterations as independent, which consecutive timings are not quite, so the verdict
      rests on the CI, not on it.
    - verdict: `same` when the CI spans 1 or lies entirely within [1 - threshold, 1 + threshold],
      the practical-equivalence band (default 1%: a 0.1% difference is `same`, a 5% one measured
      with 1% jitter is not); `faster`/`slower` otherwise; but `indicative` whenever a side has
      fewer than 2 runs (`repeat: 2` or more gives verdicts: one run's CI cannot see how much the
      next run differs); `too few samples` when a run has fewer than 6 iterations; `no data`
      when a side has no samples.
    - comparable: False when exactly one side comes from an imported tool (backend "trtexec"):
      its numbers time another region with another clock (trtexec's GPU compute time excludes
      pre/postprocessing and Python), so such rows keep their numbers but get the verdict
      `not comparable`, unless `allow_imported=True` says the caller knows what is compared.
    """
    from scipy.stats import mannwhitneyu  # on use: scipy.stats takes about a second to import

    by_cols = [by] if isinstance(by, str) else list(by)
    if not by_cols:
        raise PerflabError("compare needs at least one column in by=")
    try:
        runs = with_settings(runs, by_cols)
    except PerflabError as exc:
        raise PerflabError(f"cannot compare by {by_cols}: {exc}") from None
    if not 0 < ci < 1:
        raise PerflabError(f"ci must lie strictly between 0 and 1, got {ci!r}")
    if threshold < 0:
        raise PerflabError(f"threshold must be >= 0 (a fraction, 0.01 = 1%), got {threshold!r}")

    info = runs[runs["run_id"].astype(str).isin(ok_run_ids(runs))].copy()
    info["run_id"] = info["run_id"].astype(str)
    info = info.drop_duplicates("run_id")
    if match is None:
        drop = set(by_cols)
        if drop & set(LOCATION_COLUMNS):
            drop |= set(LOCATION_COLUMNS)
        key_cols = config_columns(info, exclude=drop)
        # By one entry of an option mapping: match on the mapping's other entries instead.
        for group in MAPPING_SETTINGS:
            inner = [c for c in by_cols if c.startswith(group + ".")]
            if inner and group in key_cols:
                others = [
                    n for n in setting_names(info) if n.startswith(group + ".") and n not in inner
                ]
                info = with_settings(info, others)
                at = key_cols.index(group)
                key_cols[at : at + 1] = others
    else:
        key_cols = [c for c in match if c not in by_cols]
        absent = [c for c in key_cols if c not in info.columns]
        if absent:
            raise PerflabError(f"match columns {absent} are not in runs: {list(info.columns)}")
    keys = key_frame(info, key_cols)
    levels = [_level_label(v) for v in info[by_cols].astype(object).to_numpy()]
    info = info.assign(_level=levels, _key=[tuple(k) for k in keys.to_numpy()])
    for c in key_cols:
        info[c] = keys[c]
    distinct_levels = sorted(set(levels))
    if baseline is None:
        if not distinct_levels:
            return _empty(key_cols)
        base = distinct_levels[0]
    else:
        base = _level_label(baseline) if isinstance(baseline, tuple) else str(baseline)
        if base not in distinct_levels:
            raise PerflabError(
                f"baseline {base!r} is not a level of {'/'.join(by_cols)}; levels: {distinct_levels}"
            )

    values = sorted_per_run(samples, runs, stage)
    label_keys = keys.drop_duplicates()
    config_label = dict(
        zip(
            map(tuple, label_keys.to_numpy()),
            readable_labels(label_keys) if len(label_keys) else [],
        )
    )
    imported = info["backend"].astype(str).isin(IMPORTED_BACKENDS) if "backend" in info else None
    rng = np.random.default_rng(seed)
    rows = []
    for key, group in info.groupby("_key", sort=True):
        a_runs = group[group["_level"] == base]
        if a_runs.empty:
            continue
        x_a = values_of_runs(values, a_runs["run_id"])
        for level, b_runs in group[group["_level"] != base].groupby("_level", sort=True):
            x_b = values_of_runs(values, b_runs["run_id"])
            row = {
                "by": "/".join(by_cols),
                "a": base,
                "b": level,
                **dict(zip(key_cols, key)),
                "config": config_label.get(key, ""),
                "stage": stage,
                "n_runs_a": len(a_runs),
                "n_runs_b": len(b_runs),
                "n_a": sum(map(len, x_a)),
                "n_b": sum(map(len, x_b)),
                "threshold": threshold,
            }
            comparable = True
            if imported is not None and not allow_imported:
                comparable = bool(imported[a_runs.index].any()) == bool(
                    imported[b_runs.index].any()
                )
            row["comparable"] = comparable
            if x_a and x_b:
                med_a, med_b = centre(x_a), centre(x_b)
                row.update(
                    median_a_ms=med_a / 1e6,
                    median_b_ms=med_b / 1e6,
                    ratio=med_b / med_a,
                    p_value=float(mannwhitneyu(np.concatenate(x_a), np.concatenate(x_b)).pvalue),
                )
                fewest = min(len(x_a), len(x_b))
                if not (has_median_ci(x_a) and has_median_ci(x_b)):
                    row.update(ci_low=np.nan, ci_high=np.nan, verdict="too few samples")
                else:
                    ratios = hierarchical_medians(x_b, n_boot, rng) / hierarchical_medians(
                        x_a, n_boot, rng
                    )
                    lo, hi = interval(ratios, med_b / med_a, fewest, ci)
                    row.update(ci_low=lo, ci_high=hi, verdict=verdict(lo, hi, threshold, fewest))
            else:
                row.update(
                    median_a_ms=np.nan,
                    median_b_ms=np.nan,
                    ratio=np.nan,
                    ci_low=np.nan,
                    ci_high=np.nan,
                    p_value=np.nan,
                    verdict="no data",
                )
            if not comparable and row["verdict"] != "no data":
                row["verdict"] = "not comparable"
            rows.append(row)
    if not rows:
        return _empty(key_cols)
    out = pd.DataFrame(rows)
    return out[_columns(key_cols)]


def _columns(key_cols: list[str]) -> list[str]:
    return [*COMPARE_COLUMNS[:3], *key_cols, *COMPARE_COLUMNS[3:]]


def _empty(key_cols: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in _columns(key_cols)})
