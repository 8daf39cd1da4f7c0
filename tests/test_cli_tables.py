"""Listings show whole reasons: `dropscore runs` and `files` wrap the last column, never cut it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ingest.state.db import StateDB
from scoring.lifecycle.runs import RunStore
from scoring.service.cli import main
from scoring.service.tables import BELOW, text_table

REASON = (
    "r2 0.4526 vs champion 0.4611: worse by 0.0085, more than the tolerance 0.005; the champion"
    " keeps serving. Schema check: the challenger reads the same 10 features as the champion"
    " (age, sex, bmi, bp, s1, s2, s3, s4, s5, s6), so a manual promotion is safe."
)


def test_the_last_column_wraps_under_itself_and_keeps_every_word():
    rows = [["id", "state", "reason"], ["1", "rejected", REASON], ["2", "succeeded", "ok"]]
    lines = text_table(rows, width=60).splitlines()
    indent = len("id  state      ")
    assert all(len(line) <= 60 for line in lines)
    assert lines[2].startswith("1   rejected   r2 0.4526")
    continued = lines[3 : lines.index("2   succeeded  ok")]
    assert continued and all(line.startswith(" " * indent) for line in continued)
    words = " ".join([lines[2][indent:], *(line.strip() for line in continued)]).split()
    assert words == REASON.split()


def test_without_a_width_a_row_is_one_line():
    rows = [["id", "reason"], ["1", REASON]]
    assert text_table(rows).splitlines()[2] == f"1   {REASON}"


def test_a_reason_with_no_room_beside_its_row_goes_below_it():
    rows = [["a" * 50, "reason"], ["1", REASON], ["2", "ok"]]
    lines = text_table(rows, width=40).splitlines()
    assert lines[2] == "1"
    below = lines[3:-1]
    assert all(line.startswith(" " * BELOW) and len(line) <= 40 for line in below)
    assert " ".join(below).split() == REASON.split()
    assert lines[-1] == "2" + " " * 51 + "ok"  # a short one stays in its column


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Invoke dropscore on a settings file whose data folder is tmp_path/data."""
    for name in [n for n in __import__("os").environ if n.startswith("DROPSCORE")]:
        monkeypatch.delenv(name)
    settings = tmp_path / "settings.toml"
    settings.write_text('[paths]\ndata_dir = "data"\n', encoding="utf-8")

    def invoke(*args: str, columns: int | None = None):
        env = {"COLUMNS": str(columns)} if columns else None
        return CliRunner().invoke(main, ["--settings", str(settings), *args], env=env)

    return invoke


def test_runs_shows_the_whole_reason(cli, tmp_path):
    store = RunStore(StateDB.at(tmp_path / "data" / "state.db"))
    run_id = store.create("cli")
    store.update(run_id, state="succeeded", reason=REASON, promoted=0, version=2, rows=442)
    for columns in (100, None):  # a terminal 100 wide, then piped (one line a run)
        shown = cli("runs", columns=columns)
        assert shown.exit_code == 0, shown.output
        assert "…" not in shown.output
        assert " ".join(shown.output.split()).endswith(REASON)
        if columns:
            assert all(len(line) <= columns for line in shown.output.splitlines())
        else:
            assert len(shown.output.splitlines()) == 3
