"""Readers: one dropped file in, a RawTable of Arrow record batches with original names out.

Pure apart from reading the file: no logging of content, no writes, and every failure is a typed
``IngestError`` whose message a person can act on (the intake turns it into a quarantine
record). Memory is bounded by ``ReadOptions.batch_rows`` for CSV/TSV (pyarrow's streaming
reader), JSON Lines (line by line) and Parquet (row groups); workbooks and ``.json`` documents
are parsed whole, which the intake bounds by checking ``max_file_mb`` before calling us (and,
for zip-based workbooks, ``check_zip`` bounds the *uncompressed* size before anything is
inflated).

Values are left as the file gives them (pyarrow's inferred types for CSV, Python's for JSON and
workbooks); ``ingest.pipeline.normalize`` decides the lake types. One module per format family;
which reader serves which format is the table in ``ingest.base.formats``.
"""

from ingest.readers.common import RawTable
from ingest.readers.delimited import find_ragged_row
from ingest.readers.json_records import flatten_record
from ingest.readers.sniff import choose_encoding, sniff_decimal, sniff_delimiter
from ingest.readers.table import open_table
from ingest.readers.workbooks import check_zip

__all__ = [
    "RawTable",
    "check_zip",
    "choose_encoding",
    "find_ragged_row",
    "flatten_record",
    "open_table",
    "sniff_decimal",
    "sniff_delimiter",
]
