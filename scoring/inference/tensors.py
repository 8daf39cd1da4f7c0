"""Open Inference Protocol tensors: request inputs → validated matrix, predictions → outputs.

A request sends either one tensor per feature (named for it; ``BYTES`` for text features) or
one numeric tensor ``[rows, n_features]`` in the order ``GET /v2/models/<name>`` lists. Tensor
data comes as JSON (flat or nested, row-major) or, with the binary tensor data extension that
``tritonclient`` uses by default, as raw little-endian bytes after a JSON header whose length
the ``Inference-Header-Content-Length`` header gives. In a binary float tensor NaN is a missing
value (imputed), as ``null`` is in JSON. Nothing here knows about HTTP.
"""

from __future__ import annotations

import itertools
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from scoring.errors import BadRequest, ValidationFailed
from scoring.inference.body import parse_json
from scoring.inference.core import Predictions, check_rows
from scoring.inference.rows import columns_to_matrix
from scoring.lifecycle.schema import FeatureSchema
from scoring.value_kinds import name_shown

NUMERIC_TYPES = {
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
DATATYPES = (*NUMERIC_TYPES, "BOOL", "BYTES")
OUTPUT_PREDICT, OUTPUT_PROBA = "predict", "predict_proba"
HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class Tensor:
    """One request input tensor as sent: name, datatype, shape and flat data."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any  # a flat list (JSON) or a flat numpy array / list of str (binary)


@dataclass(frozen=True)
class InferRequest:
    """A parsed Open Inference Protocol request: inputs and the outputs asked for."""

    id: str | None
    inputs: list[Tensor]
    outputs: dict[str, bool | None] | None  # requested name → binary? (None: default); None: all
    binary_default: bool


def read_request(body: bytes, header_length: str | None) -> InferRequest:
    """Split a request into its JSON header and binary tensors, and decode every input."""
    binary = memoryview(b"")
    if header_length is not None:
        cut = _header_length(header_length, len(body))
        body, binary = body[:cut], memoryview(body)[cut:]
    header = parse_json(body)
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise BadRequest("the request must be a JSON object with 'inputs' (a list of tensors)")
    if not header["inputs"]:
        raise BadRequest("'inputs' is empty; send one tensor per feature or one [rows, n] tensor")
    inputs, offset = [], 0
    for i, spec in enumerate(header["inputs"]):
        tensor, offset = _read_tensor(spec, i, binary, offset)
        inputs.append(tensor)
    if offset != len(binary):
        raise BadRequest("the binary data is longer than the inputs' binary_data_size add up to")
    params = _parameters(header, "request")
    request_id = header.get("id")
    return InferRequest(
        id=request_id if isinstance(request_id, str) else None,
        inputs=inputs,
        outputs=_requested(header.get("outputs")),
        binary_default=params.get("binary_data_output") is True,
    )


def _header_length(value: str, size: int) -> int:
    """The JSON header's length: ASCII digits only ('¹'.isdigit() is true, int('¹') fails)."""
    if not (value.isascii() and value.isdigit()) or int(value) > size:
        raise BadRequest(f"{HEADER_LENGTH} must be a length within the body")
    return int(value)


def tensors_to_matrix(inputs: list[Tensor], schema: FeatureSchema, limit: int) -> np.ndarray:
    """Lay the inputs out as the model's matrix, from one [rows, n] tensor or one per feature."""
    k = len(schema.features)
    first = inputs[0]
    whole = k > 1 or first.name not in schema.index  # with one feature, [rows, 1] is both
    if len(inputs) == 1 and len(first.shape) == 2 and first.shape[1] == k and whole:
        return _whole(first, schema, limit)
    rows = {t.shape[0] if t.shape else -1 for t in inputs}
    if len(rows) != 1 or any(len(t.shape) > 2 or math.prod(t.shape[1:]) != 1 for t in inputs):
        raise ValidationFailed(
            f"send one tensor per feature, each of shape [rows] or [rows, 1], or one tensor"
            f" of shape [rows, {k}] with the features in the order GET /v2/models lists",
            [
                {"field": name_shown(t.name), "problem": f"shape {list(t.shape)}"}
                for t in inputs[:20]
            ],
        )
    n = rows.pop()
    check_rows(n, limit)
    for t in inputs:
        if t.datatype == "BOOL":
            shown = name_shown(t.name)
            raise ValidationFailed(
                f"{shown}: BOOL is not a feature datatype", [{"field": shown, "problem": "BOOL"}]
            )
    return columns_to_matrix({t.name: t.data for t in inputs}, n, schema)


def outputs_for(out: Predictions, request: InferRequest) -> tuple[list[dict], bytes]:
    """Build the response's output tensors and, for binary outputs, the bytes after the JSON."""
    tensors = {OUTPUT_PREDICT: _as_tensor(out.values)}
    if out.probabilities is not None:
        tensors[OUTPUT_PROBA] = (out.probabilities, "FP64")
    wanted = request.outputs or dict.fromkeys(tensors)
    unknown = [name for name in wanted if name not in tensors]
    if unknown:
        raise ValidationFailed(
            f"unknown output {name_shown(unknown[0])}; this model has: {', '.join(tensors)}",
            [
                {"field": "outputs", "problem": f"unknown output {name_shown(name)}"}
                for name in unknown[:20]
            ],
        )
    specs, blobs = [], []
    for name, binary in wanted.items():
        array, datatype = tensors[name]
        spec: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if request.binary_default if binary is None else binary:
            blob = _to_bytes(array, datatype)
            spec["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            spec["data"] = array.reshape(-1).tolist()
        specs.append(spec)
    return specs, b"".join(blobs)


def output_datatype(classes: list[Any] | None) -> str:
    """The datatype of ``predict``: FP64 for regression, else what the class labels are."""
    if not classes:
        return "FP64"
    return _as_tensor(list(classes))[1]


def feature_datatype(kind: str) -> str:
    """The tensor datatype a feature takes: FP64 for numbers, BYTES for text."""
    return "FP64" if kind == "numeric" else "BYTES"


def _read_tensor(spec: Any, i: int, binary: memoryview, offset: int) -> tuple[Tensor, int]:
    where = f"inputs[{i}]"
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise BadRequest(f"{where} must be an object with 'name', 'shape', 'datatype', 'data'")
    name, datatype, shape = spec["name"], spec.get("datatype"), spec.get("shape")
    where = f"input {name_shown(name)}"
    if datatype not in DATATYPES:
        raise BadRequest(f"{where}: datatype must be one of {', '.join(DATATYPES)}")
    if (
        not isinstance(shape, list)
        or not all(type(d) is int and 0 <= d < 2**40 for d in shape)
        or not 1 <= len(shape) <= 8
    ):
        raise BadRequest(f"{where}: shape must be a list of whole numbers, e.g. [rows, 1]")
    count = math.prod(shape)
    size = _parameters(spec, where).get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise BadRequest(f"{where}: binary_data_size goes past the end of the body")
        data = _from_bytes(binary[offset : offset + size], datatype, count, where)
        offset += size
    else:
        data = _flatten(spec.get("data"))
        if len(data) != count:
            raise BadRequest(f"{where}: shape {shape} holds {count} values, data has {len(data)}")
        if datatype in NUMERIC_TYPES:
            data = _numbers(data, datatype, name, shape)
    return Tensor(name, datatype, tuple(shape), data), offset


def _numbers(data: list[Any], datatype: str, name: str, shape: list[int]) -> Any:
    """JSON data of a numeric tensor: numbers only (no text, true/false or null)."""
    if not all(type(v) in (int, float) for v in data):
        bad = [i for i, v in enumerate(data) if type(v) not in (int, float)][:20]
        details = [
            {
                "field": name_shown(name)
                + "".join(f"[{int(j)}]" for j in np.unravel_index(i, shape)),
                "problem": f"{datatype} data must be numbers",
            }
            for i in bad
        ]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValidationFailed(f"{details[0]['field']}: {details[0]['problem']}{more}", details)
    try:
        return np.asarray(data, dtype=np.float64)
    except OverflowError:
        return data  # left as numbers: the row checks name the one too large


def _whole(t: Tensor, schema: FeatureSchema, limit: int) -> np.ndarray:
    """One [rows, n_features] tensor: numbers only, in the order the metadata lists."""
    if not schema.numeric_only or t.datatype not in NUMERIC_TYPES:
        raise ValidationFailed(
            "a [rows, n_features] tensor must be numeric and the model's features all numbers;"
            " send one tensor per feature (BYTES for text)",
            [{"field": name_shown(t.name), "problem": f"datatype {t.datatype}"}],
        )
    check_rows(t.shape[0], limit)
    try:
        X = np.asarray(t.data, dtype=np.float64).reshape(t.shape)
    except OverflowError:
        X = np.full(t.shape, np.inf)
    bad = np.argwhere(np.isinf(X))
    if len(bad):
        details = [
            {
                "field": f"{name_shown(t.name)}[{r}][{c}] ({schema.names[c]})",
                "problem": "not finite",
            }
            for r, c in bad[:20].tolist()
        ]
        raise ValidationFailed(f"{details[0]['field']}: expected a finite number", details)
    return X


def _flatten(data: Any) -> list[Any]:
    """Row-major values of flat or nested JSON data, without recursion (bodies nest deep)."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(v, list) for v in data):
        return data
    if all(isinstance(v, list) and not any(isinstance(x, list) for x in v) for v in data):
        return list(itertools.chain.from_iterable(data))
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _from_bytes(chunk: memoryview, datatype: str, count: int, where: str) -> Any:
    if datatype == "BYTES":
        return _unpack_bytes(bytes(chunk), count, where)
    dtype = np.dtype(NUMERIC_TYPES.get(datatype, "<u1"))
    if len(chunk) != count * dtype.itemsize:
        raise BadRequest(f"{where}: {len(chunk)} bytes cannot hold {count} {datatype} values")
    values = np.frombuffer(chunk, dtype=dtype)
    return values.astype(bool) if datatype == "BOOL" else values


def _unpack_bytes(blob: bytes, count: int, where: str) -> list[str]:
    """BYTES elements: each a 4-byte little-endian length, then that many UTF-8 bytes."""
    out, at = [], 0
    for _ in range(count):
        if at + 4 > len(blob):
            raise BadRequest(f"{where}: the BYTES data ends early")
        (size,) = struct.unpack_from("<I", blob, at)
        at += 4
        if at + size > len(blob):
            raise BadRequest(f"{where}: the BYTES data ends early")
        try:
            out.append(blob[at : at + size].decode("utf-8"))
        except UnicodeDecodeError:
            raise ValidationFailed(f"{where}: BYTES elements must be UTF-8 text") from None
        at += size
    if at != len(blob):
        raise BadRequest(f"{where}: the BYTES data holds more than {count} elements")
    return out


def _as_tensor(values: list[Any]) -> tuple[np.ndarray, str]:
    array = np.asarray(values)
    if array.dtype.kind == "f":
        return array.astype(np.float64), "FP64"
    if array.dtype.kind in "iu":
        return array.astype(np.int64), "INT64"
    if array.dtype.kind == "b":
        return array, "BOOL"
    return np.asarray([str(v) for v in values], dtype=object), "BYTES"


def _to_bytes(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        encoded = [str(v).encode() for v in array.reshape(-1)]
        return b"".join(struct.pack("<I", len(e)) + e for e in encoded)
    if datatype == "BOOL":
        return array.astype(np.uint8).tobytes()
    return np.ascontiguousarray(array, dtype=NUMERIC_TYPES[datatype]).tobytes()


def _parameters(spec: dict, where: str) -> dict:
    params = spec.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest(f"{where}: 'parameters' must be an object")
    return params


def _requested(outputs: Any) -> dict[str, bool | None] | None:
    """Requested outputs: name → True/False for binary_data, None when the request says not."""
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    wanted: dict[str, bool | None] = {}
    for o in outputs:
        flag = _parameters(o, f"output {name_shown(o['name'])}").get("binary_data")
        wanted[o["name"]] = flag if isinstance(flag, bool) else None
    return wanted or None
