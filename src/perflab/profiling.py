"""`perflab profile`: a study run inside Nsight Systems, its trace imported beside the results.

Orchestration of the command line (it runs `perflab run` under `nsys profile`), kept beside the
CLI; reading the trace is the nsys importer's job.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from perflab import store
from perflab.errors import BackendUnavailable, PerflabError
from perflab.importers import commit, nsys


def profile_study(
    spec: str | Path, *, output: str | Path | None = None, nsys_args: Sequence[str] = ()
) -> int:
    """Run a study inside `nsys profile` (`perflab run SPEC -o OUT`) and import the trace into OUT.

    The whole run is traced (CUDA, NVTX, OS runtime; no CPU sampling), not only the measured
    phase: configs run in their own processes, each opening and closing its own
    cudaProfilerStart/Stop window, and one trace with every perflab range is what
    `Results.correlate()` pairs with the runs by label. The report and its SQLite export stay in
    OUT/traces/. Returns the exit status (0).
    """
    nsys_bin = shutil.which("nsys")
    if nsys_bin is None:
        raise BackendUnavailable(
            "perflab profile needs Nsight Systems: `nsys` is not on PATH; install Nsight Systems, "
            "or run the study under `nsys profile --export=sqlite` where it is installed and "
            "`perflab import nsys` the .sqlite file"
        )
    spec = Path(spec)
    if output is None:
        from perflab import spec as spec_module  # only for the study's default folder name

        output = Path("data") / spec_module.load(spec).name
    out = Path(output)
    store.check_writable(out)
    traces = out / "traces"
    traces.mkdir(parents=True, exist_ok=True)
    base = traces / f"profile-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}"
    cmd = [
        nsys_bin, "profile", "--trace=cuda,nvtx,osrt", "--sample=none", "--cpuctxsw=none",
        "--force-overwrite=true", "--export=sqlite", "--output", str(base), *nsys_args,
        sys.executable, "-m", "perflab.cli", "run", "-o", str(out), "--", str(spec),
    ]  # fmt: skip
    proc = subprocess.run(cmd, check=False)
    if proc.returncode != 0:
        raise PerflabError(
            f"`nsys profile ... perflab run {spec}` exited with status {proc.returncode}"
        )
    sqlite_path = base.with_name(base.name + ".sqlite")
    if not sqlite_path.exists():
        raise PerflabError(f"nsys wrote no SQLite export at {sqlite_path}")
    run = nsys.read_nsys_run(sqlite_path, out=out)
    commit(out, [run])
    labels = json.loads(run.row["meta"]).get("perflab_runs", [])
    print(f"trace {sqlite_path} imported as run {run.run_id} ({len(labels)} perflab run(s))")
    return 0
