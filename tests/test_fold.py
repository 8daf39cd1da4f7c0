"""The stored fold: a linear version is served from plain numbers, scikit-learn loaded on need."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ingest.state.db import StateDB
from scoring.errors import ModelFileError
from scoring.lifecycle.champion import load_version
from scoring.lifecycle.predictor import Fold, LoadedModel
from scoring.lifecycle.registry import FOLD_FILE, MODEL_FILE

from .conftest import ROOT, make_settings, register_trained


def probe_rows(model: LoadedModel, n: int = 500) -> np.ndarray:
    """Rows around the training scale with some missing values, seeded."""
    rng = np.random.default_rng(3)
    X = rng.normal(scale=0.05, size=(n, len(model.schema.features)))
    X[rng.random(size=X.shape) < 0.1] = np.nan
    return X


def test_stored_fold_gives_the_same_bits_as_the_pipeline_fold(settings, registry, trained):
    stored = load_version(registry, trained)
    built = LoadedModel.build(str(trained), registry.load_pipeline(trained), registry.card(trained))
    assert isinstance(stored.fast, Fold) and built.fast is not None
    X = probe_rows(stored)
    assert stored.predict_matrix(X)[0].tobytes() == built.predict_matrix(X)[0].tobytes()
    one = X[:1]
    assert stored.predict_row(one) == built.predict_row(one)


def test_folded_version_loads_its_pipeline_only_when_needed(settings, registry, trained):
    # A damaged skops file does not stop the fold from answering; it is refused when the
    # pipeline itself is first needed, with the registry's error, not a crash.
    (settings.models_dir / str(trained) / MODEL_FILE).write_bytes(b"not a zip")
    model = load_version(registry, trained)
    values, _ = model.predict_matrix(probe_rows(model, 3))
    assert values.shape == (3,)
    assert model.classes == []
    with pytest.raises(ModelFileError, match="not a valid skops file"):
        _ = model.pipeline


def test_pipeline_loads_once_on_first_use(settings, registry, trained):
    model = load_version(registry, trained)
    first = model.pipeline
    assert hasattr(first, "predict")
    assert model.pipeline is first


@pytest.mark.parametrize(
    "stored",
    [
        {"kind": "tree"},
        {"kind": "affine", "medians": [0.0], "weights": [1.0], "bias": 0.0},  # wrong size
        {"kind": "affine", "medians": "x", "weights": None, "bias": 0.0},
    ],
)
def test_a_fold_this_code_cannot_use_falls_back_to_the_pipeline(
    settings, registry, trained, stored
):
    (settings.models_dir / str(trained) / FOLD_FILE).write_text(json.dumps(stored))
    model = load_version(registry, trained)
    assert model.source._load is None  # the pipeline was loaded to fold it again
    assert isinstance(model.fast, Fold) and model.fast.weights.shape == (10,)


def test_non_linear_versions_store_no_fold(tmp_path, diabetes):
    from scoring.lifecycle.registry import Registry

    settings = make_settings(tmp_path, model={"estimator": "random_forest"})
    registry = Registry(settings.models_dir, StateDB.at(settings.db_path))
    version, _ = register_trained(settings, registry, diabetes)
    assert not (settings.models_dir / str(version) / FOLD_FILE).exists()
    assert load_version(registry, version).fast is None


def test_scoring_a_folded_version_never_imports_scikit_learn(settings, registry, trained):
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from pathlib import Path
        from scoring.lifecycle.champion import load_version
        from ingest.state.db import StateDB
        from scoring.lifecycle.registry import Registry

        db = StateDB.at(Path({str(settings.db_path)!r}))
        registry = Registry(Path({str(settings.models_dir)!r}), db)
        model = load_version(registry, {trained})
        model.predict_matrix(np.zeros((4, len(model.schema.features))))
        model.predict_row(np.zeros((1, len(model.schema.features))))
        loaded = sorted(m for m in ("sklearn", "skops", "scipy") if m in sys.modules)
        print(",".join(loaded) or "none")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "none"


def test_a_version_registered_without_a_fold_gets_one_on_first_load(settings, registry, trained):
    path = settings.models_dir / str(trained) / FOLD_FILE
    path.unlink()  # as a version registered before folds were stored
    first = load_version(registry, trained)
    assert first.source._load is None  # loaded from the pipeline this time
    assert Fold.from_dict(json.loads(path.read_text()), 10) is not None
    again = load_version(registry, trained)
    assert again.source._load is not None  # from the stored fold: the pipeline waits
    X = probe_rows(again)
    assert again.predict_matrix(X)[0].tobytes() == first.predict_matrix(X)[0].tobytes()
    assert not list(path.parent.glob(".*.tmp"))


def test_bulk_scoring_a_numeric_file_imports_neither_pandas_nor_scikit_learn(
    settings, registry, trained, tmp_path
):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "in.parquet"
    names = [f["name"] for f in registry.card(trained)["schema"]["features"]]
    values = np.random.default_rng(1).normal(scale=0.05, size=(1000, len(names)))
    values[::7, 2] = np.nan
    pq.write_table(pa.table({n: values[:, i] for i, n in enumerate(names)}), src)
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from ingest.base.config import ReadOptions
        from scoring.bulk.batch import score_path
        from scoring.lifecycle.champion import load_version
        from ingest.state.db import StateDB
        from scoring.lifecycle.registry import Registry

        db = StateDB.at(Path({str(settings.db_path)!r}))
        registry = Registry(Path({str(settings.models_dir)!r}), db)
        model = load_version(registry, {trained})
        out = Path({str(tmp_path / "out.parquet")!r})
        summary = score_path(Path({str(src)!r}), out, model, read=ReadOptions(), fmt="parquet")
        loaded = sorted(m for m in ("pandas", "sklearn", "skops") if m in sys.modules)
        print(summary.rows_scored, ",".join(loaded) or "none")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1000", "none"]
