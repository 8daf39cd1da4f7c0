"""The tree shows its concerns: ``ingest/`` grouped into folders, the row core in inference."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INGEST_FOLDERS = {"base", "lake", "pipeline", "readers", "state"}


def test_ingest_keeps_no_module_at_its_top() -> None:
    """A new ingest module goes in the folder of its concern, not beside the package file."""
    top = sorted(path.name for path in (ROOT / "ingest").glob("*.py"))
    assert top == ["__init__.py", "__main__.py"]


def test_ingest_folders_are_the_four_concerns_and_the_readers() -> None:
    folders = {path.parent.name for path in (ROOT / "ingest").glob("*/__init__.py")}
    assert folders == INGEST_FOLDERS


def test_the_row_core_lives_with_the_protocols_that_use_it() -> None:
    assert (ROOT / "scoring" / "inference" / "rows.py").is_file()
    assert not (ROOT / "scoring" / "lifecycle" / "rows.py").exists()
