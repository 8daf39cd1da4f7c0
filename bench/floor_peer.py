"""The pyarrow floor for bulk scoring: read the whole file, write it as Parquet, no model.

What the hardware and pyarrow can do at best on this conversion: ``pyarrow.csv.read_csv`` (or
``pyarrow.parquet.read_table``) parses the whole input on every core, and ``pq.write_table``
writes it without dictionaries. No model, no checks, no bounded memory: the peer ``bench.score``
measures dropscore against, run as its own process.

    .venv/bin/python -m bench.floor_peer IN.csv OUT.parquet
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Convert IN (CSV or Parquet) to Parquet at OUT; print the row count as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="the input, .csv or .parquet")
    parser.add_argument("dst", type=Path, help="the Parquet file to write")
    args = parser.parse_args(argv)

    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    src = args.src
    table = pq.read_table(src) if src.suffix == ".parquet" else pacsv.read_csv(src)
    pq.write_table(table, args.dst, use_dictionary=False)
    print(json.dumps({"rows": table.num_rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
