"""Helpers the tests and the benchmarks share: free ports, polling, real processes, load.

One importable place, as pandas has ``_testing`` and scikit-learn ``utils._testing``, so that
``bench/`` never imports from ``tests/`` and no helper is written twice. These run from a
checkout (``tests/`` and ``bench/`` are not in the wheel); importing them loads nothing a user
install lacks: ``requests`` (a test extra) is imported inside the functions that need it.
"""
