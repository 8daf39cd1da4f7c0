"""The ``[models.<name>]`` section of settings.toml as text: written by ``dropscore init``.

Pure functions: values in, TOML text out, with the help text of the settings dataclasses as a
comment above each key (``scoring.settings.documented_keys``), so the written file explains
itself the way the shipped one does. Appending keeps the existing file byte for byte.
"""

from __future__ import annotations

import math
import re
import textwrap
import tomllib
from collections.abc import Mapping
from importlib import resources
from typing import Any

from ingest.base.layout import DEFAULT_MODEL, model_name_problem
from scoring.settings import documented_keys

MODEL_KEYS = ("target", "features", "id_columns", "estimator", "params")
TRAINING_KEYS_NOTE = (
    "any key of [training] may be set here too ({keys}); unset ones follow [training],"
    " except bootstrap_data"
)
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}
_INLINE_WIDTH = 100
# The shipped settings.toml, packaged (a test keeps it the same as the repository's): `init`
# starts a new settings file from it, so the file explains every key as the shipped one does.
SAMPLE_SETTINGS = "sample_settings.toml"
DEFAULT_MODEL_NOTE = (
    "# [model] below is the model 'default'. This file serves the [models.*] sections at its end;"
    "\n# uncomment [model] and set its target to serve 'default' too.\n"
)
_BOOTSTRAP_LINE = re.compile(r"^bootstrap_data = .*$", re.MULTILINE)


def check_model_name(name: str, existing: Mapping[str, Any]) -> None:
    """Raise ValueError when ``name`` is not a valid model name or is taken in ``existing``.

    ``existing`` is the parsed settings file; ``default`` is taken when it has ``[model]``.
    """
    problem = model_name_problem(name)
    if problem:
        raise ValueError(problem)
    models = existing.get("models")
    if isinstance(models, Mapping) and name in models:
        raise ValueError(f"model name {name!r} is taken: the settings file has [models.{name}]")
    if name == DEFAULT_MODEL and "model" in existing:
        raise ValueError(
            f"model name {name!r} is taken: the settings file's [model] section is that model"
        )


def toml_string(text: str) -> str:
    """Quote text as a TOML basic string, escaping what TOML forbids raw."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    """Render a settings value (text, number, flag, list or table) as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return ("-" if value < 0 else "") + ("nan" if math.isnan(value) else "inf")
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        inner = ", ".join(f"{toml_string(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    raise TypeError(f"cannot write {type(value).__name__} as a settings value")


def _assignment(key: str, value: Any) -> str:
    """Write ``key = value``, breaking a long list over lines, one item each."""
    line = f"{key} = {toml_value(value)}"
    if len(line) <= _INLINE_WIDTH or not isinstance(value, list | tuple):
        return line
    items = "".join(f"    {toml_value(v)},\n" for v in value)
    return f"{key} = [\n{items}]"


def section_text(name: str, values: Mapping[str, Any]) -> str:
    """Return ``[models.<name>]`` with each key under its help comment, ending in a newline."""
    helps = {**documented_keys()["training"], **documented_keys()["model"]}
    lines = [f"[models.{name}]"]
    for key, value in values.items():
        if key not in helps:
            raise KeyError(f"{key!r} is not a key of [model] or [training]")
        lines.append(f"# {helps[key]}")
        lines.append(_assignment(key, value))
    training = [k for k in documented_keys()["training"] if k not in values]
    if training:
        note = TRAINING_KEYS_NOTE.format(keys=", ".join(training))
        lines += textwrap.wrap(note, _INLINE_WIDTH, initial_indent="# ", subsequent_indent="# ")
    return "\n".join(lines) + "\n"


def sample_settings() -> str:
    """Return the shipped settings.toml as packaged with dropscore (no checkout needed)."""
    return resources.files("scoring.service").joinpath(SAMPLE_SETTINGS).read_text("utf-8")


def new_settings_text(sample: str) -> str:
    """Return the shipped file made into a new service's: [model] commented out, no sample file.

    ``init`` adds the model it is told about; the shipped [model] (the model 'default', which
    predicts a column named "target") would be served beside it, waiting for data it never gets,
    and the shipped sample file is not beside a new service.
    """
    out = []
    in_model = False
    for line in sample.splitlines(keepends=True):
        text = line.strip()
        if text.startswith("["):
            in_model = text == "[model]"
            if in_model:
                out.append(DEFAULT_MODEL_NOTE)
        if in_model and text and not text.startswith("#"):
            line = "# " + line
        out.append(line)
    return _BOOTSTRAP_LINE.sub('bootstrap_data = ""', "".join(out))


def append_section(existing: bytes, section: str) -> bytes:
    """Return the file with the section appended after a blank line; the old bytes unchanged."""
    if not existing:
        return section.encode("utf-8")
    sep = b"\n" if existing.endswith(b"\n") else b"\n\n"
    return existing + sep + section.encode("utf-8")


def appended_values(new_text: bytes, name: str) -> dict[str, Any]:
    """Parse the file as it would be written and return the new section's values.

    Raises ValueError when the result is not valid TOML (an inline ``models`` table, say), so a
    file is never written in a state the loader would refuse.
    """
    try:
        parsed = tomllib.loads(new_text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"the settings file would not be valid TOML with it: {exc}") from None
    return dict(parsed["models"][name])
