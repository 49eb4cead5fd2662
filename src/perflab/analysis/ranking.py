"""Which engine is fastest? One ranking per configuration, fastest first, with CIs and verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from perflab.analysis.compare import DEFAULT_THRESHOLD, verdict
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
    order_stat_ci_ranks,
)
from perflab.errors import PerflabError
from perflab.labels import readable_labels

RANKING_COLUMNS: tuple[str, ...] = (
    "config",
    "rank",
    "level",
    "status",
    "n_runs",
    "n",
    "median_ms",
    "median_ci_low_ms",
    "median_ci_high_ms",
    "ratio_to_fastest",
    "ratio_ci_low",
    "ratio_ci_high",
    "vs_fastest",
    "vs_next_faster",
    "reason",
)


def ranking(
    samples: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    by: str = "backend",
    stage: str = "e2e",
    threshold: float = DEFAULT_THRESHOLD,
    ci: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Rank the levels of `by` (default: the engines) within each configuration, fastest first.

    A configuration is everything a run's config says except `by` and where it ran (device_name,
    device, host: engines name one CPU differently, and a ranking is of one machine's runs), so
    the rows of one ranking differ in `by` only. Input: samples and runs. Output, one row per
    configuration and level::

        config          rank level     status n   median_ms median_ci_low_ms median_ci_high_ms
        resnet18 · b1   1    openvino  ok     300 10.0      9.9              10.1
        resnet18 · b1   2    ort-cpu   ok     300 12.0      11.9             12.2
        resnet18 · b1   NaN  mnn       unsupported 0 NaN ...
              ratio_to_fastest ratio_ci_low ratio_ci_high vs_fastest vs_next_faster reason
              1.0              1.0          1.0           fastest    fastest
              1.2              1.18         1.22          slower     slower
              NaN                                                              <the reason>

    plus the configuration's own columns (model, batch_size, precision, ...) after `config`.

    - n_runs: the level's runs (repetitions); median_ms: the mean of their medians of the
      measured `stage` (one run: its median); its CI: one run, the exact order-statistic
      interval of the median; several, compare()'s interval over runs and iterations (NaN where
      a run has too few samples, analysis.repeats.MIN_ITERATIONS_MEDIAN_CI).
    - ratio_to_fastest: median / the fastest level's median; its CI from the two-stage bootstrap
      of both sides (`n_boot` draws, seeded), as in compare().
      Both are NaN (and the verdicts `no data`) when a side has too few samples for a CI.
    - vs_fastest / vs_next_faster: compare()'s verdict of this level against the fastest and
      against the level ranked just above it (`same` when the CI of the ratio spans 1 or lies
      within +-`threshold`): two engines a rank apart whose verdict is `same` are a tie. With
      fewer than two runs on a side, `indicative` (as in compare()).
    - Runs that are not ok (unsupported, failed, timeout) are listed after the ranked levels
      with their status and reason, without a rank, so a ranking shows what could not run.
    """
    if by not in runs.columns:
        raise PerflabError(f"cannot rank by {by!r}: runs columns are {list(runs.columns)}")
    info = runs.copy()
    info["run_id"] = info["run_id"].astype(str)
    info = info.drop_duplicates("run_id")
    key_cols = config_columns(info, exclude={by, *WHERE_COLUMNS})
    keys = key_frame(info, key_cols)
    info = info.assign(_key=[tuple(k) for k in keys.to_numpy()], _level=info[by].astype(str))
    label_keys = keys.drop_duplicates()
    labels = dict(
        zip(map(tuple, label_keys.to_numpy()), readable_labels(label_keys, always=("model",)))
    )
    values = sorted_per_run(samples, runs, stage)
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    for key, group in info.groupby("_key", sort=True):
        base = {"config": labels.get(key, ""), **dict(zip(key_cols, key))}
        ok = group[group["status"] == "ok"]
        # Each level's runs (its repetitions), each run counted once (analysis.repeats).
        per_level = {
            lvl: values_of_runs(values, g["run_id"]) for lvl, g in ok.groupby("_level", sort=True)
        }
        measured = sorted(
            ((lvl, xs) for lvl, xs in per_level.items() if xs), key=lambda p: centre(p[1])
        )
        boots = {lvl: hierarchical_medians(xs, n_boot, rng) for lvl, xs in measured}
        # A level with a run too small for a CI of its median gets no CI: a bootstrap of one or
        # two samples would print a CI of zero width.
        bounded = {lvl: has_median_ci(xs) for lvl, xs in measured}
        for rank, (lvl, xs) in enumerate(measured, start=1):
            fastest_lvl, fastest_xs = measured[0]
            med = centre(xs)
            if not bounded[lvl]:
                med_lo = med_hi = np.nan
            elif len(xs) == 1:  # one run: the distribution-free order-statistic interval
                x = xs[0]
                lo_rank, hi_rank = order_stat_ci_ranks(np.array([len(x)]), 0.5, ci)
                med_lo, med_hi = float(x[int(lo_rank[0])]), float(x[int(hi_rank[0])])
            else:
                med_lo, med_hi = interval(boots[lvl], med, len(xs), ci)
            row = {
                **base,
                "rank": rank,
                "level": lvl,
                "status": "ok",
                "n_runs": len(xs),
                "n": sum(map(len, xs)),
                "median_ms": med / 1e6,
                "median_ci_low_ms": med_lo / 1e6,
                "median_ci_high_ms": med_hi / 1e6,
                "reason": "",
            }
            if rank == 1:
                row.update(
                    ratio_to_fastest=1.0,
                    ratio_ci_low=1.0,
                    ratio_ci_high=1.0,
                    vs_fastest="fastest",
                    vs_next_faster="fastest",
                )
            else:
                prev_lvl, prev_xs = measured[rank - 2]
                ratio = med / centre(fastest_xs)
                fewest = min(len(xs), len(fastest_xs))
                lo, hi = _ratio_ci(boots, lvl, fastest_lvl, ratio, fewest, ci, bounded)
                p_fewest = min(len(xs), len(prev_xs))
                p_ratio = med / centre(prev_xs)
                p_lo, p_hi = _ratio_ci(boots, lvl, prev_lvl, p_ratio, p_fewest, ci, bounded)
                row.update(
                    ratio_to_fastest=ratio,
                    ratio_ci_low=float(lo),
                    ratio_ci_high=float(hi),
                    vs_fastest=verdict(lo, hi, threshold, fewest),
                    vs_next_faster=verdict(p_lo, p_hi, threshold, p_fewest),
                )
            rows.append(row)
        ranked = {lvl for lvl, _ in measured}
        for lvl, g in group.groupby("_level", sort=True):
            if lvl in ranked:
                continue
            first = g.iloc[0]
            reason = first.get("error")
            rows.append(
                {
                    **base,
                    "rank": np.nan,
                    "level": lvl,
                    "status": str(first["status"]) if first["status"] != "ok" else "no data",
                    "n": 0,
                    "reason": "" if reason is None or pd.isna(reason) else str(reason),
                }
            )
    columns = [RANKING_COLUMNS[0], *key_cols, *RANKING_COLUMNS[1:]]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    out = pd.DataFrame(rows).reindex(columns=columns)
    return out.rename(columns={"level": by}).reset_index(drop=True)


def _ratio_ci(
    boots: dict[str, np.ndarray],
    b: str,
    a: str,
    ratio: float,
    n_runs: int,
    ci: float,
    bounded: dict[str, bool],
) -> tuple[float, float]:
    """CI of centre(b) / centre(a) as compare() builds it (repeats.interval over the two-stage
    bootstrap draws); NaN where a side is too small."""
    if not (bounded[a] and bounded[b]):
        return np.nan, np.nan
    return interval(boots[b] / boots[a], ratio, n_runs, ci)
