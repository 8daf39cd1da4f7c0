"""Many models in one settings file: [models.<name>] tables, inheritance, views, and errors."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from ingest.base.layout import DEFAULT_MODEL, RESERVED_NAMES
from scoring.settings import SettingsError, load_settings

from .conftest import ROOT

THREE = """
[paths]
data_dir = "d"

[training]
schedule = "0 3 * * *"
timezone = "Europe/Paris"
min_rows = 7
promote = "always"
bootstrap_data = "sample.csv"

[models.price]
target = "price"
estimator = "ridge"
params = { alpha = 0.5 }

[models.churn]
target = "churned"
estimator = "logistic_regression"
id_columns = ["customer_id"]
schedule = "30 1 * * *"
promote = "never"

[models.species]
target = "species"
estimator = "random_forest_classifier"
bootstrap_data = "iris.csv"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, **kw):
    return load_settings(write(tmp_path, text), env=kw.pop("env", {}), **kw)


def refused(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    """Load a file that must fail; return its one-line message."""
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, text), env=env or {})
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_named_models_in_file_order_with_their_own_keys(tmp_path):
    s = load(tmp_path, THREE)
    assert s.model_names == ("price", "churn", "species")
    assert s.name == "price"  # no default: the first model is the one a bare view is for
    price, churn, species = s.each_model()
    assert (price.model.target, price.model.estimator) == ("price", "ridge")
    assert price.model.params == {"alpha": 0.5}
    assert churn.model.id_columns == ["customer_id"]
    assert species.model.estimator == "random_forest_classifier"
    assert [v.name for v in s.each_model()] == list(s.model_names)


def test_unset_training_keys_inherit_but_not_the_sample_file(tmp_path):
    s = load(tmp_path, THREE)
    price, churn, species = s.each_model()
    assert price.training.schedule == "0 3 * * *"
    assert price.training.timezone == "Europe/Paris"
    assert price.training.min_rows == 7
    assert price.training.promote == "always"
    assert churn.training.schedule == "30 1 * * *"  # its own value wins
    assert churn.training.promote == "never"
    assert churn.training.min_rows == 7
    # bootstrap_data belongs to the model it was written for, never to every model
    assert price.training.bootstrap_data is None
    assert churn.training.bootstrap_data is None
    assert species.training.bootstrap_data == tmp_path / "iris.csv"  # relative to the file


def test_model_section_alone_is_the_default_model_with_todays_layout(tmp_path):
    s = load(tmp_path, '[paths]\ndata_dir = "d"\n[model]\ntarget = "y"\n')
    assert s.model_names == (DEFAULT_MODEL,)
    assert s.name == DEFAULT_MODEL
    assert s.layout.base == tmp_path / "d"
    assert s.db_path == tmp_path / "d" / "state.db" == s.shared_db_path
    assert s.layout.inbox("train") == tmp_path / "d" / "inbox" / "train"
    assert s.models_dir == tmp_path / "d" / "models"


def test_no_model_section_at_all_is_one_default_model(tmp_path):
    s = load(tmp_path, '[paths]\ndata_dir = "d"\n')
    assert s.model_names == (DEFAULT_MODEL,)
    assert s.for_model(DEFAULT_MODEL) is s


def test_model_plus_named_models_is_default_first(tmp_path):
    text = '[paths]\ndata_dir = "d"\n[model]\ntarget = "y"\n[models.price]\ntarget = "p"\n'
    s = load(tmp_path, text)
    assert s.model_names == (DEFAULT_MODEL, "price")
    assert s.name == DEFAULT_MODEL and s.model.target == "y"
    assert s.for_model("price").model.target == "p"


def test_default_named_as_a_models_table_is_the_default_model(tmp_path):
    text = '[paths]\ndata_dir = "d"\n[models.default]\ntarget = "y"\n[models.b]\ntarget = "z"\n'
    s = load(tmp_path, text)
    assert s.model_names == (DEFAULT_MODEL, "b")
    assert s.layout.base == tmp_path / "d"  # today's layout, not d/default/


