"""The storage root of a settings view: ``[storage]`` turned into a filesystem and a root path.

The one bridge between the settings loader and ``ingest.lake.remote`` (which knows nothing of
settings), so the factory, the CLI and the engines all open the same store the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ingest.lake.remote import StorageRoot, open_storage, open_uri

if TYPE_CHECKING:
    import pyarrow.fs as pafs

    from scoring.settings import Settings


def storage_root(settings: Settings, env: Mapping[str, str] | None = None) -> StorageRoot:
    """Open ``[storage]``: the bucket prefix it names, or the local data folder when empty."""
    storage = settings.storage
    return open_storage(
        storage.url,
        settings.data_dir,
        endpoint_url=storage.endpoint_url,
        region=storage.region,
        env=env,
    )


def open_location(
    settings: Settings, uri: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> tuple[pafs.FileSystem, str]:
    """Open one file's location (``s3://bucket/key`` or a local path) with ``[storage]``'s
    endpoint, region and credentials."""
    storage = settings.storage
    return open_uri(uri, endpoint_url=storage.endpoint_url, region=storage.region, env=env)
