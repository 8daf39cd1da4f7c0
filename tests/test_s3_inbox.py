"""Watched inboxes on an object store (a real moto_server): polling, claims, archive, quarantine.

The rule of when an object is taken is a pure function of listings and a clock (``Tracker``),
tested here with a clock the test sets; the rest runs against the session's S3 endpoint with
real intakes, ledgers and state databases.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from ingest.pipeline.bucket import BucketClaims, BucketWatcher, ObjectInfo, Tracker
from ingest.pipeline.intake import Intake
from ingest.state.db import StateDB
from ingest.state.ledger import NORMALIZED, QUARANTINED
from scoring.ingest_options import ingest_config
from scoring.models.factory import open_model
from scoring.storage import bucket_watcher
from tests._s3 import storage_settings
from tests.conftest import make_settings, wait_for

# -- the rule, with a clock the test sets ------------------------------------------------------


INBOX = "p/inbox/train"


def _obj(key: str, etag: str = "e1", size: int = 10) -> ObjectInfo:
    return ObjectInfo(f"{INBOX}/{key}", etag, size)


def test_an_object_is_taken_once_its_etag_and_size_held_still() -> None:
    tracker = Tracker(stable_seconds=2.0)
    assert tracker.observe(INBOX, [_obj("a.csv")], now=0.0) == []
    assert tracker.observe(INBOX, [_obj("a.csv")], now=1.0) == []
    assert tracker.observe(INBOX, [_obj("a.csv")], now=2.0) == [_obj("a.csv")]


def test_an_object_rewritten_while_watched_waits_again() -> None:
    tracker = Tracker(stable_seconds=2.0)
    tracker.observe(INBOX, [_obj("a.csv", "e1", 10)], now=0.0)
    assert tracker.observe(INBOX, [_obj("a.csv", "e2", 10)], now=1.9) == []  # same size, new ETag
    assert tracker.observe(INBOX, [_obj("a.csv", "e2", 10)], now=3.0) == []  # 1.1 s still, not 2
    assert tracker.observe(INBOX, [_obj("a.csv", "e2", 20)], now=3.9) == []  # grew
    assert tracker.observe(INBOX, [_obj("a.csv", "e2", 20)], now=5.9) == [_obj("a.csv", "e2", 20)]


def test_unfinished_names_and_markers_are_never_drops() -> None:
    tracker = Tracker(stable_seconds=0.0, marker=".done")
    listing = [_obj("a.csv.part"), _obj(".hidden"), _obj("b.csv.done"), _obj("c.csv")]
    tracker.observe(INBOX, listing, now=0.0)
    assert tracker.observe(INBOX, listing, now=1.0) == []  # c.csv waits for c.csv.done
    listing.append(_obj("c.csv.done"))
    assert tracker.observe(INBOX, listing, now=2.0) == [_obj("c.csv")]


def test_an_object_gone_from_its_inbox_is_forgotten_even_when_the_inbox_is_empty() -> None:
    tracker = Tracker(stable_seconds=5.0)
    tracker.observe(INBOX, [_obj("a.csv"), _obj("b.csv")], now=0.0)
    tracker.observe("p/inbox/score", [], now=1.0)  # another inbox's listing forgets nothing
    assert tracker.waiting() == 2
    tracker.observe(INBOX, [_obj("b.csv")], now=1.0)
    assert tracker.waiting() == 1
    tracker.observe(INBOX, [], now=2.0)  # another replica took b.csv: nothing left to wait on
    assert tracker.waiting() == 0


def test_a_version_whose_take_failed_waits_until_it_changes() -> None:
    tracker = Tracker(stable_seconds=0.0)
    tracker.observe(INBOX, [_obj("a.csv")], now=0.0)
    tracker.failed(_obj("a.csv"))
    assert tracker.observe(INBOX, [_obj("a.csv")], now=1.0) == []
    assert tracker.observe(INBOX, [_obj("a.csv")], now=2.0) == []
    tracker.observe(INBOX, [_obj("a.csv", "e2")], now=3.0)
    assert tracker.observe(INBOX, [_obj("a.csv", "e2")], now=4.0) == [_obj("a.csv", "e2")]


# -- against the session's S3 ------------------------------------------------------------------


class Replica:
    """One process's share of a bucket deployment: its own scratch data folder and ledger,
    the claims in the state database every replica shares."""

    def __init__(self, tmp: Path, storage: dict, claims_db: StateDB, **ingest) -> None:
        self.settings = make_settings(
            tmp, storage=storage, ingest={"stable_seconds": 0.2, "rescan_seconds": 0.2, **ingest}
        )
        self.model = open_model(self.settings)
        self.intake = Intake(ingest_config(self.settings), self.model.ledger)
        watcher = bucket_watcher(self.settings, [self.intake], claims_db)
        assert watcher is not None
        self.watcher: BucketWatcher = watcher

    def records(self) -> list:
        return self.model.ledger.list(limit=None)


def _put(replica: Replica, relative: str, body: bytes) -> str:
    key = replica.watcher.key(relative)
    replica.watcher.bucket.client.put_object(Bucket=replica.watcher.bucket.name, Key=key, Body=body)
    return key


def _keys(replica: Replica, relative: str) -> list[str]:
    prefix = replica.watcher.key(relative)
    return sorted(o.name for o in replica.watcher.bucket.list(prefix))


def _get(replica: Replica, relative: str) -> bytes:
    bucket = replica.watcher.bucket
    body = bucket.client.get_object(Bucket=bucket.name, Key=replica.watcher.key(relative))["Body"]
    return bytes(body.read())


def _csv(i: int) -> bytes:
    return f"x,y\n{i},{i * 2}\n{i + 1},{i * 3}\n".encode()


@pytest.fixture
def storage(s3, monkeypatch: pytest.MonkeyPatch) -> dict:
    return storage_settings(s3, monkeypatch, "inbox")


def test_two_replicas_polling_one_bucket_take_each_of_50_drops_exactly_once(
    tmp_path: Path, storage: dict
) -> None:
    claims_db = StateDB.at(tmp_path / "shared" / "state.db")  # what [state] url shares
    one = Replica(tmp_path / "one", storage, claims_db)
    two = Replica(tmp_path / "two", storage, claims_db)
    for i in range(50):
        _put(one, f"inbox/score/drop-{i:02d}.csv", _csv(i))
    stop = threading.Event()

    def poll(replica: Replica) -> None:
        while not stop.is_set():
            replica.watcher.poll()

    threads = [threading.Thread(target=poll, args=(r,)) for r in (one, two)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: not _keys(one, "inbox/score"), 180, 0.2, "the inbox to empty")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    records = one.records() + two.records()
    names = sorted(r.original_name for r in records)
    assert names == [f"drop-{i:02d}.csv" for i in range(50)]  # each once, across both
    assert {r.state for r in records} == {NORMALIZED}
    claims = BucketClaims(claims_db).rows()
    assert len(claims) == 50 and all(c["state"] == NORMALIZED for c in claims)
    archived = _keys(one, "archive")
    assert len(archived) == 50
    assert sorted(a.split("__", 1)[1] for a in archived) == names
    for scratch in (tmp_path / "one" / "data", tmp_path / "two" / "data"):
        assert not list((scratch / "archive").iterdir())  # local copies are scratch only


def test_an_object_rewritten_after_its_claim_waits_and_its_last_version_is_taken(
    tmp_path: Path, storage: dict
) -> None:
    replica = Replica(tmp_path, storage, StateDB.at(tmp_path / "shared.db"))
    key = _put(replica, "inbox/score/growing.csv", _csv(1))
    first = next(o for o in replica.watcher.bucket.list(replica.watcher.key("inbox/score")))
    assert first.key == key
    _put(replica, "inbox/score/growing.csv", _csv(1) + b"7,8\n")  # written again: new ETag
    inbox = next(i for i in replica.watcher.inboxes if i.kind == "score")
    assert replica.watcher.take(inbox, first) is None  # If-Match refuses the stale version
    assert _keys(replica, "inbox/score") == ["growing.csv"] and not replica.records()
    wait_for(lambda: replica.watcher.poll(), 60, 0.1, "the rewritten object to be taken")
    [record] = replica.records()
    assert record.sha256 == hashlib.sha256(_csv(1) + b"7,8\n").hexdigest()
    assert record.rows == 3


def test_a_bad_drop_is_quarantined_under_the_prefix_with_its_reason(
    tmp_path: Path, storage: dict
) -> None:
    replica = Replica(tmp_path, storage, StateDB.at(tmp_path / "shared.db"))
    _put(replica, "inbox/train/broken.csv", b"a,b\n1,2,3,4\n")
    wait_for(lambda: replica.watcher.poll(), 60, 0.1, "the bad drop to be taken")
    [record] = replica.records()
    assert record.state == QUARANTINED
    filed = f"{record.id}__broken.csv"
    assert _keys(replica, "quarantine") == [filed, filed + ".error.json"]
    assert _keys(replica, "inbox/train") == []
    reason = json.loads(_get(replica, f"quarantine/{filed}.error.json"))
    assert reason["code"] == record.error["code"] and reason["file"] == "broken.csv"
    assert reason["what_to_do"] and reason["message"]
    assert _get(replica, f"quarantine/{filed}") == b"a,b\n1,2,3,4\n"  # the original, untouched


def test_ready_marker_works_as_on_disk(tmp_path: Path, storage: dict) -> None:
    replica = Replica(tmp_path, storage, StateDB.at(tmp_path / "shared.db"), ready_marker=".done")
    _put(replica, "inbox/score/sales.csv", _csv(3))
    for _ in range(3):  # held still, but no marker: never taken
        assert replica.watcher.poll() == []
    _put(replica, "inbox/score/sales.csv.done", b"")
    wait_for(lambda: replica.watcher.poll(), 60, 0.1, "the marked drop to be taken")
    [record] = replica.records()
    assert _keys(replica, "archive") == [f"{record.id}__sales.csv", f"{record.id}__sales.csv.done"]
    assert _keys(replica, "inbox/score") == []


def test_a_claim_whose_holder_died_is_taken_over_once_its_lease_expires(
    tmp_path: Path, storage: dict
) -> None:
    claims_db = StateDB.at(tmp_path / "shared.db")
    dead = Replica(tmp_path / "dead", storage, claims_db)
    alive = Replica(tmp_path / "alive", storage, claims_db)
    alive.watcher.claims = BucketClaims(claims_db, lease_seconds=1.0)
    key = _put(dead, "inbox/score/stranded.csv", _csv(5))
    [obj] = dead.watcher.bucket.list(dead.watcher.key("inbox/score"))
    assert dead.watcher.claims.claim(obj.key, obj.etag, obj.size, dead.watcher.who)
    # ...and the process dies before it downloads: nobody renews the lease
    assert not alive.watcher.claims.claim(obj.key, obj.etag, obj.size, "someone else")
    wait_for(lambda: alive.watcher.poll(), 60, 0.1, "the stranded drop to be taken over")
    [record] = alive.records()
    assert record.original_name == "stranded.csv" and not dead.records()
    [claim] = BucketClaims(claims_db).rows()
    assert (claim["key"], claim["claimed_by"]) == (key, alive.watcher.who)
    assert claim["state"] == NORMALIZED
    assert _keys(alive, "inbox/score") == []


def test_only_the_holder_renews_its_lease_and_a_finished_claim_is_never_taken_over(
    tmp_path: Path,
) -> None:
    claims = BucketClaims(StateDB.at(tmp_path / "shared.db"), lease_seconds=0.0)
    assert claims.claim("k", "e", 1, "holder")
    [before] = claims.rows()
    claims.renew("k", "e", "other")
    assert claims.rows() == [before]  # someone else's renewal changes nothing
    claims.renew("k", "e", "holder")
    [after] = claims.rows()
    assert after["claimed_at"] > before["claimed_at"] and after["claimed_by"] == "holder"
    done = type("Done", (), {"id": 7, "state": NORMALIZED})()
    claims.finish("k", "e", done)
    assert not claims.claim("k", "e", 1, "other")  # a lease of 0 s, but the claim is finished


def test_a_reload_adds_and_removes_a_models_bucket_inboxes(tmp_path: Path, storage: dict) -> None:
    replica = Replica(tmp_path, storage, StateDB.at(tmp_path / "shared.db"))
    replica.watcher.remove("default")
    _put(replica, "inbox/score/later.csv", _csv(9))
    for _ in range(3):
        assert replica.watcher.poll() == []  # not polled: its model is not served
    replica.watcher.add(replica.intake)
    wait_for(lambda: replica.watcher.poll(), 60, 0.1, "the drop of the model added back")
    assert [r.original_name for r in replica.records()] == ["later.csv"]


def test_a_drop_the_model_cannot_use_is_quarantined_in_the_bucket_not_archived(
    tmp_path: Path, storage: dict
) -> None:
    """The training-drop check rejects a drop inside its take (no target column): the original
    goes where the row says by then, the bucket's quarantine/."""
    from scoring.lifecycle.contract import train_drop_check

    replica = Replica(tmp_path, storage, StateDB.at(tmp_path / "shared.db"))
    intake = replica.intake
    intake.on_normalized = train_drop_check(replica.settings, intake, replica.model.registry)
    _put(replica, "inbox/train/no-target.csv", b"x,y\n1,2\n3,4\n")
    wait_for(lambda: replica.watcher.poll(), 60, 0.1, "the drop to be taken")
    [record] = replica.records()
    assert record.state == QUARANTINED
    filed = f"{record.id}__no-target.csv"
    assert _keys(replica, "archive") == []
    assert _keys(replica, "quarantine") == [filed, filed + ".error.json"]
    assert "target" in json.loads(_get(replica, f"quarantine/{filed}.error.json"))["message"]


