"""Normalization: a RawTable's original names and loose types in, the lake's names and types out.

Pure functions over Arrow data. Names become lower-case identifiers; values become one of five
lake types — int64, float64, bool, timestamp[us], string — decided per column from the file's
first batch. Numbers written as text are parsed with the file's decimal convention
(``RawTable.decimal``), so ``1.234,5`` in a semicolon file and ``1,234.5`` in a comma file both
become 1234.5. Fully empty rows are dropped; every kept row carries ``_file_id`` and ``_row``
(its 1-based record number in the original, header excluded).

Schema: ``NormalizedTable.schema`` is known as soon as ``normalize_file`` returns (it reads the
first batch to decide). If a later batch holds values that do not fit a column's type (decimals
after whole numbers, text after numbers), that column is widened from that batch on and
``.schema`` reports the wider type; ``lake.write_parquet_atomic`` rewrites the rows it already
wrote, so the lake file still has one schema. Read ``.schema`` again after consuming the batches
for the final word.

Strict files (training drops): widening within a kind (whole numbers to decimals, an empty
column to anything) is still allowed, but a value of another kind in any batch (text among
numbers, numbers among dates) raises ``TypeConflictError`` naming the column, the row and the
value, instead of widening; so does a column that is numbers but for a tiny minority of text
values in the batch that decides its type (``MINORITY``), and a column whose values cannot be
read as the type the lake already holds for it (``NormalizedTable.expected``, set before the
batches are consumed). A training file therefore never changes a column's type behind the
lake's checks, whichever batch the odd value is in. An infinite number (``inf``, ``Infinity``,
or ``1e400``, too large for a float) in a strict file is refused the same way, naming the
column and row: no model can fit on it. ``NaN`` is a missing value, as an empty cell is.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingest.base.arrays import int64s
from ingest.base.errors import NoRowsError, TypeConflictError
from ingest.lake.store import kind_words, unify_types
from ingest.readers import RawTable

FILE_ID = "_file_id"
ROW = "_row"

_NON_ALNUM = re.compile(r"[\W_]+")
_TRUE_FALSE = ("true", "false")  # an Arrow array is made per call: pa.array imports pandas
_ISO_LIKE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?$"
_HAS_ZONE = r"(Z|[+-]\d{2}:?\d{2})$"
# Numbers with a thousands separator and/or a decimal comma, by the file's decimal mark.
_GROUPED = {
    ".": r"^[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$",
    ",": r"^[+-]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?$",
}
_THOUSANDS = {".": ",", ",": "."}
_PLAIN_NUMBER = {
    ".": r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$",
    ",": r"^\s*[+-]?(\d+,?\d*|,\d+)([eE][+-]?\d+)?\s*$",
}
# A text column whose non-numbers are at most this share of its values (and there are numbers)
# is a numeric column with bad values, not a category: a strict file is refused, naming one.
MINORITY = 0.01


# ---------------------------------------------------------------------------------------------
# Names


def clean_name(name: object) -> str:
    """Turn one header into a lake identifier; may return "" for a header with no letters."""
    text = unicodedata.normalize("NFKC", "" if name is None else str(name)).strip().lower()
    return _NON_ALNUM.sub("_", text).strip("_")


def normalize_names(names: Iterable[object]) -> list[str]:
    """Return unique lake names for headers, in order, so the same headers always map the same."""
    cleaned = [clean_name(n) or f"column_{i}" for i, n in enumerate(names, start=1)]
    taken = set(cleaned)  # a later "a_2" keeps its name; the duplicate "a" skips over it
    out: list[str] = []
    used: set[str] = set()
    for name in cleaned:
        candidate, k = name, 1
        while candidate in used or (candidate != name and candidate in taken):
            k += 1
            candidate = f"{name}_{k}"
        used.add(candidate)
        out.append(candidate)
    return out


def _map_columns(originals: list[str], normalized: list[str]) -> dict[str, str]:
    """Map original → normalized; a repeated original is keyed ``name (2)`` to keep every column."""
    mapping: dict[str, str] = {}
    for original, name in zip(originals, normalized, strict=True):
        key, k = original, 1
        while key in mapping:
            k += 1
            key = f"{original} ({k})"
        mapping[key] = name
    return mapping


# ---------------------------------------------------------------------------------------------
# Values


def _blank_to_null(arr: pa.Array) -> pa.Array:
    """Treat empty and whitespace-only text as missing, as a person reading the file would."""
    if arr.null_count == len(arr):
        return arr
    blank = pc.or_kleene(pc.equal(arr, ""), pc.utf8_is_space(arr))
    if not pc.any(blank).as_py():
        return arr
    return pc.if_else(blank, pa.scalar(None, arr.type), arr)


def _all_match(arr: pa.Array, pattern: str) -> bool:
    """Tell whether every non-null value matches a regex."""
    return bool(pc.all(pc.match_substring_regex(arr, pattern)).as_py() is not False)


def _try_cast(arr: pa.Array, target: pa.DataType) -> pa.Array | None:
    """Cast strictly, returning None when any value does not fit."""
    try:
        return pc.cast(arr, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
        return None


def parse_numbers(arr: pa.Array, decimal: str = ".") -> pa.Array | None:
    """Parse text to int64 (whole numbers) or float64, honouring the file's decimal mark."""
    arr = pc.utf8_trim_whitespace(arr)
    if decimal == ".":
        for target in (pa.int64(), pa.float64()):
            done = _try_cast(arr, target)
            if done is not None:
                return done
    if not _all_match(arr, _GROUPED[decimal]):
        return None
    plain = pc.replace_substring(arr, _THOUSANDS[decimal], "")
    if decimal == ",":
        plain = pc.replace_substring(plain, ",", ".")
    return _try_cast(plain, pa.int64()) or _try_cast(plain, pa.float64())


