"""What "same as the input" gives back: the score page, ``?format=``'s description and the README
say the same words, and the words are what a real upload without a format returns."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest
import requests

from scoring.api.app import create_app
from scoring.bulk.batch import default_format_words

from ._server import serving
from .conftest import ROOT

WORDS = "same as the input (CSV for TSV and Excel files)"


@pytest.fixture
def url(settings, registry, trained):
    with serving(create_app(settings, registry=registry)) as address:
        yield address


def test_the_words_follow_the_format_table():
    assert default_format_words() == WORDS


def test_the_score_page_says_what_comes_back(url):
    page = requests.get(f"{url}/ui/score", timeout=30).text
    [default] = re.findall(r'<option value="">([^<]*)</option>', page)
    assert default == WORDS


def test_the_api_description_and_the_readme_say_the_same(url):
    spec = requests.get(f"{url}/openapi.json", timeout=30).json()
    params = spec["paths"]["/score-file"]["post"]["parameters"]
    [fmt] = [p for p in params if p["name"] == "format"]
    assert WORDS in fmt["description"]
    readme = (ROOT / "README.md").read_text()
    assert readme.count(WORDS) >= 2  # the /score-file row and the score page's line


@pytest.mark.parametrize(("name", "kind"), [("d.xlsx", "xlsx"), ("d.tsv", "tsv")])
def test_an_upload_without_a_format_comes_back_as_the_words_say(url, diabetes, name, kind):
    frame = diabetes.drop(columns="target").head(10)
    body = io.BytesIO()
    if kind == "xlsx":
        frame.to_excel(body, index=False, engine="openpyxl")
    else:
        body.write(frame.to_csv(index=False, sep="\t").encode())
    response = requests.post(
        f"{url}/score-file", files={"file": (name, body.getvalue())}, timeout=60
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"].endswith("scored.csv")
    assert len(pd.read_csv(io.BytesIO(response.content))) == 10
