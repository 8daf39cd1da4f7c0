"""JSON documents (read whole) and JSON Lines (streamed line by line), nested keys flattened
to ``a_b`` (``ingest.readers.common.nested_name``)."""

from __future__ import annotations

import codecs
import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ingest.base.config import ReadOptions
from ingest.base.errors import EmptyFileError, MalformedFileError, RaggedRowsError
from ingest.base.formats import Format
from ingest.readers.common import (
    RawTable,
    as_text,
    batches_from_rows,
    nested_name,
    no_rows,
    open_bytes,
    plural,
    renamed,
    unpacked_limit,
)


def flatten_record(record: dict[str, Any], prefix: str | None = None) -> dict[str, Any]:
    """Flatten nested objects to ``a_b`` keys (``nested_name``); lists stay as JSON text.

    A flattened name that a key of the record already holds (``a_b`` beside ``{"a": {"b"}}``)
    gets ``_2``, so no value overwrites another.
    """
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = str(key) if prefix is None else nested_name(prefix, key)
        if isinstance(value, dict) and value:
            for inner, item in flatten_record(value, name).items():
                _put(out, inner, item)
        elif isinstance(value, list | dict):
            _put(out, name, as_text(value) if value else None)
        else:
            _put(out, name, value)
    return out


def _put(out: dict[str, Any], name: str, value: Any) -> None:
    """Add a flattened value under a name no earlier value of the record holds."""
    key, k = name, 1
    while key in out:
        k += 1
        key = f"{name}_{k}"
    out[key] = value


def _records_to_rows(records: Iterable[dict[str, Any]], columns: list[str]) -> Iterator[list[Any]]:
    for record in records:
        yield [record.get(c) for c in columns]


def _union_keys(records: Iterable[dict[str, Any]]) -> list[str]:
    """Collect column names in order of first appearance across all records."""
    seen: dict[str, None] = {}
    for record in records:
        for key in record:
            seen.setdefault(key, None)
    return list(seen)


# ---------------------------------------------------------------------------------------------
# JSON


def _decode_json_bytes(data: bytes, fallbacks: Iterable[str]) -> str:
    """Decode a JSON document: UTF-8 (BOM allowed), UTF-16/32 by BOM, then fallbacks."""
    try:
        return data.decode(json.detect_encoding(data))
    except UnicodeDecodeError:
        pass
    for name in fallbacks:
        try:
            return data.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
    raise MalformedFileError("the JSON is not valid UTF-8; save it as UTF-8", expected="UTF-8")


_JSON_SHAPES = (
    'an array of objects (pandas orient="records"), {"columns": [...], "data": [[...]]} '
    '(orient="split"), {"column": {"row": value}} (orient="columns", pandas\' default), '
    '{"row": {"column": value}} with rows labelled 0, 1, 2... (orient="index"), '
    '{"schema": {...}, "data": [...]} (orient="table"), or an object holding one array of objects'
)


def _json_shape_error(found: str) -> MalformedFileError:
    return MalformedFileError(
        f"the JSON is {found}, not a table; expected {_JSON_SHAPES}", expected=_JSON_SHAPES
    )


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _records_from_array(items: list[Any]) -> tuple[list[str], list[list[Any]]]:
    """Read an array of objects (or of arrays under a header array) as columns and rows."""
    if items and all(isinstance(i, list) for i in items):
        return _split_rows(items[0], items[1:], "the first array (the header)")
    records = []
    for number, item in enumerate(items, start=1):
        if item is None:
            item = {}
        if not isinstance(item, dict):
            raise MalformedFileError(
                f"record {number} of the JSON array is {_json_kind(item)}, not an object; "
                "every element must be an object of column: value",
                row=number,
                expected="an object",
            )
        records.append(flatten_record(item))
    columns = _union_keys(records)
    return columns, list(_records_to_rows(records, columns))


def _split_rows(header: Any, data: Any, where: str) -> tuple[list[str], list[list[Any]]]:
    """Read the pandas "split" shape: a header list and rows of values."""
    if not isinstance(header, list) or not isinstance(data, list):
        raise _json_shape_error('an object with "columns" and "data" that are not arrays')
    columns = [c if isinstance(c, str) else as_text(c) or "" for c in header]
    rows = []
    for number, row in enumerate(data, start=1):
        if not isinstance(row, list) or len(row) != len(columns):
            got = len(row) if isinstance(row, list) else 1
            raise RaggedRowsError(
                f"row {number} has {plural(got, 'value')} but {where} names {len(columns)} "
                f"columns; "
                f"give every row {len(columns)} values",
                row=number,
                expected=f"{len(columns)} values",
            )
        rows.append([as_text(v) if isinstance(v, list | dict) else v for v in row])
    return columns, rows


