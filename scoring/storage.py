"""The storage root of a settings view: ``[storage]`` turned into a filesystem and a root path.

The one bridge between the settings loader and ``ingest.lake.remote`` (which knows nothing of
settings), so the factory, the CLI and the engines all open the same store the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.lake.remote import StorageRoot, open_storage, open_uri

if TYPE_CHECKING:
    import pyarrow.fs as pafs

    from ingest.lake.store import Lake
    from ingest.pipeline.bucket import BucketWatcher
    from ingest.pipeline.intake import Intake
    from ingest.state.db import StateDB
    from scoring.lifecycle.artifacts import ArtifactStore
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


def bucket_watcher(
    settings: Settings,
    intakes: Iterable[Intake],
    db: StateDB,
    env: Mapping[str, str] | None = None,
) -> BucketWatcher | None:
    """Build the poller of every model's bucket inboxes, or None when files are on the local disk.

    The claims live in ``db``, the state database every replica shares, so two replicas polling
    one bucket take each drop once.
    """
    storage = settings.storage
    if not storage.url:
        return None
    from ingest.pipeline.bucket import Bucket, BucketClaims, BucketWatcher, bucket_of

    name, prefix = bucket_of(storage.url)
    bucket = Bucket(name, endpoint_url=storage.endpoint_url, region=storage.region, env=env)
    return BucketWatcher(
        bucket,
        prefix,
        BucketClaims(db),
        intakes,
        stable_seconds=settings.ingest.stable_seconds,
        rescan_seconds=settings.ingest.rescan_seconds,
        ready_marker=settings.ingest.ready_marker,
    )


def upload(
    settings: Settings, local: Path, relative: str, env: Mapping[str, str] | None = None
) -> str:
    """Put a local file under ``[storage] url`` at a layout-relative key, as one object; return
    its ``s3://`` URI. A multipart upload that fails is aborted: never half an object."""
    from ingest.pipeline.bucket import Bucket, bucket_of

    storage = settings.storage
    name, prefix = bucket_of(storage.url)
    key = f"{prefix}/{relative}" if prefix else relative
    bucket = Bucket(name, endpoint_url=storage.endpoint_url, region=storage.region, env=env)
    bucket.upload(local, key)
    return f"s3://{name}/{key}"


def artifact_store(settings: Settings) -> ArtifactStore | None:
    """Open the model's versions under ``[storage] url``; None keeps the local models folder."""
    if not settings.storage.url:
        return None
    from scoring.lifecycle.artifacts import ArtifactStore

    root = storage_root(settings)
    return ArtifactStore(root.fs, root.join(settings.layout.key(settings.models_dir)))


def lake_store(settings: Settings, kind: str) -> Lake:
    """Open one kind's lake of a model: under ``[storage] url``, else the local lake folder."""
    from ingest.lake.store import Lake

    folder = settings.layout.lake(kind)
    if not settings.storage.url:
        return Lake.local(folder)
    root = storage_root(settings)
    return Lake(root.fs, root.join(settings.layout.key(folder)))


def prediction_log_store(settings: Settings) -> Lake:
    """Open a model's prediction log folder the way its lake is opened: under ``[storage] url``
    when set (every replica logs to one place), else the local folder."""
    from ingest.lake.store import Lake

    folder = settings.layout.prediction_log
    if not settings.storage.url:
        return Lake.local(folder)
    root = storage_root(settings)
    return Lake(root.fs, root.join(settings.layout.key(folder)))