def parse_booleans(arr: pa.Array) -> pa.Array | None:
    """Parse true/false text (any case) to bool; anything else is not a boolean column."""
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
    words = pa.array(_TRUE_FALSE, pa.string())
    if not pc.all(pc.is_in(lowered.drop_null(), value_set=words)).as_py():
        return None
    return pc.equal(lowered, "true")


def parse_timestamps(arr: pa.Array) -> pa.Array | None:
    """Parse ISO-like date/datetime text to timestamp[us]; offsets are converted to UTC."""
    trimmed = pc.utf8_trim_whitespace(arr)
    if not _all_match(trimmed, _ISO_LIKE):
        return None
    if pc.any(pc.match_substring_regex(trimmed, _HAS_ZONE)).as_py():
        zoned = _try_cast(trimmed, pa.timestamp("us", "UTC"))
        return None if zoned is None else pc.cast(zoned, pa.timestamp("us"))
    return _try_cast(trimmed, pa.timestamp("us"))


def _kind_of(t: pa.DataType) -> pa.DataType:
    """Map a reader's type to the lake type it becomes when every value fits."""
    if pa.types.is_null(t):
        return pa.null()
    if pa.types.is_boolean(t):
        return pa.bool_()
    if pa.types.is_integer(t):
        return pa.int64()
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return pa.float64()
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return pa.timestamp("us")
    return pa.string()


def _to_text(arr: pa.Array) -> pa.Array:
    """Render any column as text, keeping text as written."""
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_large_string(arr.type):
        return pc.cast(arr, pa.string())
    try:
        return pc.cast(arr, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if v is None else str(v) for v in arr.to_pylist()], pa.string())


def _from_text(arr: pa.Array, target: pa.DataType, decimal: str) -> pa.Array | None:
    """Convert text to a lake type, or None when some value does not fit."""
    if pa.types.is_null(target):
        return None
    if pa.types.is_string(target):
        return arr
    if pa.types.is_boolean(target):
        return parse_booleans(arr)
    if pa.types.is_timestamp(target):
        return parse_timestamps(arr)
    numbers = parse_numbers(arr, decimal)
    if numbers is None:
        return None
    if pa.types.is_int64(target):
        return numbers if pa.types.is_int64(numbers.type) else None
    return pc.cast(numbers, pa.float64())


