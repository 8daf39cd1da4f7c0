"""The trainer process: a retrain's reading and fitting happen here, never in a serving process.

``run_trainer`` starts ``python -m scoring.lifecycle.trainer JOB OUT`` and waits for it. The
child loads the settings from the job file, reads (a sample of) the lake, fits, registers the
new version as a challenger (an atomic registry write) and writes its outcome as JSON; each
progress message is one line on its standard output. The parent gets the child's own peak RSS
from ``wait4``, so a retrain's memory is measured, and a child killed by the kernel (out of
memory) or by a person is a failed run while the parent carries on.

The job's files, and every temporary file the child makes (its ``TMPDIR``), live in one folder
under the data folder's trainer scratch, never in the system temp folder: a trainer whose server
was killed removes its folder as it exits, and one killed with it leaves a folder the next
trainer on that data folder removes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.base import atomic
from ingest.base.layout import DEFAULT_MODEL
from scoring.service.logs import child_setup, logging_as
from scoring.settings import Settings

NICENESS = 10  # a retrain yields the CPU to requests and CLI commands
SCRATCH_PREFIX = "trainer-"  # a trainer's own folder in the data folder's trainer scratch

log = logging.getLogger("dropscore.train")


@dataclass
class TrainerExit:
    """How a trainer process ended: an outcome dict, a refusal or an error, and its memory."""

    pid: int
    peak_rss_mb: float | None
    outcome: dict[str, Any] | None = None
    refused: str | None = None
    error: str | None = None


def settings_to_json(settings: Settings) -> dict[str, dict[str, Any]]:
    """Flatten loaded settings into overrides that ``load_settings`` turns back into them.

    ``[server]`` is left out: a trainer serves nothing, and API keys stay off the disk. Only the
    model being trained is kept: as ``[model]``/``[training]`` for ``default``, else as its
    ``[models.<name>]`` table, so the trainer sees that model's folders.
    """
    out: dict[str, dict[str, Any]] = {}
    for f in dataclasses.fields(settings):
        section = getattr(settings, f.name)
        if f.name == "server" or not dataclasses.is_dataclass(section) or isinstance(section, type):
            continue
        values = dataclasses.asdict(section)
        out[f.name] = {
            k: str(v) if isinstance(v, Path) else v for k, v in values.items() if v is not None
        }
    if settings.name != DEFAULT_MODEL:
        out["models"] = {settings.name: {**out.pop("model"), **out.pop("training")}}
    return out


def run_trainer(
    settings: Settings,
    trigger: str,
    *,
    progress: Callable[[str], None] | None = None,
    started: Callable[[int], object] | None = None,
) -> TrainerExit:
    """Run one retrain in a child process and report how it ended; never raises for the child.

    The caller holds the data folder's trainer slot (``run_locks.trainer_slot``).
    """
    say = progress or (lambda _m: None)
    scratch = settings.layout.trainer_scratch
    remove_stale(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=scratch) as tmp:
        job, out = Path(tmp) / "job.json", Path(tmp) / "outcome.json"
        body = {
            "settings": settings_to_json(settings),
            "trigger": trigger,
            "parent": os.getpid(),
            "scratch": tmp,
            "logging": child_setup(),  # its events name the model and run, as ours do
        }
        job.write_text(json.dumps(body), encoding="utf-8")
        begun = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "scoring.lifecycle.trainer", str(job), str(out)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env={**os.environ, "TMPDIR": tmp},  # the child's temporary files go with the job's
        )
        if started is not None:
            started(proc.pid)
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                step = line.rstrip("\n")
                _log_step(step, begun, proc.pid)
                say(step)
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        peak = round(usage.ru_maxrss / 1024, 1)  # Linux reports kilobytes
        _log_step("trainer ended", begun, proc.pid, cpu_seconds=_cpu(usage), peak_rss_mb=peak)
        result = _read_outcome(out)
    if result is not None:
        return TrainerExit(proc.pid, peak, **result)
    return TrainerExit(proc.pid, peak, error=_death(code))


def _log_step(step: str, begun: float, pid: int, **more: Any) -> None:
    """Log a trainer's step with the seconds since it started, so a slow run shows where its
    time went (starting the process and loading the libraries, reading, fitting, saving)."""
    seconds = round(time.monotonic() - begun, 2)
    log.info("trainer step", extra={"step": step, "seconds": seconds, "trainer_pid": pid, **more})


def _cpu(usage: Any) -> float:
    return round(usage.ru_utime + usage.ru_stime, 2)


def remove_stale(scratch: Path) -> None:
    """Remove the folders that trainers killed with their server left in the scratch.

    Called in the data folder's one trainer slot (``run_locks.trainer_slot``), so no other trainer
    of this data folder is running and every folder there is a dead one's.
    """
    if not scratch.is_dir():
        return
    for folder in scratch.glob(f"{SCRATCH_PREFIX}*"):
        shutil.rmtree(folder, ignore_errors=True)
        log.info("removed a killed trainer's files", extra={"path": str(folder)})


def _read_outcome(path: Path) -> dict[str, Any] | None:
    """The child's answer, or None when it died before writing one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {k: data.get(k) for k in ("outcome", "refused", "error")}


