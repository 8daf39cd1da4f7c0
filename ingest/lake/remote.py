"""Where the files live: ``[storage] url`` (or an ``s3://bucket/key`` URI) as a ``pyarrow.fs``
filesystem and a root path on it.

Empty means the local data folder, as always. ``s3://bucket/prefix`` means an S3 bucket (AWS, or
any S3-compatible store at ``[storage] endpoint_url``: MinIO, Ceph, moto). Credentials come only
from the standard ``AWS_*`` environment variables (and, without them, the SDK's own chain:
instance roles, ``~/.aws``), never from the settings file, so a settings file can be shared and
committed. pyarrow ignores ``AWS_ENDPOINT_URL``, so the endpoint is passed explicitly; buckets
are never created (a missing bucket is an operator's mistake to report, not to paper over).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import pyarrow.fs as pafs

S3 = "s3"
DEFAULT_REGION = "us-east-1"
# S3 bucket names: 3-63 lower-case letters, digits, dots and hyphens (AWS's rule).
_BUCKET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
_CONNECT_SECONDS = 10.0
_REQUEST_SECONDS = 60.0


@dataclass(frozen=True)
class StorageRoot:
    """A filesystem and the root path on it under which the data layout lives."""

    fs: pafs.FileSystem
    root: str  # "bucket/prefix" on S3 (no trailing slash), an absolute folder on the local disk
    remote: bool  # True for an object store: files are reached through ``fs`` only

    def join(self, *parts: str) -> str:
        """Return the path of a relative key under the root (the layout's keys use '/')."""
        key = "/".join(p.strip("/") for p in parts if p.strip("/"))
        return f"{self.root}/{key}" if key else self.root

    def uri(self, *parts: str) -> str:
        """Name a key under the root as a person (and ``aws s3``) would: ``s3://bucket/key``."""
        path = self.join(*parts)
        return f"{S3}://{path}" if self.remote else path


def storage_url_problem(url: str) -> str | None:
    """Say in one line why a ``[storage] url`` cannot be used, or None when it can.

    Empty (the data folder) or ``s3://bucket`` with an optional prefix; nothing else.
    """
    if url == "":
        return None
    parts = urlsplit(url)
    if parts.scheme != S3:
        return "expected empty (the data folder) or s3://bucket/prefix"
    if parts.query or parts.fragment:
        return "expected s3://bucket/prefix without ?query or #fragment"
    bucket = parts.netloc
    if not 3 <= len(bucket) <= 63 or not set(bucket) <= _BUCKET_CHARS:
        return f"bucket {bucket!r}: expected 3-63 lower-case letters, digits, '.' or '-'"
    if any(seg in (".", "..") for seg in parts.path.split("/")):
        return "the prefix may not hold '.' or '..' segments"
    return None


def split_s3(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into (bucket, key); ValueError for anything else."""
    problem = storage_url_problem(uri) if uri else "expected s3://bucket/key"
    if problem:
        raise ValueError(f"{uri!r}: {problem}")
    parts = urlsplit(uri)
    return parts.netloc, parts.path.strip("/")


def is_s3(uri: str | os.PathLike[str]) -> bool:
    """Tell whether a location names an object in S3 rather than a local path."""
    return str(uri).startswith(f"{S3}://")


def s3_filesystem(
    endpoint_url: str = "", region: str = "", env: Mapping[str, str] | None = None
) -> pafs.S3FileSystem:
    """Open S3 (or an S3-compatible store at ``endpoint_url``) with credentials from ``AWS_*``.

    Access keys are read from the environment here rather than left to the SDK, so a test or a
    bench can hand a process its own environment; without them the SDK's default chain applies.
    """
    import pyarrow.fs as pafs  # Deferred: commands that never reach storage do not load pyarrow

    env = os.environ if env is None else env
    region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    options: dict[str, object] = {
        "region": region,
        "allow_bucket_creation": False,
        "allow_bucket_deletion": False,
        "connect_timeout": _CONNECT_SECONDS,
        "request_timeout": _REQUEST_SECONDS,
    }
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        options["access_key"] = env["AWS_ACCESS_KEY_ID"]
        options["secret_key"] = env["AWS_SECRET_ACCESS_KEY"]
        if env.get("AWS_SESSION_TOKEN"):
            options["session_token"] = env["AWS_SESSION_TOKEN"]
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        if parts.scheme in ("http", "https"):
            options["scheme"] = parts.scheme
            options["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
        else:
            options["endpoint_override"] = endpoint_url
    return pafs.S3FileSystem(**options)


def open_storage(
    url: str,
    data_dir: Path,
    *,
    endpoint_url: str = "",
    region: str = "",
    env: Mapping[str, str] | None = None,
) -> StorageRoot:
    """Turn ``[storage]`` (url, endpoint_url, region) into a filesystem and a root path.

    An empty url is the local ``data_dir``; ``s3://bucket/prefix`` is that prefix of the bucket.
    """
    if not url:
        import pyarrow.fs as pafs  # Deferred, as above

        return StorageRoot(pafs.LocalFileSystem(), str(Path(data_dir).absolute()), remote=False)
    bucket, prefix = split_s3(url)
    fs = s3_filesystem(endpoint_url, region, env)
    return StorageRoot(fs, f"{bucket}/{prefix}" if prefix else bucket, remote=True)


def open_uri(
    uri: str | os.PathLike[str],
    *,
    endpoint_url: str = "",
    region: str = "",
    env: Mapping[str, str] | None = None,
) -> tuple[pafs.FileSystem, str]:
    """Open one file's location (``s3://bucket/key`` or a local path) as (filesystem, path).

    For ``dropscore score s3://…/in.parquet -o s3://…/out.parquet`` and batch jobs: the same
    endpoint, region and credentials as the storage root.
    """
    if not is_s3(uri):
        import pyarrow.fs as pafs  # Deferred, as above

        return pafs.LocalFileSystem(), str(Path(uri).absolute())
    bucket, key = split_s3(str(uri))
    if not key:
        raise ValueError(f"{uri!r}: expected s3://bucket/key, naming an object")
    return s3_filesystem(endpoint_url, region, env), f"{bucket}/{key}"