def convert(arr: pa.Array, target: pa.DataType, decimal: str = ".") -> pa.Array | None:
    """Convert a column to ``target`` if every value fits, else None so the caller can widen."""
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = _blank_to_null(pc.cast(arr, pa.string()))
    if arr.null_count == len(arr):
        return pa.nulls(len(arr), target)
    if arr.type.equals(target):
        return arr
    if pa.types.is_string(arr.type):
        return _from_text(arr, target, decimal)
    if pa.types.is_string(target):
        return _to_text(arr)
    if pa.types.is_null(target) or unify_types(target, _kind_of(arr.type)) != target:
        return None
    return _try_cast(arr, target)


def infer_type(arr: pa.Array, decimal: str = ".") -> pa.DataType:
    """Decide a column's lake type from a batch of its values."""
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = _blank_to_null(pc.cast(arr, pa.string()))
        if arr.null_count == len(arr):
            return pa.null()
        for candidate in (pa.bool_(), pa.int64(), pa.float64(), pa.timestamp("us")):
            if _from_text(arr, candidate, decimal) is not None:
                return candidate
        return pa.string()
    if arr.null_count == len(arr):
        return pa.null()
    return _kind_of(arr.type)


def fit_column(arr: pa.Array, declared: pa.DataType, decimal: str) -> tuple[pa.Array, pa.DataType]:
    """Convert a column to its declared type, widening the type when this batch needs it."""
    done = convert(arr, declared, decimal)
    if done is not None:
        return done, declared
    wider = unify_types(declared, infer_type(arr, decimal)) or pa.string()
    done = convert(arr, wider, decimal)
    if done is None:
        wider = pa.string()
        done = convert(arr, wider, decimal)
    assert done is not None
    return done, wider


def _non_empty_mask(columns: list[pa.Array]) -> pa.Array | None:
    """Return a mask of rows with at least one value, or None when no row is empty."""
    if not columns:
        return None
    mask = pc.is_valid(columns[0])
    for col in columns[1:]:
        mask = pc.or_(mask, pc.is_valid(col))
    if pc.all(mask).as_py():
        return None
    return mask


# ---------------------------------------------------------------------------------------------
# Files


@dataclass
class NormalizedTable:
    """One file's normalized batches, its lake schema, and what the ledger records about it.

    ``schema`` is valid before ``batches`` is consumed and may widen while it is (see the module
    docstring); ``rows_written`` counts the rows emitted so far and is final once ``batches`` is
    exhausted. ``expected`` is read when the first batch is taken, so set it before that.
    """

    column_map: dict[str, str]
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch] = field(default_factory=lambda: iter(()))
    rows_written: int = 0
    expected: pa.Schema | None = None  # the lake's types a strict file's columns must fit


def _schema_for(names: list[str], types: list[pa.DataType]) -> pa.Schema:
    """Build the lake schema: data columns then provenance."""
    fields = [pa.field(n, t) for n, t in zip(names, types, strict=True)]
    return pa.schema([*fields, pa.field(FILE_ID, pa.int64()), pa.field(ROW, pa.int64())])


