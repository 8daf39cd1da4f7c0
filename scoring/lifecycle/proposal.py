"""What a new model should be, read from a sample of its data: features, ids, task, estimator.

Pure functions over an Arrow table that carries lake names and types (``ingest.pipeline.sample``).
Every decision comes with a sentence saying how it was reached, because ``dropscore init`` shows
them to a person who must be able to check them. A user's explicit choice always wins over
inference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ingest.lake.store import type_kind
from scoring.lifecycle.estimators import ESTIMATORS, check_estimator_name
from scoring.lifecycle.schema import MAX_CATEGORIES, normalize_name

TASKS = ("classification", "regression")
# An integer target with at most this many distinct values, each class holding on average at
# least 1/CLASS_MAX_SHARE rows, is a set of classes rather than a quantity.
CLASS_MAX_DISTINCT = 20
CLASS_MAX_SHARE = 0.05
# A classification target with more classes than this is worth a second look.
MANY_CLASSES = 100
# From this many sample rows on, gradient-boosted trees; below, a linear model.
LARGE_SAMPLE = 10_000
ESTIMATOR_FOR = {
    ("regression", False): "linear_regression",
    ("regression", True): "hist_gradient_boosting",
    ("classification", False): "logistic_regression",
    ("classification", True): "hist_gradient_boosting_classifier",
}
ID_NAME = re.compile(r"^(id|uuid|guid|key|pk|row_?id|index)$|_(id|uuid|guid|key)$|^(id|uuid)_")
EXAMPLES = 3


class ProposalError(ValueError):
    """The sample or the user's choices cannot make a model; the message says what to change."""


@dataclass(frozen=True)
class ColumnFacts:
    """What the sample says about one column, enough to decide its role."""

    name: str
    kind: str  # "integer", "float", "boolean", "text", "timestamp" or "empty"
    rows: int
    present: int  # rows with a value
    distinct: int  # distinct values among those
    examples: tuple[str, ...]  # a few distinct values, in order of appearance
    whole: bool = False  # numbers that are all whole (integers, or floats like 1.0)
    sequence: bool = False  # integers, one per row, forming one unbroken run


@dataclass(frozen=True)
class Choices:
    """What the user fixed on the command line; None leaves it to inference."""

    task: str | None = None
    estimator: str | None = None
    features: tuple[str, ...] | None = None
    id_columns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Proposal:
    """A model's definition and, for each decision, why it was made."""

    target: str
    task: str
    estimator: str
    features: tuple[str, ...]
    id_columns: tuple[str, ...]
    left_out: tuple[tuple[str, str], ...]  # (column, why it is not a feature)
    reasons: tuple[str, ...]  # the task and estimator, then the id columns
    warnings: tuple[str, ...] = ()


# The lake's kinds of column, in the words a proposal uses.
_WORDS = {"null": "empty", "string": "text", "other": "text"}


def _kind(t: pa.DataType) -> str:
    kind = type_kind(t)
    return _WORDS.get(kind, kind)


def column_facts(name: str, column: pa.ChunkedArray) -> ColumnFacts:
    """Count what deciding a column's role needs: kind, values present, distinct values."""
    kind = _kind(column.type)
    present = len(column) - column.null_count
    if kind == "empty" or present == 0:
        return ColumnFacts(name, "empty", len(column), 0, 0, ())
    values = column.drop_null()
    unique = pc.unique(values)
    examples = tuple(_show(v) for v in unique.slice(0, EXAMPLES).to_pylist())
    whole = kind == "integer" or (
        kind == "float" and bool(pc.all(pc.equal(pc.floor(values), values)).as_py())
    )
    sequence = False
    if kind == "integer" and len(unique) == present == len(column):
        low, high = pc.min_max(values).values()
        sequence = high.as_py() - low.as_py() + 1 == present
    return ColumnFacts(name, kind, len(column), present, len(unique), examples, whole, sequence)


def _show(value: object) -> str:
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return text if len(text) <= 24 else text[:23] + "…"


def describe(table: pa.Table) -> dict[str, ColumnFacts]:
    """Return the facts of every column of a sample, in the file's order."""
    return {name: column_facts(name, table.column(name)) for name in table.column_names}


