"""A JSON true/false for a numeric feature is a 422 in every request shape of every protocol.

``tests/test_protocols_errors.py`` covers positional rows; these are the named shapes, where a
boolean could slip through a frame as 1/0.
"""

from __future__ import annotations

from typing import Any

import pytest

from .test_protocols_errors import ENDPOINTS, FEATURES, ROW, assert_protocol_error, build_app

NAMED: dict[str, Any] = {**dict(zip(FEATURES, ROW, strict=True)), "bmi": True}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    return build_app(tmp_path_factory.mktemp("bools")).test_client()


def _v2(datatype: str) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": k, "shape": [1], "datatype": datatype if k == "bmi" else "FP64", "data": [v]}
            for k, v in NAMED.items()
        ]
    }


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/predict", {"features": NAMED}, "bmi: expected a number, got true/false"),
        ("/predict", {"instances": [NAMED]}, "instances[0].bmi: expected a number"),
        ("/invocations", {"dataframe_records": [NAMED]}, "dataframe_records[0].bmi"),
        (
            "/invocations",
            {"dataframe_split": {"columns": FEATURES, "data": [list(NAMED.values())]}},
            "(bmi): expected a number, got true/false",
        ),
        ("/invocations", {"inputs": {k: [v] for k, v in NAMED.items()}}, "inputs.bmi[0]"),
        ("/v2/models/default/infer", _v2("FP64"), "bmi[0]: FP64 data must be numbers"),
        ("/v2/models/default/infer", _v2("BOOL"), "BOOL is not a feature datatype"),
        ("/v1/models/default:predict", {"instances": [NAMED]}, "instances[0].bmi: expected"),
    ],
)
def test_a_boolean_feature_is_422(client, path: str, body: dict, fragment: str) -> None:
    assert_protocol_error(client.post(path, json=body), ENDPOINTS[path], 422, fragment)
