"""The settings translated for the ingest package: one place, each batch size from its own key."""

from __future__ import annotations

from ingest.base.layout import DataLayout
from scoring.ingest_options import ingest_config, read_options

from .conftest import make_settings


def test_ingest_reads_in_its_own_batch_size_and_the_scorer_in_its(tmp_path):
    settings = make_settings(
        tmp_path, ingest={"batch_rows": 1000, "max_columns": 7}, scoring={"batch_rows": 50}
    )
    assert ingest_config(settings).read.batch_rows == 1000
    assert read_options(settings).batch_rows == 50
    assert ingest_config(settings).read.max_columns == read_options(settings).max_columns == 7


def test_the_ingest_config_holds_the_settings_layout(tmp_path):
    settings = make_settings(tmp_path, ingest={"stable_seconds": 0.5})
    config = ingest_config(settings)
    assert config.layout == settings.layout == DataLayout(tmp_path / "data")
    assert config.stable_seconds == 0.5
    assert settings.db_path == config.db_path == tmp_path / "data" / "state.db"
    assert settings.models_dir == tmp_path / "data" / "models"
