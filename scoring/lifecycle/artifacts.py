"""The model artifacts: one folder of files per version, saved, opened, listed and removed here.

A version's folder (``models/<version>/``: ``model.skops``, ``card.json``, and optionally
``holdout.json`` and ``fold.json``) is built under a temporary name and renamed into place whole
(copied file by file on an object store, where a version is served only once indexed), so a
reader finds every file of a version or no version; once published it never changes but
for one file added later (``add``: a fold stored on first load). The store sits on a
``pyarrow.fs`` filesystem like the lake (``ingest.lake.store.Lake``): the local disk today, where
``ingest.base.atomic`` makes each step durable, and any other filesystem tomorrow. Which version
is champion, and which versions exist for clients, is the registry's index, not this folder.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from ingest.base import atomic

INCOMING = "incoming"  # the label of a version being staged: ``.incoming.<hex>.tmp``
OLD_INCOMING = ".incoming-"  # how an older release named a version being staged


class Staged:
    """A version's files being written, under a temporary folder until ``ArtifactStore.publish``."""

    def __init__(self, store: ArtifactStore, path: str) -> None:
        self.store = store
        self.path = path

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write one file of the version being staged."""
        with self.store.fs.open_output_stream(_join(self.path, _checked(name))) as sink:
            sink.write(data)

    def write_json(self, name: str, body: dict[str, Any]) -> None:
        """Write one JSON file of the version being staged (numpy scalars and paths as values)."""
        self.write_bytes(name, json_bytes(body))


class ArtifactStore:
    """The versions' folders under one root on a ``pyarrow.fs`` filesystem."""

    def __init__(self, fs: pafs.FileSystem, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")

    @classmethod
    def local(cls, models_dir: Path) -> ArtifactStore:
        """Open the models folder on the local disk (the only kind of store today)."""
        return cls(pafs.LocalFileSystem(), str(Path(models_dir).absolute()))

    @property
    def _local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def _folder(self, version: int) -> str:
        return _join(self.root, str(int(version)))

    # -- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def stage(self) -> Iterator[Staged]:
        """Yield a new version's temporary folder; it is removed unless published meanwhile."""
        if self._local:
            with atomic.staging(Path(self.root), INCOMING) as folder:
                yield Staged(self, str(folder))
            return
        self.fs.create_dir(self.root, recursive=True)
        tmp = _join(self.root, atomic.temporary_for(Path(INCOMING)).name)
        self.fs.create_dir(tmp)
        try:
            yield Staged(self, tmp)
        finally:
            if self.fs.get_file_info(tmp).type == pafs.FileType.Directory:
                self.fs.delete_dir(tmp)

    def publish(self, staged: Staged, version: int) -> None:
        """Move a staged folder into place as ``version``, replacing an unindexed leftover.

        A folder already named ``version`` was left by a crash between its rename and the index
        commit, so it was never served: it goes first.
        """
        final = self._folder(version)
        if self.fs.get_file_info(final).type != pafs.FileType.NotFound:
            self.fs.delete_dir(final)
        if self._local:
            atomic.publish_folder(Path(staged.path), Path(final))
        else:
            self._copy_folder(staged.path, final)

    def _copy_folder(self, source: str, dest: str) -> None:
        """Publish a staged folder on an object store: copy each file, then drop the staging.

        An object store moves objects, not folders; each file is one atomic PUT, and a version
        is served only once the index names it (after this returns), so a reader never finds a
        version with a file missing.
        """
        selector = pafs.FileSelector(source, recursive=True)
        self.fs.create_dir(dest, recursive=True)
        for entry in self.fs.get_file_info(selector):
            if entry.type == pafs.FileType.File:
                self.fs.copy_file(entry.path, _join(dest, entry.path[len(source) + 1 :]))
        self.fs.delete_dir(source)

    def add(self, version: int, name: str, data: bytes) -> bool:
        """Add a file to a published version unless it has one; False when it already had it."""
        path = _join(self._folder(version), _checked(name))
        if self._local:
            try:
                atomic.write_bytes(Path(path), data, replace=False)
            except FileExistsError:
                return False
            return True
        if self.fs.get_file_info(path).type != pafs.FileType.NotFound:
            return False
        with self.fs.open_output_stream(path) as sink:
            sink.write(data)
        return True

    def delete(self, version: int) -> None:
        """Remove a version's folder (a failed registration's); one already gone is no error."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_dir(self._folder(version))

    def clean_incoming(self) -> list[str]:
        """Remove versions a crash left half-staged (ours and an older release's); name them."""
        removed = []
        for entry in self._entries():
            name = entry.base_name
            if entry.type == pafs.FileType.Directory and (
                atomic.is_temporary(name) or name.startswith(OLD_INCOMING)
            ):
                with contextlib.suppress(OSError):
                    self.fs.delete_dir(entry.path)
                    removed.append(name)
        return sorted(removed)

    # -- reading -------------------------------------------------------------------------

    def read_bytes(self, version: int, name: str) -> bytes:
        """Read one file of a version; FileNotFoundError when it has none."""
        with self.fs.open_input_stream(_join(self._folder(version), _checked(name))) as source:
            return bytes(source.read())

    def read_json(self, version: int, name: str) -> Any:
        """Read one JSON file of a version; FileNotFoundError or ValueError when unreadable."""
        return json.loads(self.read_bytes(version, name).decode("utf-8"))

    def open(self, version: int, name: str) -> pafs.NativeFile:
        """Open one file of a version for reading, seekable (a skops file is a zip)."""
        return self.fs.open_input_file(_join(self._folder(version), _checked(name)))

    def has(self, version: int, name: str) -> bool:
        """Tell whether a version holds a file of this name."""
        path = _join(self._folder(version), _checked(name))
        return bool(self.fs.get_file_info(path).type == pafs.FileType.File)

    def versions(self) -> list[int]:
        """List the published versions' numbers, oldest first (indexed or not)."""
        return sorted(
            int(e.base_name)
            for e in self._entries()
            if e.type == pafs.FileType.Directory and e.base_name.isdigit()
        )

    def _entries(self) -> list[pafs.FileInfo]:
        """List the root's entries; a missing root holds nothing."""
        selector = pafs.FileSelector(self.root, allow_not_found=True)
        return list(self.fs.get_file_info(selector))


def json_bytes(body: dict[str, Any]) -> bytes:
    """Encode an artifact's JSON as the registry always has: indented, numpy scalars as numbers."""
    return json.dumps(body, indent=2, default=_jsonable).encode("utf-8")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _checked(name: str) -> str:
    """Refuse anything but a plain file name: artifact names are ours, never a client's path."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"not an artifact file name: {name!r}")
    return name


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name
