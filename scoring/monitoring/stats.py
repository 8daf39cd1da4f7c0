"""The drift statistics, as pure functions of counts and samples (numpy and scipy only).

Each takes what a ``Profile`` and a ``DriftAccumulator`` hold (bin counts, category counts, a
sample), never a whole column, so the same function serves a scored drop, a live window and a
bench that checks it against another library.

- **PSI** (population stability index) is ``sum((q - p) * ln(q / p))`` over the reference's
  bins, with ``p`` the reference's and ``q`` the current share of each bin. An empty bin has no
  logarithm, so its share is raised to ``EPSILON`` first (Evidently and NannyML do the same with
  their own small constants): one empty bin then adds a bounded term instead of infinity.
- **Jensen–Shannon distance** in base 2 (0 to 1), as ``scipy.spatial.distance.jensenshannon``
  computes it (the same steps, in numpy), on the same bins; it needs no epsilon.
- **KS** is ``scipy.stats.ks_2samp``'s two-sided test on the two samples, **Wasserstein**
  ``scipy.stats.wasserstein_distance`` on them (in the feature's units; ``wasserstein_norm``
  divides it by the reference's standard deviation, Evidently's form). ``two_sample`` computes
  both from one pair of empirical CDFs. The KS p-value is scipy's exact one for small samples
  and its asymptotic one (``method="asymp"``: ``kstwo`` at ``n1·n2/(n1+n2)``) when
  ``n1·n2 > EXACT_CELLS``: scipy's default takes the exact path up to 10,000 rows a side, which
  cost about 20 ms per feature at 10,000 × 10,000 rows, most of a scored drop's drift report
  (issue 20's cost goal). There the asymptotic p-value is within ``ASYMP_TOLERANCE`` (absolute)
  of the exact one (tests/test_drift_stats.py checks it on known shifts).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import sys
import threading
from collections.abc import Mapping, Sequence

import numpy as np

# scipy is imported by the functions that use it, never with this module: the serving process
# imports the drift hook at start, and scipy costs a start-up (and a retrain's parent process,
# tests/test_first_run.py) seconds of CPU it need not pay until a report is made. Only the KS
# p-value needs it (scipy.stats, about 0.8 CPU-s to import); ``preload`` imports it beside a
# bulk run so that the report at its end does not wait for it.
STATS_MODULE = "scipy.stats"


def preload() -> None:
    """Start importing scipy.stats on a thread of its own, for a report made later.

    A bulk run calls this once its first batch is scored: the import (about a second on a busy
    machine) then runs beside the reading and writing instead of after the last batch. The
    thread is not a daemon, so the interpreter never stops it mid-import; a second caller, or
    the report, waits on the import lock until it is done. An import that fails here is left
    for the report to raise where it is handled.
    """
    if STATS_MODULE in sys.modules:
        return
    threading.Thread(target=_import_stats, name="dropscore-scipy", daemon=False).start()


def _import_stats() -> None:
    with contextlib.suppress(Exception):  # the report imports it again and says what failed
        importlib.import_module(STATS_MODULE)

# The share an empty bin is given before PSI takes its logarithm (see the module's docstring).
EPSILON = 1e-4


def bin_index(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Give each value its bin among the inner ``edges``: 0 below the first, len(edges) above.

    A value equal to an edge goes to the bin above it, at training and at scoring alike, so the
    bins stay what the reference's quantiles made them.
    """
    return np.searchsorted(edges, values, side="right")


