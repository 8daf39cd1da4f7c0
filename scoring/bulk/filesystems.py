"""How Dask workers reach files: ``[storage]``'s endpoint and region, and what they can reach.

A task carries a ``Store`` (endpoint and region, never credentials) so a worker opens an
``s3://`` location as every dropscore process does; ``workers_reach`` tells whether a location
is one every worker can open (an object, or this machine's disk for a cluster on this machine).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ingest.lake.remote import is_s3, open_uri

WORKER_SUFFIXES = (".parquet", ".csv")  # files the workers read themselves

if TYPE_CHECKING:
    import pyarrow.fs as pafs

    from scoring.settings import Settings


@dataclass(frozen=True)
class Store:
    """How a worker reaches ``s3://`` locations: ``[storage]``'s endpoint and region.

    Credentials never travel in a task: each worker takes them from its own ``AWS_*``
    environment, as every other dropscore process does.
    """

    endpoint_url: str = ""
    region: str = ""

    @classmethod
    def of(cls, settings: Settings) -> Store:
        """Take the endpoint and region of ``[storage]``."""
        return cls(settings.storage.endpoint_url, settings.storage.region)

    def open(self, uri: str) -> tuple[pafs.FileSystem, str]:
        """Open a local path or an ``s3://bucket/key`` as (filesystem, path)."""
        return open_uri(uri, endpoint_url=self.endpoint_url, region=self.region)

    def read_bytes(self, uri: str) -> bytes:
        """Read a whole (small) file: a model artifact."""
        fs, path = self.open(uri)
        with fs.open_input_stream(path) as fh:
            data: bytes = fh.read()
        return data


def workers_read(location: str, address: str) -> bool:
    """Tell whether the workers should read a file themselves rather than the client.

    Parquet (its row groups can be read from anywhere in the file) and CSV (cut into byte
    ranges of whole lines, ``scoring.bulk.csv_parts``; the client still reads one the workers
    cannot cut, ``ClientReads``). An ``s3://`` object every worker reaches; a local path only a
    cluster on this machine does (an empty address, a local cluster, or a scheduler on the
    loopback interface). Otherwise the client reads and scatters the batches
    (``scoring.bulk.engines.DaskEngine``).
    """
    return location.lower().endswith(WORKER_SUFFIXES) and workers_reach(location, address)


def workers_reach(location: str, address: str) -> bool:
    """Tell whether every worker can open a location: an object, or this machine's disk."""
    if is_s3(location):
        return True
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("", "127.0.0.1", "localhost", "::1")