def resolve(
    names: Sequence[str], columns: Sequence[str], column_map: Mapping[str, str], what: str
) -> tuple[str, ...]:
    """Map names as a user wrote them (header or lake name) to lake names, refusing non-columns.

    The refusal lists the columns there are, so the user can pick one.
    """
    out = []
    for name in names:
        lake = name if name in columns else column_map.get(name) or normalize_name(name)
        if lake not in columns:
            raise ProposalError(
                f"{what} {name!r} is not a column of the sample; columns are {', '.join(columns)}"
            )
        out.append(lake)
    return tuple(dict.fromkeys(out))


def infer_task(facts: ColumnFacts) -> tuple[str, str]:
    """Decide classification or regression from the target's values; return it and why."""
    t = facts.name
    if facts.kind == "empty":
        raise ProposalError(f"target {t!r} has no values in the sample; choose a labelled column")
    if facts.kind == "timestamp":
        raise ProposalError(
            f"target {t!r} holds dates or times; dropscore predicts numbers or classes"
        )
    values = _values(facts)
    if facts.kind == "boolean":
        return "classification", f"target {t!r} is true/false ({values}) → classification"
    if facts.kind == "text":
        return "classification", (
            f"target {t!r} has {_n(facts.distinct)} distinct values ({values}, text)"
            " → classification"
        )
    kind = "integer" if facts.kind == "integer" else "float, whole numbers only"
    if facts.whole and facts.distinct <= 2:
        return "classification", (
            f"target {t!r} is {kind} with {_n(facts.distinct)} distinct values ({values})"
            " → classification"
        )
    rule = f"≤ {CLASS_MAX_DISTINCT} and ≤ {CLASS_MAX_SHARE:.0%} of {_n(facts.present)} rows"
    share_ok = facts.distinct <= CLASS_MAX_SHARE * facts.present
    if facts.whole and facts.distinct <= CLASS_MAX_DISTINCT and share_ok:
        return "classification", (
            f"target {t!r} is {kind} with {_n(facts.distinct)} distinct values ({values};"
            f" {rule}) → classification"
        )
    if facts.whole:
        return "regression", (
            f"target {t!r} is {kind} with {_n(facts.distinct)} distinct values in"
            f" {_n(facts.present)} rows (not {rule}) → regression"
        )
    return "regression", (
        f"target {t!r} is float with {_n(facts.distinct)} distinct values → regression"
    )


def _values(facts: ColumnFacts) -> str:
    more = "…" if facts.distinct > len(facts.examples) else ""
    return "/".join(facts.examples) + more


def _n(count: int) -> str:
    return f"{count:,}"


def choose_estimator(task: str, rows: int) -> tuple[str, str]:
    """Pick the estimator for a task by the sample's size; return it and why."""
    large = rows >= LARGE_SAMPLE
    name = ESTIMATOR_FOR[(task, large)]
    why = (
        f"{_n(rows)} rows ≥ {_n(LARGE_SAMPLE)}: gradient-boosted trees"
        if large
        else f"{_n(rows)} rows < {_n(LARGE_SAMPLE)}: a linear model"
    )
    return name, f"estimator {name} ({why})"


def id_reason(facts: ColumnFacts) -> str | None:
    """Say why a column looks like a row identifier, or None when it does not."""
    if ID_NAME.search(facts.name):
        return "its name looks like an id"
    unique = facts.rows >= 2 and facts.present == facts.distinct == facts.rows
    if unique and facts.sequence:
        return "an integer sequence, one value per row"
    if unique and facts.kind == "text":
        return "text with a different value in every row"
    return None


def not_a_feature(facts: ColumnFacts) -> str | None:
    """Say why a column cannot be a feature (empty, constant, dates, free text), or None."""
    if facts.kind == "empty":
        return "empty in the sample"
    if facts.distinct == 1:
        return f"constant: every value is {facts.examples[0]!r}"
    if facts.kind == "timestamp":
        return "dates and times are not used as features"
    if facts.kind == "text" and facts.distinct > MAX_CATEGORIES:
        return (
            f"text with {_n(facts.distinct)} distinct values (more than {MAX_CATEGORIES}):"
            " free text or an id, not a category"
        )
    return None


