"""The models page's traffic control: the picked model's shadow or canary, set from a form.

The same setting as ``PUT /models/<name>/traffic`` (one ``parse_setting``, the role ``operate``,
an audit row), shown with the figures ``GET /challenger`` gives and the canary rule's last
check; a bad field comes back as a flashed line naming it, never an error page.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from scoring.api.audited import note
from scoring.api.auth import current_key_name
from scoring.api.context import services
from scoring.api.pages.views import bp
from scoring.api.traffic import traffic_of
from scoring.errors import DropscoreError
from scoring.traffic.rule import RULE_DOCS, RULE_FIELDS, CanaryRule, last_check
from scoring.traffic.setting import MODES, pair_of, parse_setting


@bp.app_context_processor
def _traffic() -> dict[str, Any]:
    """Give the models page the picked model's setting and figures (read when rendered)."""
    return {"traffic_now": _now, "traffic_modes": MODES}


def _now() -> dict[str, Any]:
    m = services().model()
    current = traffic_of(current_app).current(m.name)
    days = [
        {"day": k.day, "version": k.version, "kind": k.kind, **f.summary(k.kind)}
        for k, f in m.traffic.days(limit=10)
    ]
    state = m.traffic.rule_state()
    rule = current.setting.rule or CanaryRule()  # the form carries the rule set, else defaults
    limits = [
        {"name": name, "value": value, "doc": RULE_DOCS[name]}
        for name, value in rule.to_dict().items()
    ]
    return {
        "rule_fields": limits,
        "setting": current.setting.to_dict(),
        "challenger": current.challenger,
        "days": days,
        "rule_line": last_check(None if state is None else state.last),
    }


@bp.post("/ui/models/traffic")
def set_traffic() -> Response:
    """Set the picked model's traffic from the form, as ``PUT /traffic`` does."""
    m = services().model()
    form = request.form
    body: dict[str, Any] = {"mode": form.get("mode", "")}
    if form.get("version", "").strip():
        body["version"] = form["version"].strip()
    if form.get("fraction", "").strip():
        try:
            body["fraction"] = float(form["fraction"])
        except ValueError:
            body["fraction"] = form["fraction"][:20]  # refused below, by name
    if form.get("key", "").strip() and body["mode"] == "canary":
        body["key"] = form["key"].strip()
    if form.get("rule") and body["mode"] == "canary":
        body["rule"] = _rule(form)
    try:
        setting = parse_setting(body)
        if setting.mode != "off" and isinstance(setting.version, int):
            if setting.version not in m.versions.known():
                raise DropscoreError(f"version: model {m.name!r} has no version {setting.version}")
            note(version=setting.version)
    except DropscoreError as exc:
        problems = "; ".join(f"{d['field']}: {d['problem']}" for d in exc.details)
        flash(f"traffic not changed: {problems or exc.message}")
        return redirect(url_for("pages.models", **_model_arg()))
    m.traffic.set(setting, by=current_key_name(), pair=pair_of(setting, m.registry))
    traffic_of(current_app).forget(m.name)
    flash(f"traffic of {m.name}: {setting.mode}")
    return redirect(url_for("pages.models", **_model_arg()))


def _rule(form: Any) -> dict[str, Any]:
    """Read the form's rule fields (the page fills in the rule set): a blank keeps the default."""
    rule: dict[str, Any] = {}
    for name in RULE_FIELDS:
        given = form.get(f"rule.{name}", "").strip()
        if not given:
            continue
        try:
            rule[name] = float(given)
        except ValueError:
            rule[name] = given[:20]  # refused by parse_setting, by name
    return rule


def _model_arg() -> dict[str, Any]:
    name = services().model().name
    return {"model": name} if len(services().models) > 1 else {}
