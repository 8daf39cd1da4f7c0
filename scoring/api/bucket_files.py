"""A drop's stored files in the bucket, for downloads and retries under ``[storage] url``.

With ``[storage] url`` set, originals (``archive/``, ``quarantine/``) and scored outputs
(``outbox/``) live only in the bucket, under the same layout-relative key as the ledger's local
path. These are the few object operations the file routes need, so ``scoring.api.files`` keeps
its local-disk logic and asks here only when the local file is not there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.fs as pafs

from ingest.lake.remote import StorageRoot
from scoring.storage import storage_root

if TYPE_CHECKING:
    import pyarrow as pa

    from scoring.settings import Settings


@dataclass(frozen=True)
class BucketFile:
    """One object under the storage root."""

    root: StorageRoot
    path: str  # bucket/prefix/key, as the root's filesystem names it

    def open(self) -> pa.NativeFile:
        """Open the object for reading (streamed: never held whole in memory)."""
        return self.root.fs.open_input_file(self.path)

    def copy_to(self, relative: str) -> BucketFile:
        """Copy the object to a layout-relative key, server-side and whole; return the copy."""
        dest = BucketFile(self.root, self.root.join(relative))
        self.root.fs.copy_file(self.path, dest.path)
        return dest

    def beside(self, suffix: str) -> BucketFile:
        """Name the object whose key is this one's plus ``suffix`` (a ready marker)."""
        return BucketFile(self.root, self.path + suffix)

    def write_empty(self) -> None:
        """Write this object with no content (a ready marker)."""
        with self.root.fs.open_output_stream(self.path):
            pass


def in_bucket(settings: Settings, local: Path) -> BucketFile | None:
    """Find the object a ledger path names under ``[storage] url``; None when it is not there
    (or the path is not in the layout, which no key can name)."""
    try:
        relative = settings.layout.key(local)
    except ValueError:
        return None
    root = storage_root(settings)
    found = BucketFile(root, root.join(relative))
    if root.fs.get_file_info(found.path).type != pafs.FileType.File:
        return None
    return found
