"""The model on a Dask worker: sent as a reference to its artifact, loaded once per worker.

A task never carries the model (dask-ml#842: a pipeline pickled into every task is shipped and
unpickled again and again, and pickle is what a model file must never be read with). It carries
a ``ModelRef``: the model's name and version, where its ``model.skops`` lives, and the SHA-256 of
the bytes the registry holds, plus the small JSON the registry keeps beside it (card, fold).
The worker reads the artifact itself, refuses it when its hash differs (a clear
``ModelFileError``, never a different model's answers), loads it with the registry's safe loader
(skops, trusted types only) and keeps it in a cache held on the worker object, by name, version
and hash — not in a module global, so two clusters in one process never share one.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

from scoring.errors import ModelFileError
from scoring.lifecycle.predictor import Fold, LoadedModel
from scoring.lifecycle.registry import MODEL_FILE, Registry, load_trusted_file

CACHE_ATTRIBUTE = "dropscore_models"  # the worker object's attribute holding the cache
CACHED_VERSIONS = 4  # versions a worker keeps loaded (a job, a promotion mid-way, a challenger)


@dataclass(frozen=True)
class ModelRef:
    """What a task carries to name a model version: where its artifact is and its hash."""

    model: str
    version: str
    uri: str  # the model.skops file: a local path the workers share, or an object-store URI
    sha256: str  # of the bytes the registry holds; the worker refuses any other
    card: dict[str, Any]
    fold: dict[str, Any] | None

    @property
    def key(self) -> tuple[str, str, str]:
        """Name the cache entry: a re-registered version with other bytes is another entry."""
        return (self.model, self.version, self.sha256)


def model_ref(model: str, registry: Registry, version: int) -> ModelRef:
    """Describe one registered version for the workers; the hash is of the registry's bytes."""
    data = registry.artifacts.read_bytes(version, MODEL_FILE)
    artifacts = registry.artifacts
    uri = artifact_uri(artifacts.fs, f"{artifacts.root}/{int(version)}/{MODEL_FILE}")
    return ModelRef(
        model=model,
        version=str(version),
        uri=uri,
        sha256=hashlib.sha256(data).hexdigest(),
        card=registry.card(version),
        fold=registry.fold(version),
    )


def artifact_uri(fs: Any, path: str) -> str:
    """Spell a path on a pyarrow filesystem as a URI a worker can open (local: the path)."""
    kind = getattr(fs, "type_name", "local")
    return path if kind == "local" else f"{kind}://{path}"


def load_ref(ref: ModelRef, data: bytes) -> LoadedModel:
    """Build the model from its artifact's bytes, as ``load_version`` does from the registry."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != ref.sha256:
        raise ModelFileError(
            f"model {ref.model!r} version {ref.version}: the artifact at {ref.uri} has SHA-256 "
            f"{digest[:12]}…, the registry's is {ref.sha256[:12]}…; refusing to score with it",
            [{"model": ref.model, "version": ref.version, "expected": ref.sha256,
              "found": digest}],
        )  # fmt: skip

    def pipeline() -> Any:
        return load_trusted_file(io.BytesIO(data), MODEL_FILE)

    features = len(ref.card["schema"]["features"])
    fold = None if ref.fold is None else Fold.from_dict(ref.fold, features)
    if fold is not None:  # as load_version: served from plain numbers, the pipeline on demand
        return LoadedModel.from_fold(ref.version, fold, ref.card, pipeline)
    return LoadedModel.build(ref.version, pipeline(), ref.card)


class WorkerModels:
    """The models one worker has loaded, by (name, version, hash); least recently used leaves."""

    def __init__(self, size: int = CACHED_VERSIONS) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.loaded: OrderedDict[tuple[str, str, str], LoadedModel] = OrderedDict()
        self.loads: Counter[tuple[str, str, str]] = Counter()  # artifact reads, by key

    def get(self, ref: ModelRef, read: Any) -> LoadedModel:
        """Return the model ``ref`` names, reading its bytes with ``read(uri)`` the first time."""
        with self.lock:  # one load per version even when the worker's threads ask at once
            found = self.loaded.get(ref.key)
            if found is None:
                found = self.loaded[ref.key] = load_ref(ref, read(ref.uri))
                self.loads[ref.key] += 1
                while len(self.loaded) > self.size:
                    self.loaded.popitem(last=False)
            self.loaded.move_to_end(ref.key)
            return found


def worker_models(worker: Any) -> WorkerModels:
    """Return the cache held on this Dask worker object, making it on the worker's first task."""
    cache = getattr(worker, CACHE_ATTRIBUTE, None)
    if cache is None:
        # Two first tasks on a worker of several threads may both make one; the second kept
        # costs one extra load, never a wrong model (entries are keyed by the artifact's hash).
        cache = WorkerModels()
        setattr(worker, CACHE_ATTRIBUTE, cache)
    assert isinstance(cache, WorkerModels)
    return cache


def current_models() -> WorkerModels:
    """Return the model cache of the Dask worker running the calling task."""
    from distributed import get_worker

    return worker_models(get_worker())