def _death(code: int) -> str:
    """Word how a trainer that wrote no outcome ended."""
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"trainer killed by {name}{hint}; the champion keeps serving"
    return f"trainer exited with status {code} without an outcome; the champion keeps serving"


# -- the child ------------------------------------------------------------------------------


def _watch_parent(parent: int, scratch: Path | None) -> None:
    """End this trainer when the process that started it dies: nobody would record the run,
    nor remove the job's folder, so this process removes it as it goes."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        _remove_own(scratch)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _remove_own(scratch: Path | None) -> None:
    """Remove this trainer's folder in the data folder's scratch (only that: the job names it)."""
    if scratch is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(scratch)


def _write_atomic(path: Path, body: dict[str, Any]) -> None:
    """Write the outcome whole or not at all: the parent reads a missing file as a death."""
    atomic.write_json(path, body, indent=None, default=_plain)


def _plain(value: Any) -> Any:
    """Turn numpy scalars (and anything else odd) into JSON values."""
    return value.item() if hasattr(value, "item") else str(value)


def main(argv: list[str]) -> int:
    """Train once as the job file says and write the outcome; the exit code is 0 if written."""
    os.nice(NICENESS)  # before the heavy imports: they compete with requests and CLI commands
    # skops (it saves the model) lists its trusted types at import by looking each numpy and
    # scipy ufunc up in every loaded module; loaded first, before pandas, pyarrow and the rest,
    # it looks through fewer (measured: 2.1-2.4 s CPU for the trainer's imports, not 2.4-2.6).
    importlib.import_module("skops.io")
    from ingest.state.db import StateDB
    from scoring.lifecycle.registry import Registry
    from scoring.lifecycle.retrain import TrainingRefused, train_and_decide
    from scoring.settings import load_settings

    job_path, out_path = Path(argv[0]), Path(argv[1])
    job = json.loads(job_path.read_text(encoding="utf-8"))
    scratch = Path(job["scratch"]) if job.get("scratch") else None
    _watch_parent(int(job["parent"]), scratch)
    settings = load_settings(None, env={}, overrides=job["settings"])
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))

    def say(message: str) -> None:
        print(message, flush=True)

    say("training libraries loaded")  # the parent's log times this: the start's fixed cost

    try:
        with logging_as(job.get("logging", {})):
            outcome = train_and_decide(settings, registry, trigger=job["trigger"], progress=say)
        body: dict[str, Any] = {"outcome": outcome.to_dict()}
    except TrainingRefused as exc:
        body = {"refused": str(exc)}
    except Exception as exc:  # reported to the parent, which records the failed run
        import traceback

        traceback.print_exc()
        body = {"error": f"{type(exc).__name__}: {exc}"}
    _write_atomic(out_path, body)
    if os.getppid() != int(job["parent"]):  # the parent died while this trainer finished
        _remove_own(scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