def test_for_model_views_have_their_own_folders_and_database(tmp_path):
    s = load(
        tmp_path, '[paths]\ndata_dir = "d"\n[model]\ntarget = "y"\n' + THREE.split("\n\n", 2)[2]
    )
    data = tmp_path / "d"
    default = s.for_model(DEFAULT_MODEL)
    price = s.for_model("price")
    assert price.name == "price" and price.model.target == "price"
    assert price.layout.base == data / "price"
    assert price.db_path == data / "price" / "state.db"
    assert price.models_dir == data / "price" / "models"
    assert price.layout.inbox("score") == data / "price" / "inbox" / "score"
    assert price.layout.lake("train") == data / "price" / "lake" / "train"
    assert price.layout.retrain_lock == data / "price" / "retrain.lock"
    # shared by every model: keys, audit, the scheduler's jobs, the worker lock
    assert price.shared_db_path == default.shared_db_path == data / "state.db"
    assert price.layout.worker_lock == default.layout.worker_lock
    # a view still knows every model, so a view can hand out another
    assert price.model_names == s.model_names
    assert price.for_model("churn").model.target == "churned"
    assert price.for_model(DEFAULT_MODEL).model.target == "y"
    folders = {one.name: set(one.layout.folders()) for one in s.each_model()}
    names = list(folders)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not folders[a] & folders[b], (a, b)


def test_for_model_unknown_name_names_the_models(tmp_path):
    s = load(tmp_path, THREE)
    with pytest.raises(SettingsError, match=r"no model named 'nope'.*price, churn, species"):
        s.for_model("nope")


def test_shipped_settings_is_still_one_default_model_with_todays_layout():
    s = load_settings(ROOT / "settings.toml", env={})
    assert s.model_names == (DEFAULT_MODEL,)
    assert s.layout.base == ROOT / "data"
    assert s.db_path == ROOT / "data" / "state.db"
    assert s.layout.inbox("train") == ROOT / "data" / "inbox" / "train"
    assert s.training.bootstrap_data == ROOT / "data" / "sample" / "diabetes.csv"


def test_model_and_models_default_conflict(tmp_path):
    text = '[model]\ntarget = "y"\n[models.default]\ntarget = "z"\n'
    message = refused(tmp_path, text)
    assert "[models.default]" in message and "[model]" in message


@pytest.mark.parametrize(
    ("table", "shown"),
    [
        ("[models.Price]", "Price"),
        ("[models.9lives]", "9lives"),
        ('[models."a b"]', "a b"),
        ('[models."x/../y"]', "x/../y"),
        ('[models."_x"]', "_x"),
        ('[models.""]', "[models.'']"),
        ("[models." + "a" * 65 + "]", "a" * 65),
        ('[models."caf\u00e9"]', "caf\u00e9"),
        ('[models."abc\\n"]', "abc\\n"),  # a trailing newline: `$` alone would let it through
        ('[models."a\\nb"]', "a\\nb"),
    ],
)
def test_bad_model_names_are_refused_in_one_line(tmp_path, table, shown):
    message = refused(tmp_path, f'{table}\ntarget = "y"\n')
    assert shown in message
    assert "model name" in message


def test_models_must_hold_tables(tmp_path):
    assert "[models]" in refused(tmp_path, "models = 3\n")
    assert "[models.x] must be a table" in refused(tmp_path, "[models]\nx = 3\n")


@pytest.mark.parametrize(
    ("lines", "fragments"),
    [
        ('colour = "red"', ("[models.price] colour", "unknown key", "target", "schedule")),
        ("port = 9000", ("[models.price] port", "unknown key")),
        ('estimator = "magic"', ("[models.price]", "magic")),
        ("params = { no_such_param = 1 }", ("[models.price]", "no_such_param")),
        ('schedule = "every night"', ("[models.price] schedule", "every night", "cron")),
        ('timezone = "Mars/Olympus"', ("[models.price] timezone", "Mars/Olympus", "IANA")),
        ('promote = "sometimes"', ("[models.price] promote", "sometimes", "not_worse")),
        ("test_size = 1.5", ("[models.price] test_size", "less than 1")),
        ("min_rows = 1", ("[models.price] min_rows", "at least 2")),
        ('features = "a, b"\nid_columns = 3', ("[models.price] id_columns", "list of text")),
    ],
)
def test_errors_in_a_model_table_name_that_table(tmp_path, lines, fragments):
    text = '[model]\ntarget = "y"\n[models.price]\ntarget = "p"\n' + lines + "\n"
    message = refused(tmp_path, text)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_errors_in_the_default_model_still_name_model_and_training(tmp_path):
    message = refused(tmp_path, '[model]\nestimator = "magic"\n[models.b]\ntarget = "z"\n')
    assert message.startswith("[model]")
    message = refused(tmp_path, '[training]\nschedule = "bad"\n')
    assert message.startswith("[training] schedule")


