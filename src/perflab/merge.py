"""`perflab merge`: result folders of one study, run on machines that cannot reach each other,
combined into one folder that keeps every run and every machine's fingerprint.

Folders are of the same spec when they hold the same study and the same configs (spec ids);
anything else is refused unless asked for. Each run is committed into the output with
`store.write_run`, like a run measured there, so an interrupted merge is finished by running it
again: runs already in the output are kept once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from perflab import store
from perflab.errors import PerflabError


@dataclass
class Merged:
    runs: int
    fingerprints: int
    duplicates: int


def merge(folders: Sequence[Path], out: Path, *, allow_different: bool = False) -> Merged:
    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise PerflabError("merge needs at least two result folders")
    for folder in folders:
        store.read_study_check(folder)
        if folder.resolve() == Path(out).resolve():
            raise PerflabError(
                f"{folder} is both an input and the output; -o must be another folder"
            )
    store.check_writable(out)
    runs = {folder: store.read(folder, "runs") for folder in folders}
    existing = store.read(out, "runs") if (Path(out) / "runs").is_dir() else None
    if existing is not None and len(existing):
        runs_and_out = {**runs, Path(out): existing}
    else:
        runs_and_out = runs
    if not allow_different:
        _check_same_spec(runs_and_out)
    seen = {} if existing is None else {r.run_id: r.spec_id for r in existing.itertuples()}
    merged = duplicates = 0
    for folder, table in runs.items():
        for run in table.itertuples():
            if run.run_id in seen:
                if seen[run.run_id] != run.spec_id:
                    raise PerflabError(
                        f"{folder}: run {run.run_id} is also in another folder with another "
                        "config; these folders were not written by perflab run"
                    )
                duplicates += 1
                continue
            row, tables = store.read_run_tables(folder, run.run_id)
            store.write_run(out, row, tables)
            seen[run.run_id] = run.spec_id
            merged += 1
    fingerprints = set()
    for folder in folders:
        env = store.read(folder, "env")
        for row in env.to_dict("records"):
            store.write(out, "env", row["env_id"], row)  # keyed by content: one file each
            fingerprints.add(row["env_id"])
    return Merged(runs=merged, fingerprints=len(fingerprints), duplicates=duplicates)


def _check_same_spec(runs: dict[Path, object]) -> None:
    (first, a), *others = runs.items()
    studies_a, specs_a = set(a["study"]), set(a["spec_id"])
    for folder, b in others:
        studies_b, specs_b = set(b["study"]), set(b["spec_id"])
        if studies_a != studies_b or specs_a != specs_b:
            only_a, only_b = len(specs_a - specs_b), len(specs_b - specs_a)
            raise PerflabError(
                f"{first} and {folder} hold different specs (studies "
                f"{', '.join(sorted(studies_a))} / {', '.join(sorted(studies_b))}; {only_a} "
                f"config(s) only in the first, {only_b} only in the second); pass "
                "--allow-different-specs to merge them anyway"
            )
