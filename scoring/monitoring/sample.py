"""A seeded, mergeable reservoir sample of rows: the k rows with the smallest keys.

Each row's key is a hash of the seed and the row's position in the data (splitmix64), not a
draw from a generator, so the rows kept do not depend on how the data was cut into batches,
nor on which worker saw which batch: two partial samples merge into the sample of both, and a
drop accumulated batch by batch keeps the same rows as one accumulated at once.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

SAMPLE_ROWS = 10_000  # rows kept for the two-sample tests (KS, Wasserstein)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def row_keys(seed: int, start: int, count: int) -> np.ndarray:
    """Hash rows ``start .. start+count`` with ``seed`` into uniform 64-bit keys (splitmix64)."""
    with np.errstate(over="ignore"):
        z = np.arange(start, start + count, dtype=np.uint64) * _GOLDEN
        z = z + np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _MIX2 + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


class Reservoir:
    """At most ``size`` rows of named float columns: those with the smallest keys seen.

    Rows offered once the reservoir is full wait in a buffer and are sorted in with the kept ones
    only when ``size`` of them have gathered (or when read): a long drop offers a few hundred
    rows per batch, and choosing and sorting 10,000 rows for each batch was a third of drift's
    per-batch cost. The rows finally kept are the same: a waiting row is one whose key is below
    the largest kept, so the buffer only holds rows that may belong, and reading chooses the
    ``size`` smallest of all. ``keys`` and ``columns`` are the rows sorted in so far.
    """

    def __init__(self, size: int, names: list[str]) -> None:
        self.size = size
        self.keys = np.empty(0, dtype=np.uint64)
        self.columns: dict[str, np.ndarray] = {name: np.empty(0) for name in names}
        self._waiting: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
        self._waiting_rows = 0

    def wanted(self, keys: np.ndarray) -> np.ndarray | None:
        """Mark the rows that may enter (None: all of them), so a caller gathers only those
        rows' values.

        A row enters only if its key is below the largest kept (once full) and among the
        ``size`` smallest of its own batch: a drop's first batch of 100,000 rows then gathers
        10,000 rows per column, not all of them, to offer.
        """
        mark = None
        if len(self.keys) >= self.size:
            mark = keys < self.keys[-1]  # kept sorted: the largest key kept is the last
        entering = keys if mark is None else keys[mark]
        if len(entering) > self.size:
            smallest = keys <= np.partition(entering, self.size - 1)[self.size - 1]
            mark = smallest if mark is None else mark & smallest
        return mark

    def offer(self, keys: np.ndarray, columns: Mapping[str, np.ndarray]) -> None:
        """Keep whichever of these rows belong among the ``size`` smallest keys so far."""
        if len(self.keys) >= self.size and len(keys):
            wanted = keys < self.keys[-1]  # most rows of a long drop stop here
            if not wanted.any():
                return
            keys = keys[wanted]
            columns = {name: values[wanted] for name, values in columns.items()}
        self._waiting.append((keys, {n: columns[n] for n in self.columns}))
        self._waiting_rows += len(keys)
        if len(self.keys) < self.size or self._waiting_rows >= self.size:
            self._settle()

    def merge(self, other: Reservoir) -> None:
        """Add another reservoir's rows (a partial from another batch or worker)."""
        other._settle()
        self.offer(other.keys, other.columns)

    def values(self, name: str) -> np.ndarray:
        """The sampled rows' finite values of one column (nulls and NaN left out)."""
        self._settle()
        column = self.columns[name]
        return column[np.isfinite(column)]

    def _settle(self) -> None:
        """Sort the waiting rows in with the kept ones and keep the ``size`` smallest keys."""
        if not self._waiting:
            return
        keys = np.concatenate([self.keys, *(k for k, _ in self._waiting)])
        columns = {
            name: np.concatenate([kept, *(c[name] for _, c in self._waiting)])
            for name, kept in self.columns.items()
        }
        self._waiting, self._waiting_rows = [], 0
        if len(keys) > self.size:
            chosen = np.argpartition(keys, self.size - 1)[: self.size]
            keys = keys[chosen]
            columns = {name: values[chosen] for name, values in columns.items()}
        order = np.argsort(keys, kind="stable")  # a canonical order: equal samples compare equal
        self.keys = keys[order]
        self.columns = {name: values[order] for name, values in columns.items()}
