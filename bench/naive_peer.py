"""The naive pandas script for bulk scoring: the whole file in a DataFrame, predict, to_parquet.

What a person writes first: ``pandas.read_csv`` (or ``read_parquet``), ``pipeline.predict`` on
the feature columns, ``DataFrame.to_parquet``. The peer ``bench.score`` measures dropscore
against, run as its own process.

    .venv/bin/python -m bench.naive_peer IN.csv OUT.parquet MODEL.skops
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Score IN with the model at MODEL into OUT; print the row count as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="the input, .csv or .parquet")
    parser.add_argument("dst", type=Path, help="the Parquet file to write")
    parser.add_argument("model", type=Path, help="the trained pipeline (model.skops)")
    args = parser.parse_args(argv)

    import pandas as pd

    from bench._data import FEATURES
    from scoring.lifecycle.registry import load_trusted

    pipeline = load_trusted(args.model)
    src = args.src
    frame = pd.read_parquet(src) if src.suffix == ".parquet" else pd.read_csv(src)
    frame["prediction"] = pipeline.predict(frame[FEATURES].to_numpy())
    frame.to_parquet(args.dst)
    print(json.dumps({"rows": len(frame)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
