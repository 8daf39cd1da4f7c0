"""Watched inboxes on an object store: listing is the truth, as NiFi's ListS3 "tracking entities".

A bucket has no file events a process can rely on, so every ``rescan_seconds`` each model's
``inbox/<kind>/`` prefix is listed. An object is taken once its (ETag, size) held still across
``stable_seconds`` (and, with ``ready_marker``, once its marker is listed beside it). The claim is
a state row keyed by (key, ETag), inserted only if absent (``BucketClaims``): however many
replicas poll one bucket, exactly one of them takes each version of each object.

The object store is a source and a sink, not a second pipeline: the claimed object is downloaded
(``If-Match`` its ETag, so exactly the version that held still) into local scratch and handed to
the same ``Intake.take`` a file dropped on disk goes through (readers, normalize, ledger, lake).
Once the ledger has its terminal row, the original is copied to the bucket's ``archive/`` or
``quarantine/`` (with its ``.error.json`` record) under its filed name, and deleted from the
inbox; the local copies are scratch and removed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import posixpath
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, Table, Text, select, update

from ingest.base.config import KINDS
from ingest.base.formats import is_unfinished_name
from ingest.base.logs import bound
from ingest.base.names import as_text
from ingest.lake.remote import (
    CONNECT_SECONDS,
    REQUEST_SECONDS,
    s3_credentials,
    s3_region,
    split_s3,
)
from ingest.pipeline.intake import Intake
from ingest.pipeline.quarantine import ERROR_SUFFIX, filed_name
from ingest.state.db import (
    WIDE_INTEGER,
    Migration,
    StateDB,
    add_column,
    create_tables,
    widen_integers,
)
from ingest.state.ledger import QUARANTINED, FileRecord

log = logging.getLogger("dropscore.ingest")

SCRATCH = ".bucket"  # under data_dir: downloads wait here until the intake claims them

STORE = "bucket_claims"
METADATA = MetaData()
CLAIMS = Table(
    STORE,
    METADATA,
    Column("key", Text, primary_key=True),  # the object's full key in the bucket
    Column("etag", Text, primary_key=True),  # the version that held still
    Column("size", WIDE_INTEGER, nullable=False),  # an object may be 2 GiB or more
    Column("claimed_by", Text, nullable=False),  # host/process/watcher, for a person reading it
    Column("claimed_at", Text, nullable=False),
    Column("file_id", Integer),  # the ledger row it became, once taken
    Column("state", Text),  # that row's terminal state, once the original was moved
    Column("holder", Text),  # the taking replica's ledger claim id (host:data folder)
)
MIGRATIONS = [
    Migration(1, "claims of bucket objects by key and ETag", create_tables(METADATA)),
    Migration(2, "sizes of 2 GiB and more", widen_integers(STORE, "size")),
    Migration(3, "the ledger claim id of the taking replica", add_column(STORE, "holder", "TEXT")),
]
# A claim not renewed this long, and never finished, was left by a process that died: another
# poller may take the drop over. The holder renews every quarter of it while its take runs.
LEASE_SECONDS = 120.0
NEW, TAKEN_OVER = "new", "taken over"  # how a claim was had (``BucketClaims.acquire``)


@dataclass(frozen=True)
class Claim:
    """A claim had: ``NEW``, or ``TAKEN_OVER`` from a holder whose lease ran out.

    A takeover names the replica that held it before (its ledger claim id, None when a release
    that did not record it claimed) and when its lease ended, so only the row that replica left
    for this object is given up (``Intake.abandon_stranded``).
    """

    how: str
    previous: str | None = None
    lease_ended: datetime | None = None


def _stamp(moment: datetime) -> str:
    """Write a time as fixed-width ISO text, so stored stamps compare as text in any database."""
    return moment.isoformat(timespec="microseconds")


class BucketClaims:
    """The claims of bucket objects, one row per (key, ETag), in a state database.

    Every replica polling the bucket must use the same database (``[state] url``): the row
    inserted only if absent is what makes one of them, and only one, take a drop. A claim is a
    lease: its holder renews it while the take runs (``renew``), and a claim not renewed for
    ``lease_seconds`` and never finished (its holder died) may be taken over by another poller,
    so a drop is never stranded in the inbox by a replica that went away.
    """

    def __init__(self, db: StateDB, lease_seconds: float = LEASE_SECONDS) -> None:
        self.db = db
        self.lease_seconds = lease_seconds
        db.migrate(STORE, MIGRATIONS)

    def claim(self, key: str, etag: str, size: int, by: str, holder: str | None = None) -> bool:
        """Claim one object version; True when this caller got it (new, or an expired lease)."""
        return self.acquire(key, etag, size, by, holder) is not None

    def acquire(
        self, key: str, etag: str, size: int, by: str, holder: str | None = None
    ) -> Claim | None:
        """Claim one object version for ``by`` (its replica's ledger claim id ``holder``): new,
        taken over (an expired lease: its holder died mid-take), or None when another holds it
        or it is finished."""
        now = _stamp(datetime.now(UTC))
        stmt = self.db.insert_if_absent(CLAIMS, ["key", "etag"]).values(
            key=key, etag=etag, size=size, claimed_by=by, claimed_at=now, holder=holder
        )
        expired = _stamp(datetime.now(UTC) - timedelta(seconds=self.lease_seconds))
        this = (CLAIMS.c.key == key, CLAIMS.c.etag == etag, CLAIMS.c.state.is_(None))
        stale = select(CLAIMS.c.holder, CLAIMS.c.claimed_at).where(
            *this, CLAIMS.c.claimed_at < expired
        )
        with self.db.write() as conn:
            if conn.execute(stmt).rowcount == 1:
                return Claim(NEW)
            before = conn.execute(stale).first()
            if before is None:
                return None
            takeover = (
                update(CLAIMS)
                .where(*this, CLAIMS.c.claimed_at == before.claimed_at)  # unless renewed since
                .values(claimed_by=by, claimed_at=now, holder=holder)
            )
            if conn.execute(takeover).rowcount != 1:
                return None
        log.warning("took over an expired claim", extra={"key": key, "etag": etag})
        renewed = datetime.fromisoformat(before.claimed_at)
        return Claim(TAKEN_OVER, before.holder, renewed + timedelta(seconds=self.lease_seconds))

    def renew(self, key: str, etag: str, by: str) -> None:
        """Extend this holder's lease on a claim it is still working on."""
        stmt = (
            update(CLAIMS)
            .where(CLAIMS.c.key == key, CLAIMS.c.etag == etag, CLAIMS.c.claimed_by == by)
            .where(CLAIMS.c.state.is_(None))
            .values(claimed_at=_stamp(datetime.now(UTC)))
        )
        with self.db.write() as conn:
            conn.execute(stmt)

    def finish(self, key: str, etag: str, record: FileRecord) -> None:
        """Note which ledger row a claimed object became and where it ended."""
        stmt = (
            update(CLAIMS)
            .where(CLAIMS.c.key == key, CLAIMS.c.etag == etag)
            .values(file_id=record.id, state=record.state)
        )
        with self.db.write() as conn:
            conn.execute(stmt)

    def rows(self) -> list[dict[str, Any]]:
        """Every claim, oldest first (for tests, benches and a person looking)."""
        with self.db.read() as conn:
            found = conn.execute(select(CLAIMS).order_by(CLAIMS.c.claimed_at)).mappings()
            return [dict(r) for r in found]


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: its key in the bucket, ETag and size."""

    key: str
    etag: str
    size: int

    @property
    def name(self) -> str:
        """The object's name in its inbox (the last part of its key)."""
        return posixpath.basename(self.key)


class ObjectChanged(Exception):
    """The object is no longer the version that was claimed (rewritten, or removed)."""


class Bucket:
    """One S3 bucket reached through boto3: listing with ETags, conditional reads and copies.

    ``pyarrow.fs`` carries no ETags and no conditional requests, which polling needs, so the
    polling source uses the S3 API itself, with the same endpoint, region and credentials.
    """

    def __init__(
        self,
        name: str,
        *,
        endpoint_url: str = "",
        region: str = "",
        env: Mapping[str, str] | None = None,
    ) -> None:
        import boto3  # Deferred: only a service whose [storage] url is a bucket needs it
        from botocore.config import Config

        keys = s3_credentials(env)
        self.name = name
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=s3_region(region, env),
            config=Config(
                connect_timeout=CONNECT_SECONDS,
                read_timeout=REQUEST_SECONDS,
                retries={"max_attempts": 5},
            ),
            **{_BOTO_KEYS[k]: v for k, v in keys.items()},
        )

    def list(self, prefix: str) -> list[ObjectInfo]:
        """List the objects directly under ``prefix/`` (not in deeper 'folders')."""
        found: list[ObjectInfo] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix.rstrip("/") + "/", Delimiter="/"
        )
        for page in pages:
            for item in page.get("Contents", []):
                if item["Key"].endswith("/"):
                    continue  # a console's "folder" placeholder, never a drop
                found.append(ObjectInfo(item["Key"], item["ETag"].strip('"'), int(item["Size"])))
        return found

    def download(self, obj: ObjectInfo, dest: Path) -> None:
        """Write exactly the claimed version to ``dest``; ObjectChanged when it is not there."""
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.name, Key=obj.key, IfMatch=obj.etag)["Body"]
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                raise ObjectChanged(obj.key) from None
            raise
        with body, open(dest, "xb") as out:
            shutil.copyfileobj(body, out, 1 << 20)

    def move(self, obj: ObjectInfo, dest_key: str) -> None:
        """Copy the claimed version to ``dest_key``, then delete it from its inbox."""
        self.client.copy_object(
            Bucket=self.name,
            Key=dest_key,
            CopySource={"Bucket": self.name, "Key": obj.key},
            CopySourceIfMatch=obj.etag,
        )
        self.client.delete_object(Bucket=self.name, Key=obj.key)

    def upload(self, path: Path, key: str) -> None:
        """Put a local file as one object: an S3 PUT is whole or nothing."""
        self.client.upload_file(str(path), self.name, key)

    def delete(self, key: str) -> None:
        """Remove an object; one already gone is no error (S3 says so itself)."""
        self.client.delete_object(Bucket=self.name, Key=key)


