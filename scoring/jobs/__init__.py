"""Batch jobs: score a whole file named by path or URI, queued in the model's state database."""
