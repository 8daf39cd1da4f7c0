"""Stages of a bulk run on their own threads, joined by bounded queues, in input order.

Reading and parsing, predicting and writing each spend most of their time in Arrow or NumPy,
which release the GIL, so running them on three threads lets one batch be parsed while the one
before it is predicted and the one before that written. Each hand-over is a queue of at most
``depth`` batches, so memory still follows ``batch_rows``: a stage never runs more than
``depth + 1`` batches ahead of its consumer.

A failure anywhere ends the run with that failure: a producer's exception is handed to its
consumer in the queue (after the batches before it, so order is kept), and a consumer that stops
early (its own error, a row cap) closes the stages, which stop at their next hand-over and are
joined before ``close`` returns, so no thread outlives the call.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

DEPTH = 1  # batches waiting between two stages (one more is made, one used)
POLL_SECONDS = 0.05  # how soon a blocked stage notices it was closed

_ITEM, _END, _ERROR = "item", "end", "error"


class Stage(Generic[T]):
    """Iterate ``source`` on a thread of its own; iterating the stage yields the same items."""

    def __init__(self, source: Iterator[T], name: str, depth: int = DEPTH) -> None:
        self._source = source
        self._queue: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def __iter__(self) -> Iterator[T]:
        if not self._started:
            self._started = True
            self._thread.start()
        while True:
            try:
                kind, value = self._queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if self._stop.is_set():
                    return  # closed from outside while this consumer waited
                continue
            if kind == _ITEM:
                yield value  # type: ignore[misc]
            elif kind == _END:
                return
            else:
                raise value  # type: ignore[misc]

    def stop(self) -> None:
        """Ask the thread to stop at its next hand-over (it may be mid-batch)."""
        self._stop.set()

    def join(self) -> None:
        """Wait for the thread to end and drop the batches still queued."""
        if self._started:
            self._thread.join()
        while not self._queue.empty():
            self._queue.get_nowait()

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._offer(_ITEM, item):
                    return
            self._offer(_END, None)
        except BaseException as exc:  # handed to the consumer, which raises it in its thread
            self._offer(_ERROR, exc)
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()  # in this thread, the one that ran it: a generator's finally runs here

    def _offer(self, kind: str, value: object) -> bool:
        """Put one entry in the queue, waiting for room; False once the stage is stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put((kind, value), timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False


def close_stages(*stages: Stage[object]) -> None:
    """Stop every stage, then join them all: no thread outlives the run."""
    for stage in stages:
        stage.stop()
    for stage in stages:
        stage.join()
