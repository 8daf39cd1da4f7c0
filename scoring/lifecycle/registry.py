"""The model registry: one folder per version under ``models/``, an index in ``state.db``.

A version's folder holds ``model.skops`` and ``card.json`` (and ``fold.json``, the plain-number
form of a linear model, which lets it be served before or without loading scikit-learn) and never
changes once written: it is built under a temporary name and renamed into place by the artifact
store (``scoring.lifecycle.artifacts``, the one place the folders are written, read and removed).
(A version registered before folds were stored gets its ``fold.json`` on its first load,
atomically.)
Which version is champion lives only in the index, so a promotion is one SQLite transaction —
every process sees the old or the new champion, never a mix. Model files load only from this
folder and only with the explicit list of trusted types below, so a tampered file cannot run
code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from ingest.state.sqlite import add_column, connect, transaction
from scoring.errors import ModelFileError, NotFound
from scoring.lifecycle.artifacts import ArtifactStore, json_bytes

log = logging.getLogger("dropscore.model")

MODEL_FILE = "model.skops"
CARD_FILE = "card.json"
HOLDOUT_FILE = "holdout.json"  # a bounded hold-out sample for the dashboard's plots
FOLD_FILE = "fold.json"  # a linear model's weights as plain numbers (predictor.Fold)
STATUSES = ("champion", "challenger", "archived", "rejected")

# Types skops does not trust by default that our pipelines legitimately hold. Anything else in a
# model file is refused before loading.
TRUSTED_TYPES = (
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    version     INTEGER PRIMARY KEY,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    promoted_at TEXT,
    promoted_by TEXT,
    reason      TEXT,
    estimator   TEXT,
    task        TEXT,
    metrics     TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_champion ON models(status) WHERE status = 'champion';
"""


@dataclass(frozen=True)
class ModelRecord:
    """One model version's row in the registry."""

    version: int
    status: str
    created_at: str
    promoted_at: str | None
    promoted_by: str | None  # the API key's name or the CLI's user; None when the rule promoted
    reason: str | None
    estimator: str | None
    task: str | None
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape the API shows; versions are text."""
        return {
            "version": str(self.version),
            "status": self.status,
            "created_at": self.created_at,
            "promoted_at": self.promoted_at,
            "promoted_by": self.promoted_by,
            "reason": self.reason,
            "estimator": self.estimator,
            "task": self.task,
            "metrics": self.metrics,
        }


def now() -> str:
    """Return the current UTC time as the ISO 8601 text the registry stores."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Registry:
    """Versions on disk plus their index; safe to use from many processes at once."""

    def __init__(self, models_dir: Path, db_path: Path) -> None:
        self.models_dir = models_dir
        self.db_path = db_path
        self.artifacts = ArtifactStore.local(models_dir)  # the versions' files
        # One connection per thread and process, opened on first use: a connection shared by
        # threads would mix their transactions, and one inherited across fork is unsafe.
        self._local = threading.local()

    def _db(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.conn = connect(self.db_path, check_same_thread=False)
            local.conn.executescript(_SCHEMA)
            add_column(local.conn, "models", "promoted_by", "TEXT")
            local.pid = os.getpid()
        return local.conn

    # -- writing ---------------------------------------------------------------------------

    def register(
        self,
        pipeline: Any,
        card: dict[str, Any],
        status: str = "challenger",
        *,
        holdout: dict[str, Any] | None = None,
    ) -> int:
        """Write a new version atomically and index it; return its version number."""
        fold = _fold_of(pipeline, card)
        with self.artifacts.stage() as staged:  # removed unless published
            import skops.io as sio  # not at module level: it imports all of scikit-learn

            staged.write_bytes(MODEL_FILE, sio.dumps(pipeline))
            conn = self._db()
            with transaction(conn):
                row = conn.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM models").fetchone()
                version = int(row[0])
                card = {**card, "version": str(version)}
                staged.write_json(CARD_FILE, card)
                if holdout is not None:
                    staged.write_json(HOLDOUT_FILE, holdout)
                if fold is not None:
                    staged.write_json(FOLD_FILE, fold)
                self.artifacts.publish(staged, version)  # replaces a crash's unindexed leftover
                conn.execute(
                    "INSERT INTO models (version, status, created_at, estimator, task, metrics)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        version,
                        status,
                        card.get("created_at", now()),
                        card.get("estimator"),
                        card.get("schema", {}).get("task"),
                        json.dumps(card.get("metrics", {})),
                    ),
                )
        return version

    def promote(self, version: int, reason: str = "promoted", by: str | None = None) -> ModelRecord:
        """Make ``version`` the champion in one transaction, recording who; archive the old one."""
        conn = self._db()
        with transaction(conn):
            if conn.execute("SELECT 1 FROM models WHERE version=?", (version,)).fetchone() is None:
                raise NotFound(f"model version {version} does not exist")
            conn.execute("UPDATE models SET status='archived' WHERE status='champion'")
            conn.execute(
                "UPDATE models SET status='champion', promoted_at=?, promoted_by=?, reason=?"
                " WHERE version=?",
                (now(), by, reason, version),
            )
        log.info("promoted", extra={"version": version, "by": by, "reason": reason})
        return self.get(version)

    def set_status(self, version: int, status: str, reason: str) -> None:
        """Mark a version challenger or rejected (never champion: that is ``promote``)."""
        if status not in ("challenger", "rejected", "archived"):
            raise ValueError(f"cannot set status {status!r} directly")
        self._db().execute(
            "UPDATE models SET status=?, reason=? WHERE version=? AND status != 'champion'",
            (status, reason, version),
        )

    def clean_incoming(self) -> None:
        """Remove folders left by a crash mid-write; they were never indexed."""
        self.artifacts.clean_incoming()

    # -- reading ---------------------------------------------------------------------------

    def list(self) -> list[ModelRecord]:
        """Return every model version, oldest first."""
        rows = self._db().execute("SELECT * FROM models ORDER BY version").fetchall()
        return [_record(r) for r in rows]

    def get(self, version: int) -> ModelRecord:
        """Return one version's record, or raise NotFound (404)."""
        row = self._db().execute("SELECT * FROM models WHERE version=?", (version,)).fetchone()
        if row is None:
            raise NotFound(f"model version {version} does not exist")
        return _record(row)

    def champion_version(self) -> int | None:
        """Read the pointer: cheap enough to poll several times a second from every process."""
        row = self._db().execute("SELECT version FROM models WHERE status='champion'").fetchone()
        return None if row is None else int(row[0])

    def card(self, version: int) -> dict[str, Any]:
        """Return a version's model card (schema, metrics, library versions)."""
        self.get(version)  # 404 for versions the index does not know
        try:
            return self.artifacts.read_json(version, CARD_FILE)
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"card of model version {version} is unreadable: {exc}") from None

    def holdout(self, version: int) -> dict[str, Any] | None:
        """Read a version's hold-out sample; None for versions trained before it was kept."""
        self.get(version)
        try:
            return self.artifacts.read_json(version, HOLDOUT_FILE)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ModelFileError(
                f"hold-out of model version {version} is unreadable: {exc}"
            ) from None

    def fold(self, version: int) -> dict[str, Any] | None:
        """Read a version's stored fold; None when it has none (not linear, or older)."""
        self.get(version)
        try:
            return self.artifacts.read_json(version, FOLD_FILE)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"fold of model version {version} is unreadable: {exc}") from None

    def add_fold(self, version: int, fold: dict[str, Any]) -> None:
        """Store the fold of a version registered without one, so its next load is fast."""
        self.get(version)
        if self.artifacts.has(version, FOLD_FILE):
            return
        # Readers see the whole file or none; a fold another process added first stays. A
        # read-only models folder: serve anyway, from the pipeline.
        with contextlib.suppress(OSError):
            self.artifacts.add(version, FOLD_FILE, json_bytes(fold))

    def load_pipeline(self, version: int) -> Any:
        """Load a version's pipeline, refusing any type outside TRUSTED_TYPES."""
        self.get(version)  # 404 for versions the index does not know
        try:
            source = self.artifacts.open(version, MODEL_FILE)
        except FileNotFoundError:
            raise ModelFileError(f"model file {MODEL_FILE} is missing") from None
        with source:
            return load_trusted_file(cast(BinaryIO, source), MODEL_FILE)