_BOTO_KEYS = {
    "access_key": "aws_access_key_id",
    "secret_key": "aws_secret_access_key",
    "session_token": "aws_session_token",
}


def _code(exc: Any) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


@dataclass
class _Seen:
    """An object's (ETag, size) and since when it has held them."""

    etag: str
    size: int
    since: float


@dataclass
class Tracker:
    """Which listed objects held their (ETag, size) still for ``stable_seconds``: plain state.

    Kept apart from the I/O so the rule is tested with a clock a test sets.
    """

    stable_seconds: float
    marker: str = ""
    _seen: dict[str, _Seen] = field(default_factory=dict)
    _failed: dict[str, str] = field(default_factory=dict)  # key -> ETag whose take raised

    def observe(self, prefix: str, listing: Iterable[ObjectInfo], now: float) -> list[ObjectInfo]:
        """Note one listing of the inbox ``prefix``; return the objects ready to be claimed now.

        An object of that inbox no longer listed (taken by another replica, removed by its
        producer) is forgotten, so nothing waits on it and memory does not grow.
        """
        listed = {o.key: o for o in listing}
        ready = []
        for key, obj in listed.items():
            if self.marker and (
                obj.name.endswith(self.marker) and len(obj.name) > len(self.marker)
            ):
                continue  # a marker is never a drop
            if is_unfinished_name(obj.name) or self._failed.get(key) == obj.etag:
                continue
            seen = self._seen.get(key)
            if seen is None or (seen.etag, seen.size) != (obj.etag, obj.size):
                self._seen[key] = _Seen(obj.etag, obj.size, now)
                continue
            if now - seen.since < self.stable_seconds:
                continue
            if self.marker and (key + self.marker) not in listed:
                continue  # waits for its marker
            ready.append(obj)
        inbox = prefix.rstrip("/")
        for known in (self._seen, self._failed):
            for key in [k for k in known if posixpath.dirname(k) == inbox and k not in listed]:
                del known[key]
        return ready

    def waiting(self) -> int:
        """Count the objects seen and not yet held still (or not yet marked ready)."""
        return len(self._seen)

    def forget(self, key: str) -> None:
        """Drop an object from tracking (taken, or another replica has it)."""
        self._seen.pop(key, None)

    def failed(self, obj: ObjectInfo) -> None:
        """Remember a version whose take raised, so it is not retried until it changes."""
        self._failed[obj.key] = obj.etag
        self._seen.pop(obj.key, None)