def bin_counts(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Count finite ``values`` per bin of the inner ``edges`` (``len(edges) + 1`` bins).

    The same bins as ``bin_index``, counted as "how many values lie below each edge": one
    vectorized comparison per edge is about five times faster than ``searchsorted`` for ten
    bins (measured: 1.1 ms against 5.3 ms per 50,000 values), and this runs on every scored
    batch of every feature.
    """
    below = [np.count_nonzero(values < edge) for edge in edges]
    return np.diff(np.array([0, *below, len(values)], dtype=np.int64))


def shares(counts: np.ndarray, epsilon: float = 0.0) -> np.ndarray:
    """Turn counts into shares; an empty bin's share becomes ``epsilon`` when one is given."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    out = counts / total if total > 0 else np.zeros_like(counts)
    if epsilon > 0:
        out = np.where(out == 0, epsilon, out)
    return out


def psi(reference: np.ndarray, current: np.ndarray, epsilon: float = EPSILON) -> float:
    """Compute the population stability index of two count vectors over the same bins."""
    p, q = shares(reference, epsilon), shares(current, epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Compute the Jensen–Shannon distance (base 2, 0 to 1) of two count vectors.

    The same steps as ``scipy.spatial.distance.jensenshannon(p, q, base=2.0)`` in numpy
    (tests/test_drift_stats_numpy.py pins it to scipy's value), so that the KS p-value is the
    one statistic that needs scipy (scipy.stats imports scipy.spatial itself: this alone
    saves no import today, it leaves one to remove).
    """
    p, q = shares(reference), shares(current)
    if not p.any() or not q.any():
        return float("nan")
    p, q = p / np.sum(p), q / np.sum(q)  # scipy normalizes again: the same rounding
    m = (p + q) / 2.0
    js = np.sum(_rel_entr(p, m)) + np.sum(_rel_entr(q, m))
    js /= np.log(2.0)
    return float(np.sqrt(js / 2.0))


def _rel_entr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Give ``scipy.special.rel_entr`` of shares: ``x·ln(x/y)``, 0 where ``x`` is 0.

    Here ``y`` is the mean of ``x`` and another share, so it is positive wherever ``x`` is:
    scipy's infinity (``x > 0``, ``y == 0``) cannot occur. Each term is computed as scipy's
    ufunc does, in the C library's ``log``: a distance near 0 is the square root of a sum that
    cancels, so a last-bit difference (numpy's vectorized ``log``, or ``log`` of a ratio near
    1 where scipy takes ``log1p``) shows in it.
    """
    return np.array([_rel_entr_term(a, b) for a, b in zip(x.tolist(), y.tolist(), strict=True)])


def _rel_entr_term(x: float, y: float) -> float:
    """One term of ``scipy.special.rel_entr`` for ``x >= 0``, ``y > 0`` (its branches)."""
    if x <= 0:
        return 0.0
    ratio = x / y
    if 0.5 < ratio < 2:  # x and y close: log1p of the difference keeps its bits
        return x * math.log1p((x - y) / y)
    if sys.float_info.min < ratio < math.inf:
        return x * math.log(ratio)
    return x * (math.log(x) - math.log(y))  # the ratio is not representable


# Above this many cells (n1 × n2) the KS p-value is the asymptotic one: the exact one costs time
# in proportion to them, and the two agree within ASYMP_TOLERANCE there.
EXACT_CELLS = 1_000_000
ASYMP_TOLERANCE = 0.01  # the largest |asymptotic - exact| p-value above EXACT_CELLS (measured
# at most 0.004 at 10,000 × 10,000 rows, 0.013 at 1,000 × 1,000, on shifts of 0 to 1 sd)


def ks(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Run the two-sample Kolmogorov–Smirnov test; return its statistic and p-value."""
    statistic, pvalue, _ = two_sample(reference, current)
    return statistic, pvalue


def wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """Compute the Wasserstein (earth mover's) distance of two samples, in the feature's units."""
    return two_sample(reference, current)[2]


def two_sample(reference: np.ndarray, current: np.ndarray) -> tuple[float, float, float]:
    """Return the KS statistic, its p-value and the Wasserstein distance of two samples.

    Both are read off the same two empirical CDFs, evaluated at every value of either sample
    (as ``ks_2samp`` and ``wasserstein_distance`` do): the largest gap between them is the KS
    statistic, the area between them the Wasserstein distance. One sort of each sample serves
    both, where calling scipy for each sorted them twice and took its exact KS path.
    The area is a sum of products as scipy's, not ``np.dot``: BLAS's dot took 1.5 to 20 ms for
    10,000 values on a loaded 2-core machine (its threads woken on every call), the sum 0.01 ms.
    """
    u, v = np.sort(reference), np.sort(current)
    points = np.concatenate([u, v])
    points.sort(kind="stable")  # two sorted runs: a merge
    gaps = np.searchsorted(u, points, side="right") / len(u)
    gaps -= np.searchsorted(v, points, side="right") / len(v)
    statistic = float(max(-gaps.min(), gaps.max(), 0.0))
    distance = float(np.sum(np.abs(gaps[:-1]) * np.diff(points)))
    return statistic, ks_pvalue(statistic, u, v), distance


def ks_pvalue(statistic: float, reference: np.ndarray, current: np.ndarray) -> float:
    """Give the two-sided KS p-value: scipy's exact one for small samples, else asymptotic."""
    from scipy import stats as sps

    n1, n2 = len(reference), len(current)
    if n1 * n2 <= EXACT_CELLS:
        return float(sps.ks_2samp(reference, current, method="exact").pvalue)
    m, n = max(n1, n2), min(n1, n2)
    return float(np.clip(sps.kstwo.sf(statistic, np.round(m * n / (m + n))), 0.0, 1.0))


def null_rates(
    reference_nulls: int, reference_rows: int, current_nulls: int, current_rows: int
) -> tuple[float, float, float]:
    """Return the reference's and the current null rate and their change (current - reference)."""
    before = reference_nulls / reference_rows if reference_rows else 0.0
    after = current_nulls / current_rows if current_rows else 0.0
    return before, after, after - before


def out_of_range_share(outside: int, values: int) -> float:
    """Share of the current values outside the training range (0 when there are none)."""
    return outside / values if values else 0.0


def unseen_categories(reference: Mapping[str, int], current: Mapping[str, int]) -> dict[str, int]:
    """Name the current categories training never saw, with their counts, most frequent first."""
    unseen = {name: count for name, count in current.items() if name not in reference}
    return dict(sorted(unseen.items(), key=lambda item: (-item[1], item[0])))


def aligned(
    reference: Mapping[str, int], current: Mapping[str, int], names: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Lay two category counts out over the same categories (``names``, else their union)."""
    keys = list(names) if names is not None else sorted({*reference, *current})
    ref = np.array([reference.get(k, 0) for k in keys], dtype=np.int64)
    cur = np.array([current.get(k, 0) for k in keys], dtype=np.int64)
    return keys, ref, cur
