"""Query-string numbers and state filters on the listing endpoints: 200 or a JSON 422, never 5xx."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import assert_error

# Arbitrary text, plus the cases that broke str.isdigit(): Unicode digits and huge numbers.
RAW = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["²", "١٢", "𝟗", "٣", "1²", "0" * 5000, "9" * 5000, "9" * 19, "-1", " 1"]),
    st.integers(0, 10**20).map(str),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=RAW,
    path=st.sampled_from(["/files?limit=", "/files?offset=", "/runs?offset=", "/runs?limit="]),
)
def test_any_text_as_a_number_is_200_or_a_json_422(client, raw: str, path: str) -> None:
    field = path.rsplit("?", 1)[1].rstrip("=")
    response = client.get(path.split("?")[0], query_string={field: raw})
    assert response.status_code in (200, 422), response.get_data(as_text=True)
    if response.status_code == 422:
        error = assert_error(response, 422, "invalid_input", field)
        assert error["details"][0]["field"] == field
    else:
        assert response.get_json()[field] == int(raw)


@pytest.mark.parametrize(
    ("path", "query", "status"),
    [
        ("/files", {"limit": "²"}, 422),
        ("/files", {"limit": "9" * 5000}, 422),
        ("/files", {"limit": "1000"}, 200),
        ("/files", {"limit": "1001"}, 422),
        ("/runs", {"offset": "0"}, 200),
        ("/runs", {"offset": "1000000001"}, 422),
    ],
)
def test_bounds_and_unicode_digits(client, path: str, query: dict, status: int) -> None:
    response = client.get(path, query_string=query)
    assert response.status_code == status
    if status == 422:
        error = assert_error(response, 422, "invalid_input", next(iter(query)))
        assert next(iter(query.values()))[:40] not in str(error)  # the campaign's "got '²'"


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/files", {"status": "lost"}, "status"),
        ("/files", {"state": "lost"}, "state"),
        ("/runs", {"state": "lost"}, "state"),
    ],
)
def test_an_unknown_state_is_a_422_naming_the_parameter(client, path, query, field) -> None:
    error = assert_error(client.get(path, query_string=query), 422, "invalid_input", field)
    assert error["details"] == [{"field": field, "problem": "unknown state, got text"}]
    assert "lost" not in str(error)  # the kind of value, never the value


def test_a_known_state_filters(client) -> None:
    assert client.get("/files", query_string={"status": "scored"}).get_json()["files"] == []
    runs = client.get("/runs", query_string={"state": "failed", "limit": "5"}).get_json()
    assert runs == {"runs": [], "limit": 5, "offset": 0}
