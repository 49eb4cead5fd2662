"""The notebook facade: open result folders, get tables and analyses as DataFrames.

    res = perflab.open(["data/box-a", "data/box-b"])
    res.runs, res.samples, res.summary(), res.ok().select(backend="trt").compare(by="precision")

Tables are read lazily, once per set of folders, and shared by every Results derived from it by
select(); each access returns a new frame object (pandas copy-on-write makes that cheap), so
changing a returned frame never changes what the next cell sees.
"""

from __future__ import annotations

import html
import inspect
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from perflab import __version__, scan, store, tool_stages
from perflab.analysis import devices, explain, overview, traces
from perflab.analysis.batching import batch_groups as _batch_groups

# Functions imported from their modules by full path: the package may re-export functions named
# like their modules (perflab.analysis.warmup), which would shadow the module attribute.
from perflab.analysis.batching import batching as _batching
from perflab.analysis.batching import batching_curve as _batching_curve
from perflab.analysis.batching import bimodal_runs as _bimodal_runs
from perflab.analysis.breakdown import breakdown as _breakdown
from perflab.analysis.breakdown import pick_run as _pick_run
from perflab.analysis.breakdown import stage_table as _stage_table
from perflab.analysis.compare import compare as _compare
from perflab.analysis.ranking import ranking as _ranking
from perflab.analysis.repeats import repeats as _repeats
from perflab.analysis.stats import harness_gap as _harness_gap
from perflab.analysis.stats import ok_run_ids as _ok_run_ids
from perflab.analysis.stats import summarize as _summarize
from perflab.analysis.stats import warnings as _warnings
from perflab.analysis.stats import with_wall_throughput as _with_wall_throughput
from perflab.analysis.warmup import warmup as _warmup
from perflab.analysis.warmup import warmup_table as _warmup_table
from perflab.errors import PerflabError
from perflab.labels import RUN_INFO_COLUMNS, run_labels
from perflab.stages import DEVICE_STAGES, E2E, ITERATION_STAGES, stage_rank

REPR_RUNS = 5
# What the statistics kept in the samples index are: another perflab, or a change to how they
# are computed (bump the suffix), rebuilds them.
KEPT_STATISTICS_VERSION = f"{__version__}/1"


class _Source:
    """The folders and their tables as read from disk, each read once."""

    def __init__(self, paths: tuple[Path, ...]):
        self.paths = paths
        self._tables: dict[str, pd.DataFrame] = {}
        self._catalog: scan.Catalog | None = None

    def catalog(self) -> scan.Catalog | None:
        """Which runs, phases and stages the samples files hold (for reads of parts of them)."""
        if self._catalog is None:
            self._catalog = scan.catalog(self.paths)
        return self._catalog

    def kept(self, name: str, compute, runs: pd.DataFrame) -> pd.DataFrame:
        """`compute(catalog, runs)` (a per-run statistic of the samples, one or more rows per
        run) for the ok ones of `runs`, read where each folder's samples index keeps it.

        A run's rows depend only on its samples, and a file does not change once written (the
        index knows each by its size and modification time). So for a run whose samples lie in
        one file, the index keeps the rows, computed when the file is new or changed; the other
        runs (several files) are computed each time. `perflab show` and the reports then read a
        few rows per run instead of every sample again."""
        cat = self.catalog()
        wanted = [str(r) for r in _ok_run_ids(runs)]
        if cat is None or not wanted:
            return compute(cat, runs)
        one_file = cat.single_file_runs()
        readable = set(cat.files)
        every = self.table("runs")
        by_folder: dict[str, dict[str, str]] = {}  # samples folder -> {run id: file name}
        for run_id, file in one_file.items():
            holder, name_of_file = os.path.split(file)
            by_folder.setdefault(holder, {})[run_id] = name_of_file
        parts = []
        for folder in self.paths:
            here = by_folder.get(str(folder / "samples"), {})

            def derive(paths: list[Path], table: str, here=here) -> tuple[pa.Table, dict]:
                fresh = {p.name for p in paths}
                ids = [r for r, f in here.items() if f in fresh]
                rows = compute(cat, every[every["run_id"].astype(str).isin(ids)])
                names = rows["run_id"].astype(str).map(here)
                table = _kept_table(rows.assign(**{store.INDEX_FILE: names}))
                return table, {p: True for p in paths if p in readable}

            asked = {here[r] for r in wanted if r in here}
            table, _ = store.indexed(
                folder, "samples", name, derive, version=KEPT_STATISTICS_VERSION, only=asked
            )
            if table is not None:
                part = table.drop_columns([store.INDEX_FILE]).to_pandas()
                parts.append(part[part["run_id"].isin(wanted)])
        found = set().union(*(set(p["run_id"]) for p in parts))
        missing = sorted(set(wanted) - found)
        if missing:  # (always, when no folder keeps anything yet)
            parts.append(compute(cat, runs[runs["run_id"].astype(str).isin(missing)]))
        # Empty parts are left out (one would turn the others' columns into objects and floats),
        # unless every part is empty.
        frame = pd.concat([p for p in parts if len(p)] or parts[-1:], ignore_index=True)
        order = ["run_id", "stage"] if "stage" in frame.columns else ["run_id"]
        return frame.sort_values(
            order, key=lambda s: s.map(stage_rank) if s.name == "stage" else s
        ).reset_index(drop=True)

    def table(self, name: str) -> pd.DataFrame:
        if name not in self._tables:
            frame = store.read(self.paths, name)
            if name == "runs" and len(frame):
                # A re-run of a run id in another folder would double its samples; keep the first.
                frame = frame.drop_duplicates("run_id").reset_index(drop=True)
            self._tables[name] = frame
        return self._tables[name]