@dataclass(frozen=True)
class Inbox:
    """One inbox prefix of the bucket and the intake (model and kind) that takes its drops."""

    prefix: str  # the full key prefix in the bucket, no trailing slash
    intake: Intake
    kind: str


class BucketWatcher:
    """Polls every model's inbox prefixes and takes each stable object exactly once.

    ``storage_prefix`` is the ``[storage] url``'s prefix in the bucket; each intake's layout gives
    the inboxes' keys below it (``DataLayout.key``). One thread polls; ``poll`` runs one round
    (tests and the bucket-event endpoint call it directly).
    """

    def __init__(
        self,
        bucket: Bucket,
        storage_prefix: str,
        claims: BucketClaims,
        intakes: Iterable[Intake],
        *,
        stable_seconds: float,
        rescan_seconds: float,
        ready_marker: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bucket = bucket
        self.root = storage_prefix.strip("/")
        self.claims = claims
        self.rescan_seconds = rescan_seconds
        self.marker = ready_marker
        self.tracker = Tracker(stable_seconds, ready_marker)
        self.clock = clock
        self.who = f"{_host()}/{uuid.uuid4().hex[:8]}"
        self.inboxes = [inbox for i in intakes for inbox in self._inboxes_of(i)]
        self.taken = 0
        self.polls = 0
        self.last_poll: str | None = None  # when the inboxes were last listed, ISO-8601 UTC
        self._in_flight: ObjectInfo | None = None  # the claim whose lease the renewer extends
        self._lock = threading.Lock()  # one round at a time (the thread, an event, a test)
        self._stop = threading.Event()
        self._soon = threading.Event()
        self._thread: threading.Thread | None = None

    def _inboxes_of(self, intake: Intake) -> list[Inbox]:
        """One model's inbox prefixes in the bucket, each with the kind of its drops.

        The intake is told to report drops rejected after they were archived, so their
        originals move from the bucket's archive/ to its quarantine/ too.
        """
        intake.on_rejected = functools.partial(refile_rejected, self, intake)
        layout = intake.config.layout
        return [Inbox(self.key(layout.key(intake.config.inbox(k))), intake, k) for k in KINDS]

    def add(self, intake: Intake) -> None:
        """Poll one more model's inboxes (a reload found its section), from the next round."""
        with self._lock:
            self.inboxes = [*self.inboxes, *self._inboxes_of(intake)]
        self.poll_soon()

    def remove(self, model: str) -> None:
        """Stop polling one model's inboxes (its section was removed); a take under way ends."""
        with self._lock:
            self.inboxes = [i for i in self.inboxes if i.intake.model != model]

    def key(self, relative: str) -> str:
        """Return the full key of a layout-relative key under the storage prefix."""
        return f"{self.root}/{relative}" if self.root else relative

    # -- the thread --------------------------------------------------------------------------

    def start(self) -> None:
        """Start polling in a daemon thread; the first round runs at once."""
        self._thread = threading.Thread(target=self._run, name="dropscore-bucket", daemon=True)
        self._thread.start()
        renewer = threading.Thread(target=self._renew, name="dropscore-bucket-lease", daemon=True)
        renewer.start()
        log.info("bucket inboxes polled", extra={"inboxes": [i.prefix for i in self.inboxes]})

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop polling, let a take under way finish; True when the thread ended."""
        self._stop.set()
        self._soon.set()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def poll_soon(self) -> None:
        """Ask for a round now (a bucket event said something arrived): a hint, never the truth."""
        self._soon.set()

    def _run(self) -> None:
        tick = max(0.05, min(1.0, self.tracker.stable_seconds / 2))
        next_list = 0.0
        while not self._stop.is_set():
            try:
                # A listing every tick while objects wait to hold still; else every rescan.
                if self._soon.is_set() or self.clock() >= next_list or self.tracker.waiting():
                    self._soon.clear()
                    self.poll()
                    next_list = self.clock() + self.rescan_seconds
            except Exception:
                log.exception("bucket poll failed; the next round tries again")
            self._soon.wait(tick)

    def _renew(self) -> None:
        """Extend the lease of the claim being taken, every quarter lease, until stop."""
        while not self._stop.wait(self.claims.lease_seconds / 4):
            obj = self._in_flight
            if obj is not None:
                try:
                    self.claims.renew(obj.key, obj.etag, self.who)
                except Exception:
                    log.exception("could not renew a claim; the next quarter tries again")

    def status(self) -> dict[str, Any]:
        """Say what the poller is doing, for ``/health``."""
        alive = self._thread is not None and self._thread.is_alive()
        return {
            "alive": alive,
            "inboxes": [f"s3://{self.bucket.name}/{i.prefix}/" for i in self.inboxes],
            "waiting": self.tracker.waiting(),
            "taken": self.taken,
            "polls": self.polls,
            "last_poll": self.last_poll,
        }

    # -- one round ---------------------------------------------------------------------------

    def poll(self) -> list[FileRecord]:
        """List every inbox once and take each object that held still; return what was taken."""
        done = []
        with self._lock:
            for inbox in self.inboxes:
                if self._stop.is_set():
                    break
                try:
                    listing = self.bucket.list(inbox.prefix)
                except Exception as exc:
                    log.warning(
                        "cannot list inbox", extra={"inbox": inbox.prefix, "error": str(exc)}
                    )
                    continue
                for obj in self.tracker.observe(inbox.prefix, listing, self.clock()):
                    record = self.take(inbox, obj)
                    if record is not None:
                        done.append(record)
            self.polls += 1
            self.last_poll = datetime.now(UTC).isoformat()
        return done

    def take(self, inbox: Inbox, obj: ObjectInfo) -> FileRecord | None:
        """Claim one object version; if ours, download it, ingest it and move the original."""
        self.tracker.forget(obj.key)
        try:
            claim = self.claims.acquire(
                obj.key, obj.etag, obj.size, self.who, inbox.intake.ledger.holder
            )
        except Exception as exc:
            # The state database refused or is away: only this object waits (it is listed and
            # held still again, then claimed), never the round or the objects after it.
            log.warning("cannot claim; trying again", extra=_of(obj, error=as_text(str(exc))))
            return None
        if claim is None:
            return None  # another replica (or an earlier round) has this version
        self._in_flight = obj
        with bound(model=inbox.intake.model):
            try:
                return self._take_claimed(inbox, obj, claim)
            except ObjectChanged:
                log.info("changed or removed after it was claimed; waiting", extra=_of(obj))
                return None
            except Exception as exc:
                log.exception("could not take", extra=_of(obj, error=as_text(str(exc))))
                self.tracker.failed(obj)
                return None
            finally:
                self._in_flight = None

    def _take_claimed(self, inbox: Inbox, obj: ObjectInfo, claim: Claim) -> FileRecord:
        intake = inbox.intake
        refused = intake.refuse_oversized(obj.name, inbox.kind, obj.size)  # never downloaded
        if refused is not None:
            self._file_original(inbox, obj, refused)
            self.claims.finish(obj.key, obj.etag, refused)
            return refused
        scratch = intake.config.data_dir / SCRATCH / uuid.uuid4().hex
        scratch.mkdir(parents=True)
        try:
            local = scratch / obj.name
            self.bucket.download(obj, local)
            if claim.how == TAKEN_OVER:  # the dead holder's row would make this its duplicate
                intake.abandon_stranded(local, inbox.kind, claim.previous, claim.lease_ended)
            record = intake.take(local, inbox.kind)  # moves it out of scratch into processing/
            # A hook may have rejected it meanwhile (a training drop the model cannot use, a
            # score drop the champion cannot score): file the original where the row says now.
            record = intake.ledger.get(record.id) or record
            self._file_original(inbox, obj, record)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self.claims.finish(obj.key, obj.etag, record)
        self.taken += 1
        return record

    def _file_original(self, inbox: Inbox, obj: ObjectInfo, record: FileRecord) -> None:
        """Move the original (and its marker) where the ledger row says, in the bucket."""
        ledger, layout = inbox.intake.ledger, inbox.intake.config.layout
        stored = record.quarantine_path if record.state == QUARANTINED else record.archive_path
        # Every terminal row names one; were it missing, the original is archived, never lost.
        local = ledger.resolve(stored) or layout.archive / filed_name(record)
        dest = self.key(layout.key(local))
        if record.state == QUARANTINED:
            error_file = local.with_name(local.name + ERROR_SUFFIX)
            if error_file.exists():
                self.bucket.upload(error_file, dest + ERROR_SUFFIX)
                error_file.unlink()
        self.bucket.move(obj, dest)
        if self.marker:
            with contextlib.suppress(Exception):
                marker = ObjectInfo(obj.key + self.marker, "", 0)
                self.bucket.client.copy_object(
                    Bucket=self.bucket.name,
                    Key=dest + self.marker,
                    CopySource={"Bucket": self.bucket.name, "Key": marker.key},
                )
                self.bucket.delete(marker.key)
        local.unlink(missing_ok=True)  # the bucket holds the original now; local is scratch


def refile_rejected(watcher: BucketWatcher, intake: Intake, record: FileRecord) -> None:
    """Move a drop rejected after it was archived from the bucket's archive/ to quarantine/,
    with its error record (``Intake.on_rejected``); one not archived in the bucket is left."""
    layout, ledger = intake.config.layout, intake.ledger
    archived, quarantined = (
        ledger.resolve(record.archive_path),
        ledger.resolve(record.quarantine_path),
    )
    if archived is None or quarantined is None:
        return
    source = watcher.key(layout.key(archived))
    dest = watcher.key(layout.key(quarantined))
    found = [o for o in watcher.bucket.list(posixpath.dirname(source)) if o.key == source]
    if not found:
        return  # still in the inbox: the poller files it once the take returns
    error_file = quarantined.with_name(quarantined.name + ERROR_SUFFIX)
    if error_file.exists():
        watcher.bucket.upload(error_file, dest + ERROR_SUFFIX)
        error_file.unlink()
    watcher.bucket.move(found[0], dest)
    log.info("rejected drop moved to the bucket's quarantine", extra={"key": dest})


def bucket_of(url: str) -> tuple[str, str]:
    """Split a ``[storage] url`` into (bucket, prefix)."""
    return split_s3(url)


def _of(obj: ObjectInfo, **more: Any) -> dict[str, Any]:
    return {"key": obj.key, "etag": obj.etag, "size_bytes": obj.size, **more}


def _host() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"