def load_trusted(path: Path) -> Any:
    """Load a skops file only when every type in it is one we chose to trust."""
    try:
        source = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise ModelFileError(f"model file {path.name} is missing") from None
    with source:
        return load_trusted_file(source, path.name)


def load_trusted_file(source: BinaryIO, name: str) -> Any:
    """Load a seekable skops file object only when every type in it is one we chose to trust."""
    import skops.io as sio  # not at module level, so reading the index stays cheap

    try:
        untrusted = sio.get_untrusted_types(file=cast(Any, source))
    except Exception as exc:  # a corrupt zip or schema: refuse, never crash the caller
        raise ModelFileError(f"model file {name} is not a valid skops file: {exc}") from None
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise ModelFileError(
            f"model file {name} holds types that are not trusted: {', '.join(refused)}",
            [{"type": t} for t in refused],
        )
    try:
        source.seek(0)
        return sio.load(source, trusted=list(untrusted))
    except Exception as exc:
        raise ModelFileError(f"model file {name} could not be loaded: {exc}") from None


def _fold_of(pipeline: Any, card: dict[str, Any]) -> dict[str, Any] | None:
    """Fold a linear pipeline into plain numbers, checked against it now; None when it is not."""
    from scoring.lifecycle.predictor import compile_linear  # numpy: only when registering
    from scoring.lifecycle.schema import FeatureSchema

    try:
        schema = FeatureSchema.from_dict(card["schema"])
    except (KeyError, TypeError, ValueError):
        return None
    fold = compile_linear(pipeline, schema, card.get("estimator", ""))
    return None if fold is None else fold.to_dict()


def _record(row: sqlite3.Row) -> ModelRecord:
    return ModelRecord(
        version=int(row["version"]),
        status=row["status"],
        created_at=row["created_at"],
        promoted_at=row["promoted_at"],
        promoted_by=row["promoted_by"],
        reason=row["reason"],
        estimator=row["estimator"],
        task=row["task"],
        metrics=json.loads(row["metrics"] or "{}"),
    )
