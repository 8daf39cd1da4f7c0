"""Per-feature contributions of a model's answer: base value + contributions = prediction.

A linear pipeline on numeric features is one affine map, ``where(isnan(x), medians, x) · w + b``
(the registry's stored fold, ``scoring.lifecycle.predictor.Fold``). Taking the all-median row
(every value missing) as the base, ``base = medians · w + b`` and feature ``j`` contributes
``(x̃_j - median_j) · w_j``, so the sum is the prediction exactly (to rounding), and a missing
value contributes 0. A binary logistic regression is the same map in log-odds space: the
answer says so, and names the class whose log-odds it explains.

Every other model (the tree ensembles) is explained by SHAP's tree explainer (the optional
``shap`` extra, imported on the first such request, never at start): exact Shapley values of
the fitted trees, over the pipeline's transformed columns, summed back into the input features
(``_columns``). Their base is the trees' mean answer over the training data. A model shap cannot
explain, or a server without shap, is a 422 that says what to do.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from scoring.errors import ValidationFailed
from scoring.lifecycle.estimators import ESTIMATORS
from scoring.lifecycle.predictor import Fold, LoadedModel

LOG_ODDS = "log-odds"
PREDICTION = "prediction"
PROBABILITY = "probability"
SCORE = "class score"  # a multiclass boosting model's per-class raw score, before the softmax
SPACES = (PREDICTION, LOG_ODDS, PROBABILITY, SCORE)
SHAP_HINT = "pip install 'dropscore[shap]'"
# What shap's tree explainer is used for: the estimators that are neither linear nor logistic.
TREES = tuple(n for n, spec in ESTIMATORS.items() if not spec.linear and n != "logistic_regression")
# How far base + contributions may be from the model's own answer for a tree explanation, relative
# to the answer's size (at least 1): shap sums leaf values in another order than the trees do.
TREE_TOLERANCE = 1e-6

_NOTES = {
    LOG_ODDS: "values are the log-odds of class {positive!r}: base_value + contributions ="
    " prediction (log-odds); the probability is 1 / (1 + e^-prediction)",
    PROBABILITY: "values are the probability of class {positive!r}: base_value + contributions"
    " = prediction (a probability)",
    SCORE: "values are the raw score of each row's predicted class (its `class`), whose softmax"
    " over the classes is the probability: base_value + contributions = prediction (score)",
}
_PER_ROW_NOTES = {
    PROBABILITY: "values are the probability of each row's predicted class (its `class`):"
    " base_value + contributions = prediction (a probability)",
    SCORE: _NOTES[SCORE],
}


@dataclass(frozen=True)
class Explanations:
    """Each row's explained value, split into a base value and one contribution per feature."""

    version: str
    space: str  # one of SPACES: what ``values`` are
    positive: Any  # the class whose value is explained (binary); None for regression
    base: float | np.ndarray  # one base, or (rows,): each row's own, when ``classes`` is set
    values: np.ndarray  # (rows,): what is explained, in ``space``
    contributions: np.ndarray  # (rows, features)
    features: list[str]
    classes: list[Any] | None = None  # multiclass: the class each row's value is of

    @property
    def classifier(self) -> bool:
        """Tell whether the rows are a classifier's (whose labels the answer carries)."""
        return self.space != PREDICTION

    def to_dict(self, labels: list[Any] | None = None) -> dict[str, Any]:
        """Return the JSON answer; ``labels`` are a classifier's predicted classes per row."""
        rows = []
        for i, value in enumerate(self.values.tolist()):
            base = self.base if isinstance(self.base, float) else float(self.base[i])
            row: dict[str, Any] = {
                "prediction": value,
                "base_value": base,
                "contributions": dict(
                    zip(self.features, self.contributions[i].tolist(), strict=True)
                ),
            }
            if labels is not None:
                row["label"] = labels[i]
            if self.classes is not None:
                row["class"] = self.classes[i]
            rows.append(row)
        out: dict[str, Any] = {"model_version": self.version, "space": self.space}
        notes = _PER_ROW_NOTES if self.classes is not None else _NOTES
        if self.space in notes:
            out["note"] = notes[self.space].format(positive=self.positive)
        out["explanations"] = rows
        return out


