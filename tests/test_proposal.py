"""What ``dropscore init`` proposes, from real sample files read by the ingest readers.

Each case writes a real file (CSV, an .xlsx built by openpyxl, JSON, Parquet), reads it with
``ingest.pipeline.sample.read_sample`` and checks the proposal: the id columns, the task and the
sentence that says how it was decided, the features and what was left out and why.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ingest.base.config import ReadOptions
from ingest.pipeline.sample import read_sample
from scoring.lifecycle.proposal import (
    Choices,
    ProposalError,
    describe,
    propose,
    resolve,
)
from tests.ingest._tables import xlsx_bytes

RNG_SEED = 7


def _sample(path: Path, **options: object):
    return read_sample(path, ReadOptions(**options))  # type: ignore[arg-type]


def _proposal(path: Path, target: str, choices: Choices | None = None):
    sample = _sample(path)
    cols = sample.table.column_names
    name = resolve([target], cols, sample.column_map, "target")[0]
    return propose(describe(sample.table), name, choices)


@pytest.fixture
def churn_csv(tmp_path: Path) -> Path:
    """A churn survey: an id by name, a row counter, a constant column, a yes/no target."""
    rng = np.random.default_rng(RNG_SEED)
    n = 400
    frame = pd.DataFrame(
        {
            "Customer ID": [f"C{i:05d}" for i in range(n)],
            "Row": range(1, n + 1),
            "Tenure (months)": rng.integers(1, 72, n),
            "Monthly Charges": rng.normal(70, 20, n).round(2),
            "Country": "NL",
            "Plan": rng.choice(["basic", "pro", "max"], n),
            "Churned": rng.choice(["yes", "no"], n),
        }
    )
    path = tmp_path / "churn.csv"
    frame.to_csv(path, index=False)
    return path


def test_csv_text_target_is_classification_with_ids_and_constant_left_out(churn_csv):
    p = _proposal(churn_csv, "Churned")
    assert (p.target, p.task, p.estimator) == ("churned", "classification", "logistic_regression")
    assert p.reasons[0].startswith("target 'churned' has 2 distinct values (")
    assert p.reasons[0].endswith(", text) → classification")
    assert "400 rows < 10,000: a linear model" in p.reasons[1]
    assert p.id_columns == ("customer_id", "row")
    assert "id column 'customer_id': its name looks like an id" in p.reasons
    assert "id column 'row': an integer sequence, one value per row" in p.reasons
    assert p.left_out == (("country", "constant: every value is 'NL'"),)
    assert p.features == ("tenure_months", "monthly_charges", "plan")


def test_xlsx_float_target_is_regression_and_dates_and_unique_text_are_not_features(tmp_path):
    rng = np.random.default_rng(RNG_SEED)
    header = ["SKU", "Sold on", "Area (m²)", "Rooms", "Price (€)"]
    rows: list[list[object]] = [header]
    for i in range(600):
        rows.append(
            [
                f"sku-{i * 7919 % 10007}",
                pd.Timestamp("2024-01-01") + pd.Timedelta(days=i),
                float(rng.uniform(20, 200)),
                int(rng.integers(1, 6)),
                float(rng.uniform(1e5, 9e5)),
            ]
        )
    path = tmp_path / "houses.xlsx"
    path.write_bytes(xlsx_bytes(rows))
    p = _proposal(path, "Price (€)")
    assert (p.target, p.task, p.estimator) == ("price", "regression", "linear_regression")
    assert p.reasons[0] == "target 'price' is float with 600 distinct values → regression"
    assert p.id_columns == ("sku",)
    assert "id column 'sku': text with a different value in every row" in p.reasons
    assert p.left_out == (("sold_on", "dates and times are not used as features"),)
    assert p.features == ("area_m2", "rooms")  # NFKC: ² is 2, as in the lake


def test_json_integer_target_with_few_values_is_classification_and_says_the_rule(tmp_path):
    rng = np.random.default_rng(RNG_SEED)
    records = [
        {"petal": round(float(x), 2), "sepal": round(float(y), 2), "species": int(s)}
        for x, y, s in zip(
            rng.normal(4, 1, 300), rng.normal(3, 1, 300), rng.integers(0, 3, 300), strict=True
        )
    ]
    path = tmp_path / "iris.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    p = _proposal(path, "species")
    assert p.task == "classification"
    assert p.reasons[0].startswith("target 'species' is integer with 3 distinct values (")
    assert p.reasons[0].endswith("; ≤ 20 and ≤ 5% of 300 rows) → classification")
    assert p.features == ("petal", "sepal") and p.id_columns == ()


def test_integer_target_with_many_values_is_regression(tmp_path):
    rng = np.random.default_rng(RNG_SEED)
    frame = pd.DataFrame({"x": rng.normal(size=1000), "count": rng.integers(0, 30, 1000)})
    path = tmp_path / "counts.csv"
    frame.to_csv(path, index=False)
    p = _proposal(path, "count")
    assert p.task == "regression"
    assert p.reasons[0] == (
        "target 'count' is integer with 30 distinct values in 1,000 rows"
        " (not ≤ 20 and ≤ 5% of 1,000 rows) → regression"
    )


def test_binary_integer_target_is_classification_even_in_a_small_sample(tmp_path):
    path = tmp_path / "small.csv"
    path.write_text("x,label\n1,0\n5,1\n3,0\n3,1\n9,1\n", encoding="utf-8")
    p = _proposal(path, "label")
    assert p.task == "classification"
    assert p.reasons[0] == "target 'label' is integer with 2 distinct values (0/1) → classification"


def test_a_large_sample_gets_gradient_boosted_trees(tmp_path):
    rng = np.random.default_rng(RNG_SEED)
    frame = pd.DataFrame({"a": rng.normal(size=12_000), "y": rng.normal(size=12_000)})
    path = tmp_path / "big.parquet"
    frame.to_parquet(path)
    p = _proposal(path, "y")
    assert p.estimator == "hist_gradient_boosting"
    assert (
        p.reasons[1]
        == "estimator hist_gradient_boosting (12,000 rows ≥ 10,000: gradient-boosted trees)"
    )


def test_choices_override_inference(churn_csv):
    sample = _sample(churn_csv)
    facts = describe(sample.table)
    cols, cmap = sample.table.column_names, sample.column_map
    by_estimator = propose(facts, "tenure_months", Choices(estimator="ridge"))
    assert (by_estimator.task, by_estimator.estimator) == ("regression", "ridge")
    assert by_estimator.reasons[0] == "estimator ridge (given) → regression"
    by_task = propose(facts, "tenure_months", Choices(task="classification"))
    assert (by_task.task, by_task.estimator) == ("classification", "logistic_regression")
    chosen = propose(
        facts,
        "churned",
        Choices(
            features=resolve(["Plan", "Row"], cols, cmap, "feature"),
            id_columns=resolve(["Customer ID"], cols, cmap, "id column"),
        ),
    )
    assert chosen.features == ("plan", "row") and chosen.id_columns == ("customer_id",)
    assert ("tenure_months", "not in --features") in chosen.left_out


@pytest.mark.parametrize(
    ("target", "choices", "message"),
    [
        ("churned", Choices(task="regression"), "target 'churned' is text; a regression needs"),
        (
            "churned",
            Choices(estimator="ridge", task="classification"),
            "estimator 'ridge' does a regression, not a classification",
        ),
        ("churned", Choices(estimator="xgboost"), "estimator = 'xgboost': expected one of"),
        ("churned", Choices(features=("churned",)), "target 'churned' cannot also be a feature"),
        ("country", Choices(), None),  # a constant target is still a column: no error here
    ],
)
def test_choices_that_cannot_work_are_refused(churn_csv, target, choices, message):
    facts = describe(_sample(churn_csv).table)
    if message is None:
        assert "one value" in propose(facts, target, choices).warnings[0]
        return
    with pytest.raises(ProposalError, match="^" + message.replace("(", r"\(")):
        propose(facts, target, choices)


def test_a_target_that_is_not_a_column_lists_the_columns(churn_csv):
    sample = _sample(churn_csv)
    with pytest.raises(ProposalError) as err:
        resolve(["churn"], sample.table.column_names, sample.column_map, "target")
    assert str(err.value) == (
        "target 'churn' is not a column of the sample; columns are customer_id, row,"
        " tenure_months, monthly_charges, country, plan, churned"
    )


def test_dates_as_target_are_refused(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("x,when\n1,2024-01-01\n2,2024-01-02\n", encoding="utf-8")
    with pytest.raises(ProposalError, match="holds dates or times"):
        _proposal(path, "when")


def test_the_sample_is_bounded_and_says_so(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("a,b\n" + "".join(f"{i},{i % 3}\n" for i in range(200)), encoding="utf-8")
    cut = read_sample(path, ReadOptions(batch_rows=64), max_rows=100)
    assert (cut.table.num_rows, cut.truncated) == (100, True)
    whole = read_sample(path, ReadOptions(batch_rows=64), max_rows=200)
    assert (whole.table.num_rows, whole.truncated) == (200, False)
    assert whole.table.column_names == ["a", "b"]  # no provenance columns


def test_a_type_widened_in_a_later_batch_is_one_column(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("a,y\n" + "".join(f"{i},{i}\n" for i in range(20)) + "1.5,3\n", "utf-8")
    sample = read_sample(path, ReadOptions(batch_rows=8))
    assert str(sample.table.schema.field("a").type) == "double"
    assert sample.table.num_rows == 21


def test_true_false_target_is_classification(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("x,paid\n1,true\n2,FALSE\n7,True\n", encoding="utf-8")
    p = _proposal(path, "paid")
    assert p.task == "classification"
    assert p.reasons[0] == "target 'paid' is true/false (true/false) → classification"


def test_a_text_target_with_many_classes_is_questioned(tmp_path):
    path = tmp_path / "many.csv"
    path.write_text("x,code\n" + "".join(f"{i % 7},c{i}\n" for i in range(150)), "utf-8")
    p = _proposal(path, "code")
    assert p.task == "classification"
    assert p.warnings == ("target 'code' has 150 classes: check that it is the column to predict",)
