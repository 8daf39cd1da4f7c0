"""The dashboard over several models: a picker on every page, the choice kept across pages."""

from __future__ import annotations

from ingest.state.db import StateDB
from scoring.api.app import create_app
from scoring.lifecycle.registry import Registry
from tests.conftest import make_settings, register_trained


def _two_models(tmp_path, diabetes):
    settings = make_settings(
        tmp_path,
        models={"sugar": {"target": "target"}, "pressure": {"target": "bp"}},
    )
    for name in ("sugar", "pressure"):
        one = settings.for_model(name)
        one.db_path.parent.mkdir(parents=True, exist_ok=True)
        register_trained(one, Registry(one.models_dir, StateDB.at(one.db_path)), diabetes)
    return settings


def test_one_model_has_no_picker(client):
    assert 'aria-label="models"' not in client.get("/").get_data(as_text=True)


def test_the_picked_model_is_shown_on_every_page(tmp_path, diabetes):
    settings = _two_models(tmp_path, diabetes)
    client = create_app(settings).test_client()
    first = client.get("/ui/models").get_data(as_text=True)
    assert 'aria-label="models"' in first
    assert 'aria-current="true">sugar' in first  # the first model until another is picked
    picked = client.get("/ui/models?model=pressure").get_data(as_text=True)
    assert 'aria-current="true">pressure' in picked
    later = client.get("/ui/runs").get_data(as_text=True)  # no ?model=: the session keeps it
    assert 'aria-current="true">pressure' in later


def test_a_model_not_served_is_a_404_naming_the_models(tmp_path, diabetes):
    client = create_app(_two_models(tmp_path, diabetes)).test_client()
    reply = client.get("/ui/files?model=nope")
    assert reply.status_code == 404
    assert "sugar, pressure" in reply.get_json()["error"]["message"]


def test_forms_and_the_score_page_name_the_picked_model(tmp_path, diabetes):
    client = create_app(_two_models(tmp_path, diabetes)).test_client()
    client.get("/?model=pressure")
    models = client.get("/ui/models").get_data(as_text=True)
    assert 'href="/ui/models?v=1&amp;model=pressure"' in models
    runs = client.get("/ui/runs").get_data(as_text=True)
    assert 'action="/ui/runs/retrain?model=pressure"' in runs
    score = client.get("/ui/score").get_data(as_text=True)
    assert 'data-endpoint="/models/pressure/score-file"' in score
    client.get("/?model=sugar")  # the first model answers today's paths
    assert 'data-endpoint="/score-file"' in client.get("/ui/score").get_data(as_text=True)


def test_the_overview_speaks_of_the_picked_model(tmp_path, diabetes):
    settings = _two_models(tmp_path, diabetes)
    settings = make_settings(
        tmp_path,
        models={"sugar": {"target": "target"}, "pressure": {"target": "bp"}, "fresh": {}},
    )
    client = create_app(settings).test_client()
    page = client.get("/?model=fresh").get_data(as_text=True)
    assert "No model yet" in page
    assert "<code>fresh/inbox/train/</code>" in page  # its own inbox, not the default's
    assert "/ui/files?state=normalized&amp;model=fresh" in page
    trained = client.get("/?model=pressure").get_data(as_text=True)
    assert "No model yet" not in trained
