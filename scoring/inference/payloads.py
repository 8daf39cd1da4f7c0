"""Each protocol's request shape → one validated matrix; no HTTP here, only parsed bodies.

dropscore's own ``/predict`` (``features``, ``X_test``, ``instances``), MLflow's scoring
protocol (``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``, CSV, Parquet) and
KServe v1 (``instances``) all end in the validators of ``scoring.inference.rows``, so every
protocol refuses the same rows with the same named fields.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

from scoring.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from scoring.inference.body import parse_json
from scoring.inference.core import check_rows
from scoring.inference.rows import (
    columns_to_matrix,
    positional_to_array,
    positional_to_matrix,
    record_to_array,
    records_to_matrix,
)
from scoring.lifecycle.schema import FeatureSchema, normalize_name

if TYPE_CHECKING:  # imported where CSV bodies are parsed: `serve` starts without pandas
    import pandas as pd
    import pyarrow as pa

PREDICT_KEYS = "'features' or 'X_test' (one row), or 'instances' (many rows)"
MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
CONTENT_TYPE_JSON, CONTENT_TYPE_CSV = "application/json", "text/csv"
CONTENT_TYPE_PARQUET = "application/vnd.apache.parquet"
MB = 1024 * 1024


def predict_rows(payload: Any, schema: FeatureSchema, limit: int) -> tuple[np.ndarray, bool]:
    """Read ``/predict``'s body; also say whether it was one row (answered as one)."""
    if not isinstance(payload, dict):
        raise ValidationFailed(f"the body must be a JSON object with {PREDICT_KEYS}")
    if "features" in payload:
        return record_to_array(payload["features"], schema), True
    if "instances" in payload:
        return instances_to_matrix(payload["instances"], schema, "instances", limit), False
    if "X_test" in payload:
        rows = payload["X_test"]
        if isinstance(rows, list) and len(rows) > 1 and all(isinstance(r, list) for r in rows):
            check_rows(len(rows), limit)
            return positional_to_matrix(rows, schema, "X_test"), False
        return positional_to_array(rows, schema), True
    raise ValidationFailed(
        f"the body needs {PREDICT_KEYS}; features by name, or in the order GET /models/current"
        " lists",
        [{"field": "features", "problem": "missing"}],
    )


def instances_to_matrix(instances: Any, schema: FeatureSchema, label: str, limit: int) -> Any:
    """Validate a list of rows, each an object by feature name or a list in feature order."""
    if (
        isinstance(instances, dict)
        and instances
        and all(isinstance(v, list) for v in instances.values())
    ):
        return _columns(instances, schema, label, limit)
    if not isinstance(instances, list):
        raise ValidationFailed(
            f"'{label}' must be a list of rows (objects by feature name, or lists)",
            [{"field": label, "problem": "expected a list"}],
        )
    check_rows(len(instances), limit)
    if isinstance(instances[0], list):
        return positional_to_matrix(instances, schema, label)
    return records_to_matrix(instances, schema, label)


def invocation_rows(
    data: bytes, mimetype: str, schema: FeatureSchema, limit: int, max_bytes: int
) -> np.ndarray:
    """Read an MLflow ``/invocations`` body by its content type: JSON (the default), CSV or
    Parquet (whose unpacked data must also fit ``max_bytes``, the body limit)."""
    if mimetype == CONTENT_TYPE_CSV:
        return csv_rows(data, schema, limit)
    if mimetype == CONTENT_TYPE_PARQUET:
        return parquet_rows(data, schema, limit, max_bytes)
    if mimetype in ("", CONTENT_TYPE_JSON) or mimetype.endswith("+json"):
        return mlflow_rows(parse_json(data), schema, limit)
    raise UnsupportedMediaType(
        f"send Content-Type {CONTENT_TYPE_JSON}, {CONTENT_TYPE_CSV} or {CONTENT_TYPE_PARQUET};"
        " the one sent is none of them"
    )


def kserve_rows(payload: Any, schema: FeatureSchema, limit: int) -> np.ndarray:
    """Read a KServe v1 ``:predict`` body: ``instances``, by position or by name."""
    if not isinstance(payload, dict) or "instances" not in payload:
        raise ValidationFailed("the body must be a JSON object with 'instances' (a list of rows)")
    return instances_to_matrix(payload["instances"], schema, "instances", limit)


def mlflow_rows(payload: Any, schema: FeatureSchema, limit: int) -> np.ndarray:
    """Read an MLflow ``/invocations`` JSON body: exactly one of its four input fields."""
    given = [k for k in MLFLOW_FORMATS if isinstance(payload, dict) and k in payload]
    if len(given) != 1:
        raise BadRequest(
            "the body must be a JSON object with exactly one of the fields"
            f" {', '.join(MLFLOW_FORMATS)}"
        )
    key = given[0]
    value = payload[key]
    if key == "dataframe_split":
        return _split(value, schema, limit)
    if key == "dataframe_records":
        if not isinstance(value, list):
            raise ValidationFailed("'dataframe_records' must be a list of objects")
        check_rows(len(value), limit)
        return records_to_matrix(value, schema, key)
    return instances_to_matrix(value, schema, key, limit)


def csv_rows(data: bytes, schema: FeatureSchema, limit: int) -> np.ndarray:
    """Read a ``text/csv`` body with a header row, as MLflow's scoring server takes it."""
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(data), nrows=limit + 1, encoding="utf-8")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        raise BadRequest("the CSV body cannot be read: send UTF-8 CSV with a header row") from None
    check_rows(len(frame), limit)
    columns = {str(name): _csv_column(frame.iloc[:, j]) for j, name in enumerate(frame.columns)}
    return columns_to_matrix(columns, len(frame), schema)


