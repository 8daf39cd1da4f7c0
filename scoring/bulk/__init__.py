"""Bulk scoring: the Flask-free batch core, its engines (local, Dask) and scored drops."""
