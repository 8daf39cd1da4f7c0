"""Read the training lake as one table for a retrain."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ingest.lake import read_lake


@dataclass
class TrainingData:
    frame: pd.DataFrame
    file_ids: list[int]
    lake_files: list[str]


def load_training_data(lake_dir: Path) -> TrainingData:
    """Read every lake file of kind train together; provenance stays for the card only."""
    table = read_lake(lake_dir)
    frame = table.to_pandas() if table.num_columns else pd.DataFrame()
    file_ids: list[int] = []
    if "_file_id" in frame.columns:
        file_ids = sorted(int(i) for i in frame["_file_id"].dropna().unique())
    files = sorted(p.name for p in lake_dir.glob("*.parquet")) if lake_dir.is_dir() else []
    return TrainingData(frame, file_ids, files)
