"""The data folder, described once: every path below ``[paths] data_dir``, per model.

The model ``default`` keeps the layout the product has always had, directly under the data
folder. Any other model gets the same folders under ``<data_dir>/<name>/``, with its own
``state.db`` (its ledger, registry index and runs), so one model's files and versions can never
reach another's. The top ``state.db`` (the API keys, the audit trail, the scheduler's jobs) and
the ``worker.lock`` are shared, because one worker serves every model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

KINDS = ("train", "score")
DEFAULT_MODEL = "default"
DB_FILE = "state.db"
WORKER_LOCK_FILE = "worker.lock"
RETRAIN_LOCK_FILE = "retrain.lock"
TRAINER_LOCK_FILE = "trainer.lock"
TRAINER_SCRATCH = ".trainer"  # a dot name: no model name (it starts with a letter) can take it
# A model name becomes a folder name and a URL segment: one plain path segment, starting with a
# letter so it never reads as a version number (/models/3 is a version, /models/churn a model).
MODEL_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
# Names a model cannot take: the default model's own top-level folders (a named model's folder
# sits beside them), the bundled sample folder, and "current" (GET /models/current is the
# default model's champion, so a model of that name could never be shown at GET /models/<name>).
RESERVED_NAMES = frozenset(
    {"inbox", "lake", "processing", "archive", "quarantine", "outbox", "models", "sample"}
    | {"current"}
)


def model_name_problem(name: object) -> str | None:
    """Say in one line why ``name`` cannot name a model, or None when it can.

    The one check of a model's name: settings, ``dropscore init`` and the layout all ask it.
    """
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):  # `$` lets 'a\n' through
        return (
            f"model name {name!r}: expected lower-case letters, digits, '_' or '-', starting"
            " with a letter (at most 64)"
        )
    if name in RESERVED_NAMES:
        return f"model name {name!r} is reserved (a data folder or URL word); choose another"
    return None


@dataclass(frozen=True)
class DataLayout:
    """Where each part of one model's data lives under the data folder."""

    root: Path
    model: str = DEFAULT_MODEL

    def __post_init__(self) -> None:
        problem = model_name_problem(self.model)
        if problem:
            raise ValueError(problem)
        object.__setattr__(self, "root", Path(self.root))

    @property
    def base(self) -> Path:
        """The folder holding this model's inboxes, lake, outbox and registry."""
        return self.root if self.model == DEFAULT_MODEL else self.root / self.model

    @property
    def db_path(self) -> Path:
        """This model's SQLite file: its ledger, model index and runs."""
        return self.base / DB_FILE

    @property
    def shared_db_path(self) -> Path:
        """The SQLite file every model shares: API keys, audit trail, the scheduler's jobs."""
        return self.root / DB_FILE

    @property
    def worker_lock(self) -> Path:
        """The lock that keeps one watcher and scheduler per data folder."""
        return self.root / WORKER_LOCK_FILE

    @property
    def trainer_lock(self) -> Path:
        """The lock that lets one trainer process run at a time, whichever model it trains."""
        return self.root / TRAINER_LOCK_FILE

    @property
    def trainer_scratch(self) -> Path:
        """Where trainer processes keep their job files and temporary files, on the data disk."""
        return self.root / TRAINER_SCRATCH

    @property
    def retrain_lock(self) -> Path:
        """The lock that keeps one retrain at a time per model."""
        return self.base / RETRAIN_LOCK_FILE

    def inbox(self, kind: str) -> Path:
        """The folder producers drop files of this kind into."""
        return self.base / "inbox" / _kind(kind)

    def lake(self, kind: str) -> Path:
        """The folder of normalized Parquet files of this kind."""
        return self.base / "lake" / _kind(kind)

    @property
    def prediction_log(self) -> Path:
        """The prediction log's Parquet parts: sampled live requests and their answers."""
        return self.base / "lake" / "predictions"

    @property
    def processing(self) -> Path:
        """A drop claimed for ingest waits here, out of the inbox, until it is done."""
        return self.base / "processing"

    @property
    def retry_lock(self) -> Path:
        """The lock that lets one retry of this model's drops run at a time, across processes."""
        return self.processing / ".retry.lock"

    @property
    def archive(self) -> Path:
        """Every original after it was ingested, kept untouched."""
        return self.base / "archive"

    @property
    def quarantine(self) -> Path:
        """Every rejected original, with the reason beside it."""
        return self.base / "quarantine"

    @property
    def outbox(self) -> Path:
        """Scored results, one file per score drop."""
        return self.base / "outbox"

    @property
    def models(self) -> Path:
        """The registry: one folder per model version."""
        return self.base / "models"

    def key(self, path: Path) -> str:
        """Return a layout path as a key relative to the root, with '/' (``inbox/train/a.csv``).

        The same relative key names the file under the local data folder and under an object
        store's prefix (``[storage] url``): the layout is described once, for both roots.
        """
        return Path(path).relative_to(self.root).as_posix()

    def folders(self) -> list[Path]:
        """Every folder of the layout, in the order make_dirs creates them."""
        per_kind = [f(kind) for kind in KINDS for f in (self.inbox, self.lake)]
        return [*per_kind, self.processing, self.archive, self.quarantine, self.outbox, self.models]

    def make_dirs(self) -> None:
        """Create every folder of the layout; safe to call on every start."""
        for folder in self.folders():
            folder.mkdir(parents=True, exist_ok=True)


def _kind(kind: str) -> str:
    """Refuse a kind that is not one of KINDS, so it can never become a stray path."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    return kind
