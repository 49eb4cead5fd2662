"""`perflab lab`: the report notebooks in JupyterLab, on given result folders.

The notebooks are copied into a workspace folder (one per set of result folders) with their
parameters cell set to the folders' absolute paths, so the originals stay untouched and a copy
opens on its results from any working directory. The kernel is this environment's Python,
installed as a kernelspec named after perflab and this environment (`kernel_name`), so JupyterLab
never runs the notebooks on another Python that lacks perflab.

Where a notebook finds its results when its parameters are left as they are: `resolve_results`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from perflab.errors import PerflabError

# Result folders for notebooks whose `results` parameter is None (os.pathsep-separated).
RESULTS_ENV = "PERFLAB_RESULTS"
# What a notebook opens when neither its parameters nor RESULTS_ENV name a folder.
DEFAULT_RESULTS = ("data/demo",)
DEFAULT_WORKSPACE = Path("lab")


# --------------------------------------------------------------------------------------------
# Where results are


def project_roots(cwd: Path | None = None) -> list[Path]:
    """Folders a relative result folder is looked up in, after the working directory: the
    nearest folder above it holding a pyproject.toml (the project a notebook lives in, opened from
    its notebooks/ folder), and the checkout perflab itself runs from."""
    cwd = Path.cwd() if cwd is None else cwd
    roots = []
    for folder in [cwd, *cwd.parents]:
        if (folder / "pyproject.toml").is_file():
            roots.append(folder)
            break
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        roots.append(checkout)
    return list(dict.fromkeys(r.resolve() for r in roots))


def resolve_results(
    results: Sequence[str | Path] | str | Path | None, *, cwd: Path | None = None
) -> tuple[list[Path], list[str]]:
    """Result folders for a notebook, and one line per folder that was not found.

    `None` takes the folders from $PERFLAB_RESULTS, else `DEFAULT_RESULTS`. A relative folder is
    taken from the working directory when it is there, else from the project roots
    (`project_roots`); an absolute one as it is.
    """
    cwd = Path.cwd() if cwd is None else cwd
    if results is None:
        listed = os.environ.get(RESULTS_ENV, "")
        results = [p for p in listed.split(os.pathsep) if p] or list(DEFAULT_RESULTS)
    elif isinstance(results, (str, Path)):
        results = [results]
    found, missing = [], []
    for entry in results:
        path = Path(entry).expanduser()
        bases = [Path("/")] if path.is_absolute() else [cwd, *project_roots(cwd)]
        hits = [base / path for base in bases if (base / path).is_dir()]
        if hits:
            found.append(hits[0].resolve())
        else:
            where = ", ".join(str(b) for b in bases) if not path.is_absolute() else ""
            missing.append(
                f"result folder {path} does not exist" + (f" (looked in {where})" if where else "")
            )
    return found, missing


def latest_study(data: Path | str = "data") -> Path:
    """The result folder under `data` whose runs were written last."""
    from perflab import store

    data = Path(data)
    studies = []
    if data.is_dir():
        for folder in data.iterdir():
            if folder.is_dir() and (folder / "runs").is_dir():
                studies.append(((folder / "runs").stat().st_mtime, folder))
    if not studies:
        raise PerflabError(
            f"no results under {data}/ to open; run a study first (make demo) or name the "
            "result folders: perflab lab FOLDER..."
        )
    newest = max(studies)[1]
    store.read_study_check(newest)
    return newest


# --------------------------------------------------------------------------------------------
# The workspace


def kernel_name(prefix: str | None = None) -> str:
    """The kernelspec name of this environment: perflab's, and this venv's (two checkouts, two
    kernels)."""
    prefix = sys.prefix if prefix is None else prefix
    return "perflab-" + hashlib.sha1(str(Path(prefix).resolve()).encode()).hexdigest()[:8]


def install_kernel(prefix: str | None = None) -> str:
    """Install this Python as a Jupyter kernel in environment `prefix` (default: this venv's), so
    the JupyterLab of this environment lists it; returns its name."""
    from ipykernel.kernelspec import install

    name = kernel_name()
    install(
        kernel_name=name,
        display_name=f"perflab ({Path(sys.prefix).resolve()})",
        prefix=sys.prefix if prefix is None else prefix,
    )
    return name


def workspace_for(folders: Sequence[Path], root: Path | str = DEFAULT_WORKSPACE) -> Path:
    """The workspace of these result folders: named after the last one, plus a hash of them all
    (so two sets of folders never share copies)."""
    key = "\n".join(str(f) for f in folders)
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", folders[-1].name).strip("._") or "results"
    return Path(root) / f"{name[:60]}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"


def parameters_source(source: str, folders: Sequence[Path]) -> str:
    """A notebook's parameters cell with its `results` line set to `folders` (the other
    parameters kept as they are)."""
    listed = ", ".join(json.dumps(str(f)) for f in folders)
    line = f"results = [{listed}]  # result folders (set by perflab lab)"
    lines = source.splitlines()
    at = [i for i, text in enumerate(lines) if text.startswith("results =")]
    if at:
        lines[at[0]] = line
    else:
        lines.insert(0, line)
    return "\n".join(lines)


def write_workspace(folders: Sequence[Path], workspace: Path, kernel: str) -> list[Path]:
    """Copies of the report notebooks in `workspace`, their parameters set to `folders` and their
    kernel to `kernel`. A copy that is already there is kept as it is: it may hold the user's
    edits (its parameters are these folders' anyway, by `workspace_for`)."""
    import nbformat

    from perflab.report import PARAMETERS_TAG, notebook_paths

    workspace.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebook_paths():
        target = workspace / path.name
        written.append(target)
        if target.exists():
            continue
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if PARAMETERS_TAG in c.metadata.get("tags", [])]
        if not cells:
            raise PerflabError(f"notebook {path} has no cell tagged {PARAMETERS_TAG!r}")
        cells[0].source = parameters_source(cells[0].source, folders)
        nb.metadata["kernelspec"] = {
            "name": kernel,
            "display_name": f"perflab ({Path(sys.prefix).resolve()})",
            "language": "python",
        }
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        nbformat.write(nb, tmp)
        os.replace(tmp, target)
    return written


