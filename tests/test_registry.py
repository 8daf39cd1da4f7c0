"""The registry: versions, one champion, atomic writes, and refusal of untrusted model files."""

from __future__ import annotations

import json
import threading
import zipfile
from collections.abc import Callable

import pytest
import skops.io as sio
from sklearn.preprocessing import FunctionTransformer

from scoring.errors import ModelFileError, NotFound
from scoring.lifecycle.registry import MODEL_FILE, Registry, load_trusted

from .conftest import register_trained


class Sneaky:
    """A type no model of ours holds: its presence must stop the load before any code runs."""

    def __init__(self) -> None:
        self.payload = "rm -rf /"


@pytest.fixture
def registry_on(open_state, settings) -> Callable[[], Registry]:
    """Open a registry as another process would, on either backend (the test runs once per
    backend): the versions' files in the data folder, the index in SQLite or PostgreSQL."""
    return lambda: Registry(settings.models_dir, open_state(None))


def test_versions_count_up_and_one_champion(settings, registry_on, diabetes):
    registry = registry_on()
    v1, _ = register_trained(settings, registry, diabetes)
    v2, _ = register_trained(settings, registry, diabetes, promote=False)
    assert (v1, v2) == (1, 2)
    assert registry.champion_version() == 1
    assert [m.status for m in registry.list()] == ["champion", "challenger"]
    registry.promote(2, "test")
    assert [m.status for m in registry.list()] == ["archived", "champion"]
    registry.promote(1, "rollback")
    assert registry.champion_version() == 1
    statuses = [m.status for m in registry_on().list()]  # as another process reads the index
    assert statuses.count("champion") == 1


def test_folder_holds_model_and_card(settings, registry, trained):
    folder = settings.models_dir / str(trained)
    # the sample model is linear: its plain-number fold is stored beside it
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "fold.json", "model.skops"]
    card = json.loads((folder / "card.json").read_text())
    assert card["version"] == "1"
    assert [f["name"] for f in card["schema"]["features"]][:3] == ["age", "sex", "bmi"]
    assert not list(settings.models_dir.glob(".*"))  # no temporary left
    pipeline = registry.load_pipeline(trained)
    assert hasattr(pipeline, "predict")


def test_unknown_version_is_not_found(registry, trained):
    with pytest.raises(NotFound, match="model version 9 does not exist"):
        registry.promote(9)
    with pytest.raises(NotFound):
        registry.load_pipeline(9)


def test_untrusted_type_is_refused_before_loading(settings, registry, trained):
    path = settings.models_dir / str(trained) / MODEL_FILE
    sio.dump({"model": Sneaky()}, path)
    with pytest.raises(ModelFileError) as info:
        registry.load_pipeline(trained)
    assert "holds types that are not trusted" in info.value.message
    assert "Sneaky" in info.value.message


def test_function_references_are_refused(tmp_path):
    path = tmp_path / MODEL_FILE
    sio.dump(FunctionTransformer(func=eval), path)
    with pytest.raises(ModelFileError, match=r"builtins\.eval"):
        load_trusted(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is not a valid skops file"),
        (b"not a zip at all", "is not a valid skops file"),
    ],
)
def test_corrupt_files_are_refused(tmp_path, content, message):
    path = tmp_path / MODEL_FILE
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        load_trusted(path)


def test_zip_without_schema_is_refused(tmp_path):
    path = tmp_path / MODEL_FILE
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("other.txt", "hello")
    with pytest.raises(ModelFileError):
        load_trusted(path)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="is missing"):
        load_trusted(tmp_path / MODEL_FILE)


def test_crash_leftovers_are_cleaned(settings, registry, trained):
    leftover = settings.models_dir / ".incoming-abc"
    leftover.mkdir()
    (leftover / MODEL_FILE).write_bytes(b"half")
    registry.clean_incoming()
    assert not leftover.exists()
    assert registry.champion_version() == trained


def test_a_failed_write_leaves_nothing(settings, registry):
    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("cannot save")

    with pytest.raises(Exception):  # noqa: B017 - skops' own error type is not the point
        registry.register(Unsaveable(), {"schema": {}})
    assert registry.list() == []
    assert not list(settings.models_dir.glob(".*"))  # no temporary left
    assert not list(settings.models_dir.glob("[0-9]*"))


def test_registries_in_two_processes_agree(settings, registry_on, diabetes):
    registry, other = registry_on(), registry_on()
    trained, _ = register_trained(settings, registry, diabetes)
    v2 = other.register(registry.load_pipeline(trained), registry.card(trained))
    other.promote(v2)
    assert registry.champion_version() == v2


def test_concurrent_registers_each_get_a_version_of_their_own(settings, registry_on, diabetes):
    first = registry_on()
    v1, _ = register_trained(settings, first, diabetes)
    pipeline, card = first.load_pipeline(v1), first.card(v1)
    barrier, versions = threading.Barrier(4), []

    def register() -> None:
        mine = registry_on()  # a process of its own: its own connections
        barrier.wait()
        versions.append(mine.register(pipeline, card))

    threads = [threading.Thread(target=register) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions) == [2, 3, 4, 5]
    assert [m.version for m in first.list()] == [1, 2, 3, 4, 5]
    for version in versions:  # each folder holds its own card, not another's
        assert first.card(version)["version"] == str(version)
