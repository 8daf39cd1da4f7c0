"""Claims and locks: how a drop is moved into ``processing/`` and kept by one process at a time.

A claim is the first step of the intake's crash-safety order (see ``ingest/pipeline/intake.py``):
the file is locked with an ``flock``, then renamed (``take``) or copied (``take_copy``) into
``processing/<kind>/<uuid>/<name>``. The folder per claim keeps names collision-free; the claim
is named in the ledger's text form of the dropped name (``ingest.base.names``), so its path is plain
text the ledger can store and ``dropped_name`` gives the original name back. The kernel drops
an ``flock`` when its process dies, so ``Intake.resume`` in another process can tell a live
claim (locked) from a dead one (free). The locks themselves are ``ingest.state.locks``'s.

A writer that pauses longer than ``stable_seconds`` while holding the file open must not have it
taken mid-write: ``held_for_writing`` asks the kernel (a Linux read lease is refused while any
process has the file open for writing), and ``wait_until_still`` lets a claimed file that changed
while being read settle before it is taken again.

The lake lock serializes the type check and the lake write of one kind across processes: a
lock file (``processing/.lake-<kind>.lock``, kept out of the lake) on one machine, or, when the
intake's ledger is in a PostgreSQL state database that replicas share (``IngestConfig.locks``),
that database's advisory lock of the same name, so two machines writing one bucket's lake take
turns too.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.base.config import KINDS, IngestConfig
from ingest.base.names import as_text, escape, on_disk, shown, unescape
from ingest.state.locks import (
    FileLock,
    FileLocks,
    Lock,
    create_held,
    held_for_writing,
    try_hold,
)

log = logging.getLogger("dropscore.ingest")

EMPTY_CLAIM_GRACE_SECONDS = 60.0  # an empty claim folder younger than this may be in use
CLAIM_ERRORS = (FileNotFoundError, PermissionError, BlockingIOError)  # worth another try


@contextlib.contextmanager
def folder_lock(lock_file: Path) -> Iterator[None]:
    """Hold a blocking lock on a lock file, so one process at a time does the guarded work."""
    with FileLocks(lock_file.parent).acquire(lock_file.name):
        yield


def lake_lock(config: IngestConfig, kind: str) -> Lock:
    """Serialize the type check and the lake write of one kind, across processes (and across
    machines when the config carries the shared state database's locks)."""
    locks = config.locks if config.locks is not None else FileLocks(config.processing)
    return locks.acquire(f".lake-{kind}.lock")


def backoff(attempt: int) -> float:
    """Wait longer after each failed attempt, capped, so a locked file gets time to free up."""
    return min(0.05 * 2 ** (attempt - 1), 2.0)


def ensure_claim_dirs(config: IngestConfig) -> None:
    """Create the data layout and the per-kind claim folders; cheap and idempotent."""
    config.make_dirs()
    for kind in KINDS:
        (config.processing / kind).mkdir(exist_ok=True)


def claim_name(config: IngestConfig, kind: str, name: str) -> Path:
    """Name a claim so two drops of one name never collide; only the basename is kept, escaped
    and short enough for the filesystem (``names.on_disk``)."""
    return config.processing / kind / uuid.uuid4().hex / on_disk(escape(Path(name).name))


def dropped_name(claimed: Path) -> str:
    """Return the name a claimed file had in its inbox, as the filesystem knows it."""
    return unescape(claimed.name)


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


def _claim_move(config: IngestConfig, path: Path, kind: str) -> tuple[FileLock, Path]:
    """Lock, then rename; a lock held by another process counts as a transient failure."""
    dest = claim_name(config, kind, path.name)
    for attempt in range(1, config.max_attempts + 1):
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            hold = try_hold(path)
            if hold is None:
                raise BlockingIOError(f"{shown(path.name)} is locked by another process")
            try:
                os.rename(path, dest)
            except BaseException:
                hold.release()
                raise
            log.debug("claimed", extra={"file": shown(path.name), "kind": kind})
            return hold, dest
        except CLAIM_ERRORS as exc:
            if attempt >= config.max_attempts:
                remove_claim_folder(dest)
                log.warning(
                    "could not claim",
                    extra={"file": shown(path.name), "kind": kind, "error": as_text(str(exc))},
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


Signature = tuple[int, int]  # (size, mtime_ns)


def signature(path: Path) -> Signature:
    """Return a file's (size, mtime_ns), the facts that change when anything is written to it."""
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def wait_until_still(path: Path, stable_seconds: float, limit_seconds: float) -> bool:
    """Wait until a file held still for ``stable_seconds`` with no writer; False at the limit.

    Used on a claimed file that changed while being read: its writer still had it open.
    """
    tick = max(0.02, min(0.2, stable_seconds / 5))
    deadline = time.monotonic() + limit_seconds
    last, since = signature(path), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(tick)
        now = signature(path)
        if now != last or held_for_writing(path):
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= stable_seconds:
            return True
    return False


def changed_since(claimed: Path, before: Signature, size: int | None) -> bool:
    """Tell whether a claimed file changed since it was hashed, or a writer still holds it."""
    now = signature(claimed)
    return now != before or now[0] != size or held_for_writing(claimed)


def warn_if_grown(archived: Path, size: int | None, fields: dict[str, Any]) -> None:
    """Say so when a writer appended to a drop after its commit: the lake lacks those bytes.

    ``held_for_writing`` closes this window where the kernel can tell (Linux, own files); a
    writer that reopens the file after the commit is only reported here.
    """
    with contextlib.suppress(OSError):
        now = archived.stat().st_size
        if size is not None and now != size:
            log.warning(
                "written to after it was taken; the lake holds only what was there then",
                extra={**fields, "size_bytes": size, "size_now": now, "path": str(archived)},
            )


def hash_claimed(claimed: Path, max_attempts: int) -> str:
    """Hash a claimed file in chunks, riding out a short-lived lock or permission glitch."""
    for attempt in range(1, max_attempts + 1):
        try:
            with open(claimed, "rb") as fh:
                return hashlib.file_digest(fh, "sha256").hexdigest()
        except (PermissionError, BlockingIOError):
            if attempt >= max_attempts:
                raise
            time.sleep(backoff(attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def is_interrupted_copy(claimed: Path) -> bool:
    """Tell a ``claim_copy`` temporary (dotted) from a claimed drop."""
    return claimed.name.startswith(".")
