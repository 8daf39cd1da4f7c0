"""The pyarrow floor for bulk scoring: read the whole file, write it as Parquet, no model.

What the hardware and pyarrow can do at best on this conversion: ``pyarrow.csv.read_csv`` (or
``pyarrow.parquet.read_table``) parses the whole input on every core, and ``pq.write_table``
writes it without dictionaries. No model, no checks, no bounded memory: the peer ``bench/score.py``
measures dropscore against, run as its own process.

    .venv/bin/python bench/floor_peer.py IN.csv OUT.parquet
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Convert argv[0] (CSV or Parquet) to Parquet at argv[1]; print the row count as JSON."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    src, dst = Path(argv[0]), Path(argv[1])
    table = pq.read_table(src) if src.suffix == ".parquet" else pacsv.read_csv(src)
    pq.write_table(table, dst, use_dictionary=False)
    print(json.dumps({"rows": table.num_rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
