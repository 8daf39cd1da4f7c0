"""From a version's hold-out sample to the SVG plots its Models page shows (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from scoring.api.pages import svg

# What each hold-out metric can be, (floor, ceiling): an axis never shows what it cannot take.
# R² may be negative (worse than the mean) but never passes 1; errors are never negative.
METRIC_RANGE: Mapping[str, tuple[float | None, float | None]] = MappingProxyType(
    {
        "r2": (None, 1.0),
        "accuracy": (0.0, 1.0),
        "f1": (0.0, 1.0),
        "roc_auc": (0.0, 1.0),
        "mae": (0.0, None),
        "rmse": (0.0, None),
    }
)


def trend(labels: list[str], values: list[Any], metric: str, current: int | None) -> str:
    """Plot the primary metric across versions, on an axis bounded by what the metric can be."""
    floor, ceiling = METRIC_RANGE.get(metric, (None, None))
    return svg.line(
        labels,
        values,
        title=f"{metric} by version",
        ylabel=metric,
        highlight=current,
        floor=floor,
        ceiling=ceiling,
    )


def for_holdout(sample: dict[str, Any]) -> dict[str, str]:
    """Draw the task's plots: predicted vs actual and residuals, or confusion and ROC."""
    out: dict[str, str] = {}
    if sample.get("task") == "regression":
        actual, predicted = sample["actual"], sample["predicted"]
        out["predicted_vs_actual"] = svg.scatter(
            actual,
            predicted,
            title="predicted vs actual",
            xlabel="actual",
            ylabel="predicted",
            diagonal=True,
        )
        residuals = [p - a for a, p in zip(actual, predicted, strict=False)]
        out["residuals"] = svg.scatter(
            predicted,
            residuals,
            title="residuals",
            xlabel="predicted",
            ylabel="predicted − actual",
            hline=0.0,
        )
    else:
        classes = sample.get("classes") or sorted(set(sample["actual"]) | set(sample["predicted"]))
        out["confusion"] = svg.confusion(
            classes,
            confusion(classes, sample["actual"], sample["predicted"]),
            title="confusion matrix",
        )
        if sample.get("probabilities"):
            curves = roc_curves(classes, sample["actual"], sample["probabilities"])
            aucs = {name: auc(*points) for name, points in curves.items()}
            out["roc"] = svg.roc(curves, title="ROC curve", aucs=aucs)
    weights = sample.get("weights")
    if weights:
        out["weights"] = svg.bars(weights["names"], weights["values"], title=weights["kind"])
    return out


def confusion(classes: Sequence[str], actual: Sequence[str], predicted: Sequence[str]) -> list:
    """Count (actual, predicted) pairs into a classes × classes grid."""
    index = {c: i for i, c in enumerate(classes)}
    grid = [[0] * len(classes) for _ in classes]
    for a, p in zip(actual, predicted, strict=False):
        if a in index and p in index:
            grid[index[a]][index[p]] += 1
    return grid


def roc_curves(
    classes: Sequence[str], actual: Sequence[str], probabilities: Sequence[Sequence[float]]
) -> dict[str, tuple[list[float], list[float]]]:
    """One-vs-rest ROC points per class (one curve, for the positive class, when binary)."""
    chosen = list(enumerate(classes))[-1:] if len(classes) == 2 else list(enumerate(classes))
    out = {}
    for k, name in chosen:
        truth = [a == name for a in actual]
        scores = [row[k] for row in probabilities]
        out[str(name)] = roc_points(truth, scores)
    return out


def roc_points(truth: Sequence[bool], scores: Sequence[float]) -> tuple[list[float], list[float]]:
    """Sweep the threshold from high to low; return (false positive rates, true positive rates)."""
    pos = sum(truth)
    neg = len(truth) - pos
    fpr, tpr = [0.0], [0.0]
    tp = fp = 0
    pairs = sorted(zip(scores, truth, strict=False), key=lambda p: -p[0])
    for i, (score, positive) in enumerate(pairs):
        tp += positive
        fp += not positive
        if i + 1 == len(pairs) or pairs[i + 1][0] != score:  # one point per distinct threshold
            fpr.append(fp / neg if neg else 0.0)
            tpr.append(tp / pos if pos else 0.0)
    return fpr, tpr


def auc(fpr: Sequence[float], tpr: Sequence[float]) -> float:
    """Return the area under a ROC curve by the trapezoid rule (ties make diagonal segments)."""
    return sum(
        (fpr[i] - fpr[i - 1]) * (tpr[i] + tpr[i - 1]) / 2 for i in range(1, min(len(fpr), len(tpr)))
    )
