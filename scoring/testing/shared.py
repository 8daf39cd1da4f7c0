"""Servers the processes of one test session share: the first user starts one, the last stops it.

pytest-xdist runs the suite in several worker processes, and each asks for the session's
PostgreSQL, moto_server or Dask cluster on first use. Under a lock in the session's folder, the
first one starts a *host* (``python -m scoring.testing.shared KIND FOLDER``): a process that runs
the server with the same context manager a bench uses, writes how to reach it (``info.json``) and
stops it on the way out. Later users read ``info.json``. Each user's pid is listed in
``users.json``; the last one to leave stops the host and waits until it is gone. The host also
leaves by itself once none of the listed users is alive (a worker killed with -9), and on Ctrl-C
it gets SIGINT with the rest of the terminal's process group. A serial run is one user.

The host runs apart from the worker that started it (it detaches with a fork), so that worker may
finish first while the others still use the server.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from ingest.base.atomic import write_json
from ingest.state.locks import FileLocks
from scoring.testing.waiting import wait_for

START_SECONDS = 300.0  # a loaded 2-core machine: a cluster's start measures 5-60 s there
STOP_SECONDS = 120.0  # the host stops its server (a cluster's workers get 30 s, then a kill)
WATCH_SECONDS = 1.0  # how often the host looks for a live user
HOST_LOCK = "host.lock"  # held by the host from its start to its exit

Info = dict[str, Any]
Host = Callable[[Path], AbstractContextManager[Info]]


def session_folder(basetemp: Path, worker: str | None) -> Path:
    """Name the folder every process of this session sees: under xdist, the workers' parent."""
    # xdist gives each worker the basetemp <session>/popen-gwN; a serial run's is <session>.
    return (basetemp.parent if worker else basetemp) / "shared"


def _hosts() -> dict[str, Host]:
    """Map each kind of shared server to the context manager that runs it (imported on use)."""
    from scoring.testing.cluster import hosted_cluster
    from scoring.testing.moto import hosted_moto
    from scoring.testing.postgres import hosted_postgres

    return {"postgres": hosted_postgres, "moto": hosted_moto, "dask": hosted_cluster}


@contextmanager
def shared(kind: str, session: Path, env: Mapping[str, str] | None = None) -> Iterator[Info]:
    """Use the session's server of ``kind`` (start it if no one has); leave it on the way out.

    ``env`` is added to the host's environment when this call starts it (a cluster's workers
    take an object store's credentials from theirs).
    """
    if kind not in _hosts():
        raise ValueError(f"no shared server of kind {kind!r}: one of {sorted(_hosts())}")
    folder = session / kind
    folder.mkdir(parents=True, exist_ok=True)
    info = _join(kind, folder, dict(env or {}))
    try:
        yield info
    finally:
        _leave(folder)


def _join(kind: str, folder: Path, env: dict[str, str]) -> Info:
    with _locked(folder / "lock"):
        users = _live_users(folder)
        _write_json(folder / "users.json", [*users, os.getpid()])
        _note(folder, f"{os.getpid()} joins ({len(users) + 1} users)")
        if _host_running(folder) and (folder / "info.json").exists():
            return _read_json(folder / "info.json")["info"]
        (folder / "info.json").unlink(missing_ok=True)
        try:
            return _launch(kind, folder, env)
        except BaseException:
            _write_json(folder / "users.json", users)
            raise


def _leave(folder: Path) -> None:
    with _locked(folder / "lock"):
        users = _live_users(folder)
        if os.getpid() in users:
            users.remove(os.getpid())
        _write_json(folder / "users.json", users)
        _note(folder, f"{os.getpid()} leaves ({len(users)} users)")
        if not users:
            _stop_host(folder)


def _note(folder: Path, line: str) -> None:
    """Add a line to ``users.log``: who used the server when (for a person reading a run)."""
    with open(folder / "users.log", "a", encoding="utf-8") as fh:
        fh.write(f"{time.strftime('%H:%M:%S')} {line}\n")


def _launch(kind: str, folder: Path, env: dict[str, str]) -> Info:
    """Start the host and wait for its ``info.json``; raise with its log if it dies instead."""
    log = folder / "host.log"
    with open(log, "ab") as out:
        # The command forks the host and returns at once: the host is nobody's child here.
        subprocess.run(
            [sys.executable, "-m", "scoring.testing.shared", kind, str(folder)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=START_SECONDS,
        )

    def ready() -> bool:
        if (folder / "info.json").exists():
            return True
        if not _host_running(folder):
            tail = log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"the shared {kind} server did not start; {log}:\n{tail}")
        return False

    wait_for(ready, START_SECONDS, 0.1, f"the shared {kind} server")
    return _read_json(folder / "info.json")["info"]


def _stop_host(folder: Path) -> None:
    """Ask the host to stop its server (SIGTERM) and wait until it has; kill it if it hangs."""
    info = folder / "info.json"
    if info.exists():
        pid = int(_read_json(info)["pid"])
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while _host_running(folder) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _host_running(folder):
            _signal(pid, signal.SIGKILL)
        info.unlink(missing_ok=True)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # gone already (Ctrl-C reached it first)
        os.kill(pid, signum)


def _host_running(folder: Path) -> bool:
    """Tell whether a host holds ``host.lock`` (it holds it from its start to its exit)."""
    if not (folder / HOST_LOCK).exists():
        return False
    probe = FileLocks(folder).try_acquire(HOST_LOCK)
    if probe is None:
        return True
    probe.release()
    return False


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (wait for it: another user may be starting a server)."""
    with FileLocks(path.parent).acquire(path.name):
        yield


def _live_users(folder: Path) -> list[int]:
    path = folder / "users.json"
    users = _read_json(path) if path.exists() else []
    return [int(pid) for pid in users if alive(int(pid))]


def alive(pid: int) -> bool:
    """Tell whether a process runs (a zombie, exited but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # gone just now, or no /proc to ask
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, value: Any) -> None:
    """Replace the file at once, so a reader without the lock (the host) sees old or new."""
    write_json(path, value, indent=None)


def _on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)  # unwinds the host's context manager: its server stops


def host(kind: str, folder: Path) -> None:
    """Run one shared server until no user is left, then stop it (the host process's body)."""
    with _hosts()[kind](folder) as info:
        _write_json(folder / "info.json", {"info": info, "pid": os.getpid()})
        while _live_users(folder):
            time.sleep(WATCH_SECONDS)


def main(argv: list[str]) -> int:
    """Detach a host for ``KIND FOLDER`` and return; the host holds ``host.lock`` until it exits."""
    kind, folder = argv[0], Path(argv[1])
    # Taken before the fork, so there is no gap to misread; the forked host inherits the
    # descriptor and holds the lock for its whole life (the kernel drops it when it exits).
    lock = FileLocks(folder).try_acquire(HOST_LOCK)
    if lock is None:
        raise SystemExit(f"a host already runs in {folder}")
    if os.fork() > 0:
        os._exit(0)  # the caller reaps this at once; the host is reparented, never a zombie
    # Stop on SIGINT too, even where it was inherited ignored (a run started with `&`): a
    # Ctrl-C reaches the whole process group, and the server's own processes leave on it.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    host(kind, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
