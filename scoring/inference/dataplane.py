"""The one step every protocol scores through: find the version, predict, count, tell observers.

A protocol adapter parses its own request shape; everything after is here, once: the model is
looked up once per request (the champion, or the version the request names), the validated
matrix is predicted (or explained), and one ``Scored`` event goes to each registered observer.
The Prometheus row counter is the first observer; a drift monitor, a prediction log or a shadow
challenger are the next ones, and need no change to any protocol.

Observers run on the request's thread, after the answer is computed and before it is sent, so
each must be cheap: the event holds the request's own arrays (no copy), and an observer that
needs heavy work (statistics, writes, a second model) must hand the event to its own thread or
queue and return. An observer that raises is logged and skipped: the client's answer never
depends on one. Bulk runs (``/score-file``, scored drops) send one event per file, with row
counts and no rows.

Which version answers a request that names none is the ``Router``'s choice (``scoring.traffic``:
the champion, or a canary challenger for a fraction of requests), made here once for every
protocol; without a router the champion answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, Protocol

import numpy as np

from scoring.inference.core import Predictions, model_for, predict_many, predict_one
from scoring.inference.explain import Explanations, explain
from scoring.lifecycle.predictor import LoadedModel
from scoring.lifecycle.schema import FeatureSchema
from scoring.lifecycle.versions import VersionCache

log = logging.getLogger("dropscore.dataplane")


class Scored(NamedTuple):
    """One scoring call as observers see it: who answered, what came in, what went out.

    Immutable and cheap to build (a named tuple: a frozen dataclass costs three times as much
    on every request). ``features`` and ``predictions`` are the request's own objects, shared,
    never copied: an observer must not change them, and must copy what it keeps beyond its call.
    """

    model: str  # the model's name, as settings and URLs spell it
    version: str  # the version that answered
    protocol: str  # the route: predict, explain, invocations, kserve, infer, score_file, drop
    rows: int  # rows in the request (bulk: every row read, scored or failed)
    seconds: float  # time in the model (bulk: the whole run)
    schema: FeatureSchema | None = None  # names and kinds of ``features``' columns
    features: np.ndarray | None = None  # the validated matrix (rows × features); None: bulk
    predictions: Any = None  # one value per row (a list or a 1-D array); None: bulk
    probabilities: np.ndarray | None = None  # classifiers' (rows × classes), when computed
    request_id: str | None = None  # the client's request id (X-Request-Id, OIP's id), if any
    failed: int = 0  # bulk: rows that could not be scored
    file_id: int | None = None  # bulk: the ledger's file id of a scored drop


Observer = Callable[[Scored], None]
# A request's sticky key for the canary, given the configured key's name (None: none set).
KeyOf = Callable[[str | None], str | None]


class Router(Protocol):
    """Chooses who answers a request naming no version, and hears of a version's failures."""

    def choose(self, versions: VersionCache, key_of: KeyOf | None = None) -> LoadedModel:
        """Return the version that answers: the champion, or a challenger."""
        ...

    def failed(self, name: str, version: str) -> None:
        """Count a request the version could not answer."""
        ...


class Dataplane:
    """One app's scoring step and the observers it calls after every scoring."""

    def __init__(self, observers: Iterable[Observer] = (), router: Router | None = None) -> None:
        self.observers: list[Observer] = list(observers)
        self.router = router

    def add(self, observer: Observer) -> None:
        """Register an observer; it sees every event from now on, after those before it."""
        self.observers.append(observer)

    def model(
        self,
        versions: VersionCache,
        version: int | str | None = None,
        key_of: KeyOf | None = None,
    ) -> LoadedModel:
        """Look up the version a request names, else the router's choice, once per request.

        ``key_of`` finds the request's sticky key, asked only when a canary needs one.
        """
        if version is None and self.router is not None:
            return self.router.choose(versions, key_of)
        return model_for(versions, version)

    def predict(
        self,
        name: str,
        model: LoadedModel,
        X: np.ndarray,
        protocol: str,
        request_id: str | None = None,
    ) -> Predictions:
        """Predict every row of a validated matrix in one call, then tell the observers."""
        started = time.perf_counter()
        with self._counting_failure(name, model):
            out = predict_many(model, X)
        self.notify(
            Scored(
                name, model.version, protocol, len(out.values), time.perf_counter() - started,
                model.schema, X, out.values, out.probabilities, request_id,
            )
        )  # fmt: skip
        return out

    def predict_one(
        self,
        name: str,
        model: LoadedModel,
        row: np.ndarray,
        protocol: str,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Predict one validated row on the single-row fast path, then tell the observers."""
        started = time.perf_counter()
        with self._counting_failure(name, model):
            out = predict_one(model, row)
        self.notify(
            Scored(
                name, model.version, protocol, 1, time.perf_counter() - started,
                model.schema, row, (out["prediction"],), None, request_id,
            )
        )  # fmt: skip
        return out

    def explain(
        self,
        name: str,
        model: LoadedModel,
        X: np.ndarray,
        protocol: str,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Explain every row (base value + contributions), then tell the observers.

        The event's predictions are the explained values, in the answer's space (log-odds for
        a logistic regression, whose labels are predicted here too).
        """
        started = time.perf_counter()
        explained: Explanations = explain(model, X)
        labels = predict_many(model, X).values if explained.classifier else None
        self.notify(
            Scored(
                name, model.version, protocol, len(X), time.perf_counter() - started,
                model.schema, X, explained.values, None, request_id,
            )
        )  # fmt: skip
        return explained.to_dict(labels)

    def scored_file(
        self,
        name: str,
        version: str,
        protocol: str,
        rows: int,
        failed: int,
        seconds: float,
        file_id: int | None = None,
    ) -> None:
        """Tell the observers a bulk run ended: one event per file, counts only."""
        self.notify(
            Scored(name, version, protocol, rows, seconds, failed=failed, file_id=file_id)
        )

    @contextmanager
    def _counting_failure(self, name: str, model: LoadedModel) -> Iterator[None]:
        """Tell the router a version failed a request; the error still goes to the client."""
        try:
            yield
        except Exception:
            if self.router is not None:
                self.router.failed(name, model.version)
            raise

    def notify(self, event: Scored) -> None:
        """Hand one event to every observer in order; one that raises is logged, never re-raised."""
        for observer in self.observers:
            try:
                observer(event)
            except Exception:
                log.exception(
                    "observer failed",
                    extra={
                        "observer": getattr(observer, "__qualname__", repr(observer)),
                        "model": event.model,
                        "protocol": event.protocol,
                    },
                )
