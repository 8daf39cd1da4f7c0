"""A model whose features are not lake names (a raw frame's columns, an MLflow signature) scores
files headed with those names on every bulk path, and drift reads the same columns."""

from __future__ import annotations

import ast
import io
import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ingest.base.config import ReadOptions
from scoring.bulk.batch import MissingFeatures, score_path, typed_read
from scoring.lifecycle.champion import ChampionHolder, load_version
from scoring.lifecycle.predictor import LoadedModel
from scoring.lifecycle.training import train
from scoring.monitoring.accumulate import DriftAccumulator
from scoring.monitoring.bulk import DriftWatch
from scoring.monitoring.profile import PREDICTION
from scoring.monitoring.reference import profile_of
from scoring.monitoring.report import Thresholds

from ._server import serving
from .conftest import make_settings, register_trained, wait_for

# The diabetes features under names a person or a library writes: none is a lake name.
RAW = {
    "age": "Age (years)",
    "sex": "Sex",
    "bmi": "bmi <kg/m²>",
    "bp": 'bp "mean"',
    "s1": "S1 – tc",
    "s2": "s2 (ldl)",
    "s3": "s3/hdl",
    "s4": "s4 TCH",
    "s5": "s5: ltg",
    "s6": "s6 glu.",
}


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path, ingest={"stable_seconds": 0.2, "rescan_seconds": 1.0})


@pytest.fixture
def raw_frame(diabetes) -> pd.DataFrame:
    """Training data headed with raw names (the target keeps its lake name, as train needs)."""
    return diabetes.head(200).rename(columns=RAW)


@pytest.fixture
def model(settings, registry, raw_frame) -> LoadedModel:
    version, result = register_trained(settings, registry, raw_frame)
    assert result.schema.names == list(RAW.values())  # the model keeps the raw names
    return load_version(registry, version)


@pytest.fixture
def inputs(raw_frame) -> pd.DataFrame:
    return raw_frame.drop(columns="target")


def write(frame: pd.DataFrame, path) -> None:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".xlsx":
        frame.to_excel(path, index=False, engine="openpyxl")
    else:
        frame.to_parquet(path, index=False)


# -- the one resolution -----------------------------------------------------------------------


def test_lake_columns_takes_the_exact_header_first():
    from scoring.lifecycle.schema import lake_columns

    # headers "A", "a" become lake columns "a", "a_2": "a" is the lake name of "A"
    found = lake_columns(["a", "A"], ["a", "a_2"], {"a": "A", "a_2": "a"})
    assert dict(found.found) == {"a": "a_2", "A": "a"}
    assert not found.missing and not found.shared


def test_lake_columns_reports_two_features_on_one_column():
    from scoring.lifecycle.schema import lake_columns

    found = lake_columns(["A", "a"], ["a"], {"a": "a"})
    assert dict(found.shared) == {"a": ("A", "a")}


def test_lake_columns_keeps_lake_named_features_on_their_columns():
    from scoring.lifecycle.schema import lake_columns

    found = lake_columns(["bmi", "s1"], ["bmi", "s1"], {"bmi": "BMI", "s1": "S1"})
    assert dict(found.found) == {"bmi": "bmi", "s1": "s1"}


# -- the bulk paths ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".parquet"])
def test_score_path_scores_raw_headers(tmp_path, model, inputs, suffix):
    src = tmp_path / f"in{suffix}"
    write(inputs, src)
    dst = tmp_path / "out.parquet"
    summary = score_path(src, dst, model, read=ReadOptions(batch_rows=64), fmt="parquet")
    assert (summary.rows_scored, summary.rows_failed) == (len(inputs), 0)
    out = pq.read_table(dst).to_pandas()
    assert list(out.columns) == [*RAW.values(), "prediction", "model_version", "error"]
    expected = model.pipeline.predict(inputs.to_numpy(dtype=np.float64))
    np.testing.assert_allclose(out["prediction"], expected, rtol=1e-9)


def test_numeric_raw_headers_are_pinned_to_float64_on_csv(model, inputs):
    types = typed_read(ReadOptions(), model.schema).column_types
    assert callable(types)
    assert dict(types(list(inputs.columns))) == {name: pa.float64() for name in RAW.values()}


