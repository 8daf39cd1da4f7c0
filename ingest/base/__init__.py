"""The shared base of the ingest side: options, errors, paths, logs, names, formats."""