def parquet_rows(data: bytes, schema: FeatureSchema, limit: int, max_bytes: int) -> np.ndarray:
    """Read a Parquet body (as mlflow#20602 asks) under the row and unpacked-size limits."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        meta = parquet.metadata
        check_rows(meta.num_rows, limit)
        _check_columns(parquet.schema_arrow)
        # The pages' own size first: it refuses a plain column that unpacks big before reading.
        _check_unpacked(
            sum(
                meta.row_group(g).column(c).total_uncompressed_size
                for g in range(meta.num_row_groups)
                for c in range(meta.num_columns)
            ),
            max_bytes,
        )
        # Text read as dictionaries stays shared: a value repeated on every row is held once
        # until the size it decodes to (which the pages' size does not tell) is counted.
        texts = [
            parquet.schema.column(c).path
            for c in range(meta.num_columns)
            if parquet.schema.column(c).physical_type == "BYTE_ARRAY"
        ]
        table = pq.ParquetFile(pa.BufferReader(data), read_dictionary=texts).read()
        _check_unpacked(decoded_bytes(table), max_bytes)
        frame = _decoded(table).to_pandas()
    except (pa.ArrowException, OSError, ValueError, TypeError):
        raise BadRequest("the Parquet body cannot be read: send one Parquet file") from None
    check_rows(len(frame), limit)
    columns = {str(name): _csv_column(frame.iloc[:, j]) for j, name in enumerate(frame.columns)}
    return columns_to_matrix(columns, len(frame), schema)


def decoded_bytes(table: pa.Table) -> int:
    """Count the bytes a table takes once its dictionary columns are decoded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    total = 0
    for column in table.columns:
        for chunk in column.chunks:
            if not pa.types.is_dictionary(chunk.type):
                total += chunk.nbytes
                continue
            lengths = pc.binary_length(chunk.dictionary).take(chunk.indices)
            total += int(pc.sum(lengths).as_py() or 0) + 8 * (len(chunk) + 1)
    return total


def _check_columns(arrow: pa.Schema) -> None:
    """Refuse a body whose columns repeat a name or nest (a feature is one flat column)."""
    import pyarrow as pa

    if len(set(arrow.names)) != len(arrow.names):
        raise ValidationFailed(
            "the Parquet body names a column twice",
            [{"field": "columns", "problem": "a column named twice"}],
        )
    if any(pa.types.is_nested(t) for t in arrow.types):
        raise ValidationFailed(
            "the Parquet body has a nested column (a struct, list or map); send one flat"
            " column per feature",
            [{"field": "columns", "problem": "a nested column"}],
        )


def _check_unpacked(unpacked: int, max_bytes: int) -> None:
    """Refuse a Parquet body whose columns unpack past the body limit."""
    if unpacked > max_bytes:
        raise PayloadTooLarge(
            f"the Parquet body unpacks to {unpacked / MB:,.1f} MB, over the"
            f" {max_bytes / MB:g} MB a request body may hold ([server] max_json_mb)",
            [{"setting": "server.max_json_mb", "unpacked_mb": round(unpacked / MB, 1)}],
        )


def _decoded(table: pa.Table) -> pa.Table:
    """Decode a table's dictionary columns into plain ones (once their size is known)."""
    import pyarrow as pa

    return pa.table(
        [
            c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c
            for c in table.columns
        ],
        names=table.column_names,
    )


def _split(value: Any, schema: FeatureSchema, limit: int) -> np.ndarray:
    """pandas' ``orient="split"``: columns + data rows (+ an index, which is ignored)."""
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise ValidationFailed(
            "'dataframe_split' must be an object with 'columns' and 'data' (a list of rows)",
            [{"field": "dataframe_split.data", "problem": "expected a list of rows"}],
        )
    rows, columns = value["data"], value.get("columns")
    check_rows(len(rows), limit)
    if columns is None or _in_order(columns, schema):
        return positional_to_matrix(rows, schema, "dataframe_split.data")
    if not isinstance(columns, list):
        raise ValidationFailed("'dataframe_split.columns' must be a list of column names")
    for r, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise ValidationFailed(
                f"dataframe_split.data[{r}]: expected a list of {len(columns)} values",
                [{"field": f"dataframe_split.data[{r}]", "problem": "wrong length"}],
            )
    if len(set(map(str, columns))) != len(columns):
        raise ValidationFailed("'dataframe_split.columns' names a column twice")
    data = {str(c): [row[j] for row in rows] for j, c in enumerate(columns)}
    return columns_to_matrix(data, len(rows), schema)


def _columns(value: dict[str, list], schema: FeatureSchema, label: str, limit: int) -> Any:
    """A column-oriented object ``{"feature": [values…]}``: every column the same length."""
    lengths = {len(v) for v in value.values()}
    if len(lengths) != 1:
        raise ValidationFailed(
            f"the columns of '{label}' have different lengths",
            [{"field": label, "problem": "columns of different lengths"}],
        )
    rows = lengths.pop()
    check_rows(rows, limit)
    return columns_to_matrix(value, rows, schema, f"{label}.")


def _in_order(columns: Any, schema: FeatureSchema) -> bool:
    if not isinstance(columns, list) or len(columns) != len(schema.features):
        return False
    return all(
        isinstance(c, str) and (c == n or normalize_name(c) == n)
        for c, n in zip(columns, schema.names, strict=True)
    )


def _csv_column(column: pd.Series) -> Any:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    return column.astype(object).where(column.notna(), None).tolist()
