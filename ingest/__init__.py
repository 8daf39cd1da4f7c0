"""The landing zone: readers, normalization, the Parquet lake, the file ledger and the watcher.

Nothing here imports from ``scoring`` or ``schedules``; the composition root passes an
``IngestConfig`` in.
"""