def _kept_table(frame: pd.DataFrame) -> pa.Table:
    """A kept statistic's rows as arrow, in types fixed by column name (an empty frame's
    columns have no types to go by): names and ids as strings, counts as integers."""
    fields = [
        pa.field(c, pa.string() if c in ("run_id", "stage", store.INDEX_FILE) else
                 pa.int64() if c in ("n", "device_n") else pa.float64())
        for c in frame.columns
    ]  # fmt: skip
    return pa.Table.from_pandas(frame, schema=pa.schema(fields), preserve_index=False)


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
        """Per-iteration, per-stage timings of these runs (leftovers without a runs row dropped).

        Read from disk on first access only: the analyses below never need the whole frame."""
        return self.table("samples")

    def _sample_chunks(
        self,
        columns: tuple[str, ...],
        *,
        phase: str | None = None,
        stages: str | list[str] | tuple[str, ...] | None = None,
        max_rows: int | None = None,
    ):
        """The ok runs' sample rows of one phase and some stages, in chunks of whole runs."""
        stages = [stages] if isinstance(stages, str) else stages
        ids = [str(r) for r in _ok_run_ids(self.runs)]
        flt = scan.Filter(ids, phase, None if stages is None else [str(x) for x in stages])
        return scan.chunks(
            self._source.catalog(), flt, columns, max_rows=max_rows or scan.CHUNK_ROWS
        )

    def _by_chunks(self, analysis, columns: tuple[str, ...], **read: Any) -> pd.DataFrame:
        """A per-run analysis over the samples read a chunk of runs at a time: each run's rows
        decide its result alone, so the parts concatenated equal one call on the whole frame."""
        parts = [analysis(chunk) for chunk in self._sample_chunks(columns, **read)]
        if not parts:
            return analysis(store.schema("samples").empty_table().to_pandas()[list(columns)])
        return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)

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
        """Statistics other tools printed (imported trtexec logs, engines' own timers), under
        the tools' region names (perflab.tool_stages)."""
        return self._cached("reported", self._build_reported)

    def _build_reported(self) -> pd.DataFrame:
        reported = self.table("reported")
        if reported.empty or "backend" not in self.runs.columns:
            return reported
        # Folders imported before trtexec's regions had their own names stored its Latency as
        # `e2e`: read them under the names they have now, so they never meet perflab's e2e.
        runs = self.runs
        trtexec = set(runs.loc[runs["backend"].astype(str) == "trtexec", "run_id"].astype(str))
        old = reported["run_id"].astype(str).isin(trtexec) & reported["stage"].astype(str).isin(
            ("e2e", "e2e_end_to_end")
        )
        if not old.any():
            return reported
        stage = reported["stage"].astype(str)
        whole_run = reported["statistic"].astype(str).isin(("throughput_qps", "walltime_s"))
        renamed = stage.where(~old, "latency").where(~(old & whole_run), "host_walltime")
        renamed = renamed.where(~(old & (stage == "e2e_end_to_end")), "end_to_end")
        return reported.assign(stage=renamed)

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
        if "label" in cols:  # labels that tell apart every run shown together
            labels = self._cached("labels", lambda: pd.Series(run_labels(runs, info["run_id"])))
            info["label"] = info["run_id"].map(labels)
        out = frame.merge(info, on="run_id", how="left")
        return out[["run_id", *cols, *[c for c in frame.columns if c != "run_id"]]]

    # The analyses read the samples through DuckDB (see perflab.scan): the summary and the
    # harness gap as grouped queries over the stored files (their default forms kept in the
    # folder index, see _Source.kept), the others a chunk of whole runs at a time, so memory
    # does not grow with the study.

    def _summary_only(self, **kw: Any) -> pd.DataFrame:
        key = "summary-only:" + repr(sorted(kw.items()))
        runs = self.runs
        if _asks_for(_summarize, kw, ci=None):
            # What show, the reports and warnings ask for: kept in the folders' index.
            return self._cached(
                key,
                lambda: _with_wall_throughput(
                    self._source.kept("summary", _summary_without_ci, runs), runs
                ),
            )
        return self._cached(key, lambda: _summarize(self._source.catalog(), runs, **kw))

    def summary(self, **kw: Any) -> pd.DataFrame:
        """stats.summarize() of the ok runs, with label/model/backend/precision/batch_size."""
        key = "summary:" + repr(sorted(kw.items()))
        return self._cached(key, lambda: self._with_info(self._summary_only(**kw)))

    def harness_gap(self, **kw: Any) -> pd.DataFrame:
        """stats.harness_gap(): e2e minus the sum of the stages, per run."""
        key = "harness-gap:" + repr(sorted(kw.items()))
        runs = self.runs
        if _asks_for(_harness_gap, kw):
            return self._cached(
                key, lambda: self._with_info(self._source.kept("harness-gap", _harness_gap, runs))
            )
        return self._cached(
            key,
            lambda: self._with_info(_harness_gap(self._source.catalog(), runs, **kw)),
        )

    def warnings(self) -> pd.DataFrame:
        """stats.warnings(): noisy runs, too few samples, launch- or transfer-bound, throttling."""
        return self._cached(
            "warnings",
            lambda: _warnings(None, self.runs, self.telemetry, summary=self._summary_only(ci=None)),
        )

    def breakdown(self, **kw: Any) -> pd.DataFrame:
        """breakdown.breakdown(): each stage's share of e2e per run, with the harness gap."""
        runs = self.runs
        return self._by_chunks(
            lambda chunk: _breakdown(chunk, runs, **kw),
            tuple(store.schema("samples").names),
            phase=kw.get("phase", "measure"),
        )

    def warmup(self, **kw: Any) -> pd.DataFrame:
        """warmup.warmup(): steady-state classification per run."""
        runs = self.runs
        stage = kw.get("stage", "e2e")
        out = self._by_chunks(
            lambda chunk: _warmup(chunk, runs=runs, **kw),
            ("run_id", "iteration", "stage", "host_ns"),
            stages=[stage] if isinstance(stage, str) else None,
        )
        return self._with_info(out)

    def batching(self, **kw: Any) -> pd.DataFrame:
        """batching.batching(): latency = a + b x batch fits, knee, best batch under a p99 target;
        which runs are bimodal is read a chunk of runs at a time."""
        runs = self.runs
        stage = kw.get("stage")
        stages = None if stage is None else [stage] if isinstance(stage, str) else list(stage)
        bimodal = self._by_chunks(
            lambda chunk: _bimodal_runs(chunk, runs, stages=stages),
            ("run_id", "phase", "stage", "host_ns"),
            phase="measure",
            stages=stages,
        )
        return _batching(None, runs, summary=self._summary_only(ci=None), bimodal=bimodal, **kw)

    def batching_curve(self, **kw: Any) -> pd.DataFrame:
        """batching.batching_curve(): latency and throughput per batch size."""
        return _batching_curve(None, self.runs, summary=self._summary_only(ci=None), **kw)

    def compare(self, by: str | list[str], baseline: Any = None, **kw: Any) -> pd.DataFrame:
        """compare.compare(): level B against baseline A of `by` (any setting of the experiment
        file, e.g. "backend" or "options.threads", or a runs column), config by config. It pools
        runs across configs, so it reads its one stage's measured rows in one piece."""
        samples = self._measured_stage(kw.get("stage", "e2e"))
        return _compare(samples, self.runs, by=by, baseline=baseline, **kw)

    def _measured_stage(self, stage: str) -> pd.DataFrame:
        """The ok runs' measured rows of one stage (run_id, phase, stage, host_ns), one piece."""
        chunks = list(
            self._sample_chunks(
                ("run_id", "phase", "stage", "host_ns"),
                phase="measure",
                stages=[stage] if isinstance(stage, str) else None,
                max_rows=sys.maxsize,
            )
        )
        columns = ["run_id", "phase", "stage", "host_ns"]
        return chunks[0] if chunks else store.schema("samples").empty_table().to_pandas()[columns]

    def repeats(self, **kw: Any) -> pd.DataFrame:
        """repeats.repeats(): per config, its runs' spread (between-run and within-run CV) and
        the median's CI over runs and iterations. A config's runs go together, so like compare()
        it reads its one stage's measured rows in one piece (a run's values, then its
        bootstrap, one run at a time)."""
        stage = kw.get("stage", "e2e")
        return _repeats(self._measured_stage(stage), self.runs, **kw)

    def ranking(self, by: str = "backend", **kw: Any) -> pd.DataFrame:
        """ranking.ranking(): the levels of `by` per configuration, fastest first, with CIs."""
        return _ranking(self._measured_stage(kw.get("stage", "e2e")), self.runs, by=by, **kw)

    def stage_medians(self) -> pd.DataFrame:
        """Median per run and stage: from the samples, and for runs without samples (imports)
        the medians another tool reported for the stages that mean the same as perflab's
        (trtexec's GPU Compute Time, H2D and D2H Latency; not its Latency, which is no e2e)."""
        measured = self.summary(ci=None)[["run_id", "stage", "p50_ms"]]
        reported = self.reported
        if reported is None or reported.empty:
            return measured
        keep = (
            reported["stage"].isin(DEVICE_STAGES)
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
        as a word and a sentence, CPU runs included, with the run's label.

            roofline() + runs -> | run_id | label | bound | host_share | copy_share | ... | text |
        """
        from perflab.analysis.roofline import bounds

        out = bounds(self.roofline(), self._ok_runs())
        out.insert(1, "label", out["run_id"].astype(str).map(overview.label_map(self.runs)))
        return out

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

    # -- tables for people (the notebooks show these) -----------------------------------------
    # Each docstring shows the frame it starts from and the frame it returns.

    def run_list(self) -> pd.DataFrame:
        """One row per run: what ran, how it ended, its setup costs; by status, then label.

        runs: | run_id | status | backend | batch_size | load_ms | ...
        ->    | label | status | backend | precision | batch_size | ... | first_ms |
        """
        return overview.run_list(self.runs)

    def status_counts(self) -> pd.DataFrame:
        """Runs per status, ok first.

        runs: | run_id | status |        ->  | status | runs |
              | r1     | ok     |            | ok     | 2    |
              | r2     | failed |            | failed | 1    |
              | r3     | ok     |
        """
        return overview.status_counts(self.runs)

    def failures(self) -> pd.DataFrame:
        """Runs that are not ok, with the first line of their error (the full text in `error`).

        runs: | run_id | status | error              |
              | r2     | failed | "boom\n  at ..."   |
        ->    | label  | status | reason | error              |
              | m b2   | failed | boom   | "boom\n  at ..."   |
        """
        return overview.failures(self.runs)

    def env_table(self) -> pd.DataFrame:
        """The environment fingerprints side by side, one column per environment; `differs`
        marks the rows that are not all equal (when there are several).

            env: | env_id | host | cpu_model | fingerprint (JSON: packages, env_vars) |
            ->   | key | box-a (1a2b3c4d) | box-b (5e6f7a8b) | differs |
                 | cpu_model | EPYC | Xeon | yes |
        """
        return overview.env_table(self.env)

    def summary_table(self, *, stage: str = "e2e") -> pd.DataFrame:
        """The headline statistics of one stage, one row per ok run.

        summary(): | run_id | label | stage | n | p50_ms | p99_ms | cv_pct | ... |
        ->         | label | batch_size | n | p50 ms | ... | items/s | caveat |
                                                                     | busy host |
        """
        measured = overview.summary_table(self.summary(ci=None), stage=stage, runs=self.runs)
        imported = explain.imported_headline(self.runs, self.reported) if stage == "e2e" else None
        if imported is None or imported.empty:
            return measured
        # Imported runs time another region than e2e: the region column says which.
        measured = measured.assign(region="perflab e2e")
        columns = list(dict.fromkeys([*imported.columns, *measured.columns]))
        return pd.concat([measured, imported], ignore_index=True).reindex(columns=columns)

    def busy_hosts(self) -> pd.DataFrame:
        """Runs measured on a busy host, with the numbers that said so.

        runs: | run_id | host_busy | host_load_before | host_load_during | host_steal_pct |
        ->    | label | repetition | host_load_before | host_load_during | ... |
        """
        return overview.busy_hosts(self.runs)

    def warnings_table(self) -> pd.DataFrame:
        """warnings() one row per run, one column per kind of warning: the stages and values
        that triggered it.

            warnings(): | run_id | warning | stage | value | threshold |
                        | r1     | high_cv | e2e   | 13.2  | 10        |
            ->          | label  | high_cv  |
                        | m b1   | e2e 13.2 |
        """
        return overview.warnings_table(self.warnings(), self.runs)

    def warning_kinds(self) -> pd.DataFrame:
        """warnings() one row per kind: how many runs it concerns and one of its messages.

        warnings(): | run_id | warning | message |  ->  | warning | runs | example |
        """
        return overview.warning_kinds(self.warnings())

    def stage_table(self, *, value: str = "p50_ms", e2e: bool = True, **kw: Any) -> pd.DataFrame:
        """breakdown() wide: stages as columns (pipeline order, gap and e2e last), one row per
        run, of `value` (p50_ms, share, speedup_if_free, ...); e2e=False drops the e2e column.

            breakdown(): | run_id | stage   | p50_ms | share |
                         | r1     | compute | 2.0    | 0.8   |
            ->           | label | compute | gap | e2e |
                         | m b1  | 2.0     | 0.1 | 2.5 |
        """
        return _stage_table(self.breakdown(**kw), value=value, e2e=e2e)

    def pick_run(self, *, stage: str = "gap", value: str = "share") -> str | None:
        """The run id with the largest `value` of `stage` in breakdown() (default: the largest
        harness-gap share, the run whose timeline has most to explain); None without runs."""
        return _pick_run(self.breakdown(), stage=stage, value=value)

    # -- what a notebook's selectors offer ---------------------------------------------------

    def stages_measured(self) -> list[str]:
        """The stages with measured samples, e2e first, then in display order."""
        s = self.samples
        names = set(s.loc[s["phase"].astype(str) == "measure", "stage"].astype(str))
        return sorted(names, key=lambda n: (n != E2E, stage_rank(n)))

    def run_choices(self, first: str | None = None) -> list[tuple[str, str]]:
        """(label, run_id) per run, the run `first` first: a selector's options."""
        ids = self.runs["run_id"].astype(str).tolist()
        if first in ids:
            ids.remove(first)
            ids.insert(0, first)
        labels = run_labels(self.runs, ids)
        return [(labels[i], i) for i in ids]

    def measured_iterations(self, run_id: str) -> list[int]:
        """The measured iteration numbers of one run, in order."""
        s = self.samples
        mine = s[(s["run_id"].astype(str) == str(run_id)) & (s["phase"].astype(str) == "measure")]
        return sorted(int(i) for i in mine["iteration"].unique())

    def iteration_table(self, run_id: str, iterations: Sequence[int]) -> pd.DataFrame:
        """One row per iteration of one run, one column per stage (host ms, display order).

        samples: | run_id | iteration | stage | host_ns | ...
        ->       | iteration | preprocess | compute | ... | e2e |
        """
        s = self.samples
        mine = s[(s["run_id"].astype(str) == str(run_id)) & s["iteration"].isin(list(iterations))]
        wide = mine.pivot_table(
            index="iteration", columns="stage", values="host_ns", aggfunc="sum", observed=True
        )
        wide = wide[sorted(wide.columns.astype(str), key=stage_rank)] / 1e6
        wide.columns.name = None
        return wide.reset_index()

    def warmup_table(self, **kw: Any) -> pd.DataFrame:
        """warmup() per run with its own warmup length against the recommended one.

        warmup(): | run_id | classification | steady_iteration | recommended_warmup | ...
        ->        | label | classification | ... | n_warmup | recommended_warmup |
                  | warmup enough ("yes"/"no") | steady_p50_ms | ...
        """
        return _warmup_table(self.warmup(**kw), self.runs)

    def batch_groups(self, *, stage: str = "e2e", curve: pd.DataFrame | None = None) -> list[str]:
        """The config groups measured at two or more batch sizes (those a fit says something
        about), from batching_curve() (or the `curve` given)."""
        return _batch_groups(self.batching_curve() if curve is None else curve, stage=stage)

    # -- devices ---------------------------------------------------------------------------

    def device_column(self) -> str | None:
        """The runs column that tells the ok runs' devices apart (device_name, else host), or
        None when they all ran on one device."""
        return devices.device_column(self.runs)

    def device_names(self) -> str:
        """The ok runs' distinct device names, comma-separated ("unknown device" if none)."""
        return devices.device_names(self.runs)

    def comparison_axes(self) -> list[str]:
        """The settings worth a comparison: the device column when several devices ran, else
        every setting of the experiment file that the ok runs take more than one value of."""
        return devices.comparison_axes(self.runs)

    def speedups(self, by: str, *, stages: Iterable[str] = devices.SPEEDUP_STAGES) -> pd.DataFrame:
        """compare(by=...) of each stage as speedups of each level B over the baseline A
        (speedup = 1 / ratio, CI inverted likewise), one row per stage and matched config.

            compare(): | a        | b        | config | stage | ratio | ci_low | ci_high | verdict |
                       | GTX 1070 | RTX 3090 | m b1   | e2e   | 0.5   | 0.49   | 0.51    | faster  |
            ->         | pair                 | a | b | config | stage | speedup | ci_low | ci_high |
                       | RTX 3090 vs GTX 1070 | . | . | m b1   | e2e   | 2.0     | 1.96   | 2.04    |
                       | verdict | kind     |
                       | faster  | measured |
        """
        key = f"speedups:{by}:{tuple(stages)}"

        def build() -> pd.DataFrame:
            parts = [self.compare(by=by, stage=s) for s in stages]
            parts = [p for p in parts if len(p)]
            compared = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
            measured = devices.measured_speedups(compared)
            # Imported runs (summaries, no samples) compare by their reported medians.
            imported = explain.imported_speedups(self.runs, self.reported, by=by)
            if imported.empty:
                return measured
            return (
                imported if measured.empty else pd.concat([measured, imported], ignore_index=True)
            )

        return self._cached(key, build)

    def predicted_speedups(self, by: str) -> tuple[pd.DataFrame, list[str]]:
        """What the rooflines predict for the pairs speedups(by) measured: the baseline
        device's runs projected onto the other device, per stage. Returns (frame, problems):
        the reasons pairs could not be predicted (also when `by` is not device_name).

            speedups(): | pair | a | b | stage | ...
            ->          | pair                 | stage | speedup | basis                | kind      |
                        | RTX 3090 vs GTX 1070 | e2e   | 1.8     | sum of the predicted | predicted |
        """
        measured = self.speedups(by)
        empty = pd.DataFrame(columns=devices.PREDICTED_SPEEDUP_COLUMNS)
        if measured.empty:
            return empty, []
        if by != "device_name":
            return empty, [
                f"the runs differ by {by}, not by a named device: no roofline prediction"
            ]
        parts, problems = [], []
        for (a, b), _ in measured.groupby(["a", "b"], sort=False):
            try:
                projected = self.ok().select(device_name=a).project(device=b)
            except PerflabError as exc:
                problems.append(f"{b} vs {a}: {exc}")
                continue
            parts.append(devices.predicted_speedups(f"{b} vs {a}", projected))
        return (pd.concat(parts, ignore_index=True) if parts else empty), problems

    def speedup_chart(self, by: str) -> pd.DataFrame:
        """speedups(by) reduced to one value per pair and stage (geometric mean over matched
        configs; with one config its CI is kept) beside predicted_speedups(by), for
        plots.speedups.

            -> | pair | stage | kind (measured/predicted) | speedup | ci_low | ci_high |
        """
        return devices.speedup_chart_data(self.speedups(by), self.predicted_speedups(by)[0])

    def speedup_table(self, by: str) -> pd.DataFrame:
        """speedup_chart(by) as a table, one row per pair and stage.

        -> | pair | stage | measured | CI low | CI high | predicted | basis |
        """
        return devices.speedup_table(self.speedup_chart(by), self.predicted_speedups(by)[0])

    def projections(
        self, targets: Iterable[str] = devices.DEFAULT_TARGETS
    ) -> tuple[pd.DataFrame, list[str]]:
        """project() onto each target device, with run labels; CPU runs use the host's estimated
        peaks as their source. Returns (frame, problems: targets that could not be projected).

            ok runs' stage medians
            -> | label | to_device | stage | measured_ms | predicted_ms | speedup | basis | kind |
               | m b1  | H100 SXM  | e2e   | 5.0         | 0.5          | 10.0    | ...   | predicted |
        """
        parts, problems = [], []
        for target in targets:
            try:
                parts.append(self.project(device=target))
            except PerflabError as exc:
                problems.append(f"{target}: {exc}")
        return devices.labelled_projections(parts, self.runs), problems

    def projection_chart(self, targets: Iterable[str] = devices.DEFAULT_TARGETS) -> pd.DataFrame:
        """projections() as predicted speedups per target and stage (geometric mean over runs),
        for plots.speedups.

            -> | pair (target) | stage | kind ("predicted") | speedup |
        """
        return devices.projection_chart_data(self.projections(targets)[0])

    def projection_assumptions(
        self, targets: Iterable[str] = devices.DEFAULT_TARGETS
    ) -> pd.DataFrame:
        """What each compute projection assumed, one row per run and target.

        projections(): | label | to_device | stage | predicted_ms | efficiency | ... |
        ->             | label | to_device | predicted_ms | bound | efficiency |
                       | efficiency_basis | kernels | launch_floor_ms | basis |
        """
        frame = self.projections(targets)[0]
        columns = [
            "label",
            "to_device",
            "predicted_ms",
            "bound",
            "efficiency",
            "efficiency_basis",
            "kernels",
            "launch_floor_ms",
            "basis",
        ]
        if frame.empty:
            return pd.DataFrame(columns=columns)
        return frame.loc[frame["stage"] == "compute", columns].reset_index(drop=True)

    def projection_table(
        self, *, stage: str = "e2e", targets: Iterable[str] = devices.DEFAULT_TARGETS
    ) -> pd.DataFrame:
        """Measured and predicted time of one stage per run, wide by target.

        projections(): | label | to_device | stage | measured_ms | predicted_ms |
        ->             | label | measured ms | H100 SXM (predicted ms) | ... |
        """
        return devices.projection_table(self.projections(targets)[0], stage=stage)

    def predicted_roofline(self, target: str) -> pd.DataFrame:
        """roofline() rows of the ok runs' stage times as predicted on `target` (the projection's
        predicted medians on the target's roofline), for plots.roofline(predicted=...).

            project(device=target): | run_id | stage | predicted_ms |
            ->                      | run_id | stage | achieved_tflops | intensity | ... |
        """
        from perflab.analysis.roofline import roofline

        medians = devices.as_roofline_medians(self.project(device=target))
        return roofline(self._ok_runs(), medians, device=target)

    # -- traces and imported profiles --------------------------------------------------------

    def trace_inventory(self) -> pd.DataFrame:
        """Rows per trace or imported-profile table (zero where absent).

        -> | table        | rows |
           | trace_ranges | 120  |
           | layers       | 0    |
        """
        return traces.trace_inventory({t: self.table(t) for t in traces.TRACE_TABLES})

    def reported_vs_measured(self) -> pd.DataFrame:
        """What another tool printed beside perflab's own median and mean of the same run and
        stage.

            reported: | run_id | stage   | statistic | value_ms |
                      | r1     | compute | median    | 0.28     |
            ->        | label | stage   | statistic | reported ms | perflab p50 ms | perflab mean ms |
                      | m b1  | compute | median    | 0.28        | 0.30           | 0.31            |
        """
        return traces.reported_vs_measured(
            self.reported, self.summary(ci=None), self.runs, explain.matches(self.runs)
        )

    # -- explaining differences --------------------------------------------------------------

    def matches(self) -> pd.DataFrame:
        """explain.matches(): each imported run beside the perflab runs of its configuration.

        runs: | run_id | backend | model | batch_size | precision |
        ->    | imported | measured | same_device |
        """
        return explain.matches(self.runs)

    def find_run(self, selector: str) -> str:
        """The one run a selector names: a run id, a unique run-id prefix, a label, or
        `column=value[,column=value]` (`backend=trtexec,device_name=NVIDIA GeForce RTX 3090`)."""
        runs = self.runs
        ids = runs["run_id"].astype(str)
        if "=" in selector:
            keep = np.ones(len(runs), dtype=bool)
            for term in selector.split(","):
                column, _, value = term.partition("=")
                column = column.strip()
                if column not in runs.columns:
                    raise PerflabError(
                        f"run selector {selector!r}: no column {column!r}; columns: "
                        f"{', '.join(runs.columns)}"
                    )
                keep &= (runs[column].astype(str) == value.strip()).to_numpy()
            hits = ids[keep]
        else:
            hits = ids[ids == selector]
            if hits.empty:
                hits = ids[runs["label"].astype(str) == selector] if "label" in runs else hits
            if hits.empty:
                hits = ids[ids.str.startswith(selector)]
        hits = list(dict.fromkeys(hits))
        if len(hits) != 1:
            labels = overview.label_map(runs)
            listed = "; ".join(f"{r} ({labels.get(r, r)})" for r in (hits or ids.tolist())[:8])
            what = "matches no run" if not hits else f"matches {len(hits)} runs"
            raise PerflabError(f"run selector {selector!r} {what}: {listed}")
        return hits[0]

    def side(self, run_id: str, region: str | None = None) -> explain.Side:
        """One run's measurement for explain(): a perflab run's `e2e` (or `region`: a stage, or
        an engine timer such as model_run), an imported run's reported `compute` (or `region`:
        latency, h2d, ...), with the stage medians it knows."""
        run_id = str(run_id)
        runs = self.runs
        row = runs[runs["run_id"].astype(str) == run_id]
        if row.empty:
            raise PerflabError(f"no run {run_id!r} in {', '.join(str(p) for p in self.paths)}")
        row = row.iloc[0]
        label = overview.label_map(runs).get(run_id, run_id)
        summ = self.summary(ci=None)
        measured = summ[summ["run_id"].astype(str) == run_id].set_index("stage")["p50_ms"]
        medians = explain.reported_medians(self.reported)
        mine = medians[medians["run_id"] == run_id].set_index("stage")["value_ms"]
        tool = str(row["backend"])
        facts = {k: row.get(k) for k in ("device_name", "backend", "precision_effective")}
        if len(measured):
            region = region or "e2e"
            warm = self.select(run_id=[run_id]).warmup_table()  # this run's series only
            enough = warm["warmup enough"] if "warmup enough" in warm.columns else ()
            facts["warmup_enough"] = str(enough.iloc[0]) if len(enough) else None
            facts["first_ms"] = _float_or_none(row.get("first_ms"))
            if region == "e2e":
                stages = {s: float(measured[s]) for s in ITERATION_STAGES if s in measured}
                return explain.Side(
                    run_id, label, "e2e", float(measured["e2e"]), ITERATION_STAGES,
                    stages, "measured here", "harness gap: e2e - stages", facts,
                )  # fmt: skip
            if region in measured.index:
                total = float(measured[region])
                return explain.Side(
                    run_id, label, region, total, (region,), {region: total},
                    "measured here", "", facts,
                )  # fmt: skip
        if region is None:
            region = "compute" if "compute" in mine.index else "latency"
        if region not in mine.index:
            known = sorted(set(mine.index) | set(measured.index))
            raise PerflabError(
                f"run {label!r} has no median of {region!r}; it has: {', '.join(known) or 'none'}"
            )
        covers = tool_stages.covers(region)
        tool = tool_stages.TOOL_STAGES[region].tool if region in tool_stages.TOOL_STAGES else tool
        stages = {s: float(mine[s]) for s in covers if s in mine.index}
        if len(covers) == 1:  # a region of one stage is that stage's time (model_run: compute)
            stages = {covers[0]: float(mine[region])}
        return explain.Side(
            run_id, label, region, float(mine[region]), covers, stages,
            f"reported by {tool}", f"{region}: not split into stages", facts,
        )  # fmt: skip

    def explain(
        self, a: str, b: str, *, a_region: str | None = None, b_region: str | None = None
    ) -> pd.DataFrame:
        """The difference between two measurements as a waterfall (explain.waterfall): from A's
        total to B's, one part per stage and per residual, each with its source; the parts add
        up to b_ms - a_ms. `a` and `b` are run selectors (find_run); attrs hold a_ms, b_ms and
        the notes (explain.waterfall_facts: device, environment, warmup, definitions).

            -> | name | ms | source | kind (start, stage, gap, unexplained, end) |
        """
        side_a = self.side(self.find_run(a), a_region)
        side_b = self.side(self.find_run(b), b_region)
        out = explain.waterfall(side_a, side_b)
        out.attrs.update(
            a_ms=side_a.total_ms,
            b_ms=side_b.total_ms,
            a=side_a.name,
            b=side_b.name,
            notes=explain.waterfall_facts(side_a, side_b, self._env_diff(side_a, side_b)),
        )
        return out

    def _env_diff(self, a: explain.Side, b: explain.Side) -> list[str]:
        from perflab.env import diff

        runs = self.runs.set_index(self.runs["run_id"].astype(str))
        if "env_id" not in runs.columns:
            return []
        ids = [runs.at[s.run_id, "env_id"] for s in (a, b)]
        if any(not isinstance(i, str) for i in ids) or ids[0] == ids[1]:
            return []
        env = self.env.set_index("env_id")
        prints = [json.loads(env.at[i, "fingerprint"] or "{}") for i in ids]
        return [key for key, _, _ in diff(*prints)]

    def explain_pair(self) -> tuple[str, str] | None:
        """The most telling pair to explain: an imported run and the perflab run of its
        configuration (same device first); else the first configuration run on two devices;
        None when neither exists."""
        matched = self.matches()
        if len(matched):
            first = matched.iloc[0]
            return str(first["imported"]), str(first["measured"])
        by = self.device_column()
        if by is None:
            return None
        ok = self._ok_runs()
        ok = ok.assign(_model=ok["model"].map(explain.model_key))
        for _, g in ok.groupby(["_model", "batch_size", "precision"], sort=False, dropna=False):
            levels = list(dict.fromkeys(g[by].astype(str)))
            if len(levels) >= 2:
                pick = [g[g[by].astype(str) == lv].iloc[0]["run_id"] for lv in levels[:2]]
                return str(pick[0]), str(pick[1])
        return None

    def correlate(self) -> pd.DataFrame:
        """NVTX stage ranges of the traces beside perflab's samples, per run, iteration and stage
        (analysis.traces.correlate; ranges pair with runs by run id, else by run label).

            trace_ranges: | run_id | perflab_run | iteration | stage | duration_ns | gpu_duration_ns |
            samples:      | run_id | iteration | stage | host_ns | device_ns |
            ->            | run_id | perflab_run | iteration | stage | phase | host_ms | device_ms |
                          | trace_host_ms | gpu_ms | n_gpu_ops | gap_ms (host_ms - gpu_ms) |
        """
        return traces.correlate(self.table("trace_ranges"), self.samples, runs=self.runs)

    def trace_vs_harness(self) -> pd.DataFrame:
        """correlate() reduced per run and stage to medians over the measured iterations.

        correlate(): | run_id | iteration | stage | host_ms | trace_host_ms | gpu_ms | n_gpu_ops |
        ->           | label | stage | harness p50 ms | range p50 ms | GPU p50 ms | GPU ops p50 |
        """
        return traces.trace_vs_harness(self.correlate(), self.runs)

    def top_kernels(self, *, top: int = 15) -> pd.DataFrame:
        """The kernels with the most total time in the traces.

        trace_kernels: | name | duration_ns |  ->  | kernel | count | total ms | share |
        """
        return traces.top_kernels(self.table("trace_kernels"), top=top)

    def layer_precisions(self) -> pd.DataFrame:
        """Per profiled run, how many layers ran in each precision on each provider (an int8 run
        with many fp32 layers did not run as int8).

            layers: | run_id | layer | provider | precision |
            ->      | label | trt fp16 | trt fp32 |
                    | m b1  | 2        | 1        |
        """
        return traces.layer_precisions(self.layers, self.runs)

    def timed_layer_runs(self) -> list[str]:
        """Run ids whose layer profile has times (some engines report placement only)."""
        return traces.timed_layer_runs(self.layers)

    def runs_with(self, table: str) -> list[str]:
        """Run ids that have rows in `table`, sorted."""
        return traces.run_ids_in(self.table(table))

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


def _float_or_none(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _distinct(runs: pd.DataFrame, column: str) -> list[str]:
    if column not in runs.columns:
        return []
    return sorted(runs[column].dropna().astype(str).unique())


def _asks_for(function, kw: Mapping[str, Any], **wanted: Any) -> bool:
    """Whether `function(samples, runs, **kw)` is the call with `wanted` and every other
    argument at its default (a call it would refuse is left to refuse)."""
    try:
        bound = inspect.signature(function).bind(None, None, **kw)
    except TypeError:
        return False
    bound.apply_defaults()
    params = bound.signature.parameters

    def same(value, expected) -> bool:  # a stage list or array is never a default
        return value is expected or (type(value) in (str, int, float) and value == expected)

    return all(
        same(value, wanted[k] if k in wanted else params[k].default)
        for k, value in list(bound.arguments.items())[2:]
    )


def _summary_without_ci(catalog: scan.Catalog | None, runs: pd.DataFrame) -> pd.DataFrame:
    """The kept summary's rows: without CIs and without what needs the runs table."""
    return _summarize(catalog, runs, ci=None, wall_throughput=False)
