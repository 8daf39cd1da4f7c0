"""Claims and locks: how a drop is moved into ``processing/`` and kept by one process at a time.

A claim is the first step of the intake's crash-safety order (see ``ingest/intake.py``): the
file is locked with an ``flock``, then renamed (``take``) or copied (``take_copy``) into
``processing/<kind>/<uuid>/<name>``. The folder per claim keeps names collision-free and the
basename intact for messages. The kernel drops an ``flock`` when its process dies, so
``Intake.resume`` in another process can tell a live claim (locked) from a dead one (free).

The lake lock (``processing/.lake-<kind>.lock``, kept out of the lake) serializes the type
check and the lake write of one kind across processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from ingest.config import KINDS, IngestConfig

try:  # POSIX advisory locks keep two processes off one claimed file; elsewhere we do without
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("dropscore.ingest")

EMPTY_CLAIM_GRACE_SECONDS = 60.0  # an empty claim folder younger than this may be in use
CLAIM_ERRORS = (FileNotFoundError, PermissionError, BlockingIOError)  # worth another try


class Hold:
    """An exclusive ``flock`` on a claimed file; the kernel drops it if the process dies."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def release(self) -> None:
        """Let go of the file so another process's resume may take it."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def try_hold(path: Path) -> Hold | None:
    """Lock a file without waiting: None when another holder has it; FileNotFoundError if gone."""
    fd = os.open(path, os.O_RDONLY)
    if fcntl is None:
        return Hold(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return Hold(fd)


def create_held(path: Path) -> Hold:
    """Create a new empty file and lock it before anything is written to it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return Hold(fd)


@contextlib.contextmanager
def folder_lock(lock_file: Path) -> Iterator[None]:
    """Hold a blocking lock on a lock file, so one process at a time does the guarded work."""
    if fcntl is None:
        yield
        return
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def lake_lock(config: IngestConfig, kind: str) -> contextlib.AbstractContextManager[None]:
    """Serialize the type check and the lake write of one kind, across processes."""
    return folder_lock(config.processing / f".lake-{kind}.lock")


def backoff(attempt: int) -> float:
    """Wait longer after each failed attempt, capped, so a locked file gets time to free up."""
    return min(0.05 * 2 ** (attempt - 1), 2.0)


def ensure_claim_dirs(config: IngestConfig) -> None:
    """Create the data layout and the per-kind claim folders; cheap and idempotent."""
    config.make_dirs()
    for kind in KINDS:
        (config.processing / kind).mkdir(exist_ok=True)


def claim_name(config: IngestConfig, kind: str, name: str) -> Path:
    """Name a claim so two drops of one name never collide; only the basename is kept."""
    return config.processing / kind / uuid.uuid4().hex / Path(name).name


def remove_claim_folder(claimed: Path) -> None:
    """Remove a claim's folder once its file has moved on; a non-empty one is left alone."""
    with contextlib.suppress(OSError):
        claimed.parent.rmdir()


@contextlib.contextmanager
def claim_move(config: IngestConfig, path: Path, kind: str) -> Iterator[Path]:
    """Lock and rename a file into processing/, retrying transient failures; hold it inside.

    Raises FileNotFoundError, PermissionError or BlockingIOError when the file could not be
    claimed after ``max_attempts`` tries.
    """
    hold, claimed = _claim_move(config, path, kind)
    try:
        yield claimed
    finally:
        hold.release()


def _claim_move(config: IngestConfig, path: Path, kind: str) -> tuple[Hold, Path]:
    """Lock, then rename; a lock held by another process counts as a transient failure."""
    dest = claim_name(config, kind, path.name)
    for attempt in range(1, config.max_attempts + 1):
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            hold = try_hold(path)
            if hold is None:
                raise BlockingIOError(f"{path.name} is locked by another process")
            try:
                os.rename(path, dest)
            except BaseException:
                hold.release()
                raise
            log.debug("claimed", extra={"file": path.name, "kind": kind})
            return hold, dest
        except CLAIM_ERRORS as exc:
            if attempt >= config.max_attempts:
                remove_claim_folder(dest)
                log.warning(
                    "could not claim", extra={"file": path.name, "kind": kind, "error": str(exc)}
                )
                raise
            time.sleep(backoff(attempt))
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def claim_copy(config: IngestConfig, path: Path, kind: str) -> Iterator[Path]:
    """Copy a file into a claim of its own, locked before the first byte lands; hold it inside.

    The copy is written under a dotted name and renamed when whole, so ``resume`` deletes an
    interrupted copy instead of taking half a file; the source stays where it is.
    """
    claimed = claim_name(config, kind, path.name)
    claimed.parent.mkdir(parents=True, exist_ok=True)
    tmp = claimed.with_name(f".{claimed.name}.copying")
    hold = create_held(tmp)  # locked before the copy, so no resume deletes it mid-copy
    try:
        shutil.copyfile(path, tmp)
        os.rename(tmp, claimed)
        yield claimed
    finally:
        hold.release()
        tmp.unlink(missing_ok=True)
        remove_claim_folder(claimed)


def is_interrupted_copy(claimed: Path) -> bool:
    """Tell a ``claim_copy`` temporary (dotted) from a claimed drop."""
    return claimed.name.startswith(".")
