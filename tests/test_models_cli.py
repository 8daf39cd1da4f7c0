"""The CLI with several models: --model (or DROPSCORE_MODEL) picks one; none chosen is refused."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from scoring.service.cli import main

from .conftest import SAMPLE

SETTINGS = f"""
[paths]
data_dir = "data"

[training]
min_rows = 10

[models.price]
target = "target"
bootstrap_data = "{SAMPLE}"

[models.churn]
target = "churned"
estimator = "logistic_regression"

[models.species]
target = "species"
estimator = "random_forest_classifier"
"""


@pytest.fixture
def run(tmp_path, monkeypatch):
    """Invoke dropscore with a three-model settings file on tmp_path/data."""
    settings = tmp_path / "settings.toml"
    settings.write_text(SETTINGS, encoding="utf-8")
    for name in [n for n in __import__("os").environ if n.startswith("DROPSCORE")]:
        monkeypatch.delenv(name)

    def invoke(*args: str, env: dict | None = None):
        return CliRunner().invoke(main, ["--settings", str(settings), *args], env=env)

    return invoke


@pytest.mark.parametrize("command", [["files"], ["runs"], ["models"], ["train"]])
def test_several_named_models_and_no_model_chosen_is_one_line(run, command):
    result = run(*command)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "price, churn, species" in lines[0] and "--model" in lines[0]


def test_an_unknown_model_is_one_line_naming_the_models(run):
    result = run("--model", "nope", "files")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "nope" in lines[0] and "price, churn, species" in lines[0]


def test_commands_act_on_the_chosen_model(run, tmp_path):
    trained = run("--model", "price", "train")
    assert trained.exit_code == 0, trained.output
    assert "version 1: promoted to champion" in trained.output
    data = tmp_path / "data"
    assert (data / "price" / "models").is_dir() and any(
        (data / "price" / "lake").rglob("*.parquet")
    )
    assert not (data / "models").exists() or not any((data / "models").iterdir())

    files = run("--model", "price", "files")
    assert files.exit_code == 0 and "diabetes.csv" in files.output and "normalized" in files.output
    assert run("--model", "churn", "files").output.strip() == "no files"

    runs = run("--model", "price", "runs")
    assert runs.exit_code == 0 and "cli" in runs.output
    assert run("--model", "churn", "runs").output.strip() == "no retrain runs yet"

    models = run("--model", "price", "models")
    assert models.exit_code == 0 and "champion" in models.output
    assert "no models yet" in run("--model", "species", "models").output
    # the environment chooses too
    assert "diabetes.csv" in run("files", env={"DROPSCORE_MODEL": "price"}).output
    assert run("files", env={"DROPSCORE_MODEL": "species"}).output.strip() == "no files"


def test_train_of_a_model_without_data_says_so_and_touches_no_other(run, tmp_path):
    result = run("--model", "churn", "train")
    assert result.exit_code == 1, result.output
    assert "training refused: 0 training rows in the lake" in result.output
    assert run("--model", "churn", "runs").output.count("skipped") == 1
    assert not (tmp_path / "data" / "price").exists()  # price was never opened
    assert run("--model", "price", "runs").output.strip() == "no retrain runs yet"


def test_with_a_default_model_no_choice_means_default(tmp_path, monkeypatch):
    settings = tmp_path / "settings.toml"
    settings.write_text(
        '[paths]\ndata_dir = "data"\n[model]\ntarget = "y"\n[models.churn]\ntarget = "c"\n',
        encoding="utf-8",
    )
    for name in [n for n in __import__("os").environ if n.startswith("DROPSCORE")]:
        monkeypatch.delenv(name)
    runner = CliRunner()
    plain = runner.invoke(main, ["--settings", str(settings), "runs"])
    assert plain.exit_code == 0 and plain.output.strip() == "no retrain runs yet", plain.output
    assert (tmp_path / "data" / "state.db").exists()
    assert not (tmp_path / "data" / "churn").exists()
    churn = runner.invoke(main, ["--settings", str(settings), "--model", "churn", "runs"])
    assert churn.exit_code == 0 and churn.output.strip() == "no retrain runs yet", churn.output
    assert (tmp_path / "data" / "churn" / "state.db").exists()