class _Normalizer:
    """The state of one file's normalization: declared types and the running row number."""

    def __init__(self, raw: RawTable, file_id: int, names: list[str], strict: bool) -> None:
        self.raw = raw
        self.file_id = file_id
        self.names = names
        self.strict = strict
        self.expected: pa.Schema | None = None  # the lake's types, for a strict file
        self.types: list[pa.DataType] = []
        self.next_row = 1

    def declare(self, first: pa.RecordBatch) -> None:
        """Decide every column's type from the first batch (refusing a strict file's odd one)."""
        self.types = [infer_type(col, self.raw.decimal) for col in first.columns]
        if self.strict:
            for i, col in enumerate(first.columns):
                if pa.types.is_string(self.types[i]):
                    self._refuse_minority(i, col)

    def fit(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Convert one raw batch: types, empty rows dropped, provenance added."""
        n = batch.num_rows
        columns = []
        for i, col in enumerate(batch.columns):
            if self.strict:
                done, self.types[i] = self._fit_strict(i, col)
                self._refuse_infinite(i, done)
            else:
                done, self.types[i] = fit_column(col, self.types[i], self.raw.decimal)
            columns.append(done)
        rows = int64s(np.arange(self.next_row, self.next_row + n, dtype=np.int64))
        self.next_row += n
        columns += [int64s(np.full(n, self.file_id, dtype=np.int64)), rows]
        out = pa.RecordBatch.from_arrays(columns, schema=_schema_for(self.names, self.types))
        mask = _non_empty_mask(columns[:-2])
        return out if mask is None else out.filter(mask)

    # -- strict files ------------------------------------------------------------------------

    def _fit_strict(self, i: int, col: pa.Array) -> tuple[pa.Array, pa.DataType]:
        """Convert a column, widening only within its kind; another kind of value is refused."""
        declared = self.types[i]
        decimal = self.raw.decimal
        done = convert(col, declared, decimal)
        if done is None:
            wider = unify_types(declared, infer_type(col, decimal))
            done = None if wider is None else convert(col, wider, decimal)
            if wider is None or done is None:
                raise self._conflict(i, col, declared, lake=False)
            declared = wider
        lake = self._lake_type(i)
        if lake is not None and unify_types(lake, declared) is None:
            raise self._conflict(i, col, lake, lake=True)
        return done, declared

    def _refuse_infinite(self, i: int, done: pa.Array) -> None:
        """Refuse an infinite number (``inf``, or ``1e400`` read as one); NaN is a missing value.

        No model can fit on it: in the lake it would fail every retrain.
        """
        if not pa.types.is_floating(done.type) or done.null_count == len(done):
            return
        infinite = pc.fill_null(pc.is_inf(done), False)
        if not pc.any(infinite).as_py():
            return
        row = self.next_row + int(pc.index(infinite, True).as_py())
        raise TypeConflictError(
            f"column '{self.names[i]}' holds numbers but a number that is not finite (an "
            f"infinity, or too large to store) at row {row}; a model cannot learn from it: fix "
            "the value (or leave it empty) and drop the file again",
            row=row,
            column=self.names[i],
            expected="finite numbers",
        )

    def _lake_type(self, i: int) -> pa.DataType | None:
        """Return the type the lake holds for column ``i``, or None when it has no such column."""
        if self.expected is None or self.names[i] not in self.expected.names:
            return None
        return self.expected.field(self.names[i]).type

    def _refuse_minority(self, i: int, col: pa.Array) -> None:
        """Refuse a text column that is numbers but for a tiny minority of values."""
        text = _blank_to_null(pc.cast(col, pa.string()))
        present = len(text) - text.null_count
        if present == 0:
            return
        numeric = pc.fill_null(_looks_numeric(text, self.raw.decimal), True)
        numbers = int(pc.sum(pc.cast(numeric, pa.int64())).as_py() or 0) - text.null_count
        if numbers == 0 or present - numbers > MINORITY * present:
            return
        at = int(pc.index(numeric, False).as_py())
        value = text[at].as_py()
        raise TypeConflictError(
            f"column '{self.names[i]}' holds numbers in {numbers:,} of its {present:,} values "
            f"but text ({_shown(value)}) at row {self.next_row + at}; fix the values that are "
            "not numbers (or leave them empty) and drop the file again",
            row=self.next_row + at,
            column=self.names[i],
            expected="numbers",
        )

    def _conflict(
        self, i: int, col: pa.Array, against: pa.DataType, *, lake: bool
    ) -> TypeConflictError:
        """Describe the first value of a column that is not of the kind it must hold."""
        at = _first_misfit(col, _kind_target(against), self.raw.decimal)
        value = col[at].as_py() if at is not None else None
        row = self.next_row + (at or 0)
        what = f"{_value_kind(col, at)} ({_shown(value)}) at row {row}"
        must = kind_words(against)
        name = self.names[i]
        if lake:
            message = (
                f"column '{name}' holds {what} in this file but {must} in the files already "
                f"in the lake; fix the values that are not {must}, or rename the column if it "
                "means something else"
            )
        else:
            message = (
                f"column '{name}' holds {must} in earlier rows but {what}; a column holds one "
                f"kind of value in every row: fix the values that are not {must} (or leave them "
                "empty) and drop the file again"
            )
        return TypeConflictError(message, row=row, column=name, expected=must)


def _looks_numeric(text: pa.Array, decimal: str) -> pa.Array:
    """Mark the text values written as numbers (plain or with thousands separators)."""
    plain = pc.match_substring_regex(text, _PLAIN_NUMBER[decimal])
    grouped = pc.match_substring_regex(pc.utf8_trim_whitespace(text), _GROUPED[decimal])
    return pc.or_(plain, grouped)


def _kind_target(t: pa.DataType) -> pa.DataType:
    """Return the widest type of ``t``'s kind, so a search finds values of another kind only."""
    if pa.types.is_integer(t):
        return pa.float64()
    return t


def _first_misfit(col: pa.Array, target: pa.DataType, decimal: str) -> int | None:
    """Find the first value that does not convert to ``target`` by bisecting on prefixes."""
    if convert(col, target, decimal) is not None:
        return None if col.null_count == len(col) else int(pc.index(pc.is_valid(col), True).as_py())
    lo, hi = 0, len(col)  # the prefix of lo values converts; the prefix of hi values does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if convert(col.slice(0, mid), target, decimal) is None:
            hi = mid
        else:
            lo = mid
    return hi - 1


def _value_kind(col: pa.Array, at: int | None) -> str:
    """Say what kind of value a column holds at a position, in words."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return "text"
    return kind_words(col.type) if at is not None else "values"


def _shown(value: object) -> str:
    """Quote a value for a message, cut short so a huge cell cannot flood the record."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _peek(batches: Iterator[pa.RecordBatch]) -> pa.RecordBatch | None:
    """Take the first non-empty batch, which decides the types."""
    for batch in batches:
        if batch.num_rows:
            return batch
    return None


def normalize_file(raw: RawTable, file_id: int, *, strict: bool = False) -> NormalizedTable:
    """Wrap a RawTable's batches so they come out with lake names, lake types and provenance.

    Reads the first batch now (to decide the schema); raises NoRowsError when the file has no
    rows, or, while iterating, when every row turns out to be empty. ``strict`` (training
    files) raises TypeConflictError for a value of another kind instead of widening to text
    (see the module docstring); a scored file is not strict: a bad value fails its row there.
    """
    names = normalize_names(raw.columns)
    state = _Normalizer(raw, file_id, names, strict)
    first = _peek(raw.batches)
    if first is None:
        raise NoRowsError(
            "the file has a header but no data rows; add at least one row below the header",
            expected="at least one data row",
        )
    state.declare(first)
    table = NormalizedTable(_map_columns(raw.columns, names), _schema_for(names, state.types))

    def generate() -> Iterator[pa.RecordBatch]:
        state.expected = table.expected  # set by the caller once it holds the lake's lock
        for batch in _chain(first, raw.batches):
            out = state.fit(batch)
            table.schema = out.schema
            if out.num_rows:
                table.rows_written += out.num_rows
                yield out
        if table.rows_written == 0:
            raise NoRowsError(
                "every row of the file is empty; add at least one row with a value",
                expected="at least one non-empty row",
            )

    table.batches = generate()
    return table


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Put the peeked batch back in front."""
    yield first
    yield from rest


def normalize_part(
    raw: RawTable, file_id: int, types: Iterable[pa.DataType], first_row: int
) -> Iterator[pa.RecordBatch]:
    """Normalize one slice of a file whose types were decided from its first batch elsewhere.

    A Dask worker scores a part of a file (``scoring.bulk.remote``): the client decided the
    types from the file's first batch with ``normalize_file``; the worker converts its rows to
    those types, numbers them from ``first_row`` and drops empty rows, as the one-process path
    does (widening within the part as it would).
    """
    state = _Normalizer(raw, file_id, normalize_names(raw.columns), strict=False)
    state.types, state.next_row = list(types), first_row
    for batch in raw.batches:
        out = state.fit(batch)
        if out.num_rows:
            yield out