def test_environment_sets_a_model_key(tmp_path):
    env = {
        "DROPSCORE__MODELS__CHURN__PROMOTE": "always",
        "DROPSCORE__MODELS__CHURN__FEATURES": '["tenure", "plan"]',
        "DROPSCORE__MODELS__PRICE__MIN_ROWS": "50",
        "DROPSCORE__TRAINING__TOLERANCE": "0.25",
    }
    s = load(tmp_path, THREE, env=env)
    churn, price = s.for_model("churn"), s.for_model("price")
    assert churn.training.promote == "always"
    assert churn.model.features == ["tenure", "plan"]
    assert churn.model.target == "churned"  # the file's other keys stay
    assert price.training.min_rows == 50
    assert churn.training.min_rows == 7
    assert {one.training.tolerance for one in s.each_model()} == {0.25}  # inherited from env


def test_environment_can_add_a_model(tmp_path):
    s = load(tmp_path, '[model]\ntarget = "y"\n', env={"DROPSCORE__MODELS__EXTRA__TARGET": "t"})
    assert s.model_names == (DEFAULT_MODEL, "extra")
    assert s.for_model("extra").model.target == "t"


def test_environment_errors_name_the_model_table(tmp_path):
    env = {"DROPSCORE__MODELS__PRICE__MIN_ROWS": "many"}
    message = refused(tmp_path, THREE, env=env)
    assert "[models.price] min_rows" in message and "many" in message
    message = refused(tmp_path, THREE, env={"DROPSCORE__MODELS__PRICE__WHAT": "1"})
    assert "[models.price] what: unknown key" in message


def test_explicit_overrides_merge_into_a_model_table(tmp_path):
    s = load(tmp_path, THREE, overrides={"models": {"price": {"estimator": "lasso"}}})
    price = s.for_model("price")
    assert price.model.estimator == "lasso"
    assert price.model.target == "price"


# A valid model name: what the docs promise (a letter, then letters, digits, '_' or '-', ≤ 64).
VALID = st.from_regex(r"[a-z][a-z0-9_-]{0,63}", fullmatch=True).filter(
    lambda n: n not in RESERVED_NAMES
)
LOWER_START = set(string.ascii_lowercase)
ALLOWED = set(string.ascii_lowercase + string.digits + "_-")


def _valid(name: str) -> bool:
    return 1 <= len(name) <= 64 and name[0] in LOWER_START and set(name) <= ALLOWED


@hyp_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=VALID)
def test_valid_names_round_trip(tmp_path_factory, name):
    tmp = tmp_path_factory.mktemp("names")
    models = {name: {"target": "y"}, "zz-other": {"target": "z"}} if name != "zz-other" else {}
    models = models or {name: {"target": "y"}}
    s = load_settings(
        None, env={}, overrides={"paths": {"data_dir": str(tmp / "d")}, "models": models}
    )
    assert s.model_names[0] == name
    view = s.for_model(name)
    assert view.name == name and view.model.target == "y"
    expected = tmp / "d" if name == DEFAULT_MODEL else tmp / "d" / name
    assert view.layout.base == expected
    assert view.db_path == expected / "state.db"


@hyp_settings(max_examples=150, deadline=None)
@given(name=st.text(max_size=70).filter(lambda n: not _valid(n)))
def test_invalid_names_are_refused_in_one_line(name):
    with pytest.raises(SettingsError) as info:
        load_settings(None, env={}, overrides={"models": {name: {"target": "y"}}})
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert "model name" in message


@pytest.mark.parametrize("name", ["abc\n", "Abc", "1abc", "a/b", ""])
def test_the_layout_refuses_a_name_that_is_not_one_plain_segment(tmp_path, name):
    from ingest.base.layout import DataLayout

    with pytest.raises(ValueError, match="model name"):
        DataLayout(tmp_path, name)


def test_a_name_that_a_route_already_takes_is_refused(tmp_path):
    """GET /models/current is the default model's champion: a model named so would be hidden."""
    message = refused(tmp_path, '[models.current]\ntarget = "y"\n')
    assert "[models.current]" in message and "reserved" in message


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('schedule = "bad"', "[training] schedule = 'bad'"),
        ('timezone = "Nowhere"', "[training] timezone"),
    ],
)
def test_a_bad_inherited_value_is_named_where_it_is_written(tmp_path, line, fragment):
    """No [model]: the bad [training] value is in [training], not in [models.price]."""
    message = refused(tmp_path, f'[training]\n{line}\n[models.price]\ntarget = "p"\n')
    assert message.startswith(fragment), message
