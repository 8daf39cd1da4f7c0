"""The per-model objects: one factory opens every model and the shared stores, loading nothing.

Real settings files, real SQLite files and a real child process for what opening imports.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from scoring.errors import NotFound
from scoring.models.factory import open_model, open_models
from scoring.models.job_ids import RETRAIN
from scoring.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = """
[paths]
data_dir = "data"

[models.price]
target = "price"
estimator = "ridge"

[models.churn]
target = "churned"
estimator = "logistic_regression"
"""


def two_models(root: Path) -> Settings:
    (root / "settings.toml").write_text(SETTINGS, encoding="utf-8")
    return load_settings(root / "settings.toml", env={})


def test_every_model_by_name_the_default_first_and_each_on_its_own_database(tmp_path):
    settings = two_models(tmp_path)
    models = open_models(settings)
    assert list(models) == list(settings.model_names) == ["price", "churn"]
    assert models.default.name == settings.name == "price"
    assert models.model() is models.default
    for name, model in models.items():
        view = settings.for_model(name)
        assert model.settings == view
        assert model.db.path == view.db_path
        assert model.layout == view.layout
        assert model.artifacts is model.registry.artifacts
        assert model.lake("train").root.rstrip("/").endswith("lake/train")
    assert models["price"].db.path != models["churn"].db.path
    assert models.shared.db.path == settings.shared_db_path
    assert models["churn"].job_id(RETRAIN) == "retrain:churn"


def test_an_unknown_model_is_a_not_found_naming_the_models(tmp_path):
    models = open_models(two_models(tmp_path))
    with pytest.raises(NotFound) as caught:
        models.model("nope")
    assert caught.value.status == 404
    assert "price, churn" in caught.value.message
    assert caught.value.details == [{"models": ["price", "churn"]}]


def test_one_model_opened_alone_is_the_same_model(tmp_path):
    settings = two_models(tmp_path)
    churn = open_model(settings, "churn")
    assert churn.settings == settings.for_model("churn")
    assert open_model(settings.for_model("churn")).db.path == churn.db.path


def test_the_stores_answer_from_the_model_s_files(tmp_path):
    settings = two_models(tmp_path)
    models = open_models(settings)
    run_id = models["churn"].runs.create("cli")
    assert [r.id for r in open_model(settings, "churn").runs.list()] == [run_id]
    assert open_model(settings, "price").runs.list() == []
    models.shared.keys.add("ops", "admin")
    assert [k.name for k in open_models(settings).shared.keys.list()] == ["ops"]


def test_every_thread_gets_the_same_champion_holder(tmp_path):
    model = open_models(two_models(tmp_path)).default
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(model.champion)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(h) for h in seen}) == 1
    assert model.versions is model.versions
    assert model.champion.peek() is None  # no version yet: nothing to load


def test_a_model_with_its_own_registry_gets_its_own_champion(tmp_path, registry):
    models = open_models(two_models(tmp_path))
    champion = models.default.champion
    swapped = models.using("price", registry=registry)
    assert swapped["price"].registry is registry
    assert swapped["price"].champion is not champion
    assert swapped["price"].champion.registry is registry
    assert swapped["churn"] is models["churn"]


def test_opening_every_model_and_reading_its_records_loads_no_model(tmp_path):
    two_models(tmp_path)
    script = textwrap.dedent(
        f"""
        import sys
        from scoring.models.factory import open_models
        from scoring.settings import load_settings

        models = open_models(load_settings({str(tmp_path / "settings.toml")!r}, env={{}}))
        for model in models.values():
            model.runs.list(), model.ledger.list(), model.registry.champion_version()
        models.shared.keys.list(), models.shared.audit.list()
        # pyarrow (and numpy with it) may load: the registry reaches artifacts through pyarrow.fs
        heavy = ("pandas", "sklearn", "skops", "scipy", "flask", "scoring.lifecycle.predictor")
        print(sorted(m for m in heavy if m in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
