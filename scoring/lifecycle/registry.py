"""The model registry: one folder per version under ``models/``, an index in ``state.db``.

A version's folder holds ``model.skops`` and ``card.json`` (and ``fold.json``, the plain-number
form of a linear model, which lets it be served before or without loading scikit-learn) and never
changes once written: it is built under a temporary name and renamed into place by the artifact
store (``scoring.lifecycle.artifacts``, the one place the folders are written, read and removed).
(A version registered before folds were stored gets its ``fold.json`` on its first load,
atomically.)
Which version is champion lives only in the index (``index_protocol.ModelIndex``: the
``models`` table of the state database), so a promotion is one transaction — every process
sees the old or the new champion, never a mix. Model files load only from this folder and only
with the explicit list of trusted types below, so a tampered file cannot run code.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from ingest.state.db import StateDB
from scoring.errors import ModelFileError, NotFound
from scoring.lifecycle.artifacts import ArtifactStore, json_bytes
from scoring.lifecycle.index_protocol import ModelIndex, ModelRecord
from scoring.lifecycle.models_table import ModelsTable

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

def now() -> str:
    """Return the current UTC time as the ISO 8601 text the registry stores."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Registry:
    """Versions on disk plus their index; safe to use from many processes at once."""

    def __init__(
        self, models_dir: Path, db: StateDB, artifacts: ArtifactStore | None = None
    ) -> None:
        self.models_dir = models_dir
        # the versions' files: the local models folder, or the store [storage] url names
        self.artifacts = artifacts or ArtifactStore.local(models_dir)
        self.index: ModelIndex = ModelsTable(db)  # their status, and which one is champion

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
            with self.index.reserve() as slot:
                version = slot.version
                card = {**card, "version": str(version)}
                staged.write_json(CARD_FILE, card)
                if holdout is not None:
                    staged.write_json(HOLDOUT_FILE, holdout)
                if fold is not None:
                    staged.write_json(FOLD_FILE, fold)
                self.artifacts.publish(staged, version)  # replaces a crash's unindexed leftover
                slot.add(
                    status=status,
                    created_at=card.get("created_at", now()),
                    estimator=card.get("estimator"),
                    task=card.get("schema", {}).get("task"),
                    metrics=card.get("metrics", {}),
                )
        return version

    def promote(self, version: int, reason: str = "promoted", by: str | None = None) -> ModelRecord:
        """Make ``version`` the champion in one transaction, recording who; archive the old one."""
        if not self.index.promote(version, at=now(), reason=reason, by=by):
            raise NotFound(f"model version {version} does not exist")
        log.info("promoted", extra={"version": version, "by": by, "reason": reason})
        return self.get(version)

    def set_status(self, version: int, status: str, reason: str) -> None:
        """Mark a version challenger or rejected (never champion: that is ``promote``)."""
        if status not in ("challenger", "rejected", "archived"):
            raise ValueError(f"cannot set status {status!r} directly")
        self.index.set_status(version, status, reason)

    def clean_incoming(self) -> None:
        """Remove folders left by a crash mid-write; they were never indexed."""
        self.artifacts.clean_incoming()

    # -- reading ---------------------------------------------------------------------------

    def list(self) -> list[ModelRecord]:
        """Return every model version, oldest first."""
        return self.index.list()

    def get(self, version: int) -> ModelRecord:
        """Return one version's record, or raise NotFound (404)."""
        found = self.index.get(version)
        if found is None:
            raise NotFound(f"model version {version} does not exist")
        return found

    def champion_version(self) -> int | None:
        """Read the pointer: cheap enough to poll several times a second from every process."""
        return self.index.champion_version()

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
        except OSError as exc:  # a folder in its place, no permission: the same clear error
            raise ModelFileError(f"model file {MODEL_FILE} is unreadable: {exc}") from None
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

