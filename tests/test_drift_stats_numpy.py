"""The drift statistics computed without scipy.spatial or pandas, pinned to what they replaced.

``dropscore score`` paid for two imports it needed for one small step each (issue 23, point 3):
``scipy.spatial`` for the Jensen–Shannon distance of two count vectors, and pandas, which
pyarrow's ``to_numpy`` imports on its first call, to read each scored float column. Both steps
are numpy now; here each is checked against the call it replaced, on random data.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import distance

from scoring.monitoring import stats
from scoring.monitoring.accumulate import as_floats, float64_values

counts = st.lists(st.integers(0, 10**9), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_js_distance_is_scipys(data):
    reference = data.draw(counts)
    current = data.draw(st.lists(st.integers(0, 10**9), min_size=len(reference),
                                 max_size=len(reference)))
    ours = stats.js_distance(np.array(reference), np.array(current))
    if not any(reference) or not any(current):
        assert math.isnan(ours)
        return
    p, q = stats.shares(np.array(reference)), stats.shares(np.array(current))
    theirs = float(distance.jensenshannon(p, q, base=2.0))
    assert ours == theirs, (ours, theirs)  # the same steps: the same bits


def test_js_distance_on_the_cases_that_matter():
    same = np.array([5, 0, 3, 2])
    assert stats.js_distance(same, same * 7) == 0.0  # the same shares: no drift
    apart = stats.js_distance(np.array([1, 0]), np.array([0, 1]))
    assert math.isclose(apart, 1.0)  # disjoint bins: the largest distance, base 2
    p, q = np.array([10, 20, 30, 0]), np.array([0, 25, 30, 5])
    theirs = distance.jensenshannon(stats.shares(p), stats.shares(q), base=2.0)
    assert math.isclose(stats.js_distance(p, q), float(theirs), rel_tol=1e-12)


floats = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))


@settings(max_examples=200, deadline=None)
@given(st.lists(floats, max_size=60), st.integers(0, 20), st.integers(0, 60))
def test_float64_values_are_pyarrows(values, start, length):
    whole = pa.array(values, type=pa.float64())
    part = whole.slice(min(start, len(whole)), length)  # a slice: an offset into the buffers
    ours = float64_values(part)
    theirs = part.to_numpy(zero_copy_only=False)
    assert ours.dtype == np.float64 and len(ours) == len(part)
    assert np.array_equal(ours, theirs, equal_nan=True), (ours, theirs)


def test_as_floats_reads_every_numeric_kind():
    assert np.array_equal(
        as_floats(pa.chunked_array([pa.array([1, None], pa.int32()), pa.array([3], pa.int32())])),
        np.array([1.0, np.nan, 3.0]),
        equal_nan=True,
    )
    assert np.array_equal(as_floats(pa.array([True, False])), np.array([1.0, 0.0]))
    assert len(as_floats(pa.array([], pa.float64()))) == 0
