"""``dropscore init``: the written section, the settings file kept byte for byte, the CLI run.

The CLI runs in-process with click's runner over a temporary folder holding a real settings file
and real sample files; the written file is parsed back with ``tomllib``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.base.layout import MODEL_NAME
from scoring.service.cli import main
from scoring.service.model_section import (
    append_section,
    appended_values,
    check_model_name,
    section_text,
)
from scoring.settings import load_settings

EXISTING = (
    "# my settings, with my comments   \r\n"
    "[paths]\r\n"
    'data_dir = "data"  # trailing comment\r\n'
    "\r\n"
    "[training]\r\n"
    'bootstrap_data = ""\r\n'
    "min_rows = 10"  # no newline at the end
)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A folder with a settings file (CRLF, no final newline) and a labelled CSV sample."""
    for name in [n for n in os.environ if n.startswith("DROPSCORE")]:
        monkeypatch.delenv(name)
    (tmp_path / "settings.toml").write_bytes(EXISTING.encode("utf-8"))
    rng = np.random.default_rng(3)
    n = 250
    pd.DataFrame(
        {
            "Customer ID": [f"C{i:04d}" for i in range(n)],
            "Tenure": rng.integers(1, 72, n),
            "Charges": rng.normal(70, 20, n).round(2),
            "Region": "EU",
            "Churned": rng.choice(["yes", "no"], n),
        }
    ).to_csv(tmp_path / "churn.csv", index=False)
    return tmp_path


def run(folder: Path, *args: str):
    """Invoke dropscore with the folder's settings file."""
    return CliRunner().invoke(main, ["--settings", str(folder / "settings.toml"), *args])


def test_init_writes_the_section_keeps_the_file_and_creates_the_folders(folder):
    result = run(folder, "init", "churn", "--target", "Churned", str(folder / "churn.csv"))
    assert result.exit_code == 0, result.output
    written = (folder / "settings.toml").read_bytes()
    assert written.startswith(EXISTING.encode("utf-8"))  # the old text, byte for byte
    section = tomllib.loads(written.decode("utf-8"))["models"]["churn"]
    assert section == {
        "target": "churned",
        "features": ["tenure", "charges"],
        "id_columns": ["customer_id"],
        "estimator": "logistic_regression",
        "params": {},
    }
    assert "# column the model learns to predict\ntarget = " in written.decode("utf-8")
    loaded = load_settings(folder / "settings.toml", env={}).for_model("churn")
    assert (loaded.model.target, loaded.model.features, loaded.model.estimator) == (
        "churned",
        ["tenure", "charges"],
        "logistic_regression",
    )
    assert loaded.training.min_rows == 10  # unset here: follows [training]
    assert loaded.layout.inbox("train") == folder / "data" / "churn" / "inbox" / "train"
    for kind in ("train", "score"):
        assert (folder / "data" / "churn" / "inbox" / kind).is_dir()
    out = result.output
    assert "target 'churned' has 2 distinct values (" in out and "→ classification" in out
    assert "id column 'customer_id': its name looks like an id" in out
    assert "left out 'region': constant: every value is 'EU'" in out
    assert f"{folder / 'data' / 'churn' / 'inbox' / 'train'}/" in out
    assert "next: run `dropscore serve` here (`kill -HUP` it if it runs): it trains" in out


def test_dry_run_prints_the_section_and_writes_nothing(folder):
    result = run(
        folder, "init", "churn", "--target", "churned", "--dry-run", str(folder / "churn.csv")
    )
    assert result.exit_code == 0, result.output
    assert "[models.churn]\n# column the model learns to predict\n" in result.output
    assert (folder / "settings.toml").read_bytes() == EXISTING.encode("utf-8")
    assert not (folder / "data").exists()


def test_overrides_reach_the_written_section(folder):
    result = run(
        folder,
        "init",
        "tenure",
        "--target",
        "Tenure",
        "--estimator",
        "ridge",
        "--features",
        "Charges,Region",
        "--id-columns",
        "",
        str(folder / "churn.csv"),
    )
    assert result.exit_code == 0, result.output
    section = tomllib.loads((folder / "settings.toml").read_text("utf-8"))["models"]["tenure"]
    assert (section["estimator"], section["features"], section["id_columns"]) == (
        "ridge",
        ["charges", "region"],
        [],
    )
    assert "estimator ridge (given) → regression" in result.output


def test_without_file_the_first_drop_in_the_train_inbox_is_the_sample(folder):
    empty = run(folder, "init", "churn", "--target", "churned")
    assert empty.exit_code == 1
    inbox = folder / "data" / "churn" / "inbox" / "train"
    assert empty.output == (
        f"Error: no sample: give FILE, or drop a labelled file into {inbox}/ first\n"
    )
    assert (folder / "settings.toml").read_bytes() == EXISTING.encode("utf-8")
    inbox.mkdir(parents=True)
    (inbox / "half.csv.part").write_text("x\n1\n", "utf-8")  # still being written: not a sample
    (inbox / "drop.csv").write_bytes((folder / "churn.csv").read_bytes())
    result = run(folder, "init", "churn", "--target", "churned")
    assert result.exit_code == 0, result.output
    assert f"model 'churn' from {inbox / 'drop.csv'} (250 rows read)" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Churn", "--target", "churned"], "model name 'Churn': expected lower-case letters"),
        (["1st", "--target", "churned"], "model name '1st': expected lower-case letters"),
        (["../x", "--target", "churned"], "model name '../x': expected lower-case letters"),
        (["abc\n", "--target", "churned"], "model name 'abc\\n': expected lower-case letters"),
        (["current", "--target", "churned"], "model name 'current' is reserved"),
        (["inbox", "--target", "churned"], "model name 'inbox' is reserved"),
        (
            ["churn", "--target", "nope"],
            "target 'nope' is not a column of the sample; columns"
            " are customer_id, tenure, charges, region, churned",
        ),
        (
            ["churn", "--target", "churned", "--features", "tenure,age"],
            "feature 'age' is not a column of the sample",
        ),
        (
            ["churn", "--target", "churned", "--task", "regression"],
            "target 'churned' is text; a regression needs numbers",
        ),
    ],
)
def test_refusals_are_one_line_and_change_nothing(folder, args, message):
    result = run(folder, "init", *args, str(folder / "churn.csv"))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {message}") and result.output.count("\n") == 1
    assert (folder / "settings.toml").read_bytes() == EXISTING.encode("utf-8")
    assert not (folder / "data").exists()