def _json_table(doc: Any) -> tuple[list[str], list[list[Any]]]:
    """Find the table in a parsed JSON document, whichever accepted shape it has."""
    if isinstance(doc, list):
        return _records_from_array(doc)
    if not isinstance(doc, dict):
        raise _json_shape_error(_json_kind(doc))
    if "columns" in doc and "data" in doc and not isinstance(doc["columns"], dict):
        return _split_rows(doc["columns"], doc["data"], '"columns"')
    if isinstance(doc.get("schema"), dict) and isinstance(doc.get("data"), list):
        return _table_orient(doc["schema"], doc["data"])
    if doc and all(isinstance(v, dict) for v in doc.values()):
        return _nested_objects(doc)
    arrays = [v for v in doc.values() if isinstance(v, list)]
    if len(doc) == 1 and len(arrays) == 1:
        return _records_from_array(arrays[0])
    raise _json_shape_error("an object without a single array of records")


def _table_orient(schema: dict[str, Any], data: list[Any]) -> tuple[list[str], list[list[Any]]]:
    """Read pandas' orient="table": records under "data", minus pandas' own unnamed index."""
    columns, rows = _records_from_array(data)
    if schema.get("primaryKey") != ["index"] or "index" not in columns:
        return columns, rows
    at = columns.index("index")
    return columns[:at] + columns[at + 1 :], [row[:at] + row[at + 1 :] for row in rows]


def _nested_objects(doc: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Read an object of objects: pandas' default orient="columns", or orient="index".

    Both are ``{label: {label: value}}``; orient="index" is recognised when the outer labels
    are pandas' default row labels "0", "1", ... and the inner ones are not, as pandas writes
    it. Anything else is read the way ``pandas.read_json`` reads it: columns outside.
    """
    inner = _union_keys(doc.values())
    if _row_labels(list(doc)) and not _row_labels(inner):
        columns, labels = inner, list(doc)
        cells = [[doc[label].get(c) for c in columns] for label in labels]
    else:
        columns, labels = list(doc), inner
        cells = [[doc[c].get(label) for c in columns] for label in labels]
    rows = [[as_text(v) if isinstance(v, list | dict) else v for v in row] for row in cells]
    return columns, rows


def _row_labels(keys: list[str]) -> bool:
    """Tell whether keys are pandas' default row labels "0", "1", ... in order."""
    return bool(keys) and all(key == str(i) for i, key in enumerate(keys))


def read_json(path: Path, options: ReadOptions, fmt: Format) -> RawTable:
    """Read a ``.json`` document whole (its size is capped by max_file_mb before we get here)."""
    text = _decode_json_bytes(path.read_bytes(), options.csv_encodings)
    if not text.strip():
        raise EmptyFileError("the file holds only blank space; it needs a JSON array of records")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedFileError(
            f"the JSON is not valid at line {exc.lineno}, column {exc.colno}: {exc.msg}; "
            "fix the syntax or export the file again",
            expected="valid JSON",
        ) from exc
    except RecursionError as exc:
        raise MalformedFileError("the JSON is nested too deeply to be a table") from exc
    columns, rows = _json_table(doc)
    if not rows:
        raise no_rows("no records")
    batches = batches_from_rows(rows, len(columns), options.batch_rows)
    return RawTable(fmt, "utf-8", None, columns, renamed(batches, columns))


# ---------------------------------------------------------------------------------------------
# JSON Lines


def _jsonl_records(
    path: Path, fallbacks: tuple[str, ...], limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Yield each line's object, flattened; blank lines are skipped; errors name the line."""
    with open_bytes(path, limit) as fh:
        for line_no, line in enumerate(fh, start=1):
            if line_no == 1:
                line = line.removeprefix(codecs.BOM_UTF8)
            if not line.strip():
                continue
            try:
                value = json.loads(_decode_line(line, fallbacks))
            except json.JSONDecodeError as exc:
                raise MalformedFileError(
                    f"line {line_no} is not valid JSON ({exc.msg} at column {exc.colno}); "
                    "each line must hold one complete JSON object",
                    row=line_no,
                    expected="one JSON object per line",
                ) from exc
            except RecursionError as exc:
                raise MalformedFileError(f"line {line_no} is nested too deeply") from exc
            if not isinstance(value, dict):
                raise MalformedFileError(
                    f"line {line_no} is {_json_kind(value)}, not a JSON object; "
                    "each line must hold one object of column: value",
                    row=line_no,
                    expected="a JSON object",
                )
            yield flatten_record(value)


def _decode_line(line: bytes, fallbacks: tuple[str, ...]) -> str:
    for name in ("utf-8", *fallbacks):
        try:
            return line.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
    return line.decode("latin-1")


def read_jsonl(path: Path, options: ReadOptions, fmt: Format) -> RawTable:
    """Read JSON Lines in two streaming passes: names (and syntax) first, then values."""
    try:
        columns = _union_keys(_jsonl_records(path, options.csv_encodings, unpacked_limit(options)))
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise MalformedFileError(
            f"the gzip data is damaged or truncated ({exc}); compress the file again"
        ) from exc
    if not columns:
        raise no_rows("no records")

    def rows() -> Iterator[list[Any]]:
        records = _jsonl_records(path, options.csv_encodings, unpacked_limit(options))
        yield from _records_to_rows(records, columns)

    batches = batches_from_rows(rows(), len(columns), options.batch_rows)
    return RawTable(fmt, "utf-8", None, columns, renamed(batches, columns))
