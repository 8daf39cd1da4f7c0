"""A canary's rule: the live figures of champion and challenger in, a decision out (pure).

Modelled on Flagger's canary analysis: every check (the leader's scheduler, each
``[monitoring] canary_check_seconds``) looks at each version's traffic since the canary was
set; a check is *passed* when the challenger's error rate is at most ``max_error_rate_diff``
above the champion's, its p99 latency at most ``max_p99_ratio`` times the champion's and —
once both versions have ``min_labels`` labelled rows from the late-label join — its realized
primary metric at most ``realized_margin`` worse. ``failures`` failed checks roll the canary
back; ``passes`` passed checks promote the challenger — unless its input schema differs from
the champion's: as the promotion gate (``scoring.lifecycle.promotion``), a rule never promotes a
version clients would have to send other columns to, and it waits for a person. While either
version has answered fewer than ``min_requests`` requests, a check *waits*: too little traffic
decides nothing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

PASS, FAIL, WAIT = "pass", "fail", "wait"
RESTART = "restart"  # the champion or challenger changed: the counts start again
PROMOTE, ROLLBACK = "promote", "rollback"


def _limit(default: float, doc: str, words: str) -> Any:
    """Declare a rule field with what it means (``doc``) and how a person reads it (``words``).

    The API's schema and the CLI's sentence are made from these, so a field is declared once.
    """
    return field(default=default, metadata={"doc": doc, "words": words})


@dataclass(frozen=True)
class CanaryRule:
    """What a challenger on canary traffic must show, and how many checks decide."""

    min_requests: int = _limit(
        100, "requests each version needs since the canary started; fewer: no decision",
        "after {} requests each",
    )  # fmt: skip
    max_error_rate_diff: float = _limit(
        0.01, "the challenger's error rate less the champion's, at most",
        "error rate at most +{:.2%}",
    )  # fmt: skip
    max_p99_ratio: float = _limit(
        1.5, "the challenger's p99 latency over the champion's, at most", "p99 at most ×{:g}"
    )
    realized_margin: float = _limit(
        0.02, "how much worse the challenger's realized primary metric may be",
        "realized metric at most {:g} worse",
    )  # fmt: skip
    min_labels: int = _limit(
        50, "labelled rows each version needs before the realized metric counts",
        "once each has {} labels",
    )  # fmt: skip
    failures: int = _limit(2, "failed checks that roll the canary back", "{} failed roll back")
    passes: int = _limit(3, "passed checks that promote the challenger", "{} passed promote")

    def to_dict(self) -> dict[str, Any]:
        """Return the rule as the API and the CLI show it."""
        return asdict(self)


RULE_FIELDS = tuple(f.name for f in fields(CanaryRule))
RULE_DOCS = {f.name: str(f.metadata["doc"]) for f in fields(CanaryRule)}  # the API's schema


def rule_words(rule: dict[str, Any]) -> str:
    """Say what a rule (as ``to_dict`` gives it) asks, in one line a person reads."""
    said = [str(f.metadata["words"]).format(rule[f.name]) for f in fields(CanaryRule)]
    return "by rule: " + ", ".join(said)


_WHOLE = ("min_requests", "min_labels", "failures", "passes")  # counts: whole numbers ≥ 1
MAX_COUNT = 10**9
MAX_LIMIT = 1e9  # a limit beyond this is no limit; a bound keeps it a finite float


def parse_rule(body: Any, details: list[dict[str, str]]) -> CanaryRule | None:
    """Read a person's rule (any field left out keeps its default); add a detail per bad one."""
    if body is None:
        return None
    if not isinstance(body, dict):
        details.append({"field": "rule", "problem": "must be an object ({} for the defaults)"})
        return None
    values: dict[str, Any] = {}
    for name, value in body.items():
        if name not in RULE_FIELDS:
            plain = isinstance(name, str) and name.isidentifier() and len(name) < 40
            shown = name if plain else "?"
            details.append(
                {"field": f"rule.{shown}", "problem": f"unknown; known: {', '.join(RULE_FIELDS)}"}
            )
            continue
        # a JSON number may be an integer of any size: compared as it is, never made a float
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if name in _WHOLE:
            whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            if not (number and whole and 1 <= value <= MAX_COUNT):
                problem = f"must be a whole number, 1 to {MAX_COUNT}"
                details.append({"field": f"rule.{name}", "problem": problem})
                continue
            values[name] = int(value)
        else:
            if not (number and 0 <= value <= MAX_LIMIT and not math.isnan(value)):
                details.append(
                    {"field": f"rule.{name}", "problem": f"must be a number, 0 to {MAX_LIMIT:g}"}
                )
                continue
            values[name] = float(value)
    return CanaryRule(**values)


