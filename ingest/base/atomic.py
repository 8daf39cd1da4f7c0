"""Write a file whole or not at all, durably: the one way dropscore replaces a file on disk.

Every writer goes through a temporary beside its destination, named ``.<name>.<hex>.tmp``:
dotted and ending in ``.tmp``, so the watcher, the rescans and ``dropscore init`` never take it
for a drop (``ingest.base.formats.is_unfinished_name``) and ``remove_temporaries`` recognizes
what a crash left. The temporary is flushed to disk, renamed over the destination (or, for a
destination that must not be replaced, hard-linked to it), and the folder entry is flushed too,
so after a crash a reader finds the old file or the new one, never half of one, and a rename
that returned is not lost. A failure removes the temporary and leaves the old file as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

TMP_SUFFIX = ".tmp"


def temporary_for(path: Path) -> Path:
    """Name a fresh temporary beside path, in the one form the cleanup code recognizes."""
    return path.parent / f".{path.name}.{secrets.token_hex(6)}{TMP_SUFFIX}"


def is_temporary(name: str) -> bool:
    """Tell whether a name is one of our temporaries (or an older release's dotted ``.tmp``)."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX) and len(name) > len(TMP_SUFFIX) + 1


def fsync_file(path: Path) -> None:
    """Flush a file's bytes to disk, so the rename that follows publishes whole content."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(path: Path) -> None:
    """Flush a folder's entries to disk, so a rename into it survives a crash."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # some platforms cannot open folders; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the rename is still atomic
    finally:
        os.close(fd)


def publish(tmp: Path, dest: Path, *, replace: bool = True) -> None:
    """Move a finished, flushed temporary to dest and flush the folder entry.

    With ``replace=False`` an existing dest is never overwritten (FileExistsError), which a
    hard link guarantees; a filesystem without hard links falls back to a checked rename.
    """
    if replace:
        os.replace(tmp, dest)
    else:
        try:
            os.link(tmp, dest)  # fails with FileExistsError if dest exists: no silent overwrite
        except FileExistsError:
            raise
        except OSError:
            if dest.exists():
                raise FileExistsError(f"{dest} already exists") from None
            os.rename(tmp, dest)  # filesystems without hard links
        else:
            tmp.unlink()
    fsync_folder(dest.parent)


@contextlib.contextmanager
def replacing(
    path: Path, *, replace: bool = True, keep_mode: bool = False, mode: int | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; publish it when the block ends well.

    The caller writes the temporary however it likes (a Parquet writer, a CSV writer); on
    leaving the block it is flushed and renamed over ``path`` (see ``publish``). On any
    exception the temporary is removed and ``path`` is left as it was. ``keep_mode`` copies the
    permission bits of the file being replaced; ``mode`` sets them on a new file.
    """
    tmp = temporary_for(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary for {path.name}")
        fsync_file(tmp)
        if mode is not None:
            os.chmod(tmp, mode)
        if keep_mode and path.exists():
            shutil.copymode(path, tmp)
        publish(tmp, path, replace=replace)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def open_replacing(path: Path, **options: Any) -> Iterator[BinaryIO]:
    """Yield a binary file to write ``path``'s new content into, published as ``replacing``.

    A ``mode`` applies from the moment the temporary exists, so a secret is never readable by
    others, not even half-written.
    """
    with replacing(path, **options) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, options.get("mode") or 0o666)
        with os.fdopen(fd, "wb") as fh:
            yield fh


def write_bytes(path: Path, data: bytes, **options: Any) -> None:
    """Replace ``path`` with ``data`` atomically and durably (options as ``replacing``)."""
    with open_replacing(path, **options) as fh:
        fh.write(data)


def write_text(path: Path, text: str, **options: Any) -> None:
    """Replace ``path`` with UTF-8 text atomically and durably (options as ``replacing``)."""
    write_bytes(path, text.encode("utf-8"), **options)


def write_json(path: Path, body: Any, *, indent: int | None = 2, **dumps: Any) -> None:
    """Replace ``path`` with ``body`` as JSON atomically and durably; ``dumps`` go to json."""
    text = json.dumps(body, indent=indent, **dumps)
    write_text(path, text + ("\n" if indent is not None else ""))


@contextlib.contextmanager
def staging(parent: Path, label: str) -> Iterator[Path]:
    """Yield a new empty temporary folder in parent, to fill and ``publish_folder``.

    Whatever the block leaves unpublished (an exception, a refusal) is removed with its files.
    """
    parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_for(parent / label)
    tmp.mkdir()
    try:
        yield tmp
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)


def publish_folder(tmp: Path, dest: Path) -> None:
    """Flush a staged folder's files and entries, rename it to dest, and flush the parent.

    ``dest`` must not exist (a rename does not merge folders): the caller clears a leftover.
    """
    for entry in tmp.iterdir():
        if entry.is_file():
            fsync_file(entry)
    fsync_folder(tmp)
    os.rename(tmp, dest)
    fsync_folder(dest.parent)


def temporaries(folder: Path) -> list[Path]:
    """List the temporaries in a folder (files or folders), oldest name first."""
    try:
        with os.scandir(folder) as entries:
            return sorted(folder / e.name for e in entries if is_temporary(e.name))
    except (FileNotFoundError, NotADirectoryError):
        return []


def remove_temporaries(folder: Path, older_than: float | None = None) -> list[Path]:
    """Delete the temporaries a crashed writer left in folder; return what was removed.

    ``older_than`` (seconds) spares younger ones, which a live writer may still be filling;
    without it the caller holds whatever lock keeps writers out.
    """
    removed = []
    for path in temporaries(folder):
        with contextlib.suppress(OSError):
            if older_than is not None and time.time() - path.stat().st_mtime <= older_than:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed
