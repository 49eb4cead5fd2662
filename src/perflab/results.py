"""The notebook facade: open result folders, get tables and analyses as DataFrames.

    res = perflab.open(["data/box-a", "data/box-b"])
    res.runs, res.samples, res.summary(), res.ok().select(backend="trt").compare(by="precision")

Tables are read lazily, once per set of folders, and shared by every Results derived from it by
select(); each access returns a new frame object (pandas copy-on-write makes that cheap), so
changing a returned frame never changes what the next cell sees.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perflab import store

# Functions imported from their modules by full path: the package may re-export functions named
# like their modules (perflab.analysis.warmup), which would shadow the module attribute.
from perflab.analysis.batching import batching as _batching
from perflab.analysis.batching import batching_curve as _batching_curve
from perflab.analysis.breakdown import breakdown as _breakdown
from perflab.analysis.compare import compare as _compare
from perflab.analysis.repeats import repeats as _repeats
from perflab.analysis.stats import harness_gap as _harness_gap
from perflab.analysis.stats import summarize as _summarize
from perflab.analysis.stats import warnings as _warnings
from perflab.analysis.warmup import warmup as _warmup
from perflab.errors import PerflabError

# Columns of a run shown beside its statistics.
RUN_INFO_COLUMNS: tuple[str, ...] = ("label", "model", "backend", "precision", "batch_size")
REPR_RUNS = 5


class _Source:
    """The folders and their tables as read from disk, each read once."""

    def __init__(self, paths: tuple[Path, ...]):
        self.paths = paths
        self._tables: dict[str, pd.DataFrame] = {}

    def table(self, name: str) -> pd.DataFrame:
        if name not in self._tables:
            frame = store.read(self.paths, name)
            if name == "runs" and len(frame):
                # A re-run of a run id in another folder would double its samples; keep the first.
                frame = frame.drop_duplicates("run_id").reset_index(drop=True)
            self._tables[name] = frame
        return self._tables[name]


def open(paths: str | Path | Iterable[str | Path]) -> Results:
    """Open one result folder or several together (two machines, two days) as one Results.

    A missing folder, or one that holds no perflab tables, raises StoreError; unreadable files
    inside are skipped with a warning naming them when their table is first read.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    folders = tuple(Path(p) for p in paths)
    if not folders:
        raise PerflabError("open() needs at least one result folder")
    for folder in folders:
        store.read_study_check(folder)
    return Results(_Source(folders))


