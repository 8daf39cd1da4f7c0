"""``--model`` where a person types it: before the subcommand or after it, one meaning.

Issue 22: ``dropscore score fair.csv -o out.parquet --model fair`` answered ``No such option
'--model'``. Every command about one model now takes it after its name too (one definition of
the option); two different names on one line are a one-line error; a name typed wins over
``DROPSCORE_MODEL``.
"""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from scoring.service.cli import main
from tests.test_models_cli import SETTINGS

from .conftest import SAMPLE


@pytest.fixture
def run(tmp_path, monkeypatch):
    """Invoke dropscore with the three-model settings file (price, churn, species)."""
    settings = tmp_path / "settings.toml"
    settings.write_text(SETTINGS, encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # data_dir = "data" is relative to where a person runs it
    for name in [n for n in __import__("os").environ if n.startswith("DROPSCORE")]:
        monkeypatch.delenv(name)

    def invoke(*args: str, env: dict | None = None):
        return CliRunner().invoke(main, ["--settings", str(settings), *args], env=env)

    return invoke


@pytest.mark.parametrize(
    "command",
    [["files"], ["files", "--status", "quarantined"], ["runs"], ["models"]],
    ids=" ".join,
)
@pytest.mark.parametrize("name", ["price", "species"])
def test_before_and_after_the_subcommand_mean_the_same(run, command, name):
    before = run("--model", name, *command)
    after = run(*command, "--model", name)
    assert before.exit_code == 0, before.output
    assert after.exit_code == 0, after.output
    assert after.output == before.output


def test_a_model_group_and_its_subcommands_take_it(run):
    assert run("models", "--model", "churn").exit_code == 0
    shown = run("models", "show", "1", "--model", "churn")  # churn has no version 1: its answer
    assert shown.exit_code == 1 and "No such option" not in shown.output
    assert "version 1" in shown.output


def test_score_takes_model_after_its_arguments(run, tmp_path):
    trained = run("train", "--model", "price")  # price bootstraps from the sample file
    assert trained.exit_code == 0, trained.output
    assert "version 1: promoted" in trained.output
    out = tmp_path / "out.parquet"
    scored = run("score", str(SAMPLE), "-o", str(out), "--model", "price")
    assert scored.exit_code == 0, scored.output
    assert "scored 442 rows" in scored.output
    assert len(pd.read_parquet(out)) == 442
    other = run("score", str(SAMPLE), "-o", str(out), "--model", "churn")  # churn: no model
    assert other.exit_code == 1 and "no model yet" in other.output


def test_ingest_takes_model_after_its_arguments(run):
    taken = run("ingest", str(SAMPLE), "--kind", "score", "--model", "churn")
    assert taken.exit_code == 0, taken.output
    assert "normalized" in run("files", "--model", "churn").output
    assert run("--model", "price", "files").output.strip() == "no files"


def test_two_different_models_on_one_line_are_one_line(run):
    result = run("--model", "price", "files", "--model", "churn")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "price" in lines[0] and "churn" in lines[0]
    same = run("--model", "price", "files", "--model", "price")
    assert same.exit_code == 0, same.output


def test_a_typed_model_wins_over_the_environment(run):
    run("ingest", str(SAMPLE), "--kind", "score", "--model", "churn")
    env = {"DROPSCORE_MODEL": "price"}
    assert "normalized" in run("files", "--model", "churn", env=env).output
    assert run("files", env=env).output.strip() == "no files"  # the environment alone: price
    assert run("files", "--model", "price", env={"DROPSCORE_MODEL": "churn"}).exit_code == 0


def test_commands_about_every_model_do_not_take_it(run):
    result = run("audit", "--model", "price")
    assert result.exit_code == 2 and "No such option" in result.output