def test_a_second_model_is_added_beside_the_first_and_a_taken_name_refused(folder):
    sample = str(folder / "churn.csv")
    assert run(folder, "init", "churn", "--target", "churned", sample).exit_code == 0
    before = (folder / "settings.toml").read_bytes()
    again = run(folder, "init", "churn", "--target", "tenure", sample)
    assert again.exit_code == 1
    assert again.output == (
        "Error: model name 'churn' is taken: the settings file has [models.churn]\n"
    )
    assert (folder / "settings.toml").read_bytes() == before
    second = run(folder, "init", "tenure", "--target", "tenure", sample)
    assert second.exit_code == 0, second.output
    assert (folder / "settings.toml").read_bytes().startswith(before)
    loaded = load_settings(folder / "settings.toml", env={})
    assert loaded.model_names == ("churn", "tenure")
    assert loaded.for_model("tenure").model.estimator == "linear_regression"


def test_the_written_model_trains(folder):
    sample = str(folder / "churn.csv")
    assert run(folder, "init", "churn", "--target", "Churned", sample).exit_code == 0
    ingested = run(folder, "--model", "churn", "ingest", sample, "--kind", "train")
    assert ingested.exit_code == 0, ingested.output
    trained = run(folder, "--model", "churn", "train")
    assert trained.exit_code == 0, trained.output
    assert "version 1: promoted to champion" in trained.output
    assert (folder / "data" / "churn" / "models" / "1" / "card.json").is_file()


def test_default_is_taken_when_model_exists(folder):
    (folder / "settings.toml").write_text('[model]\ntarget = "churned"\n', "utf-8")
    result = run(folder, "init", "default", "--target", "churned", str(folder / "churn.csv"))
    assert result.exit_code == 1
    assert "model name 'default' is taken: the settings file's [model] section" in result.output


def test_an_unreadable_sample_is_one_line(folder):
    (folder / "empty.csv").write_bytes(b"")
    result = run(folder, "init", "churn", "--target", "churned", str(folder / "empty.csv"))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {folder / 'empty.csv'}: the file is empty")


# ---------------------------------------------------------------------------------------------
# The section text, pure


def test_a_taken_name_is_refused():
    with pytest.raises(ValueError, match=r"'churn' is taken: the settings file has \[models.churn"):
        check_model_name("churn", {"models": {"churn": {"target": "y"}}})
    check_model_name("default", {"paths": {}})  # free while there is no [model]
    check_model_name("price", {"models": {"churn": {}}, "model": {}})


def test_appending_that_would_break_the_file_is_refused():
    existing = b'models = { churn = { target = "y" } }\n'
    new = append_section(existing, section_text("price", {"target": "p"}))
    with pytest.raises(ValueError, match="would not be valid TOML with it"):
        appended_values(new, "price")


def test_a_long_feature_list_is_written_one_per_line():
    features = [f"feature_number_{i}" for i in range(12)]
    text = section_text("wide", {"features": features})
    assert 'features = [\n    "feature_number_0",\n' in text
    assert all(len(line) <= 100 for line in text.splitlines())
    assert tomllib.loads(text)["models"]["wide"]["features"] == features


names = st.from_regex(MODEL_NAME, fullmatch=True)
columns = st.text(min_size=1, max_size=30)
existing_files = st.sampled_from(
    [
        b"",
        b"[paths]\n",
        b"# only a comment, no newline",
        EXISTING.encode("utf-8"),
        '[model]\ntarget = "prix €"\r\n'.encode(),
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=names,
    target=columns,
    features=st.lists(columns, max_size=15),
    ids=st.lists(columns, max_size=3),
    existing=existing_files,
)
def test_the_written_section_round_trips_for_any_column_names(
    name, target, features, ids, existing
):
    values = {
        "target": target,
        "features": features,
        "id_columns": ids,
        "estimator": "ridge",
        "params": {"alpha": 0.5},
    }
    new = append_section(existing, section_text(name, values))
    assert new.startswith(existing)
    assert appended_values(new, name) == values
    assert tomllib.loads(new.decode("utf-8")).keys() >= tomllib.loads(existing.decode()).keys()


def test_a_file_without_a_model_section_is_told_default_goes(tmp_path):
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "settings.toml").write_text('[paths]\ndata_dir = "data"\n', encoding="utf-8")
    pd.DataFrame({"x": [i * 0.37 % 5 for i in range(30)], "y": [i % 2 for i in range(30)]}).to_csv(
        folder / "s.csv", index=False
    )
    result = run(folder, "init", "churn", "--target", "y", str(folder / "s.csv"))
    assert result.exit_code == 0, result.output
    assert "now it serves only its [models.*]" in result.output
