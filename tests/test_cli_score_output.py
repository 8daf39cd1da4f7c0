"""`dropscore score IN -o OUT`: the output's extension picks its format, and files read back."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from ingest.base.formats import Format
from scoring.service.cli import main
from scoring.service.outputs import OutputChoiceError, output_format, output_suffixes


@pytest.fixture
def score(tmp_path, settings, trained, monkeypatch):
    """Invoke `dropscore score` against the trained model in the test's data folder."""
    for name in [n for n in __import__("os").environ if n.startswith("DROPSCORE")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DROPSCORE__PATHS__DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DROPSCORE__TRAINING__BOOTSTRAP_DATA", '""')
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str):
        return CliRunner().invoke(main, ["score", *args])

    return invoke


@pytest.fixture
def batch(tmp_path, diabetes) -> tuple:
    frame = diabetes.drop(columns=["target"]).head(50)
    src = tmp_path / "batch.csv"
    frame.to_csv(src, index=False)
    return src, frame


def _read_parquet(path):
    return pq.read_table(path).to_pandas()


def _read_jsonl(path):
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])


@pytest.mark.parametrize(
    ("name", "read"),
    [
        ("out.parquet", _read_parquet),  # the README's example: it wrote CSV into this name
        ("out.jsonl", _read_jsonl),
        ("out.ndjson", _read_jsonl),
        ("out.json", lambda path: pd.DataFrame(json.loads(path.read_text()))),  # one array
        ("out.csv", pd.read_csv),
        ("OUT.PARQUET", _read_parquet),  # suffixes compare without case, as for inputs
    ],
)
def test_the_output_extension_picks_the_format(score, batch, tmp_path, name, read):
    src, frame = batch
    result = score(str(src), "-o", str(tmp_path / name))
    assert result.exit_code == 0, result.output
    back = read(tmp_path / name)
    assert len(back) == len(frame)
    assert list(back.columns[: len(frame.columns)]) == list(frame.columns)
    assert back["prediction"].notna().all() and set(back["model_version"].astype(str)) == {"1"}


def test_format_and_a_silent_name_write_that_format(score, batch, tmp_path):
    src, frame = batch
    result = score(str(src), "-o", str(tmp_path / "o.pq"), "--format", "parquet")
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "o.pq").num_rows == len(frame)


def test_without_output_the_input_family_decides(score, tmp_path, batch):
    _src, frame = batch
    src = tmp_path / "batch.parquet"
    frame.to_parquet(src)
    assert score(str(src)).exit_code == 0
    assert pq.read_table(tmp_path / "batch.scored.parquet").num_rows == len(frame)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["-o", "out.parquet", "--format", "csv"],
            ["--format csv contradicts the output name out.parquet", "says parquet"],
        ),
        (["-o", "out.csv", "--format", "jsonl"], ["--format jsonl", "out.csv", "says csv"]),
        (
            ["-o", "out.xlsx"],
            [
                "out.xlsx has the extension .xlsx, which dropscore does not write",
                *output_suffixes(),
            ],
        ),
        (
            ["-o", "scored"],
            ["scored has no extension", ".parquet", "--format csv|json|jsonl|parquet"],
        ),
        (["-o", "out.csv.gz"], ["does not write compressed output", ".csv"]),
        (["-o", "out.tsv", "--format", "csv"], ["--format csv contradicts", "says tsv"]),
    ],
)
def test_a_name_and_a_format_that_disagree_are_an_error(score, batch, tmp_path, args, fragments):
    src, _frame = batch
    args = [tmp_path / a if a.startswith(("out", "scored")) else a for a in args]
    result = score(str(src), *map(str, args))
    assert result.exit_code == 1, result.output
    message = result.output.strip()
    assert message.startswith("Error: ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert not list(tmp_path.glob("out*")) and not (tmp_path / "scored").exists()


# -- the choice itself, as a table ------------------------------------------------------------


@pytest.mark.parametrize(
    ("dst", "fmt", "source", "expected"),
    [
        (None, None, Format.CSV, "csv"),
        (None, None, Format.EXCEL, "csv"),  # the table's answer for workbooks
        (None, None, Format.JSON, "json"),  # a JSON array is answered with a JSON array
        (None, "parquet", Format.CSV, "parquet"),
        ("a.parquet", None, Format.CSV, "parquet"),
        ("a.txt", None, Format.PARQUET, "csv"),  # .txt is a CSV suffix in the table
        ("a.ndjson", "jsonl", Format.CSV, "jsonl"),
        ("a.out", "csv", Format.CSV, "csv"),
    ],
)
def test_output_format(tmp_path, dst, fmt, source, expected):
    path = None if dst is None else tmp_path / dst
    assert output_format(path, fmt, source) == expected


def test_output_format_refuses_a_read_only_format(tmp_path):
    with pytest.raises(OutputChoiceError, match=r"a\.xls has the extension \.xls,"):
        output_format(tmp_path / "a.xls", None, Format.CSV)
