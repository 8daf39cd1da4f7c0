"""Say what kind of value a client sent, never the value: the one way errors describe bad input.

An error that repeats what it was sent reflects it: into a page (a script in ``?v=``), into logs
and proxies' caches, into a screenshot in a ticket. So every message names the field and the
kind of value ("got text", "got a negative number"), which is what the sender needs to fix it.
"""

from __future__ import annotations

import math
import re

_WHOLE = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def kind_of(value: object) -> str:
    """Describe a value by its kind, e.g. 'text', 'a negative number', 'a list'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return _number_kind(value)
    if isinstance(value, str):
        return _text_kind(value)
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a value of another kind"


def _number_kind(value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "a number that is not finite"
    if value < 0:
        return "a negative number"
    if isinstance(value, float) and not value.is_integer():
        return "a fraction"
    return "a number"


def _text_kind(text: str) -> str:
    """Describe a text (a query parameter, a header, a cell) by what it looks like."""
    if not text:
        return "empty text"
    if not text.strip():
        return "only spaces"
    bare = text.strip()
    if _WHOLE.fullmatch(bare):
        return "a negative number" if bare.startswith("-") else "a whole number"
    if _DECIMAL.fullmatch(bare):
        return "a decimal number"
    if any(c.isdigit() for c in bare) and all(c.isdigit() for c in bare):
        return "digits that are not 0-9"  # '²', '٣': str.isdigit says yes, int() says no
    return "text"


NAME_LIMIT = 64  # a longer name is described, not repeated
_NAME_MARKS = frozenset("_.-")


def name_shown(name: object) -> str:
    """Show a client-given name when it is a plain name (``bmii``), else describe it.

    A plain name is short and only letters, digits, ``_``, ``.`` and ``-``: repeating it helps
    the sender spot a typo. Anything else (markup, spaces, control characters, a long text) is
    described in words, so no client text beyond a name-shaped word reaches a message.
    """
    if not isinstance(name, str):
        return "(a name that is not text)"
    if not name:
        return "(an empty name)"
    if len(name) > NAME_LIMIT:
        return f"(a name longer than {NAME_LIMIT} characters)"
    if all(c.isalnum() or c in _NAME_MARKS for c in name):
        return name
    return "(a name with characters that are not letters or digits)"