def test_row_errors_and_missing_columns_name_the_users_columns(tmp_path, model, inputs):
    bad = inputs.astype(object)
    bad.loc[3, "bmi <kg/m²>"] = "n/a?"
    src = tmp_path / "in.csv"
    bad.to_csv(src, index=False)
    summary = score_path(src, tmp_path / "o.parquet", model, read=ReadOptions(), fmt="parquet")
    assert (summary.rows_scored, summary.rows_failed) == (len(inputs) - 1, 1)
    out = pq.read_table(tmp_path / "o.parquet").to_pandas()
    assert out.loc[3, "error"] == "bmi <kg/m²>: expected a number, got 'n/a?'"
    inputs.drop(columns=["s3/hdl"]).to_csv(src, index=False)
    with pytest.raises(MissingFeatures) as refused:
        score_path(src, tmp_path / "o.parquet", model, read=ReadOptions(), fmt="parquet")
    assert refused.value.message.startswith("the file lacks the model's feature columns: s3/hdl (")
    assert "s2 (ldl)" in refused.value.message  # what the file has, as the user wrote it


def test_features_that_normalize_alike_read_their_own_columns(tmp_path, settings):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"A": rng.uniform(0, 1, 300), "a": rng.uniform(100, 200, 300)})
    frame["target"] = 3 * frame["A"] - frame["a"]
    result = train(frame, settings.model)
    model = LoadedModel.build("1", result.pipeline, {"schema": result.schema.to_dict()})
    src = tmp_path / "in.csv"
    frame[["a", "A"]].to_csv(src, index=False)  # the file's order differs from the model's
    score_path(src, tmp_path / "o.parquet", model, read=ReadOptions(), fmt="parquet")
    out = pq.read_table(tmp_path / "o.parquet").to_pandas()
    np.testing.assert_allclose(out["prediction"], frame["target"], atol=1e-6)
    frame[["a"]].to_csv(src, index=False)  # one column for two features: never a guess
    with pytest.raises(MissingFeatures) as refused:
        score_path(src, tmp_path / "o.parquet", model, read=ReadOptions(), fmt="parquet")
    assert "do not tell the model's features apart: A and a would all read the column 'a'" in (
        refused.value.message
    )


def test_cli_score_writes_the_users_names(tmp_path, settings, model, inputs, monkeypatch):
    from scoring.service.cli import main

    monkeypatch.setenv("DROPSCORE__PATHS__DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DROPSCORE__TRAINING__BOOTSTRAP_DATA", '""')
    monkeypatch.delenv("DROPSCORE_SETTINGS", raising=False)
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "iris like.csv"
    inputs.to_csv(src, index=False)
    result = CliRunner().invoke(main, ["score", str(src), "-o", str(tmp_path / "o.csv")])
    assert result.exit_code == 0, result.output
    out = pd.read_csv(tmp_path / "o.csv")
    assert list(out.columns)[:10] == list(RAW.values())
    assert out["error"].isna().all()


def test_score_file_on_a_real_server(settings, registry, model, inputs):
    from scoring.api.app import create_app

    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.csv"\r\n'
        f"Content-Type: text/csv\r\n\r\n{inputs.to_csv(index=False)}\r\n--{boundary}--\r\n"
    ).encode()
    with serving(create_app(settings, registry=registry)) as url:
        request = urllib.request.Request(
            f"{url}/score-file",
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert answer.headers["X-Rows-Failed"] == "0"
            out = pd.read_csv(io.BytesIO(answer.read()))
    assert list(out.columns)[:10] == list(RAW.values())
    assert len(out) == len(inputs) and out["prediction"].notna().all()


def test_score_drop_through_the_real_watcher(settings, registry, model, inputs):
    from ingest.pipeline.watcher import Watcher
    from scoring.bulk.drops import on_arrival
    from scoring.service.runtime import open_intake

    config, ledger, intake = open_intake(settings)
    intake.on_normalized = on_arrival(settings, intake, ChampionHolder(registry).peek)
    watcher = Watcher(config, intake)
    watcher.start()
    try:
        inbox = settings.data_dir / "inbox" / "score"
        inbox.mkdir(parents=True, exist_ok=True)
        inputs.to_csv(inbox / "raw.csv.part", index=False)
        (inbox / "raw.csv.part").rename(inbox / "raw.csv")
        record = wait_for(
            lambda: (r := ledger.list(state="scored") + ledger.list(state="quarantined")) and r[0],
            timeout=60,
        )
    finally:
        watcher.stop()
    assert record.state == "scored", record.error
    assert (record.rows_scored, record.rows_failed) == (len(inputs), 0)
    out = pq.read_table(ledger.resolve(record.output_path)).to_pandas()
    assert list(out.columns)[:10] == list(RAW.values())


# -- drift ------------------------------------------------------------------------------------


def test_drift_watch_reads_each_feature_from_its_own_column():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"A": rng.uniform(0, 1, 400), "a": rng.uniform(100, 200, 400)})
    frame["target"] = frame["A"] + frame["a"]
    result = train(frame, make_settings_model())
    profile = profile_of(frame, result.schema, frame["target"].to_numpy(), seed=0, version=1)
    watch = DriftWatch(1, Thresholds(), DriftAccumulator(profile))
    # a scored batch under the user's names; headers "A", "a" had the lake names "a", "a_2"
    batch = pa.RecordBatch.from_pydict(
        {"A": frame["A"], "a": frame["a"], PREDICTION: frame["target"]}
    )
    watch(batch, {"a": "A", "a_2": "a"})
    report = watch.report()
    assert report.verdict != "not_compared", report.reason
    assert report.drifted_features == []


