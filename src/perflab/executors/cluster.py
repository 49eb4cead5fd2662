"""The `dask` executor: the configs of one study on the machines of a Dask cluster.

Each machine is a Dask worker named after it, started with one thread and the resource
`perflab=1`, so it runs one benchmark at a time. The client here sends a machine its next config
only once its previous one is done (configs pinned with the `machine` key go to their machine,
the others to any free machine), with `pure=False`, no retries and the scheduler's allowed
failures at 0: a benchmark is never silently run again elsewhere. On the worker the config runs
in a child process of the `local` executor, so the worker keeps heartbeating while it measures and
a crash does not take the worker down. The run's table files come back as bytes and are committed
here into the one study folder with `store.write_run`, together with the machine's fingerprint.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perflab import run_row, store
from perflab.errors import PerflabError
from perflab.executors import Execute, Hooks, Interrupt
from perflab.spec import RunConfig

RESOURCE = "perflab"
TOPIC = "perflab-progress"
CONNECT_TIMEOUT_S = 10.0
POLL_S = 0.2
# A machine that leaves the cluster (worker lost) may come back (its nanny restarts it); configs
# pinned to it wait this long before they are recorded as skipped.
LOST_MACHINE_GRACE_S = 30.0
WORKER_HINT = "dask worker {address} --name NAME --nthreads 1 --resources perflab=1"


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise PerflabError(
            "--cluster needs dask.distributed: pip install 'perflab[dask]'"
        ) from None
    return distributed


def security(ca_file: str | None, cert: str | None, key: str | None) -> Any:
    """distributed's TLS `Security` from the CLI's files (all three, or None for plain TCP)."""
    given = [x for x in (ca_file, cert, key) if x]
    if not given:
        return None
    if len(given) != 3:
        raise PerflabError("TLS needs all three of --tls-ca-file, --tls-cert and --tls-key")
    for path in (ca_file, cert, key):
        if not Path(path).is_file():
            raise PerflabError(f"TLS file {path} does not exist")
    return _distributed().Security(
        tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key, require_encryption=True
    )


def _check_reachable(address: str) -> None:
    """One clear line for a malformed or unreachable scheduler address, without the client's
    connection retries."""
    from distributed.comm import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address, strict=True)
        host, port = parse_host_port(location)
    except (ValueError, TypeError):
        raise PerflabError(
            f"--cluster {address!r} is not a scheduler address; expected tcp://HOST:PORT "
            "(or tls://HOST:PORT)"
        ) from None
    if scheme not in ("tcp", "tls"):
        raise PerflabError(
            f"--cluster {address!r}: only tcp:// and tls:// schedulers are supported"
        )
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PerflabError(f"cannot reach the Dask scheduler at {address}: {reason}") from None


def _zero_allowed_failures() -> Any:
    """For Client.run_on_scheduler: a task whose worker dies fails at once, it is never run again.

    Made as a closure, which cloudpickle ships by value, so the scheduler needs no perflab.
    """

    def set_zero(dask_scheduler: Any) -> int:
        dask_scheduler.allowed_failures = 0
        return dask_scheduler.allowed_failures

    return set_zero


class DaskExecutor:
    name = "dask"

    def __init__(
        self,
        address: str,
        *,
        security: Any = None,
        lost_machine_grace_s: float = LOST_MACHINE_GRACE_S,
    ) -> None:
        distributed = _distributed()
        _check_reachable(address)
        self.address = address
        self.grace_s = lost_machine_grace_s
        self.token = uuid.uuid4().hex  # tells this study's progress events from others'
        try:
            self.client = distributed.Client(
                address, security=security, timeout=CONNECT_TIMEOUT_S, set_as_default=False
            )
        except (OSError, TimeoutError) as exc:
            raise PerflabError(
                f"cannot connect to the Dask scheduler at {address}: {exc}"
            ) from None
        self.client.run_on_scheduler(_zero_allowed_failures())

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> DaskExecutor:  # noqa: PYI034 - final class
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def machines(self) -> dict[str, dict[str, Any]]:
        """Workers the scheduler knows now, by name: {name: {address, resources, ...}}."""
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        return {str(w.get("name", addr)): {**w, "address": addr} for addr, w in workers.items()}

    def _able(self, machines: dict[str, dict[str, Any]]) -> set[str]:
        return {n for n, w in machines.items() if (w.get("resources") or {}).get(RESOURCE, 0) >= 1}

    def check(self, configs: Sequence[RunConfig]) -> None:
        machines = self.machines()
        hint = WORKER_HINT.format(address=self.address)
        if not machines:
            raise PerflabError(
                f"the Dask scheduler at {self.address} has no workers; start one per machine: {hint}"
            )
        wanted = sorted({c.machine for c in configs if c.machine})
        missing = [m for m in wanted if m not in machines]
        if missing:
            raise PerflabError(
                f"config(s) ask for machine(s) {', '.join(missing)}, which no worker of "
                f"{self.address} is named; machines the scheduler knows: {', '.join(sorted(machines))}"
            )
        able = self._able(machines)
        lacking = [m for m in wanted if m not in able] or ([] if able else sorted(machines))
        if lacking:
            raise PerflabError(
                f"worker(s) {', '.join(lacking)} lack the resource {RESOURCE}=1 that keeps one "
                f"benchmark at a time on a machine; start them as: {hint}"
            )

    def run(self, execute: Execute, configs, out, env_id, hooks: Hooks, interrupt: Interrupt):
        out = Path(out)
        pending = list(configs)
        total = len(pending)
        running: dict[str, tuple[Any, RunConfig, str]] = {}
        gone_since: dict[str, float] = {}
        started = 0

        def on_event(event: tuple[float, dict[str, Any]]) -> None:
            msg = event[1]
            if isinstance(msg, dict) and msg.get("token") == self.token:
                hooks.progress(msg["n"], msg["median_ms"], msg["machine"])

        self.client.subscribe_topic(TOPIC, on_event)
        try:
            while pending or running:
                if interrupt.signal is not None:
                    self._interrupt(running)
                    return
                machines = self.machines()
                able = self._able(machines)
                now = time.monotonic()
                for name in sorted({c.machine for c in pending if c.machine}):
                    if name in able:
                        gone_since.pop(name, None)
                    elif now - gone_since.setdefault(name, now) > self.grace_s:
                        for config in [c for c in pending if c.machine == name]:
                            pending.remove(config)
                            yield self._not_run(config, out, name)
                for name in sorted(able - set(running)):
                    config = next((c for c in pending if c.machine == name), None) or next(
                        (c for c in pending if c.machine is None), None
                    )
                    if config is None:
                        continue
                    pending.remove(config)
                    started += 1
                    run_id = store.new_run_id()
                    hooks.start(started, total, config, name)
                    future = self.client.submit(
                        _remote_run,
                        execute,
                        config.to_json(),
                        run_id,
                        self.token,
                        key=f"perflab-run-{run_id}",
                        workers=[name],
                        allow_other_workers=False,
                        resources={RESOURCE: 1},
                        pure=False,
                        retries=0,
                    )
                    running[name] = (future, config, run_id)
                time.sleep(POLL_S)  # runs take seconds: polling costs nothing measurable
                for name, (future, config, run_id) in list(running.items()):
                    if future.done():
                        del running[name]
                        row = self._collect(future, config, run_id, name, out)
                        if row is not None:
                            yield row
        finally:
            self.client.unsubscribe_topic(TOPIC)

    def _collect(self, future: Any, config: RunConfig, run_id: str, machine: str, out: Path):
        """Commit the run a machine sent back, or record why it did not come back."""
        from distributed import KilledWorker

        try:
            result = future.result()
        except KilledWorker:
            return self._failed(
                config,
                run_id,
                out,
                machine,
                f"worker lost: machine {machine} left the cluster while running this config",
            )
        except Exception as exc:  # noqa: BLE001 - whatever the worker raised is this run's failure
            return self._failed(
                config, run_id, out, machine, f"on machine {machine}: {type(exc).__name__}: {exc}"
            )
        if result is None:
            return None  # interrupted on the worker: nothing stored, --resume runs it
        with tempfile.TemporaryDirectory(prefix="perflab-incoming-") as tmp:
            for table, data in result["files"].items():
                path = store.table_file(Path(tmp), table, run_id)
                path.parent.mkdir()
                path.write_bytes(data)
            row, tables = store.read_run_tables(Path(tmp), run_id)
        env_row = result["env"]
        store.begin_run(out, run_id)
        store.write(out, "env", env_row["env_id"], env_row)
        store.write_run(out, row, tables)
        store.end_run(out, run_id)
        return row

    def _failed(self, config, run_id, out, machine, error):
        row = run_row.for_config(config, run_id, env_id=None, machine=machine)
        row.update(status="failed", error=error, notes="[]")
        store.write_run(out, row)
        return row

    def _not_run(self, config: RunConfig, out: Path, machine: str) -> dict[str, Any]:
        row = run_row.for_config(config, store.new_run_id(), env_id=None, machine=machine)
        row.update(
            status="skipped",
            error=f"machine {machine} left the cluster before this config started "
            f"(away for more than {self.grace_s:g} s); run again with --resume",
            notes="[]",
        )
        store.write_run(out, row)
        return row

    def _interrupt(self, running: dict[str, tuple[Any, RunConfig, str]]) -> None:
        """Stop the configs measuring on the machines now; nothing of them is stored."""
        if not running:
            return
        machines = self.machines()
        addresses = [machines[n]["address"] for n in running if n in machines]
        run_ids = [run_id for _, _, run_id in running.values()]
        # A machine that cannot be told stops the config at its timeout; nothing of it is stored.
        with contextlib.suppress(Exception):
            self.client.run(_interrupt_remote, run_ids, workers=addresses, wait=True)
        self.client.cancel([f for f, _, _ in running.values()], force=True)


# ----------------------------------------------------------------------------- on the worker

_machine_env: dict[str, Any] | None = None
_running: dict[str, Interrupt] = {}


def _remote_run(execute: Execute, config_json: str, run_id: str, token: str) -> dict | None:
    """On a worker: run one config in a child process into a scratch folder and return the run's
    table files as bytes with this machine's fingerprint row (None when interrupted)."""
    global _machine_env
    from distributed import get_worker

    from perflab import env
    from perflab.executors.local import LocalExecutor

    worker = get_worker()
    machine = str(worker.name)
    if _machine_env is None:
        _machine_env = env.row(env.fingerprint())

    def progress(n: int, median_ms: float) -> None:
        msg = {"token": token, "machine": machine, "n": int(n), "median_ms": float(median_ms)}
        worker.log_event(TOPIC, msg)

    stop = Interrupt()  # set by _interrupt_remote, never installed as a signal handler
    _running[run_id] = stop
    try:
        with tempfile.TemporaryDirectory(prefix="perflab-run-") as tmp:
            row = LocalExecutor(machine=machine).run_one(
                execute,
                RunConfig.from_json(config_json),
                Path(tmp),
                run_id,
                _machine_env["env_id"],
                progress,
                stop,
            )
            if row is None:
                return None
            files = {
                folder.name: (folder / f"{run_id}.parquet").read_bytes()
                for folder in Path(tmp).iterdir()
                if (folder / f"{run_id}.parquet").is_file()
            }
    finally:
        _running.pop(run_id, None)
    return {"files": files, "env": _machine_env}


def _interrupt_remote(run_ids: list[str]) -> None:
    """On a worker (through Client.run): kill the children of these runs now."""
    import signal

    for run_id in run_ids:
        stop = _running.get(run_id)
        if stop is not None:
            stop.signal = signal.SIGINT
            if stop.kill is not None:
                stop.kill()