def explain(model: LoadedModel, X: np.ndarray) -> Explanations:
    """Split each validated row's answer into base + one contribution per feature.

    Linear models are split exactly from their fold; any other model goes to ``shap``'s tree
    explainer (``_trees``), or is a 422 saying what is covered.
    """
    affine = _affine(model)
    if affine is None:
        return _trees(model, X)
    form, space, positive = affine
    filled = np.where(np.isnan(X), form.medians, X)
    centred = filled - form.medians
    contributions = centred * form.weights
    base = float(form.medians @ form.weights + form.bias)
    with np.errstate(over="ignore", invalid="ignore"):
        values = form(np.ascontiguousarray(X, dtype=np.float64))
    _check_finite(values, contributions)
    names = model.schema.names
    return Explanations(model.version, space, positive, base, values, contributions, names)


def _check_finite(values: np.ndarray, contributions: np.ndarray) -> None:
    """Refuse to answer numbers JSON cannot carry."""
    if not (np.isfinite(values).all() and np.isfinite(contributions).all()):
        raise ValidationFailed(
            "an explanation is not a finite number (inputs far outside the training data?)",
            [{"field": "rows", "problem": "not finite"}],
        )


def _affine(model: LoadedModel) -> tuple[Fold, str, Any] | None:
    """The model's affine map and the space it answers in; None for a model without one."""
    if isinstance(model.fast, Fold):
        return model.fast, PREDICTION, None
    estimator = str(model.card.get("estimator", ""))
    if estimator == "logistic_regression" and model.schema.numeric_only:
        form = _logistic(model.pipeline, len(model.schema.features))
        if form is not None and len(model.classes) == 2:
            return form, LOG_ODDS, model.classes[1]
    return None


def _logistic(pipeline: Any, n_features: int) -> Fold | None:
    """Fold impute → scale → binary logistic regression into its log-odds map."""
    try:
        numeric = pipeline.named_steps["prep"].named_transformers_["numeric"]
        medians = numeric.named_steps["impute"].statistics_.astype(np.float64)
        scaler = numeric.named_steps["scale"]
        model = pipeline.named_steps["model"]
        coef = np.asarray(model.coef_, dtype=np.float64)
        if coef.shape != (1, n_features):
            return None
        weights = coef[0] / scaler.scale_
        bias = float(np.asarray(model.intercept_).reshape(-1)[0]) - float(weights @ scaler.mean_)
    except (AttributeError, KeyError, ValueError):
        return None
    form = Fold(medians, weights, bias)
    probe = np.vstack([medians, scaler.mean_ + scaler.scale_])
    expected = np.asarray(pipeline.decision_function(probe), dtype=np.float64)
    if not np.allclose(form(probe), expected, rtol=1e-9, atol=1e-9):
        return None  # another pipeline layout than the one trained here
    return form


def _trees(model: LoadedModel, X: np.ndarray) -> Explanations:
    """Explain a tree ensemble through shap, in the space its trees add up in.

    Regressors are explained in their prediction; a random forest classifier's trees average
    probabilities, a boosting classifier's add log-odds (two classes) or per-class scores. Two
    classes explain the second class (as a logistic regression does); more explain each row's
    predicted class, with that class's base.
    """
    if model.card.get("estimator") not in TREES:
        raise _not_explainable(model, "neither linear on numbers nor a tree ensemble")
    pipeline = model.pipeline
    try:
        prep, estimator = pipeline.named_steps["prep"], pipeline.named_steps["model"]
    except (AttributeError, KeyError):
        raise _not_explainable(model, "not a pipeline trained here") from None
    columns = _columns(prep, len(model.schema.features))
    if columns is None:
        raise _not_explainable(model, "its preprocessing has an unknown layout")
    shap = _shap(model)
    try:
        explainer = shap.TreeExplainer(estimator)
    except Exception as exc:  # shap's InvalidModelError: every model but trees
        raise _not_explainable(model, type(exc).__name__) from None
    Z = np.asarray(prep.transform(X), dtype=np.float64)
    raw = explainer.shap_values(Z, check_additivity=False)
    # older shap: a list of (rows, columns), one per class; newer: (rows, columns[, classes])
    shaped = np.stack(raw, axis=-1) if isinstance(raw, list) else np.asarray(raw)
    expected = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64))
    space, positive, own = _own_answer(model, estimator, Z)
    rows = np.arange(len(Z))
    classes: list[Any] | None = None
    if own.ndim == 1:  # one value per row: a regressor or a binary log-odds
        per_column, base, values = shaped.reshape(len(Z), -1), float(expected[0]), own
    elif own.shape[1] == 2:  # a binary forest: the second class's probability
        per_column, base, values = shaped[:, :, 1], float(expected[1]), own[:, 1]
    else:
        picked = np.argmax(own, axis=1)
        per_column, base, values = shaped[rows, :, picked], expected[picked], own[rows, picked]
        labels = model.classes
        classes, positive = [labels[k] for k in picked.tolist()], None
    contributions = per_column @ columns
    _check_finite(values, contributions)
    total = base + contributions.sum(axis=1)
    if not np.allclose(total, values, rtol=TREE_TOLERANCE, atol=TREE_TOLERANCE):
        raise _not_explainable(model, "shap's values do not add up to its answers")
    names = model.schema.names
    return Explanations(model.version, space, positive, base, values, contributions, names, classes)


