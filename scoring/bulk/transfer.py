"""Local files for the scorers that need them: an object's scratch copy in, an upload out.

The one-process scorer (and Dask with the client reading) reads and writes local paths; a
``dropscore score s3://…`` or a batch job on the bucket gets a scratch copy of the input under
``data_dir/.scratch`` and writes its output there first, uploaded as one whole object when the
scoring succeeded (a failure uploads nothing). Local paths pass through untouched.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ingest.lake.remote import is_s3
from scoring.settings import Settings

SCRATCH = ".scratch"


@contextlib.contextmanager
def readable(settings: Settings, location: str) -> Iterator[Path]:
    """Give a local path to the input: itself on disk, a scratch copy of an object."""
    if not is_s3(location):
        yield Path(location)
        return
    import pyarrow.fs as pafs

    from scoring.storage import open_location

    fs, key = open_location(settings, location)
    with tempfile.TemporaryDirectory(prefix="dropscore-in-", dir=scratch(settings)) as tmp:
        local = Path(tmp) / Path(key).name
        pafs.copy_files(key, str(local), source_filesystem=fs)
        yield local


@contextlib.contextmanager
def writable(settings: Settings, location: str) -> Iterator[Path]:
    """Give a local path for the output: itself on disk, else a scratch file uploaded whole."""
    if not is_s3(location):
        path = Path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        yield path
        return
    import pyarrow.fs as pafs

    from scoring.storage import open_location

    fs, key = open_location(settings, location)
    with tempfile.TemporaryDirectory(prefix="dropscore-out-", dir=scratch(settings)) as tmp:
        local = Path(tmp) / Path(key).name
        yield local
        pafs.copy_files(str(local), key, destination_filesystem=fs)  # one whole object


def scratch(settings: Settings) -> Path:
    """Return the scratch folder in ``data_dir`` (made on first use)."""
    folder = settings.data_dir / SCRATCH
    folder.mkdir(parents=True, exist_ok=True)
    return folder