def propose(
    facts: Mapping[str, ColumnFacts], target: str, choices: Choices | None = None
) -> Proposal:
    """Propose a model for ``target`` from a sample's column facts, honouring the user's choices.

    Names in ``choices`` must already be lake names (see ``resolve``).
    """
    choices = choices or Choices()
    if target not in facts:
        raise ProposalError(
            f"target {target!r} is not a column of the sample; columns are {', '.join(facts)}"
        )
    task, estimator, reasons = _task_and_estimator(facts[target], choices)
    ids, id_reasons = _ids(facts, target, choices)
    features, left_out = _features(facts, target, ids, choices)
    warnings = []
    if facts[target].present < facts[target].rows:
        missing = facts[target].rows - facts[target].present
        warnings.append(f"{_n(missing)} rows have no {target!r}: training leaves them out")
    if task == "classification" and facts[target].distinct < 2:
        warnings.append(f"target {target!r} has one value in the sample: training needs two")
    if task == "classification" and facts[target].distinct > MANY_CLASSES:
        warnings.append(
            f"target {target!r} has {_n(facts[target].distinct)} classes: check that it is the"
            " column to predict"
        )
    return Proposal(
        target, task, estimator, features, ids, left_out, (*reasons, *id_reasons), tuple(warnings)
    )


def _task_and_estimator(target: ColumnFacts, choices: Choices) -> tuple[str, str, tuple[str, ...]]:
    if choices.task is not None and choices.task not in TASKS:
        raise ProposalError(f"task {choices.task!r}: expected one of {', '.join(TASKS)}")
    if choices.estimator is not None:
        try:
            check_estimator_name(choices.estimator)
        except ValueError as exc:
            raise ProposalError(str(exc)) from None
        given = ESTIMATORS[choices.estimator].task
        if choices.task is not None and choices.task != given:
            raise ProposalError(
                f"estimator {choices.estimator!r} does a {given}, not a {choices.task}"
            )
        _check_target_fits(target, given)
        return given, choices.estimator, (f"estimator {choices.estimator} (given) → {given}",)
    if choices.task is not None:
        _check_target_fits(target, choices.task)
        estimator, why = choose_estimator(choices.task, target.rows)
        return choices.task, estimator, (f"task {choices.task} (given)", why)
    task, why_task = infer_task(target)
    estimator, why = choose_estimator(task, target.rows)
    return task, estimator, (why_task, why)


def _check_target_fits(target: ColumnFacts, task: str) -> None:
    """Refuse a regression on text or true/false, which has no numbers to learn."""
    if task == "regression" and target.kind in ("text", "boolean", "timestamp", "empty"):
        raise ProposalError(
            f"target {target.name!r} is {target.kind}; a regression needs numbers"
            " (use --task classification)"
        )


def _ids(
    facts: Mapping[str, ColumnFacts], target: str, choices: Choices
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if choices.id_columns is not None:
        ids = tuple(c for c in choices.id_columns if c != target)
        return ids, ((f"id columns (given): {', '.join(ids) or 'none'}",) if ids else ())
    found = {
        name: why
        for name, f in facts.items()
        if name != target and (why := id_reason(f)) is not None
    }
    if choices.features is not None:  # a column the user named as a feature is not an id
        found = {k: v for k, v in found.items() if k not in choices.features}
    return tuple(found), tuple(f"id column {name!r}: {why}" for name, why in found.items())


def _features(
    facts: Mapping[str, ColumnFacts], target: str, ids: tuple[str, ...], choices: Choices
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    if choices.features is not None:
        if target in choices.features:
            raise ProposalError(f"target {target!r} cannot also be a feature")
        features = tuple(c for c in choices.features if c not in ids)
        left_out = tuple(
            (name, "not in --features") for name in facts if name not in (target, *ids, *features)
        )
    else:
        left_out = tuple(
            (name, why)
            for name, f in facts.items()
            if name != target and name not in ids and (why := not_a_feature(f)) is not None
        )
        dropped = {name for name, _ in left_out}
        features = tuple(n for n in facts if n not in (target, *ids) and n not in dropped)
    if not features:
        raise ProposalError(
            "no usable feature columns: the sample holds only the target, ids and unusable"
            " columns; give --features"
        )
    return features, left_out
