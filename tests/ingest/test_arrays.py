"""ingest.base.arrays: the pandas-free array builders give what pa.array / to_numpy give."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from ingest.base.arrays import floats, int64s, repeated_text, to_bools, to_floats

NAN = float("nan")


@pytest.mark.parametrize(
    ("values", "valid"),
    [
        ([1.5, -2.0, 3.25], None),
        ([1.5, NAN, 3.25], [True, True, False]),
        ([NAN, NAN], [False, False]),
        ([], None),
        ([0.1] * 19, [i % 3 == 0 for i in range(19)]),  # more than one byte of bitmap
    ],
)
def test_floats_equal_pa_array(values, valid):
    data = np.array(values, dtype=np.float64)
    mask = None if valid is None else ~np.array(valid, dtype=bool)
    built = floats(data, None if valid is None else np.array(valid, dtype=bool))
    expected = pa.array(data, pa.float64(), mask=mask)
    assert built.type == pa.float64()
    assert _same_floats(built, expected)
    assert built.null_count == expected.null_count


def _same_floats(a: pa.Array, b: pa.Array) -> bool:
    return a.is_null().equals(b.is_null()) and np.array_equal(
        to_floats(a), b.to_numpy(zero_copy_only=False), equal_nan=True
    )


@pytest.mark.parametrize(
    ("values", "start", "length"),
    [
        ([1.0, None, 3.0, NAN, None, 6.0, 7.0, 8.0, 9.0, None], 0, 10),
        ([1.0, None, 3.0, NAN, None, 6.0, 7.0, 8.0, 9.0, None], 3, 6),  # a slice, nulls in it
        ([1.0, 2.0, 3.0, 4.0], 1, 2),  # a slice without nulls
        ([None, None, None], 0, 3),
        ([1.0, 2.0], 2, 0),
    ],
)
def test_to_floats_equals_to_numpy_on_slices(values, start, length):
    column = pa.array(values, pa.float64()).slice(start, length)
    expected = column.to_numpy(zero_copy_only=False)
    got = to_floats(column)
    assert got.dtype == np.float64
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("start", [0, 1, 5, 9])
def test_to_bools_reads_a_sliced_mask(start):
    column = pa.array([1.0, None, 3.0, None, None, 6.0, 7.0, None, 9.0, 10.0, None, 12.0])
    mask = column.slice(start).is_null()
    assert to_bools(mask).tolist() == mask.to_pylist()


def test_int64s_and_repeated_text():
    assert int64s(np.arange(3, 7)).equals(pa.array([3, 4, 5, 6], pa.int64()))
    assert repeated_text("12", 4).equals(pa.array(["12"] * 4, pa.string()))
    assert repeated_text("é", 2).to_pylist() == ["é", "é"]
    assert repeated_text("x", 0).equals(pa.array([], pa.string()))


def test_none_of_them_imports_pandas():
    script = (
        "import sys, numpy as np, pyarrow as pa\n"
        "from ingest.base.arrays import floats, int64s, repeated_text, to_bools, to_floats\n"
        "a = floats(np.arange(4.0), np.array([True, False, True, True]))\n"
        "to_floats(a); to_bools(a.is_null()); int64s(np.arange(3)); repeated_text('1', 3)\n"
        "print('pandas' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