class Results:
    """Runs, samples and the other tables of one or more result folders, plus their analyses.

    Every accessor returns a DataFrame; select() and ok() return new Results over a subset of
    runs, leaving this one as it is.
    """

    def __init__(
        self, source: _Source, run_ids: frozenset[str] | None = None, filters: tuple[str, ...] = ()
    ):
        self._source = source
        self._run_ids = run_ids
        self._filters = filters
        self._cache: dict[str, pd.DataFrame] = {}

    # -- tables ------------------------------------------------------------------------------

    @property
    def paths(self) -> tuple[Path, ...]:
        """The folders these results were read from."""
        return self._source.paths

    def _cached(self, name: str, build) -> pd.DataFrame:
        if name not in self._cache:
            self._cache[name] = build()
        return self._cache[name].copy(deep=False)

    @property
    def runs(self) -> pd.DataFrame:
        """One row per run (every status); see store.TABLES["runs"]."""
        return self._cached("runs", self._build_runs)

    def _build_runs(self) -> pd.DataFrame:
        runs = self._source.table("runs")
        if self._run_ids is not None:
            runs = runs[runs["run_id"].isin(self._run_ids)].reset_index(drop=True)
        return runs

    def _run_id_set(self) -> np.ndarray:
        return self.runs["run_id"].astype(str).to_numpy()

    def table(self, name: str) -> pd.DataFrame:
        """Any stored table, restricted to these runs where it has a run_id column."""
        if name not in store.TABLES:
            raise PerflabError(f"unknown table {name!r}; tables: {', '.join(store.TABLES)}")
        if name == "runs":
            return self.runs
        if name == "env":
            return self.env
        return self._cached(name, lambda: self._build_child(name))

    def _build_child(self, name: str) -> pd.DataFrame:
        frame = self._source.table(name)
        if "run_id" not in frame.columns or not len(frame):
            return frame
        keep = frame["run_id"].isin(self._run_id_set())
        if keep.all():
            return frame
        frame = frame[keep.to_numpy()].reset_index(drop=True)
        for col in frame.columns:
            if isinstance(frame[col].dtype, pd.CategoricalDtype):
                frame[col] = frame[col].cat.remove_unused_categories()
        return frame

    @property
    def samples(self) -> pd.DataFrame:
        """Per-iteration, per-stage timings of these runs (leftovers without a runs row dropped)."""
        return self.table("samples")

    @property
    def env(self) -> pd.DataFrame:
        """Environment fingerprints of these runs (all of them when runs carry no env_id)."""
        return self._cached("env", self._build_env)

    def _build_env(self) -> pd.DataFrame:
        env = self._source.table("env").drop_duplicates("env_id").reset_index(drop=True)
        runs = self.runs
        if "env_id" in runs.columns and runs["env_id"].notna().any():
            env = env[env["env_id"].isin(runs["env_id"].dropna())].reset_index(drop=True)
        return env

    @property
    def telemetry(self) -> pd.DataFrame:
        """GPU clocks, temperature, power and throttling sampled during the runs."""
        return self.table("telemetry")

    @property
    def layers(self) -> pd.DataFrame:
        """Per-layer / per-operator profiles."""
        return self.table("layers")

    @property
    def reported(self) -> pd.DataFrame:
        """Statistics other tools printed (imported trtexec logs and similar)."""
        return self.table("reported")

    @property
    def calibration(self) -> pd.DataFrame:
        """The harness's own measured overheads (timer, NVTX, event record, sync)."""
        return self.table("calibration")

    # -- selection ---------------------------------------------------------------------------

    def select(self, **criteria: Any) -> Results:
        """A new Results with the runs whose columns match: select(backend="trt",
        batch_size=[1, 8]). A value may be a scalar or a list of accepted values."""
        runs = self.runs
        keep = np.ones(len(runs), dtype=bool)
        described = []
        for column, wanted in criteria.items():
            if column not in runs.columns:
                raise PerflabError(
                    f"cannot select on {column!r}; runs columns are {list(runs.columns)}"
                )
            values = list(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
            keep &= runs[column].isin(values).to_numpy(dtype=bool, na_value=False)
            described.append(f"{column}={values[0] if len(values) == 1 else values}")
        ids = frozenset(runs.loc[keep, "run_id"].astype(str))
        return Results(self._source, ids, self._filters + tuple(described))

    def ok(self) -> Results:
        """A new Results with the runs whose status is "ok"."""
        return self.select(status="ok")

    # -- analyses ----------------------------------------------------------------------------

    def _with_info(self, frame: pd.DataFrame) -> pd.DataFrame:
        runs = self.runs
        cols = [c for c in RUN_INFO_COLUMNS if c in runs.columns and c not in frame.columns]
        if not cols or frame.empty:
            return frame
        info = runs[["run_id", *cols]].assign(run_id=runs["run_id"].astype(str))
        out = frame.merge(info, on="run_id", how="left")
        return out[["run_id", *cols, *[c for c in frame.columns if c != "run_id"]]]

    def summary(self, **kw: Any) -> pd.DataFrame:
        """stats.summarize() of the ok runs, with label/model/backend/precision/batch_size."""
        key = "summary:" + repr(sorted(kw.items()))
        return self._cached(key, lambda: self._with_info(_summarize(self.samples, self.runs, **kw)))

    def harness_gap(self, **kw: Any) -> pd.DataFrame:
        """stats.harness_gap(): e2e minus the sum of the stages, per run."""
        return self._with_info(_harness_gap(self.samples, self.runs, **kw))

    def warnings(self) -> pd.DataFrame:
        """stats.warnings(): noisy runs, too few samples, launch- or transfer-bound, throttling."""
        return _warnings(self.samples, self.runs, self.telemetry, summary=self.summary(ci=None))

    def breakdown(self, **kw: Any) -> pd.DataFrame:
        """breakdown.breakdown(): each stage's share of e2e per run, with the harness gap."""
        return _breakdown(self.samples, self.runs, **kw)

    def warmup(self, **kw: Any) -> pd.DataFrame:
        """warmup.warmup(): steady-state classification per run."""
        return self._with_info(_warmup(self.samples, runs=self.runs, **kw))

    def batching(self, **kw: Any) -> pd.DataFrame:
        """batching.batching(): latency = a + b x batch fits, knee, best batch under a p99 target."""
        return _batching(self.samples, self.runs, **kw)

    def batching_curve(self, **kw: Any) -> pd.DataFrame:
        """batching.batching_curve(): latency and throughput per batch size."""
        return _batching_curve(self.samples, self.runs, **kw)

    def compare(self, by: str | list[str], baseline: Any = None, **kw: Any) -> pd.DataFrame:
        """compare.compare(): level B against baseline A of `by`, config by config."""
        return _compare(self.samples, self.runs, by=by, baseline=baseline, **kw)

    def repeats(self, **kw: Any) -> pd.DataFrame:
        """repeats.repeats(): per config, its runs' spread (between-run and within-run CV) and
        the median's CI over runs and iterations."""
        return _repeats(self.samples, self.runs, **kw)

    def stage_medians(self) -> pd.DataFrame:
        """Median per run and stage: from the samples, and for runs without samples (imports)
        the medians another tool reported for the stages that mean the same as perflab's
        (trtexec's GPU Compute Time, H2D and D2H Latency; not its Latency, which is no e2e)."""
        measured = self.summary(ci=None)[["run_id", "stage", "p50_ms"]]
        reported = self.reported
        if reported is None or reported.empty:
            return measured
        keep = (
            reported["stage"].isin(("h2d", "compute", "d2h"))
            & (reported["statistic"] == "median")
            & ~reported["run_id"].isin(measured["run_id"])
        )
        extra = reported.loc[keep, ["run_id", "stage", "value_ms"]].rename(
            columns={"value_ms": "p50_ms"}
        )
        return pd.concat([measured, extra], ignore_index=True)

    def _ok_runs(self) -> pd.DataFrame:
        runs = self.runs
        if "status" in runs.columns:
            runs = runs[runs["status"] == "ok"].reset_index(drop=True)
        return runs

    def roofline(self, device: str | Mapping[str, Any] | None = None) -> pd.DataFrame:
        """roofline.roofline() of the ok runs' stage medians (device None: each run's own; CPU
        runs get the host's estimated peaks from the stored fingerprint)."""
        from perflab.analysis.roofline import roofline  # optional module, imported when used

        return roofline(
            self._ok_runs(), self.stage_medians(), device=device or self.host_fingerprint()
        )

    def project(
        self, device: str | Mapping[str, Any] | Sequence[str | Mapping[str, Any]], **kw: Any
    ) -> pd.DataFrame:
        """roofline.project(): the ok runs' stage times predicted on another device, or on each
        of several (``device=["GTX 1050 Ti", "RTX 3070"]``; rows of all targets, concatenated).
        Runs that all ran on this CPU are projected from its estimated peaks unless
        `from_device` is given."""
        from perflab.analysis.roofline import project

        if kw.get("from_device") is None and self._all_cpu():
            kw["from_device"] = self.host_fingerprint()
        targets = [device] if isinstance(device, (str, Mapping)) or device is None else device
        frames = [project(self._ok_runs(), self.stage_medians(), device=d, **kw) for d in targets]
        return pd.concat(frames, ignore_index=True) if len(frames) != 1 else frames[0]

    def bounds(self) -> pd.DataFrame:
        """roofline.bounds(): what limits each ok run (host, copies, compute, memory, launches),
        as a word and a sentence, CPU runs included."""
        from perflab.analysis.roofline import bounds

        return bounds(self.roofline(), self._ok_runs())

    def projection_check(self, **kw: Any) -> pd.DataFrame:
        """roofline.projection_check(): each ok run projected onto every other device measured
        here, beside what that device measured (the projection's own error)."""
        from perflab.analysis.roofline import projection_check

        return projection_check(self._ok_runs(), self.stage_medians(), **kw)

    def host_fingerprint(self) -> dict[str, Any] | None:
        """The environment fingerprint when the results hold exactly one, else None."""
        env = self.env
        if len(env) != 1:
            return None
        try:
            return json.loads(env["fingerprint"].iloc[0] or "{}") or None
        except (TypeError, ValueError):
            return None

    def _all_cpu(self) -> bool:
        ok = self._ok_runs()
        return bool(len(ok)) and ok["device"].astype(str).str.lower().str.startswith("cpu").all()

    # -- display -----------------------------------------------------------------------------

    def _overview(self) -> dict[str, Any]:
        runs = self.runs
        status = runs["status"].fillna("?").astype(str).value_counts() if len(runs) else {}
        lines = []
        if len(runs) and "status" in runs.columns and (runs["status"] == "ok").any():
            summ = self.summary(ci=None)
            e2e = summ[summ["stage"] == "e2e"].sort_values("p50_ms").head(REPR_RUNS)
            for r in e2e.itertuples(index=False):
                name = getattr(r, "label", None) or r.run_id
                lines.append((str(name), f"{r.p50_ms:.3f}", f"{r.throughput_items_s:,.0f}"))
        return {
            "n_runs": len(runs),
            "status": dict(status),
            "models": _distinct(runs, "model"),
            "backends": _distinct(runs, "backend"),
            "lines": lines,
        }

    def _header(self) -> str:
        where = ", ".join(str(p) for p in self.paths)
        sel = f" where {', '.join(self._filters)}" if self._filters else ""
        return f"perflab.Results: {where}{sel}"

    def __repr__(self) -> str:
        o = self._overview()
        by_status = ", ".join(f"{n} {s}" for s, n in o["status"].items()) or "none"
        out = [
            self._header(),
            f"  {o['n_runs']} runs ({by_status})",
            f"  models: {', '.join(o['models']) or '-'}",
            f"  backends: {', '.join(o['backends']) or '-'}",
        ]
        if o["lines"]:
            out.append("  lowest e2e p50:")
            out += [f"    {name}: {p50} ms, {tput} items/s" for name, p50, tput in o["lines"]]
        return "\n".join(out)

    def _repr_html_(self) -> str:
        o = self._overview()
        e = html.escape
        by_status = ", ".join(f"{n} {e(s)}" for s, n in o["status"].items()) or "none"
        parts = [
            f"<div><b>{e(self._header())}</b>",
            f"<div>{o['n_runs']} runs ({by_status})</div>",
            f"<div>models: {e(', '.join(o['models']) or '-')}</div>",
            f"<div>backends: {e(', '.join(o['backends']) or '-')}</div>",
        ]
        if o["lines"]:
            rows = "".join(
                f"<tr><td>{e(n)}</td><td>{e(p)}</td><td>{e(t)}</td></tr>" for n, p, t in o["lines"]
            )
            parts.append(
                f"<table><tr><th>lowest e2e p50</th><th>ms</th><th>items/s</th></tr>{rows}</table>"
            )
        parts.append("</div>")
        return "".join(parts)


def _distinct(runs: pd.DataFrame, column: str) -> list[str]:
    if column not in runs.columns:
        return []
    return sorted(runs[column].dropna().astype(str).unique())
