"""The dashboard over several models: a picker on every page, the choice kept across pages."""

from __future__ import annotations

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
        register_trained(one, Registry(one.models_dir, one.db_path), diabetes)
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
