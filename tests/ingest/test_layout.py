"""The data folder's layout: today's paths for the default model, a folder per named model."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.base.config import IngestConfig
from ingest.base.layout import DataLayout

DEFAULT_PATHS = [
    ("db_path", "state.db"),
    ("worker_lock", "worker.lock"),
    ("retrain_lock", "retrain.lock"),
    ("processing", "processing"),
    ("archive", "archive"),
    ("quarantine", "quarantine"),
    ("outbox", "outbox"),
    ("models", "models"),
]


@pytest.mark.parametrize(("attribute", "relative"), DEFAULT_PATHS)
def test_the_default_model_keeps_todays_layout(tmp_path: Path, attribute: str, relative: str):
    assert getattr(DataLayout(tmp_path), attribute) == tmp_path / relative


@pytest.mark.parametrize("kind", ["train", "score"])
def test_the_default_models_inbox_and_lake(tmp_path: Path, kind: str):
    layout = DataLayout(tmp_path)
    assert layout.inbox(kind) == tmp_path / "inbox" / kind
    assert layout.lake(kind) == tmp_path / "lake" / kind


@pytest.mark.parametrize(
    ("attribute", "relative"),
    [
        ("db_path", "churn/state.db"),  # its own ledger, registry index and runs
        ("worker_lock", "worker.lock"),  # one worker per data folder
        ("shared_db_path", "state.db"),  # keys, audit, the scheduler's jobs
        ("retrain_lock", "churn/retrain.lock"),
        ("processing", "churn/processing"),
        ("archive", "churn/archive"),
        ("quarantine", "churn/quarantine"),
        ("outbox", "churn/outbox"),
        ("models", "churn/models"),
    ],
)
def test_a_named_model_has_its_own_folder(tmp_path: Path, attribute: str, relative: str):
    assert getattr(DataLayout(tmp_path, "churn"), attribute) == tmp_path / relative


def test_a_named_models_inbox_and_lake(tmp_path: Path):
    layout = DataLayout(tmp_path, "churn")
    assert layout.inbox("score") == tmp_path / "churn" / "inbox" / "score"
    assert layout.lake("train") == tmp_path / "churn" / "lake" / "train"


@pytest.mark.parametrize("name", ["", "..", "a/b", "../x", "Churn", "-x", "a" * 65, "x y"])
def test_a_model_name_that_is_not_one_folder_is_refused(tmp_path: Path, name: str):
    with pytest.raises(ValueError, match="model name"):
        DataLayout(tmp_path, name)


@pytest.mark.parametrize("kind", ["", "other", "../train"])
def test_an_unknown_kind_is_refused(tmp_path: Path, kind: str):
    with pytest.raises(ValueError, match="kind"):
        DataLayout(tmp_path).inbox(kind)


@pytest.mark.parametrize("model", ["default", "churn"])
def test_make_dirs_creates_every_folder_and_may_run_again(tmp_path: Path, model: str):
    layout = DataLayout(tmp_path / "data", model)
    layout.make_dirs()
    layout.make_dirs()
    made = sorted(p.relative_to(layout.base).as_posix() for p in layout.base.rglob("*"))
    assert made == sorted(
        [
            "archive",
            "inbox",
            "inbox/score",
            "inbox/train",
            "lake",
            "lake/score",
            "lake/train",
            "models",
            "outbox",
            "processing",
            "quarantine",
        ]
    )
    assert not layout.db_path.exists()  # the folders only; the stores create state.db


def test_ingest_config_asks_the_layout(tmp_path: Path):
    layout = DataLayout(tmp_path, "churn")
    config = IngestConfig(layout)
    assert config.data_dir == tmp_path
    assert config.db_path == layout.db_path
    assert config.inbox("train") == layout.inbox("train")
    assert config.lake("score") == layout.lake("score")
    assert (config.processing, config.archive, config.quarantine) == (
        layout.processing,
        layout.archive,
        layout.quarantine,
    )
