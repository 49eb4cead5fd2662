"""The `perflab` command line. Expected errors print one line and exit 2, without a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from perflab import __version__
from perflab.errors import PerflabError
from perflab.untrusted import printable

EXIT_BAD_INPUT = 2
EXIT_RUNS_FAILED = 1
MAX_CONFIGS_ALL_STAGES = 40


def _console():
    import shutil

    from rich.console import Console

    # Piped output gets a fixed wide layout instead of rich's 80 columns, so tables stay readable.
    width = None if sys.stdout.isatty() else max(140, shutil.get_terminal_size().columns)
    # No markup: names, paths and messages from the data may hold brackets ("perflab[gpu]").
    return Console(highlight=False, markup=False, width=width)


# ----------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    from perflab import spec

    # Without --yes and without a terminal to ask on, a large sweep is refused before it is built.
    ask = args.yes or sys.stdin.isatty()
    study = spec.load(args.spec, max_configs=spec.MAX_CONFIGS if ask else spec.LARGE_SWEEP)
    from perflab import store  # after the file is read: a bad file is refused without pyarrow

    if args.repeat is not None:
        if args.repeat < 1 or args.repeat > spec.MAX_REPEAT:
            raise PerflabError(f"--repeat {args.repeat}: must be from 1 to {spec.MAX_REPEAT}")
        study = dataclasses.replace(study, repeat=args.repeat)
    out = Path(args.output) if args.output else Path("data") / study.name
    store.check_writable(out)
    cluster = args.cluster or os.environ.get("PERFLAB_SCHEDULER") or None
    if cluster and not args.isolate:
        raise PerflabError(
            "--no-isolation runs in this process; it cannot be combined with --cluster"
        )
    n = len(study.configs) * study.repeat
    if n > spec.LARGE_SWEEP and not args.yes:
        answer = input(f"The study expands to {n} runs. Run them all? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing run")
            return EXIT_BAD_INPUT
    _preflight_models(study)
    if cluster:
        from perflab.executors import cluster as dask_cluster

        security = dask_cluster.security(args.tls_ca_file, args.tls_cert, args.tls_key)
        with dask_cluster.DaskExecutor(cluster, security=security) as executor:
            return _run(args, study, out, executor)
    from perflab.executors import InlineExecutor
    from perflab.executors.local import LocalExecutor

    return _run(args, study, out, LocalExecutor() if args.isolate else InlineExecutor())


def _run(args: argparse.Namespace, study, out: Path, executor) -> int:
    from perflab import store

    executor.check(study.configs)  # before anything runs or is written
    with store.locked(out, f"run {args.spec}"):
        store.sweep_leftovers(out)
        return _run_locked(args, study, out, executor)


def _run_locked(args: argparse.Namespace, study, out: Path, executor) -> int:
    from perflab import env, runner, store

    n = len(study.configs) * study.repeat
    todo = runner.plan(study, out, resume=args.resume, append=args.append)
    console = _console()
    if not todo:
        console.print(printable(f"all {n} runs of {study.name!r} already have an ok run in {out}"))
        return 0
    env_id = None
    if executor.name != "dask":  # on a cluster each machine sends its own fingerprint
        env_row = env.row(env.fingerprint())
        store.write(out, "env", env_row["env_id"], env_row)
        env_id = env_row["env_id"]
    where = {
        "inline": "  (in-process: no isolation, no timeout)",
        "dask": f"  (on the Dask cluster at {getattr(executor, 'address', '')})",
    }
    times = f" x {study.repeat} repetitions ({study.order})" if study.repeat > 1 else ""
    console.print(
        printable(
            f"study {study.name}: {len(todo)} of {n} runs "
            f"({len(study.configs)} configs{times}) -> {out}"
        )
        + where.get(executor.name, "")
    )
    result = _run_with_progress(console, study, out, todo, env_id, executor)
    for row in result.rows:
        if row["status"] not in ("ok",):
            console.print(
                printable(f"  {row['status']}: {row['label']}: {_first_line(row.get('error'))}"),
                style="yellow",
            )
    if result.rows:
        _show(console, out, run_ids={r["run_id"] for r in result.rows})
    console.print(printable(f"results in {out}  (perflab show {out}; perflab report {out})"))
    if result.stopped:
        console.print(
            printable(
                f"stopped: {result.stopped}; run `perflab run {args.spec} -o {out} --resume` "
                "on a quieter host to finish"
            ),
            style="red",
        )
        return EXIT_RUNS_FAILED
    if result.interrupted:
        done = len(result.rows)
        console.print(
            printable(
                f"interrupted by {result.interrupted}: {done} of {len(todo)} configs "
                f"finished and stored; run `perflab run {args.spec} -o {out} --resume` to finish"
            ),
            style="red",
        )
        return 130 if result.interrupted == "SIGINT" else 143
    bad = result.by_status("failed", "timeout", "skipped")
    if bad:
        names = printable("; ".join(f"{r['label']} ({r['status']})" for r in bad))
        console.print(f"{len(bad)} config(s) did not complete: {names}", style="red")
        return EXIT_RUNS_FAILED
    return 0


def _preflight_models(study) -> None:
    """Refuse bad model inputs (missing, not ONNX, truncated, dims left open) before running."""
    from perflab.backends.registry import get_info

    seen = set()
    for c in study.configs:
        key = (c.model, c.input_shapes)
        if key in seen or not get_info(c.backend).needs_model:
            continue
        seen.add(key)
        from perflab import models  # only for configs that have a model (it imports onnx)

        models.resolve(c.model, batch_size=c.batch_size, input_shapes=c.shape_dict or None)


def _first_line(text: Any) -> str:
    return str(text or "").strip().splitlines()[0] if text else ""


def _run_with_progress(console, study, out, todo, env_id, executor):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from perflab import host, runner

    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}", markup=False),
        TimeElapsedColumn(),
    )
    with Progress(
        *columns, console=console, transient=False, disable=not console.is_terminal
    ) as bar:
        task = bar.add_task("configs", total=len(todo), status="")
        per_machine: dict[str, Any] = {}  # on a cluster, one line per machine: what it runs

        def line(machine):
            if machine is None:
                return task
            if machine not in per_machine:
                per_machine[machine] = bar.add_task(machine, total=None, status="")
            return per_machine[machine]

        def on_start(k, total, config, machine):
            where = f"{machine}: " if machine else ""
            bar.update(
                line(machine),
                description=printable(f"{where}[{k}/{total}] {config.label}"),
                status="setup",
            )
            if machine and not console.is_terminal:
                console.print(printable(f"  started     {config.label} on {machine}"))

        def progress(n, median_ms, machine):
            bar.update(line(machine), status=f"{n} it, median {median_ms:.3f} ms")

        def on_done(row):
            bar.advance(task)
            if row.get("machine") in per_machine:
                bar.update(per_machine[row["machine"]], status=f"{row['status']}, idle")
            rep = f" #{row.get('repetition', 0)}" if study.repeat > 1 else ""
            if not console.is_terminal:
                on = f" on {row['machine']}" if executor.name == "dask" else ""
                console.print(printable(f"  {row['status']:<11} {row['label']}{rep}{on}"))
            note = host.busy_note(row)
            if note:
                console.print(printable(f"  {row['label']}{rep}: {note}"), style="yellow")

        return runner.run_study(
            study,
            out,
            configs=todo,
            executor=executor,
            env_id=env_id,
            on_start=on_start,
            on_done=on_done,
            progress=progress,
        )


def cmd_merge(args: argparse.Namespace) -> int:
    from perflab import merge

    result = merge.merge(
        [Path(f) for f in args.folders],
        Path(args.output),
        allow_different=args.allow_different_specs,
    )
    print(
        f"merged {result.runs} run(s) and {result.fingerprints} fingerprint(s) from "
        f"{len(args.folders)} folders into {args.output}"
        + (f" ({result.duplicates} run(s) present twice kept once)" if result.duplicates else "")
    )
    return 0


# ----------------------------------------------------------------------------- show


def _show(console, folders, run_ids=None) -> None:

    from perflab.results import open as open_results

    res = open_results(folders)
    runs = res.runs
    if run_ids is not None:
        res = res.select(run_id=sorted(run_ids))
    ok = res.ok()
    if ok.runs.empty:
        console.print("no ok runs to summarize")
        return
    # No CI columns are printed, so none are computed (and scipy is never imported).
    summary = ok.summary(ci=None)
    if len(summary):
        _measured_table(console, ok, summary)
    _reported_table(console, ok, set(summary["run_id"].astype(str)) if len(summary) else set())
    others = runs.loc[runs["status"] != "ok"]
    if run_ids is None and len(others):
        for r in others.itertuples():
            console.print(printable(f"{r.status}: {r.label}: {_first_line(r.error)}"))


def _measured_table(console, ok, summary) -> None:
    from rich.table import Table

    gaps = ok.harness_gap().set_index("run_id")["gap_p50_ms"]
    columns = (
        ("config", "left"),
        ("stage", "left"),
        ("n", "right"),
        ("p50 ms", "right"),
        ("p90 ms", "right"),
        ("p99 ms", "right"),
        ("mean ms", "right"),
        ("CV %", "right"),
        ("items/s", "right"),
    )
    title = "median per stage (measured phase)"
    from perflab.stages import stage_rank

    summary = summary.assign(_o=summary["stage"].map(lambda s: stage_rank(s)[0])).sort_values(
        ["label", "run_id", "_o"]
    )
    few = summary["run_id"].nunique() <= MAX_CONFIGS_ALL_STAGES
    if not few:
        # Every stage of hundreds of configs is unreadable (and slow to draw): e2e only.
        summary = summary.loc[summary["stage"] == "e2e"]
        title = "e2e per config (measured phase); perflab.open(OUT).summary() has every stage"
    lines: list[tuple[str, ...] | None] = []  # None: a section break
    previous = None
    shown = ["label", "run_id", "stage", "n", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "cv_pct"]
    shown += [c for c in ("throughput_items_s",) if c in summary.columns]
    # Only the columns printed: itertuples builds every column of every row it yields.
    for r in summary[shown].itertuples(index=False):
        label = printable(r.label) if r.run_id != previous else ""
        if previous is not None and r.run_id != previous and r.stage != "e2e":
            lines.append(None)
        previous = r.run_id
        throughput = getattr(r, "throughput_items_s", float("nan"))
        lines.append(
            (
                str(label),
                str(r.stage),
                f"{r.n}",
                f"{r.p50_ms:.4f}",
                f"{r.p90_ms:.4f}",
                f"{r.p99_ms:.4f}",
                f"{r.mean_ms:.4f}",
                f"{r.cv_pct:.2f}",
                "" if math.isnan(throughput) else f"{throughput:,.1f}",
            )
        )
        if r.stage == "e2e" and r.run_id in gaps.index:
            lines.append(("", "gap (e2e - stages)", "", f"{gaps[r.run_id]:.4f}", *[""] * 5))
    if few:
        table = Table(title=title, show_lines=False)
        for col, justify in columns:
            table.add_column(col, justify=justify)
        for line in lines:
            if line is None:
                table.add_section()
            else:
                table.add_row(*line)
    else:
        # rich lays out every cell (about 2.5 ms a row): hundreds of rows print as plain text,
        # in soft-wrap mode (no line is wrapped or cropped, so rich does not measure each one).
        table = _plain_table(title, columns, [line for line in lines if line is not None])
    console.print(table, soft_wrap=not few)
    _show_repeats(console, ok)
    _show_busy(console, ok.runs)
    warned = ok.warnings()
    if len(warned):
        counts = ", ".join(f"{name} x{n}" for name, n in warned["warning"].value_counts().items())
        console.print(
            f"warnings: {counts}  (perflab.open(...).warnings() lists them with their numbers)"
        )


def _reported_table(console, ok, measured: set[str]) -> None:
    """The medians other tools reported for the runs perflab did not measure (imports), per
    region, with the perflab stages each region covers."""
    from rich.table import Table

    from perflab import tool_stages
    from perflab.analysis.overview import label_map

    reported = ok.reported
    if reported.empty:
        return
    reported = reported[~reported["run_id"].astype(str).isin(measured)]
    if reported.empty:
        return
    labels = label_map(ok.runs)
    table = Table(title="reported by the tool that measured them (imported runs)")
    for col, justify in (
        ("config", "left"), ("region", "left"), ("covers", "left"), ("median ms", "right"),
        ("mean ms", "right"), ("p99 ms", "right"),
    ):  # fmt: skip
        table.add_column(col, justify=justify)
    previous = None
    for (run_id, region), g in reported.groupby(["run_id", "stage"], sort=False):
        stats = dict(zip(g["statistic"].astype(str), g["value_ms"].astype(float), strict=True))
        if "median" not in stats and "mean" not in stats:
            continue
        if previous is not None and run_id != previous:
            table.add_section()
        label = printable(labels.get(str(run_id), str(run_id))) if run_id != previous else ""
        previous = run_id
        table.add_row(
            label,
            str(region),
            " + ".join(tool_stages.covers(str(region))),
            *(f"{stats[k]:.4f}" if k in stats else "" for k in ("median", "mean", "p99")),
        )
    console.print(table)


def _show_repeats(console, ok) -> None:
    """Configs with several runs: the spread between runs beside the spread within them."""
    from rich.table import Table

    runs = ok.runs
    if "spec_id" not in runs or not runs["spec_id"].duplicated().any():
        return  # no config ran twice: nothing to read (show stays fast on big studies)
    rep = ok.repeats()
    rep = rep[rep["n_runs"] > 1]
    if rep.empty:
        return
    table = Table(title="e2e across repetitions (median: mean of run medians; CI over runs)")
    for col in ("config", "runs", "n", "median ms", "95% CI ms", "between-run CV %", "within CV %"):
        table.add_column(col, justify="left" if col == "config" else "right")
    for r in rep.itertuples():
        ci = "" if math.isnan(r.ci_low_ms) else f"[{r.ci_low_ms:.4f}, {r.ci_high_ms:.4f}]"
        table.add_row(
            printable(r.config),
            f"{r.n_runs}",
            f"{r.n}",
            f"{r.median_ms:.4f}",
            ci,
            f"{r.between_cv_pct:.2f}",
            f"{r.within_cv_pct:.2f}",
        )
    console.print(table)


def _show_busy(console, runs) -> None:
    """Runs measured on a busy host, said with their numbers."""
    from perflab import host

    if "host_busy" not in runs.columns:
        return
    busy = runs[runs["host_busy"].astype("boolean").fillna(False).astype(bool)]
    if busy.empty:
        return
    console.print(
        f"busy host: {len(busy)} of {len(runs)} runs were measured on a busy host "
        f"(load average per CPU above {host.BUSY_LOAD_PER_CPU} besides the run, or more than "
        f"{host.BUSY_STEAL_PCT:g}% CPU time stolen); their numbers may not repeat:",
        style="yellow",
    )
    for r in busy.head(10).itertuples():
        console.print(printable(f"  {r.label}: {host.busy_note(r._asdict())}"), style="yellow")
    if len(busy) > 10:
        console.print(f"  ... and {len(busy) - 10} more (perflab.open(...).runs.host_busy)")


def _plain_table(title: str, columns, rows: list[tuple[str, ...]]):
    """A fixed-width text table (header, rule, rows) as one rich Text that is never wrapped."""
    from rich.text import Text

    widths = [
        max([len(name), *(len(row[i]) for row in rows)]) for i, (name, _) in enumerate(columns)
    ]

    def line(cells) -> str:
        return "  ".join(
            c.ljust(w) if justify == "left" else c.rjust(w)
            for c, w, (_, justify) in zip(cells, widths, columns)
        ).rstrip()

    header = line([name for name, _ in columns])
    body = [title, header, "-" * len(header), *(line(row) for row in rows)]
    return Text("\n".join(body), no_wrap=True, overflow="ignore")


def cmd_show(args: argparse.Namespace) -> int:
    _show(_console(), args.folders)
    return 0


# ----------------------------------------------------------------------------- explain


def _explain_side(spec: str, folders: list[str]) -> tuple[Any, str]:
    """(Results, run id) for one side of `perflab explain`: a result folder (its only ok run, or
    FOLDER:SELECTOR), else a run selector among the -d folders."""
    from perflab.results import open as open_results

    folder, _, selector = spec.partition(":") if not Path(spec).is_dir() else (spec, "", "")
    if Path(folder).is_dir():
        res = open_results([folder]).ok()
        if selector:
            return res, res.find_run(selector)
        ids = res.runs["run_id"].astype(str).tolist()
        if len(ids) != 1:
            raise PerflabError(
                f"{folder} holds {len(ids)} ok runs: name one as {folder}:SELECTOR (a run id, a "
                "label or column=value)"
            )
        return res, ids[0]
    if not folders:
        raise PerflabError(
            f"{spec!r} is no result folder; give the folders its runs are in with -d FOLDER"
        )
    res = open_results(folders).ok()
    return res, res.find_run(spec)


def cmd_explain(args: argparse.Namespace) -> int:
    from perflab.results import open as open_results

    res_a, a = _explain_side(args.a, args.folders or [])
    res_b, b = _explain_side(args.b, args.folders or [])
    res = open_results(sorted({*map(str, res_a.paths), *map(str, res_b.paths)})).ok()
    parts = res.explain(a, b, a_region=args.a_region, b_region=args.b_region)
    body = parts[~parts["kind"].isin(("start", "end"))]
    if args.json:
        out = {
            "a": parts.attrs["a"],
            "b": parts.attrs["b"],
            "a_ms": parts.attrs["a_ms"],
            "b_ms": parts.attrs["b_ms"],
            "parts": [
                {"name": r.name, "ms": r.ms, "source": r.source, "kind": r.kind}
                for r in body.itertuples(index=False)
            ],
            "notes": parts.attrs["notes"],
        }
        print(json.dumps(out, indent=2))
        return 0
    from rich.table import Table

    console = _console()
    table = Table(title=printable(f"from A: {parts.attrs['a']} to B: {parts.attrs['b']}"))
    for col, justify in (("part", "left"), ("ms", "right"), ("source", "left")):
        table.add_column(col, justify=justify)
    for r in parts.itertuples(index=False):
        sign = "" if r.kind in ("start", "end") else "+" if r.ms >= 0 else ""
        table.add_row(printable(r.name), f"{sign}{r.ms:.4f}", printable(r.source))
    console.print(table)
    for note in parts.attrs["notes"]:
        console.print(printable(f"note: {note}"))
    return 0


# ----------------------------------------------------------------------------- env


def cmd_env(args: argparse.Namespace) -> int:
    from perflab import env

    if args.env_command == "diff":
        a, b = env.load(args.a), env.load(args.b)
        rows = env.diff(a, b)
        if not rows:
            print("fingerprints are the same")
            return 0
        rows = [tuple(printable(v) for v in row) for row in rows]
        width = max(len(k) for k, _, _ in rows)
        print(printable(f"{'key':<{width}}  {args.a}  |  {args.b}"))
        for key, va, vb in rows:
            print(f"{key:<{width}}  {va}  |  {vb}")
        return 0
    fp = env.fingerprint()
    if args.json:
        print(json.dumps(fp, indent=2, sort_keys=True, default=str))
        return 0
    print(f"env_id: {env.env_id(fp)}")
    for key, value in env.flatten(fp).items():
        print(printable(f"{key}: {value}"))
    return 0


# ----------------------------------------------------------------------------- backends, models


def cmd_backends(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    from perflab.backends import registry

    if args.name:
        cls = registry.backend_class(args.name)  # SpecError for an unknown or broken one
        info = registry.get_info(args.name)
        reason = registry.unavailable_reason(args.name)
        console = _console()
        console.print(f"{args.name}: {info.description}")
        console.print("available" if reason is None else f"unavailable: {reason}")
        _print_options(console, f"options of backend {args.name}", getattr(cls, "options", ()))
        return 0
    table = Table(title="backends")
    for col in ("backend", "status", "what / why not"):
        table.add_column(col)
    for name in registry.names():
        info = registry.get_info(name)
        reason = registry.unavailable_reason(name)
        status = Text("available", "green") if reason is None else Text("unavailable", "red")
        table.add_row(name, status, info.description if reason is None else reason)
    _console().print(table)
    return 0


def cmd_pipelines(args: argparse.Namespace) -> int:
    from perflab import pipelines

    console = _console()
    for name in pipelines.PIPELINES:
        if args.name and name != args.name:
            continue
        console.print(f"{name}: {pipelines.description(name)}")
        _print_options(console, f"pipeline_options of {name}", pipelines.declared_options(name))
    if args.name and args.name not in pipelines.PIPELINES:
        pipelines.check(args.name, {}, owns_engine=False, base=None)  # SpecError: unknown
    if not args.name:
        console.print(
            "your own: pipeline: FILE.py:CLASS or MODULE:CLASS; its pipeline_options are the "
            "class's constructor arguments (README: Your own pipeline)"
        )
    return 0


def _print_options(console, title: str, declared) -> None:
    from rich.table import Table

    from perflab.options import rows

    table = Table(title=title)
    for col in ("option", "type", "default", "meaning"):
        table.add_column(col)
    for r in rows(declared):
        table.add_row(*r.values())
    console.print(table)


def cmd_models(args: argparse.Namespace) -> int:
    from perflab import models

    if args.models_command == "export":
        path = models.export(args.name, Path(args.output), precision=args.precision)
        print(f"wrote {path}")
        return 0
    from rich.table import Table

    table = Table(title="built-in models")
    rows = models.list_models()
    for col in rows[0]:
        table.add_column(str(col))
    for r in rows:
        table.add_row(*(_fmt(v) for v in r.values()))
    _console().print(table)
    return 0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# ----------------------------------------------------------------------------- import, report, profile


def cmd_import(args: argparse.Namespace) -> int:
    from perflab import importers, store

    out = Path(args.output)
    store.check_writable(out)
    run_ids = importers.import_file(args.kind, args.files, out, model=args.model)
    print(f"imported {len(run_ids)} run(s) into {args.output}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from perflab import report

    path = report.build(
        [Path(f) for f in args.folders],
        output=Path(args.output) if args.output else None,
        with_code=args.with_code,
        devices=[d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None,
    )
    print(f"report: {path}")
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    from perflab import lab

    return lab.start(
        [Path(f) for f in args.folders],
        workspace_root=Path(args.workspace),
        port=args.port,
    )


def cmd_profile(args: argparse.Namespace) -> int:
    from perflab import profiling

    return profiling.profile_study(
        Path(args.spec), output=Path(args.output) if args.output else None
    )


# ----------------------------------------------------------------------------- parser


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="perflab", description="Where does inference time go? Measure it stage by stage."
    )
    p.add_argument("--version", action="version", version=f"perflab {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a study from an experiment file")
    run.add_argument("spec", help="experiment file (YAML)")
    run.add_argument("-o", "--output", help="result folder (default data/<study>)")
    run.add_argument(
        "--resume", action="store_true", help="skip configs that already have an ok run"
    )
    run.add_argument(
        "--append", action="store_true", help="add runs to a folder that holds other runs"
    )
    run.add_argument(
        "--no-isolation",
        dest="isolate",
        action="store_false",
        help="run configs in this process (debugging; no crash isolation, no timeout)",
    )
    run.add_argument(
        "--repeat",
        type=int,
        metavar="N",
        help="runs per config, each in its own process, round by round (overrides `repeat:`)",
    )
    run.add_argument(
        "--cluster",
        metavar="tcp://HOST:8786",
        help="run on the machines of a Dask cluster (default: $PERFLAB_SCHEDULER, else here)",
    )
    run.add_argument("--tls-ca-file", help="TLS to the scheduler: CA certificate (PEM)")
    run.add_argument("--tls-cert", help="TLS to the scheduler: this client's certificate (PEM)")
    run.add_argument("--tls-key", help="TLS to the scheduler: this client's private key (PEM)")
    run.add_argument("--yes", action="store_true", help="run very large sweeps without asking")
    run.set_defaults(func=cmd_run)

    merge = sub.add_parser("merge", help="combine result folders of one study (several machines)")
    merge.add_argument("folders", nargs="+", help="result folders to combine")
    merge.add_argument("-o", "--output", required=True, help="the combined result folder")
    merge.add_argument(
        "--allow-different-specs",
        action="store_true",
        help="merge folders whose studies ran different configs",
    )
    merge.set_defaults(func=cmd_merge)

    show = sub.add_parser("show", help="summary table per config and stage")
    show.add_argument("folders", nargs="+", help="result folder(s)")
    show.set_defaults(func=cmd_show)

    expl = sub.add_parser("explain", help="the difference between two measurements, part by part")
    expl.add_argument("a", help="A: a result folder, FOLDER:SELECTOR, or a run selector")
    expl.add_argument("b", help="B: the same")
    expl.add_argument(
        "-d", "--folders", action="append", help="result folder the selectors look in (repeat)"
    )
    expl.add_argument("--a-region", help="A's region (default e2e, or compute for an import)")
    expl.add_argument("--b-region", help="B's region (default as for A)")
    expl.add_argument("--json", action="store_true", help="print the parts as JSON")
    expl.set_defaults(func=cmd_explain)

    report = sub.add_parser("report", help="execute the notebooks on results into one HTML file")
    report.add_argument("folders", nargs="+", help="result folder(s)")
    report.add_argument("-o", "--output", help="HTML file (default reports/<study>.html)")
    report.add_argument("--with-code", action="store_true", help="show code cells")
    report.add_argument(
        "--devices",
        help='projection targets, comma-separated names from the device table ("GTX 1050 Ti,RTX 3070")',
    )
    report.set_defaults(func=cmd_report)

    lab = sub.add_parser(
        "lab", help="open the notebooks in JupyterLab on result folders (default: newest in data/)"
    )
    lab.add_argument("folders", nargs="*", help="result folder(s) (default: the newest in data/)")
    lab.add_argument(
        "--workspace",
        default="lab",
        help="folder the notebook copies go into, one subfolder per set of results (default lab)",
    )
    lab.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    lab.set_defaults(func=cmd_lab)

    env = sub.add_parser("env", help="fingerprint of this machine; `env diff A B`")
    env.add_argument("--json", action="store_true", help="print the fingerprint as JSON")
    env_sub = env.add_subparsers(dest="env_command")
    diff = env_sub.add_parser("diff", help="keys that differ between two fingerprints")
    diff.add_argument("a", help="fingerprint JSON file or result folder")
    diff.add_argument("b", help="fingerprint JSON file or result folder")
    env.set_defaults(func=cmd_env)

    models = sub.add_parser("models", help="list or export built-in models")
    models_sub = models.add_subparsers(dest="models_command")
    export = models_sub.add_parser("export", help="write a built-in model as ONNX")
    export.add_argument("name")
    export.add_argument("-o", "--output", required=True, help="ONNX file to write")
    export.add_argument("--precision", default="fp32", help="fp32, fp16 or int8")
    models.set_defaults(func=cmd_models)

    backends = sub.add_parser(
        "backends", help="which backends work here, and why not; `backends NAME`: its options"
    )
    backends.add_argument("name", nargs="?", help="list this backend's options")
    backends.set_defaults(func=cmd_backends)

    pipes = sub.add_parser("pipelines", help="the built-in pipelines and their options")
    pipes.add_argument("name", nargs="?", help="only this pipeline")
    pipes.set_defaults(func=cmd_pipelines)

    imp = sub.add_parser("import", help="import results of another tool")
    imp.add_argument("kind", choices=("trtexec", "ort-profile", "nsys"))
    imp.add_argument("files", nargs="+")
    imp.add_argument("-o", "--output", required=True, help="result folder")
    imp.add_argument(
        "--model",
        help="the ONNX file a trtexec log timed (its FLOPs and bytes; the log may name it otherwise)",
    )
    imp.set_defaults(func=cmd_import)

    profile = sub.add_parser(
        "profile", help="run a study under Nsight Systems and import the trace"
    )
    profile.add_argument("spec")
    profile.add_argument("-o", "--output", help="result folder (default data/<study>)")
    profile.set_defaults(func=cmd_profile)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except PerflabError as exc:
        print(f"perflab: error: {printable(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("perflab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
