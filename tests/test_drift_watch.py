"""A bulk run's drift watch: it accumulates on a thread of its own, off the scorer's writing
thread, and reports what accumulating in the caller's thread would; a batch that cannot be
accumulated says why; a watch sent to a Dask worker (or back) settles first. Pure logic: no
server, the real accumulator and reservoir."""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import cloudpickle
import numpy as np
import pyarrow as pa

from scoring.monitoring.accumulate import DriftAccumulator
from scoring.monitoring.bulk import DriftWatch
from scoring.monitoring.profile import PREDICTION, Profile, build_profile
from scoring.monitoring.report import NOT_COMPARED, Thresholds
from scoring.monitoring.sample import Reservoir, row_keys

THRESHOLDS = Thresholds(min_rows=1)
ORIGINALS = {"x": "X"}  # the feature ``x`` arrives under the input's own name ``X``


def _profile(rng: np.random.Generator) -> Profile:
    columns = {
        "x": ("numeric", rng.normal(10.0, 2.0, 3000)),
        "y": ("numeric", rng.exponential(3.0, 3000)),
        "colour": ("categorical", rng.choice(["red", "green", "blue"], 3000)),
    }
    return build_profile(columns, ("numeric", rng.normal(1.0, 1.0, 3000)), seed=5)


def _batches(rng: np.random.Generator, count: int, rows: int) -> list[pa.RecordBatch]:
    return [
        pa.RecordBatch.from_pydict(
            {
                "X": rng.normal(10.5, 2.0, rows),
                "y": rng.exponential(3.0, rows),
                "colour": rng.choice(["red", "green", "blue", "purple"], rows),
                PREDICTION: rng.normal(1.0, 1.0, rows),
            }
        )
        for _ in range(count)
    ]


class _Where(DriftAccumulator):
    """The real accumulator, noting which thread each batch is added on."""

    def __init__(self, profile: Profile, sample_rows: int) -> None:
        super().__init__(profile, sample_rows)
        self.threads: list[str] = []

    def update(self, features: Any, predictions: Any = None, start: int | None = None) -> None:
        self.threads.append(threading.current_thread().name)
        super().update(features, predictions, start)


def _in_caller(profile: Profile, batches: list[pa.RecordBatch], sample_rows: int) -> dict:
    one = DriftAccumulator(profile, sample_rows)
    for batch in batches:
        features = {"x": batch.column("X"), "y": batch.column("y")}
        one.update({**features, "colour": batch.column("colour")}, batch.column(PREDICTION))
    return one.report(THRESHOLDS).to_dict()


def test_a_watch_accumulates_on_its_own_thread_and_reports_what_the_caller_s_thread_would():
    rng = np.random.default_rng(1)
    profile = _profile(rng)
    batches = _batches(rng, 40, 500)
    accumulator = _Where(profile, 300)
    watch = DriftWatch(3, THRESHOLDS, accumulator)
    for batch in batches:
        watch(batch, ORIGINALS)
    report = watch.report().to_dict()
    assert len(accumulator.threads) == 40
    here = threading.current_thread().name
    assert here not in accumulator.threads, "the scorer's thread counted the batches itself"
    assert {name.split("_")[0] for name in accumulator.threads} == {"dropscore-drift"}
    assert report == _in_caller(profile, batches, 300)
    assert "colour" in report["drifted_features"]  # the new category, named
    assert not _drift_threads()


def _drift_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("dropscore-drift")]


def test_a_run_that_fails_before_its_report_leaves_no_drift_thread_behind():
    """A scoring run that raises never asks for the report: dropping its watch ends the thread."""
    rng = np.random.default_rng(5)
    watch = DriftWatch(3, THRESHOLDS, DriftAccumulator(_profile(rng)))
    for batch in _batches(rng, 3, 200):
        watch(batch, ORIGINALS)
    assert _drift_threads()
    del watch
    gc.collect()
    deadline = time.monotonic() + 60.0  # generous: a loaded machine
    while _drift_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _drift_threads()


def test_a_batch_that_cannot_be_accumulated_says_why_in_the_report():
    rng = np.random.default_rng(2)
    profile = _profile(rng)
    watch = DriftWatch(3, THRESHOLDS, DriftAccumulator(profile))
    good = _batches(rng, 1, 100)[0]
    bad = good.set_column(0, "X", pa.array([[1, 2]] * 100))  # a list where a number belongs
    for batch in (good, bad, good):
        watch(batch, ORIGINALS)
    report = watch.report()
    assert report.verdict == NOT_COMPARED
    assert report.reason.startswith("drift could not be computed:")
    assert report.rows == 300  # the rows scored are still counted


def test_a_watch_sent_to_a_worker_and_back_settles_first_and_keeps_its_counts():
    rng = np.random.default_rng(3)
    profile = _profile(rng)
    batches = _batches(rng, 12, 400)
    watch = DriftWatch(3, THRESHOLDS, DriftAccumulator(profile, 300))
    for batch in batches[:6]:
        watch(batch, ORIGINALS)
    back = cloudpickle.loads(cloudpickle.dumps(watch))  # as Dask sends it
    for batch in batches[6:]:
        back(batch, ORIGINALS)
        watch(batch, ORIGINALS)  # the one sent keeps working here too
    assert back.report().to_dict() == _in_caller(profile, batches, 300)
    assert watch.report().to_dict() == back.report().to_dict()


def test_the_reservoir_keeps_the_same_rows_however_its_rows_arrive():
    rng = np.random.default_rng(4)
    values = rng.normal(size=60_000)
    whole = Reservoir(500, ["v"])
    whole.offer(row_keys(9, 0, len(values)), {"v": values})
    batched = Reservoir(500, ["v"])
    cuts = np.sort(rng.choice(np.arange(1, len(values)), 150, replace=False))
    for lo, hi in zip([0, *cuts], [*cuts, len(values)], strict=True):
        keys = row_keys(9, int(lo), int(hi - lo))
        chosen = batched.wanted(keys)
        part = values[lo:hi] if chosen is None else values[lo:hi][chosen]
        batched.offer(keys if chosen is None else keys[chosen], {"v": part})
    assert np.array_equal(batched.values("v"), whole.values("v"))
    assert np.array_equal(batched.keys, whole.keys) and len(whole.keys) == 500
