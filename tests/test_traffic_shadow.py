"""The shadow's queue is bounded: a challenger slower than the traffic drops shadows, counted.

The worker's challenger here is a function that waits until the test lets it go, standing in
for a slow model; the queue, the thread and the figures written to a real state database are
the real ones. The requests keep being answered (``offer`` never waits).
"""

from __future__ import annotations

import threading

import numpy as np

from ingest.state.db import StateDB
from scoring.inference.dataplane import Scored
from scoring.lifecycle.predictor import LoadedModel
from scoring.traffic.figures import SHADOW
from scoring.traffic.shadow import ShadowWorker
from scoring.traffic.store import TrafficStore


def test_a_full_queue_drops_and_counts_and_never_waits(tmp_path):
    store = TrafficStore(StateDB.at(tmp_path / "state.db"))
    release = threading.Event()
    entered = threading.Event()

    def slow_challenger(name: str, version: int) -> LoadedModel:
        entered.set()
        release.wait(60)
        raise RuntimeError("this challenger cannot load")  # counted as errors, never raised

    worker = ShadowWorker(lambda name: store, slow_challenger, size=2)
    X = np.zeros((1, 3))
    event = Scored("default", "1", "predict", 1, 0.001, None, X, (1.0,))
    worker.offer(event, 2)
    assert entered.wait(60)  # the thread holds the first one: the queue is empty again
    for _ in range(10):
        worker.offer(event, 2)  # two fit in the queue; eight are dropped, at once
    release.set()
    worker.stop()
    [(key, figures)] = [(k, f) for k, f in store.days() if k.kind == SHADOW]
    assert (key.version, figures.dropped, figures.errors) == (2, 8, 3)


def test_figures_are_written_each_second_while_a_slow_challenger_never_catches_up(tmp_path):
    """The thread works through what waits at each turn, then flushes: never only when empty."""
    from scoring.testing.waiting import wait_for
    from scoring.traffic.figures import SERVED

    store = TrafficStore(StateDB.at(tmp_path / "state.db"))

    def slow_challenger(name: str, version: int) -> LoadedModel:
        threading.Event().wait(0.2)  # a batch takes longer than the list takes to refill
        raise RuntimeError("this challenger cannot load")

    worker = ShadowWorker(lambda name: store, slow_challenger, size=64)
    X = np.zeros((1, 3))
    event = Scored("default", "1", "predict", 1, 0.001, None, X, (1.0,))
    feeding = threading.Event()

    def feed() -> None:
        while not feeding.is_set():
            worker.count("default", 1, 1, 0.001)
            worker.offer(event, 2)
            threading.Event().wait(0.0005)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        served = wait_for(
            lambda: [f for k, f in store.days() if k.kind == SERVED],
            timeout=60,
            what="served figures written while the shadow lags",
        )
        assert served[0].requests > 0
    finally:
        feeding.set()
        feeder.join(30)
        worker.stop()
