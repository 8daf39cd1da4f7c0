"""/score-file reads its formats from the one table in ingest.base.formats: names, types, text."""

from __future__ import annotations

import io

import pytest

from ingest.base.formats import FORMATS, OUTPUT_FORMATS, Format, output_spec, spec_for

from .conftest import assert_error


@pytest.mark.parametrize("multipart", [True, False])
def test_the_415_message_lists_every_accepted_suffix(client, trained, multipart) -> None:
    if multipart:
        response = client.post(
            "/score-file",
            data={"file": (io.BytesIO(b"a,b\n1,2\n"), "x.pdf")},
            content_type="multipart/form-data",
        )
    else:
        response = client.post("/score-file", data=b"%PDF-1.4", content_type="application/pdf")
    error = assert_error(response, 415, "unsupported_media_type", "unsupported file type")
    for spec in FORMATS:
        for suffix in spec.suffixes:
            assert suffix in error["message"], suffix


@pytest.mark.parametrize("content_type", spec_for(Format.CSV).content_types)
def test_every_csv_content_type_is_read_as_csv(client, trained, diabetes, content_type) -> None:
    body = diabetes.head(5).to_csv(index=False).encode()
    response = client.post("/score-file", data=body, content_type=content_type)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/csv"


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
def test_each_output_format_is_sent_with_the_table_s_type_and_suffix(
    client, trained, diabetes, fmt
) -> None:
    response = client.post(
        "/score-file",
        query_string={"format": fmt},
        data={"file": (io.BytesIO(diabetes.head(5).to_csv(index=False).encode()), "d.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    spec = output_spec(fmt)
    assert response.mimetype == spec.content_types[0]
    assert f"scored{spec.suffixes[0]}" in response.headers["Content-Disposition"]
