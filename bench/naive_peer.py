"""The naive pandas script for bulk scoring: the whole file in a DataFrame, predict, to_parquet.

What a person writes first: ``pandas.read_csv`` (or ``read_parquet``), ``pipeline.predict`` on
the feature columns, ``DataFrame.to_parquet``. The peer ``bench/score.py`` measures dropscore
against, run as its own process.

    .venv/bin/python bench/naive_peer.py IN.csv OUT.parquet MODEL.skops
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if not __package__:
    # Run as a file, this folder would shadow the project's top-level packages (bench/ingest.py).
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, str(HERE.parent))


def main(argv: list[str]) -> int:
    """Score argv[0] with the model at argv[2] into argv[1]; print the row count as JSON."""
    import pandas as pd

    from bench._data import FEATURES
    from scoring.lifecycle.registry import load_trusted

    src, dst, model = Path(argv[0]), Path(argv[1]), Path(argv[2])
    pipeline = load_trusted(model)
    frame = pd.read_parquet(src) if src.suffix == ".parquet" else pd.read_csv(src)
    frame["prediction"] = pipeline.predict(frame[FEATURES].to_numpy())
    frame.to_parquet(dst)
    print(json.dumps({"rows": len(frame)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