def make_settings_model():
    from scoring.settings import ModelSettings

    return ModelSettings()


# -- the property -----------------------------------------------------------------------------

CHARACTERS = st.one_of(
    st.sampled_from('<>(")/ .-_Aa'), st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
)
RESERVED = ("target", "_row", "_file_id")  # the target and the provenance columns
# A header holding ";", tab or "|" over a one-column file makes the sniffer take that for the
# delimiter (its only candidate with two fields): a reader matter, not names, so left out here.
OTHER_DELIMITERS = frozenset(";\t|")
NAMES = st.text(CHARACTERS, min_size=1, max_size=12).filter(
    lambda s: s.strip() == s and s not in RESERVED and not OTHER_DELIMITERS & set(s)
)


@hsettings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names=st.lists(NAMES, min_size=1, max_size=4, unique=True))
def test_raw_frame_model_scores_a_csv_with_its_own_headers(tmp_path_factory, names):
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({name: rng.uniform(0, 1, 40) for name in names})
    frame["target"] = frame.sum(axis=1)
    result = train(frame, make_settings_model())
    model = LoadedModel.build("1", result.pipeline, {"schema": result.schema.to_dict()})
    folder = tmp_path_factory.mktemp("raw")
    src = folder / "in.csv"
    frame[names].to_csv(src, index=False)
    summary = score_path(src, folder / "o.jsonl", model, read=ReadOptions(), fmt="jsonl")
    assert (summary.rows_scored, summary.rows_failed) == (40, 0)
    rows = [json.loads(line) for line in (folder / "o.jsonl").read_text().splitlines()]
    assert list(rows[0])[: len(names)] == names


# -- the rule ---------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
LOOKUPS = frozenset({"column", "get_field_index", "get", "index"})


def _feature_loops(tree: ast.AST) -> Iterator[tuple[ast.AST, set[str]]]:
    """Yield each loop or comprehension over ``….features`` with the names it binds."""
    for node in ast.walk(tree):
        pairs: list[tuple[ast.expr, ast.expr, ast.AST]] = []
        if isinstance(node, ast.For):
            pairs.append((node.iter, node.target, node))
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            pairs.extend((gen.iter, gen.target, node) for gen in node.generators)
        for source, target, scope in pairs:
            if isinstance(source, ast.Call) and getattr(source.func, "id", "") == "enumerate":
                source = source.args[0]
            if isinstance(source, ast.Attribute) and source.attr == "features":
                yield scope, {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


def _is_feature_name(node: ast.AST, names: set[str]) -> bool:
    """Tell whether node is a loop variable over features, or its ``.name``."""
    if isinstance(node, ast.Attribute) and node.attr == "name":
        node = node.value
    return isinstance(node, ast.Name) and node.id in names


def feature_names_used_as_columns(path: Path) -> list[str]:
    """List where a feature's own name is looked up among a batch's columns."""
    found = []
    for scope, names in _feature_loops(ast.parse(path.read_text(), str(path))):
        for node in ast.walk(scope):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in LOOKUPS:
                if any(_is_feature_name(arg, names) for arg in node.args):
                    found.append(f"{path.name}:{node.lineno}")
            elif (
                isinstance(node, ast.Compare)
                and _is_feature_name(node.left, names)
                and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)
            ):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_bulk_and_drift_find_feature_columns_only_through_lake_columns():
    """A feature's name is not a lake column name: ``lake_columns`` is the one way between."""
    paths = sorted((ROOT / "scoring" / "bulk").glob("*.py"))
    paths += sorted((ROOT / "scoring" / "monitoring").glob("*.py"))
    found = [where for path in paths for where in feature_names_used_as_columns(path)]
    assert found == [], f"look features up with FeatureSchema.lake_columns, not by name: {found}"
