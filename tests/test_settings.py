"""The settings contract: defaults, overrides, and a one-line error for every bad value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scoring.settings import SettingsError, documented_keys, load_settings

from .conftest import ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_file_loads_and_points_at_the_sample():
    s = load_settings(ROOT / "settings.toml", env={})
    assert s.data_dir == ROOT / "data"
    assert s.training.bootstrap_data == ROOT / "data" / "sample" / "diabetes.csv"
    assert s.training.bootstrap_data.is_file()
    assert s.model.estimator == "linear_regression"


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(None, env={})
    assert s.data_dir == tmp_path / "data"
    assert s.server.port == 8000
    assert s.training.promote == "not_worse"


def test_relative_paths_resolve_against_the_file_folder(tmp_path):
    path = write(tmp_path, '[paths]\ndata_dir = "d"\n[training]\nbootstrap_data = "x/y.csv"\n')
    s = load_settings(path, env={})
    assert s.data_dir == tmp_path / "d"
    assert s.training.bootstrap_data == tmp_path / "x" / "y.csv"


def test_settings_file_from_environment(tmp_path):
    path = write(tmp_path, "[server]\nport = 9001\n")
    assert load_settings(None, env={"DROPSCORE_SETTINGS": str(path)}).server.port == 9001


@pytest.mark.parametrize(
    ("name", "value", "section", "key", "expected"),
    [
        ("DROPSCORE__SERVER__PORT", "8123", "server", "port", 8123),
        ("DROPSCORE__SCORING__ON_ARRIVAL", "false", "scoring", "on_arrival", False),
        ("DROPSCORE__MODEL__FEATURES", '["bmi", "bp"]', "model", "features", ["bmi", "bp"]),
        ("DROPSCORE__MODEL__FEATURES", "bmi, bp", "model", "features", ["bmi", "bp"]),
        (
            "DROPSCORE__MODEL__PARAMS",
            "{ fit_intercept = false }",
            "model",
            "params",
            {"fit_intercept": False},
        ),
        ("DROPSCORE__MODEL__ESTIMATOR", "ridge", "model", "estimator", "ridge"),
        ("DROPSCORE__INGEST__STABLE_SECONDS", "1", "ingest", "stable_seconds", 1.0),
        (
            "DROPSCORE_API_KEYS",
            "k1-0123456789abcdef, k2-0123456789abcdef",
            "server",
            "api_keys",
            ["k1-0123456789abcdef", "k2-0123456789abcdef"],
        ),
    ],
)
def test_environment_overrides(tmp_path, name, value, section, key, expected):
    path = write(tmp_path, "[model]\nparams = {}\n")
    s = load_settings(path, env={name: value})
    assert getattr(getattr(s, section), key) == expected


def test_environment_beats_file_and_overrides_beat_environment(tmp_path):
    path = write(tmp_path, "[server]\nport = 1\n")
    env = {"DROPSCORE__SERVER__PORT": "2"}
    assert load_settings(path, env=env).server.port == 2
    assert load_settings(path, env=env, overrides={"server": {"port": 3}}).server.port == 3


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[nope]\nx = 1\n", {}, "unknown section [nope]; expected one of"),
        ("[server]\nprot = 1\n", {}, "[server] prot: unknown key; expected one of"),
        ('[server]\nport = "eighty"\n', {}, "[server] port = 'eighty': expected a whole number"),
        ("[server]\nport = 1.5\n", {}, "[server] port = 1.5: expected a whole number"),
        ("[server]\nport = 70000\n", {}, "[server] port = 70000: expected a number at most 65535"),
        (
            "[model]\ntest_size = 1.5\n",
            {},
            "[model] test_size = 1.5: expected a number less than 1",
        ),
        (
            '[scoring]\non_arrival = "yes"\n',
            {},
            "[scoring] on_arrival = 'yes': expected true or false",
        ),
        ('[training]\npromote = "maybe"\n', {}, "expected one of always, not_worse, never"),
        ("[model]\nfeatures = [1, 2]\n", {}, "[model] features = [1, 2]: expected a list of text"),
        ("[model]\nparams = 3\n", {}, "[model] params = 3: expected a table of keyword arguments"),
        ('[model]\nestimator = "magic"\n', {}, "[model] estimator = 'magic': expected one of"),
        (
            '[model]\nestimator = "ridge"\nparams = { alpah = 1 }\n',
            {},
            "[model] params: alpah not accepted by ridge",
        ),
        ('[training]\ntimezone = "Mars/Base"\n', {}, "[training] timezone = 'Mars/Base'"),
        ('[training]\nschedule = "every night"\n', {}, "[training] schedule = 'every night'"),
        ('[ingest]\ncsv_encodings = ["klingon"]\n', {}, "'klingon' is not one"),
        ("[server\n", {}, "is not valid TOML"),
        ("", {"DROPSCORE__SERVER": "1"}, "expected DROPSCORE__SECTION__KEY"),
        ("", {"DROPSCORE__SERVER__PORT": "x"}, "[server] port = 'x': expected a whole number"),
    ],
)
def test_bad_values_fail_with_one_line(tmp_path, text, env, message):
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as info:
        load_settings(path, env=env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_is_a_settings_error(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})


def test_every_key_is_documented_in_the_shipped_file_and_readme():
    shipped = (ROOT / "settings.toml").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    # a key is found in its own section: [scoring] batch_rows does not document [ingest]'s
    tables = dict(re.findall(r"^\[(\w+)\]\n(.*?)(?=^\[|\Z)", shipped, re.M | re.S))
    for section, keys in documented_keys().items():
        assert section in tables, f"settings.toml has no [{section}]"
        rows = [line for line in readme.splitlines() if line.startswith(f"| {section} | ")]
        for key in keys:
            # each key sits in its section right under its one-line comment
            assert re.search(rf"^# .+\n(?:# .+\n)*{key} = ", tables[section], re.M), key
            assert any(f"`{key}`" in row for row in rows), f"README lacks [{section}] {key}"
    # and the shipped file holds nothing the loader does not know
    load_settings(ROOT / "settings.toml", env={})
