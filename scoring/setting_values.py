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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
    if _is_optional(hint):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        if value in ("", None):
            return None
    setting = _Setting(where, value, checks, base)
    coercer = _COERCERS.get(typing.get_origin(hint) or hint)
    if coercer is None:  # pragma: no cover - every declared type has a coercer
        raise setting.fail(str(hint))
    return coercer(setting, hint)


@dataclass(frozen=True)
class _Setting:
    """One value on its way to its declared type: where it came from and its field's checks."""

    where: str
    value: Any
    checks: Mapping[str, Any]
    base: Path

    def fail(self, expected: str) -> SettingsError:
        """Say what was expected, naming the key (and the value, unless the field is secret)."""
        if self.checks.get("secret"):  # a key is never printed, not even a wrong one
            return SettingsError(f"{self.where}: expected {expected}")
        return SettingsError(f"{self.where} = {self.value!r}: expected {expected}")


def _boolean(setting: _Setting, hint: Any) -> bool:
    value = setting.value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if not isinstance(value, bool):
        raise setting.fail("true or false")
    return value


def _number(setting: _Setting, hint: Any) -> int | float:
    value = setting.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise setting.fail("a number" if hint is float else "a whole number")
    if hint is int and not float(value).is_integer():
        raise setting.fail("a whole number")
    number: int | float = hint(value)
    _check_bounds(number, setting)
    return number


def _text(setting: _Setting, hint: Any) -> str:
    value, checks = setting.value, setting.checks
    if not isinstance(value, str):
        raise setting.fail("text")
    if "choices" in checks and value not in checks["choices"]:
        raise setting.fail("one of " + ", ".join(checks["choices"]))
    return value


def _path(setting: _Setting, hint: Any) -> Path:
    value = setting.value
    if not isinstance(value, str) or not value:
        raise setting.fail("a path")
    p = Path(value).expanduser()
    return p if p.is_absolute() else setting.base / p


def _text_list(setting: _Setting, hint: Any) -> list[str]:
    value = setting.value
    if isinstance(value, str):  # from the environment: comma-separated
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise setting.fail("a list of text")
    if setting.where.endswith("csv_encodings"):
        _check_encodings(value, setting)
    _check_entries(value, setting)
    return list(value)


def _table(setting: _Setting, hint: Any) -> dict[str, Any]:
    if not isinstance(setting.value, dict):
        raise setting.fail("a table of keyword arguments")
    return dict(setting.value)


# The coercer of each declared type (a generic one by its origin: list[str] is list).
_COERCERS: dict[Any, Callable[[_Setting, Any], Any]] = {
    bool: _boolean,
    int: _number,
    float: _number,
    str: _text,
    Path: _path,
    list: _text_list,
    dict: _table,
}


def _check_encodings(names: list[str], setting: _Setting) -> None:
    for name in names:
        try:
            codecs.lookup(name)
        except LookupError:
            raise setting.fail(f"known encodings ({name!r} is not one)") from None


def _check_entries(items: list[str], setting: _Setting) -> None:
    checks = setting.checks
    for item in items if "each" in checks else ():
        problem = checks["each"](item)
        if problem:
            raise setting.fail(problem)
    shortest = checks.get("min_length", 0)
    for number, item in enumerate(items, start=1):
        if len(item) < shortest:
            raise setting.fail(
                f"entries of at least {shortest} characters (entry {number} is shorter)"
            )


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in (
        typing.get_args(hint)
    )


def _check_bounds(value: float, setting: _Setting) -> None:
    checks = setting.checks
    for name, test, words in (
        ("gt", lambda v, b: v > b, "greater than"),
        ("ge", lambda v, b: v >= b, "at least"),
        ("lt", lambda v, b: v < b, "less than"),
        ("le", lambda v, b: v <= b, "at most"),
    ):
        if name in checks and not test(value, checks[name]):
            raise setting.fail(f"a number {words} {checks[name]}")
