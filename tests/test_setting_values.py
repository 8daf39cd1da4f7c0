"""Coercion of one settings value, as properties over many values, and its shape kept small.

``tests/test_settings.py`` holds the contract through ``load_settings`` (each message a person
sees); these properties drive ``coerce`` itself with values of every kind, against every declared
type, so a per-kind coercer that returns the wrong type or lets another exception out is caught.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scoring import setting_values
from scoring.setting_values import SettingsError, coerce

BASE = Path("/base")
HINTS: list[Any] = [bool, int, float, str, Path, list[str], dict[str, Any], int | None]
# Values as TOML and the environment give them: scalars, lists and tables of them.
TOML_INTS = st.integers(-(2**63), 2**63 - 1)  # TOML's integers are 64-bit
scalars = st.none() | st.booleans() | TOML_INTS | st.floats() | st.text(max_size=20)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner)
)


@given(value=values, hint=st.sampled_from(HINTS))
def test_a_value_becomes_its_type_or_one_line_naming_the_key(value, hint):
    try:
        result = coerce("[s] k", value, hint, {}, BASE)
    except SettingsError as exc:
        assert str(exc).startswith("[s] k")
        assert "\n" not in str(exc)
        return
    if hint == int | None:
        assert result is None or type(result) is int
    else:
        expected = {list[str]: list, dict[str, Any]: dict}.get(hint, hint)
        assert type(result) is expected or (hint is Path and isinstance(result, Path))


@given(number=TOML_INTS | st.floats(allow_nan=False), low=st.integers(-5, 5))
def test_numbers_keep_their_bounds(number, low):
    try:
        result = coerce("[s] n", number, float, {"ge": low}, BASE)
    except SettingsError as exc:
        assert number < low and f"at least {low}" in str(exc)
    else:
        assert result >= low and result == float(number)


@given(number=st.floats(allow_nan=False, allow_infinity=False))
def test_a_whole_number_field_takes_only_whole_numbers(number):
    if number.is_integer():
        assert coerce("[s] n", number, int, {}, BASE) == int(number)
    else:
        with pytest.raises(SettingsError, match="a whole number"):
            coerce("[s] n", number, int, {}, BASE)


@given(flag=st.booleans(), word=st.sampled_from(["true", "false", "1", "0"]), upper=st.booleans())
def test_booleans_and_their_spellings(flag, word, upper):
    assert coerce("[s] b", flag, bool, {}, BASE) is flag
    text = word.upper() if upper else word
    assert coerce("[s] b", text, bool, {}, BASE) is (word in ("true", "1"))
    with pytest.raises(SettingsError, match="true or false"):
        coerce("[s] b", 1, bool, {}, BASE)  # a number is not a flag, even 1


@given(entries=st.lists(st.text(alphabet="abc xyz", max_size=6), max_size=5))
def test_a_comma_list_from_the_environment_is_its_trimmed_entries(entries):
    text = ",".join(entries)
    expected = [e.strip() for e in text.split(",") if e.strip()]
    assert coerce("[s] l", text, list[str], {}, BASE) == expected


@given(value=st.text(min_size=1, max_size=30))
def test_a_secret_is_never_repeated_in_its_error(value):
    checks = {"secret": True, "min_length": 40}
    with pytest.raises(SettingsError) as info:
        coerce("[server] api_keys", [value], list[str], checks, BASE)
    assert repr(value) not in str(info.value) and "entry 1 is shorter" in str(info.value)


@given(hint=st.sampled_from(HINTS), empty=st.sampled_from(["", None]))
def test_an_empty_optional_is_none(hint, empty):
    assert coerce("[s] o", empty, hint | None, {}, BASE) is None


@given(name=st.text(alphabet="abc/._", min_size=1, max_size=12))
def test_a_relative_path_is_under_the_base(name):
    result = coerce("[s] p", name, Path, {}, BASE)
    assert result == (Path(name) if Path(name).is_absolute() else BASE / name)


def test_choices_and_encodings_are_checked():
    assert coerce("[s] c", "a", str, {"choices": ("a", "b")}, BASE) == "a"
    with pytest.raises(SettingsError, match="one of a, b"):
        coerce("[s] c", "z", str, {"choices": ("a", "b")}, BASE)
    assert coerce("[ingest] csv_encodings", ["latin-1"], list[str], {}, BASE) == ["latin-1"]
    with pytest.raises(SettingsError, match="'klingon' is not one"):
        coerce("[ingest] csv_encodings", ["klingon"], list[str], {}, BASE)
    assert math.isinf(coerce("[s] f", math.inf, float, {}, BASE))


def complexity(function: ast.FunctionDef) -> int:
    """McCabe's number, as ruff and flake8 count it: one plus each decision point."""
    decisions = (ast.If, ast.For, ast.While, ast.IfExp, ast.ExceptHandler, ast.comprehension)
    count = 1
    for node in ast.walk(function):
        if isinstance(node, decisions):
            count += 1 + (len(node.ifs) if isinstance(node, ast.comprehension) else 0)
        elif isinstance(node, ast.BoolOp):
            count += len(node.values) - 1
    return count


def test_the_complexity_counter_counts_branches():
    tree = ast.parse("def f(a, b):\n    if a and b:\n        return [x for x in a if x]\n")
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    assert complexity(function) == 5  # 1 + if + and + for + if


def test_coercion_is_a_table_of_small_coercers():
    """`coerce` was one function of complexity 23; each kind now has its own coercer."""
    source = Path(setting_values.__file__).read_text(encoding="utf-8")
    functions = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)]
    counts = {f.name: complexity(f) for f in functions}
    assert counts["coerce"] <= 8, counts
    assert max(counts.values()) <= 12, counts