@dataclass(frozen=True)
class VersionFigures:
    """One version's live figures since the canary was set."""

    requests: int  # answered
    errors: int  # not answered (the error went to the client)
    p99_seconds: float | None  # from the latency histogram; None: no answer yet
    realized: float | None = None  # the realized primary metric, over the labelled rows
    labelled: int = 0  # labelled rows behind ``realized``

    @property
    def error_rate(self) -> float:
        """Errors over every request the version was sent."""
        sent = self.requests + self.errors
        return self.errors / sent if sent else 0.0


@dataclass(frozen=True)
class Evaluation:
    """One check of the rule: its outcome, the counts after it, a decision when one is due."""

    outcome: str  # pass | fail | wait
    passes: int
    failures: int
    decision: str | None  # promote | rollback | None
    reason: str  # the figures, in words a person reads

    def to_dict(self) -> dict[str, Any]:
        """Return the evaluation as the API shows it."""
        return asdict(self)


def evaluate(
    rule: CanaryRule,
    champion: VersionFigures,
    challenger: VersionFigures,
    metric: tuple[str, bool] | None,
    passes: int = 0,
    failures: int = 0,
    schema_change: str | None = None,
) -> Evaluation:
    """Check the challenger against the champion; ``passes``/``failures`` count earlier checks.

    ``metric`` is the task's primary metric and whether bigger is better (None: not known);
    ``schema_change`` says how the challenger's inputs differ (then no promotion by rule).
    """
    sent = min(champion.requests + champion.errors, challenger.requests + challenger.errors)
    if sent < rule.min_requests:
        reason = (
            f"too few requests to decide: champion {champion.requests + champion.errors},"
            f" challenger {challenger.requests + challenger.errors} (each needs"
            f" {rule.min_requests})"
        )
        return Evaluation(WAIT, passes, failures, None, reason)
    problems, findings = _compare(rule, champion, challenger, metric)
    if problems:
        failures += 1
        outcome = FAIL
        decision = ROLLBACK if failures >= rule.failures else None
        said = "; ".join(problems)
    else:
        passes += 1
        outcome = PASS
        decision = PROMOTE if passes >= rule.passes else None
        said = "; ".join(findings)
        if decision is not None and schema_change:
            decision = None
            said += (
                f"; input schema differs from the champion's: {schema_change}; kept for a"
                " person to promote"
            )
    counts = f"{passes}/{rule.passes} passed, {failures}/{rule.failures} failed"
    return Evaluation(outcome, passes, failures, decision, f"{outcome}: {said} ({counts})")


def _compare(
    rule: CanaryRule,
    champion: VersionFigures,
    challenger: VersionFigures,
    metric: tuple[str, bool] | None,
) -> tuple[list[str], list[str]]:
    """Return the broken limits, and every figure compared, as sentences."""
    problems: list[str] = []
    findings: list[str] = []
    diff = challenger.error_rate - champion.error_rate
    said = (
        f"error rate {challenger.error_rate:.2%} vs champion {champion.error_rate:.2%}"
        f" (at most +{rule.max_error_rate_diff:.2%})"
    )
    (problems if diff > rule.max_error_rate_diff + 1e-12 else findings).append(said)
    ours, theirs = challenger.p99_seconds, champion.p99_seconds
    if ours is None and challenger.requests == 0:
        problems.append("the challenger answered no request")
    elif ours is not None and theirs is not None and theirs > 0:
        ratio = ours / theirs
        said = (
            f"p99 {ours * 1000:.1f} ms vs champion {theirs * 1000:.1f} ms"
            f" (×{ratio:.2f}, at most ×{rule.max_p99_ratio:g})"
        )
        (problems if ratio > rule.max_p99_ratio else findings).append(said)
    if metric is None or champion.realized is None or challenger.realized is None:
        return problems, findings
    if min(champion.labelled, challenger.labelled) < rule.min_labels:
        return problems, findings  # too few labels yet: the live figures decide alone
    name, bigger_better = metric
    margin = challenger.realized - champion.realized
    margin = margin if bigger_better else -margin
    said = (
        f"realized {name} {challenger.realized:.4f} vs champion {champion.realized:.4f}"
        f" (at most {rule.realized_margin:g} worse)"
    )
    (problems if margin < -rule.realized_margin else findings).append(said)
    return problems, findings


def last_check(last: dict[str, Any] | None) -> str | None:
    """Describe a rule's last check in one line for a person (None: never checked)."""
    if not last:
        return None
    decided = {PROMOTE: "promoted", ROLLBACK: "rolled back"}.get(last.get("decision") or "")
    done = f"; {decided} version {last['challenger']}" if decided else ""
    return f"canary rule, last check {last['at'][:19]}Z: {last['reason']}{done}"