def _own_answer(model: LoadedModel, estimator: Any, Z: np.ndarray) -> tuple[str, Any, np.ndarray]:
    """The trees' own answer to the transformed rows, in the space shap explains, and its class."""
    if model.schema.task != "classification":
        return PREDICTION, None, np.asarray(estimator.predict(Z), dtype=np.float64)
    classes = model.classes
    if hasattr(estimator, "decision_function"):  # boosting: the trees sum to the raw score
        scores = np.asarray(estimator.decision_function(Z), dtype=np.float64)
        if scores.ndim == 1:
            return LOG_ODDS, classes[1], scores
        return SCORE, None, scores
    proba = np.asarray(estimator.predict_proba(Z), dtype=np.float64)
    return PROBABILITY, classes[1] if len(classes) == 2 else None, proba


def _columns(prep: Any, n_features: int) -> np.ndarray | None:
    """Map the transformed columns back to input features: a (columns, features) 0/1 matrix.

    A numeric feature is one scaled column; a categorical one is its one-hot columns (one per
    category), whose contributions are summed into it: SHAP values add, so the sum is that
    feature's share of the answer (the unknown category, all zeros, is still the feature's).
    None when the layout is not the one ``scoring.lifecycle.pipeline`` builds.
    """
    try:
        width = sum(s.stop - s.start for s in prep.output_indices_.values())
        matrix = np.zeros((width, n_features))
        for name, transformer, inputs in prep.transformers_:
            out = prep.output_indices_[name]
            if name == "remainder" or out.stop == out.start:
                continue
            if name == "numeric":
                sizes = [1] * len(inputs)
            else:
                sizes = [len(c) for c in transformer.named_steps["onehot"].categories_]
            if sum(sizes) != out.stop - out.start:
                return None
            start = out.start
            for feature, size in zip(inputs, sizes, strict=True):
                matrix[start : start + size, feature] = 1.0
                start += size
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    return matrix


def _shap(model: LoadedModel) -> Any:
    """Import shap on the first tree explanation; without it, a 422 saying how to add it."""
    try:
        return importlib.import_module("shap")
    except ImportError:
        estimator = str(model.card.get("estimator", "")) or "unknown estimator"
        raise ValidationFailed(
            f"version {model.version} ({estimator}) is explained through SHAP, which is not"
            f" installed on this server: {SHAP_HINT}, then restart it",
            [{"field": "model", "problem": f"shap is not installed ({SHAP_HINT})"}],
        ) from None


def _not_explainable(model: LoadedModel, why: str) -> ValidationFailed:
    """The 422 for a model neither path explains, naming the ones that are."""
    estimator = str(model.card.get("estimator", "")) or "unknown estimator"
    linear = [n for n, spec in ESTIMATORS.items() if spec.linear]
    return ValidationFailed(
        f"version {model.version} ({estimator}) cannot be explained ({why}): contributions are"
        f" exact for linear models on numeric features ({', '.join(linear)};"
        " logistic_regression with two classes, in log-odds) and, through SHAP, for the tree"
        f" ensembles ({', '.join(TREES)})",
        [{"field": "model", "problem": f"{estimator} is not explainable"}],
    )
