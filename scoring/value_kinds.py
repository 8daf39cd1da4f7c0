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