# --------------------------------------------------------------------------------------------
# The server


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def server_command(workspace: Path, *, port: int, token: str) -> list[str]:
    """JupyterLab of this environment, serving `workspace` on 127.0.0.1 only, with a token."""
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={workspace.resolve()}",
        # No news feed or update check: both would fetch from the network (and ask first).
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Refused by default as root; the server listens on 127.0.0.1 only, behind its token.
        command.append("--allow-root")
    return command


def prepare(
    results: Sequence[str | Path], *, workspace_root: Path | str = DEFAULT_WORKSPACE
) -> tuple[list[Path], Path, str]:
    """Result folders checked, the workspace written and the kernel installed: (folders,
    workspace, kernel name)."""
    from perflab import store

    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        raise PerflabError(
            "JupyterLab is not installed in this environment: pip install 'perflab[lab]'"
        ) from None
    if results:
        folders = []
        for entry in results:
            store.read_study_check(entry)
            folders.append(Path(entry).resolve())
    else:
        folders = [latest_study().resolve()]
    kernel = install_kernel()
    workspace = workspace_for(folders, workspace_root)
    write_workspace(folders, workspace, kernel)
    return folders, workspace, kernel


def start(
    results: Sequence[str | Path],
    *,
    workspace_root: Path | str = DEFAULT_WORKSPACE,
    port: int | None = None,
    notebook: str = "01_overview.ipynb",
) -> int:
    """Run JupyterLab on the workspace of `results` until it stops (Ctrl-C); returns its status."""
    folders, workspace, _ = prepare(results, workspace_root=workspace_root)
    port = free_port() if port is None else port
    token = secrets.token_hex(24)
    url = f"http://127.0.0.1:{port}/lab/tree/{notebook}?token={token}"
    print(f"results: {', '.join(str(f) for f in folders)}")
    print(f"workspace: {workspace.resolve()}")
    print(f"JupyterLab: {url}", flush=True)
    env = dict(os.environ, **{RESULTS_ENV: os.pathsep.join(str(f) for f in folders)})
    proc = subprocess.Popen(server_command(workspace, port=port, token=token), env=env)
    # Stopped by a signal, the server goes too (with its kernels) rather than living on alone.
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # The server got the same Ctrl-C from the terminal; give it time to shut its kernels down.
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.terminate()
            return proc.wait()