def test_a_drop_rejected_after_it_was_archived_moves_to_the_buckets_quarantine(
    tmp_path: Path, storage: dict
) -> None:
    """A score drop the sweep cannot score is rejected after its original was archived."""
    from ingest.base.errors import MalformedFileError

    replica = Replica(tmp_path, storage, StateDB.at(tmp_path / "shared.db"))
    _put(replica, "inbox/score/later-refused.csv", _csv(4))
    [record] = wait_for(lambda: replica.watcher.poll(), 60, 0.1, "the drop to be taken")
    filed = f"{record.id}__later-refused.csv"
    assert _keys(replica, "archive") == [filed]
    replica.intake.reject_normalized(record, MalformedFileError("the champion cannot score it"))
    assert _keys(replica, "archive") == []
    assert _keys(replica, "quarantine") == [filed, filed + ".error.json"]
    reason = json.loads(_get(replica, f"quarantine/{filed}.error.json"))
    assert reason["message"] == "the champion cannot score it"


def test_an_object_over_the_size_cap_is_quarantined_without_being_fetched(
    tmp_path: Path, storage: dict
) -> None:
    replica = Replica(tmp_path, storage, StateDB.at(tmp_path / "shared.db"), max_file_mb=0.001)
    fetched: list[str] = []
    download = replica.watcher.bucket.download
    replica.watcher.bucket.download = lambda obj, dest: (
        fetched.append(obj.key),
        download(obj, dest),
    )
    body = b"x,y\n" + b"1,2\n" * 600  # 2.4 KB, over the 1 KB cap
    _put(replica, "inbox/score/huge.csv", body)
    [record] = wait_for(lambda: replica.watcher.poll(), 60, 0.1, "the oversized drop")
    assert fetched == []  # refused from its listed size: never downloaded
    assert record.state == QUARANTINED and record.error["code"] == "file_too_large"
    filed = f"{record.id}__huge.csv"
    assert _keys(replica, "quarantine") == [filed, filed + ".error.json"]
    assert _get(replica, f"quarantine/{filed}") == body
