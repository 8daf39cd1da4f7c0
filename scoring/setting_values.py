"""How a value from ``settings.toml`` or the environment becomes a typed setting, or an error.

Kept apart from ``scoring.settings`` (what the settings are) because it is the parsing: the
``DROPSCORE__…`` variables, merging layers, and the coercion of one value to its declared type
with the checks its field declares, failing with one line naming the key.
"""

from __future__ import annotations

import codecs
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV_PREFIX = "DROPSCORE__"
ENV_API_KEYS = "DROPSCORE_API_KEYS"


class SettingsError(Exception):
    """A settings value that cannot be used; the message is one line a person can act on."""


def merge(into: dict[str, dict[str, Any]], extra: Mapping[str, Mapping[str, Any]]) -> None:
    """Lay one layer of settings over another, key by key (a [models.<name>] table by model)."""
    for section, values in extra.items():
        if section == "models" and isinstance(into.get(section), dict):
            for name, keys in values.items():  # one [models.<name>] table at a time
                current = into[section].setdefault(name, {})
                if isinstance(current, dict) and isinstance(keys, Mapping):
                    current.update(keys)
                else:
                    into[section][name] = keys
            continue
        into.setdefault(section, {}).update(values)


def env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Read ``DROPSCORE__SECTION__KEY`` (and ``DROPSCORE__MODELS__NAME__KEY``) variables; values
    parse as TOML, else as text."""
    out: dict[str, dict[str, Any]] = {}
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) == 3 and parts[0] == "models" and all(parts):
            out.setdefault("models", {}).setdefault(parts[1], {})[parts[2]] = _parse_env_value(text)
            continue
        if len(parts) != 2 or not all(parts):
            raise SettingsError(
                f"environment variable {name}: expected DROPSCORE__SECTION__KEY"
                " or DROPSCORE__MODELS__NAME__KEY"
            )
        out.setdefault(parts[0], {})[parts[1]] = _parse_env_value(text)
    if env.get(ENV_API_KEYS):
        keys = [k.strip() for k in env[ENV_API_KEYS].split(",") if k.strip()]
        out.setdefault("server", {})["api_keys"] = keys
    return out


def _parse_env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def coerce(where: str, value: Any, hint: Any, checks: Mapping[str, Any], base: Path) -> Any:
    """Turn a TOML or environment value into the declared type, or say why it cannot be."""
    optional = _is_optional(hint)
    if optional:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        if value in ("", None):
            return None

    def fail(expected: str) -> SettingsError:
        if checks.get("secret"):  # a key is never printed, not even a wrong one
            return SettingsError(f"{where}: expected {expected}")
        return SettingsError(f"{where} = {value!r}: expected {expected}")

    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail("a number" if hint is float else "a whole number")
        if hint is int and not float(value).is_integer():
            raise fail("a whole number")
        value = hint(value)
        _check_bounds(value, checks, fail)
        return value
    if hint is str:
        if not isinstance(value, str):
            raise fail("text")
        if "choices" in checks and value not in checks["choices"]:
            raise fail("one of " + ", ".join(checks["choices"]))
        return value
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise fail("a path")
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p
    if typing.get_origin(hint) is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail("a list of text")
        if where.endswith("csv_encodings"):
            for name in value:
                try:
                    codecs.lookup(name)
                except LookupError:
                    raise fail(f"known encodings ({name!r} is not one)") from None
        for item in value if "each" in checks else ():
            problem = checks["each"](item)
            if problem:
                raise fail(problem)
        shortest = checks.get("min_length", 0)
        for number, item in enumerate(value, start=1):
            if len(item) < shortest:
                raise fail(f"entries of at least {shortest} characters (entry {number} is shorter)")
        return list(value)
    if typing.get_origin(hint) is dict:
        if not isinstance(value, dict):
            raise fail("a table of keyword arguments")
        return dict(value)
    raise fail(str(hint))  # pragma: no cover - every declared type is handled above


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in (
        typing.get_args(hint)
    )


def _check_bounds(value: float, checks: Mapping[str, Any], fail: Any) -> None:
    for name, test, words in (
        ("gt", lambda v, b: v > b, "greater than"),
        ("ge", lambda v, b: v >= b, "at least"),
        ("lt", lambda v, b: v < b, "less than"),
        ("le", lambda v, b: v <= b, "at most"),
    ):
        if name in checks and not test(value, checks[name]):
            raise fail(f"a number {words} {checks[name]}")
