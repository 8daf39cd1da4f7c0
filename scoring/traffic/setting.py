"""A model's traffic setting (off, shadow or canary), and the one check of a person's input.

The API's ``PUT /models/<name>/traffic`` and ``dropscore traffic`` both pass what they were
given through ``parse_setting``, so a bad field is refused the same way in both, naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scoring.errors import ValidationFailed
from scoring.traffic.rule import CanaryRule, parse_rule

if TYPE_CHECKING:
    from scoring.lifecycle.registry import Registry

MODES = ("off", "shadow", "canary")
LATEST = "latest"  # the newest registered version that is not the champion
FIELDS = ("mode", "version", "fraction", "key", "rule")
# A sticky key names an id column or a request header: letters, digits, ``_``, ``-`` and ``.``.
KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_VERSION = 10**18  # a version is a SQLite integer


@dataclass(frozen=True)
class TrafficSetting:
    """What a person set for one model's live traffic; ``off`` sends everything to the champion."""

    mode: str = "off"
    version: int | str = LATEST  # a version number, or ``latest``
    fraction: float = 0.0  # the share of requests shadowed (shadow) or answered (canary)
    key: str | None = None  # canary: the id column or header whose value keeps a client sticky
    rule: CanaryRule | None = None  # canary: promote or roll back by rule; None: a person does

    def to_dict(self) -> dict[str, Any]:
        """Return the setting as the API and the CLI show it."""
        rule = None if self.rule is None else self.rule.to_dict()
        return {"mode": self.mode, "version": self.version, "fraction": self.fraction,
                "key": self.key, "rule": rule}  # fmt: skip


OFF = TrafficSetting()


def parse_setting(body: Any) -> TrafficSetting:
    """Validate a person's setting; a ``ValidationFailed`` (422) names every bad field."""
    if not isinstance(body, dict):
        raise ValidationFailed(
            "the body must be a JSON object with mode, and version, fraction, key as needed",
            [{"field": "(body)", "problem": "not an object"}],
        )
    details: list[dict[str, str]] = []
    for name in body:
        if name not in FIELDS:
            shown = name if KEY_NAME.fullmatch(str(name)) else "(a field)"
            known = ", ".join(FIELDS)
            details.append({"field": shown, "problem": f"unknown field; known: {known}"})
    mode = body.get("mode")
    if mode not in MODES:
        details.append({"field": "mode", "problem": f"must be one of {', '.join(MODES)}"})
    version = _version(body.get("version", LATEST), details)
    fraction = _fraction(body, mode, details)
    key = body.get("key")
    if key is not None and (not isinstance(key, str) or not KEY_NAME.fullmatch(key)):
        details.append(
            {"field": "key", "problem": "must be an id column or header name (letters, digits,"
             " _ - ., at most 64)"}
        )  # fmt: skip
    elif key is not None and mode != "canary":
        details.append({"field": "key", "problem": "a sticky key is for canary mode only"})
    rule = parse_rule(body.get("rule"), details)
    if rule is not None and mode != "canary":
        details.append({"field": "rule", "problem": "a rule decides a canary: canary mode only"})
    if details:
        raise ValidationFailed(
            f"invalid traffic setting: {', '.join(d['field'] for d in details)}", details
        )
    if mode == "off":
        return OFF
    return TrafficSetting(str(mode), version, fraction, key, rule)


def _version(value: Any, details: list[dict[str, str]]) -> int | str:
    if value == LATEST:
        return LATEST
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value < MAX_VERSION:
        return value
    details.append({"field": "version", "problem": 'must be a version number or "latest"'})
    return LATEST


def _fraction(body: dict[str, Any], mode: Any, details: list[dict[str, str]]) -> float:
    if "fraction" not in body:
        if mode == "canary":
            details.append({"field": "fraction", "problem": "canary needs a fraction (0..1)"})
        return 1.0 if mode == "shadow" else 0.0
    value = body["fraction"]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
        return float(value)
    details.append({"field": "fraction", "problem": "must be a number from 0 to 1"})
    return 0.0


def resolve(setting: TrafficSetting, champion: int | None, known: list[int]) -> int | None:
    """Name the challenger's version: the one set, or the newest that is not the champion."""
    if setting.version != LATEST:
        return int(setting.version) if int(setting.version) in known else None
    others = [v for v in known if v != champion]
    return max(others) if others else None


def pair_of(setting: TrafficSetting, registry: Registry) -> tuple[int, int] | None:
    """Return the (champion, challenger) a setting resolves to now; None: no such pair."""
    champion = registry.champion_version()
    challenger = resolve(setting, champion, [record.version for record in registry.list()])
    if champion is None or challenger is None or challenger == champion:
        return None
    return champion, challenger
