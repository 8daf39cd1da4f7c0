"""A canary's rule as a pure function (figures in, decision out), its input, and its seams.

The tables are the cases a person meets: too little traffic decides nothing; a challenger that
errors, is slow, or realizes a worse metric fails a check, and enough failed checks roll it back;
one as good as the champion passes, and enough passed checks promote it. The store keeps the
figures since the canary was set (not the champion's traffic before it), as sums with a latency
histogram.
"""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest

from ingest.state.db import StateDB
from scoring.errors import ValidationFailed
from scoring.traffic.figures import SERVED, DayFigures
from scoring.traffic.rule import (
    FAIL,
    PASS,
    PROMOTE,
    ROLLBACK,
    RULE_FIELDS,
    WAIT,
    CanaryRule,
    VersionFigures,
    evaluate,
    last_check,
    rule_words,
)
from scoring.traffic.setting import parse_setting
from scoring.traffic.store import DayKey, TrafficStore

ROOT = Path(__file__).resolve().parents[1]
RULE = CanaryRule(min_requests=100, max_error_rate_diff=0.01, max_p99_ratio=1.5,
                  realized_margin=0.02, min_labels=50, failures=2, passes=3)  # fmt: skip
R2 = ("r2", True)  # bigger is better
RMSE = ("rmse", False)  # smaller is better


def v(requests=200, errors=0, p99=0.010, realized=None, labelled=0) -> VersionFigures:
    return VersionFigures(requests, errors, p99, realized, labelled)


# (case, champion, challenger, metric, earlier passes, earlier failures) -> outcome, decision
CASES = [
    ("too few challenger requests", v(), v(requests=99), R2, 0, 0, WAIT, None),
    ("too few champion requests", v(requests=10), v(), R2, 2, 1, WAIT, None),
    ("no traffic at all", v(0, 0, None), v(0, 0, None), None, 0, 0, WAIT, None),
    ("as good", v(), v(), R2, 0, 0, PASS, None),
    ("as good, third pass", v(), v(), R2, 2, 0, PASS, PROMOTE),
    ("as good after a failure, third pass", v(), v(), R2, 2, 1, PASS, PROMOTE),
    ("errors: 1% above is allowed", v(errors=0), v(requests=198, errors=2), None, 0, 0, PASS,
     None),
    ("errors: 5% above fails", v(), v(requests=190, errors=10), None, 0, 0, FAIL, None),
    ("errors: second failure rolls back", v(), v(requests=100, errors=100), None, 0, 1, FAIL,
     ROLLBACK),
    ("errors count the requests they were sent", v(requests=100, errors=100),
     v(requests=100, errors=100), None, 0, 0, PASS, None),
    ("p99 ×1.5 is allowed", v(p99=0.010), v(p99=0.015), None, 0, 0, PASS, None),
    ("p99 ×3 fails", v(p99=0.010), v(p99=0.030), None, 0, 0, FAIL, None),
    ("p99 ×3 on the last allowed failure rolls back", v(p99=0.010), v(p99=0.030), None, 1, 1,
     FAIL, ROLLBACK),
    ("a challenger that answered nothing fails", v(), v(requests=0, errors=150, p99=None), None,
     0, 0, FAIL, None),
    ("realized r2 worse by 0.1 fails", v(realized=0.5, labelled=60),
     v(realized=0.4, labelled=60), R2, 0, 0, FAIL, None),
    ("realized r2 worse by 0.01 passes", v(realized=0.5, labelled=60),
     v(realized=0.49, labelled=60), R2, 0, 0, PASS, None),
    ("realized rmse higher (worse) by 5 fails", v(realized=50.0, labelled=60),
     v(realized=55.0, labelled=60), RMSE, 0, 0, FAIL, None),
    ("realized rmse lower (better) passes", v(realized=50.0, labelled=60),
     v(realized=45.0, labelled=60), RMSE, 0, 0, PASS, None),
    ("too few labels: the realized metric does not count", v(realized=0.9, labelled=60),
     v(realized=0.1, labelled=49), R2, 0, 0, PASS, None),
    ("realized metric of one version only", v(realized=0.9, labelled=60), v(), R2, 0, 0, PASS,
     None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("champion", "challenger", "metric", "passes", "failures", "outcome", "decision"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_a_check_of_the_rule(champion, challenger, metric, passes, failures, outcome, decision):
    got = evaluate(RULE, champion, challenger, metric, passes, failures)
    assert (got.outcome, got.decision) == (outcome, decision), got.reason
    if outcome == WAIT:  # no decision, and the counts stay as they were
        assert (got.passes, got.failures) == (passes, failures)
        assert "too few requests" in got.reason
    else:
        assert (got.passes, got.failures) == (
            passes + (outcome == PASS),
            failures + (outcome == FAIL),
        )


def test_a_challenger_taking_other_columns_passes_but_waits_for_a_person():
    got = evaluate(RULE, v(), v(), R2, 2, 0, schema_change="its features drop s6")
    assert (got.outcome, got.passes, got.decision) == (PASS, 3, None)
    assert "input schema differs from the champion's: its features drop s6" in got.reason
    assert evaluate(RULE, v(), v(), R2, 2, 0).decision == PROMOTE


def test_the_reason_gives_the_figures_a_person_checks():
    got = evaluate(RULE, v(p99=0.010), v(p99=0.030, requests=190, errors=10), None, 0, 1)
    assert got.decision == ROLLBACK
    assert "error rate 5.00% vs champion 0.00%" in got.reason
    assert "p99 30.0 ms vs champion 10.0 ms (×3.00, at most ×1.5)" in got.reason
    assert "0/3 passed, 2/2 failed" in got.reason
    line = last_check({**got.to_dict(), "at": "2026-12-06T18:00:00.000+00:00", "challenger": "3"})
    assert line is not None and line.endswith("; rolled back version 3")


def test_a_rule_is_read_with_defaults_and_refused_field_by_field():
    setting = parse_setting({"mode": "canary", "fraction": 0.2, "rule": {"passes": 5}})
    assert setting.rule == CanaryRule(passes=5)
    assert parse_setting({"mode": "canary", "fraction": 0.2, "rule": {}}).rule == CanaryRule()
    assert parse_setting({"mode": "canary", "fraction": 0.2}).rule is None
    bad = {"passes": 0, "max_p99_ratio": -1, "failures": 1.5, "min_requests": True, "speed": 2,
           "min_labels": 10**400, "realized_margin": 10**400, "max_error_rate_diff": "0.1"}
    with pytest.raises(ValidationFailed) as refused:
        parse_setting({"mode": "canary", "fraction": 0.2, "rule": bad})
    fields = {d["field"] for d in refused.value.details}
    assert fields == {"rule.passes", "rule.max_p99_ratio", "rule.failures", "rule.min_requests",
                      "rule.speed", "rule.min_labels", "rule.realized_margin",
                      "rule.max_error_rate_diff"}  # fmt: skip
    for body in ({"mode": "shadow", "rule": {}}, {"mode": "canary", "fraction": 1, "rule": [1]}):
        with pytest.raises(ValidationFailed) as refused:
            parse_setting(body)
        assert [d["field"] for d in refused.value.details] == ["rule"]


def test_p99_comes_from_the_histogram_and_survives_addition():
    fast, slow = DayFigures(), DayFigures()
    for _ in range(990):
        fast.served(1, 0.002)
    for _ in range(10):
        slow.served(1, 0.400)
    fast.merge(slow)
    p99 = fast.p99_seconds()
    assert p99 is not None and 0.0015 < p99 < 0.0030  # the 99th of 1000: still a fast one
    fast.merge(slow)  # 20 slow of 1010: the p99 is a slow one now
    p99 = fast.p99_seconds()
    assert p99 is not None and 0.28 < p99 < 0.57
    assert DayFigures().p99_seconds() is None


def test_the_store_counts_a_canary_from_when_it_was_set(tmp_path):
    store = TrafficStore(StateDB.at(tmp_path / "state.db"))
    before = DayFigures()
    for _ in range(500):
        before.served(1, 0.005)
    store.add({DayKey(1, "2026-12-05", SERVED): before})
    assert store.rule_state() is None
    store.set(parse_setting({"mode": "canary", "fraction": 0.5, "rule": {"passes": 2}}), by="ops")
    state = store.rule_state()
    assert state is not None and state.canary == store.set_at()
    assert (state.passes, state.failures, state.last) == (0, 0, None)
    assert state.baseline[1].requests == 500  # the champion's traffic before the canary
    after = DayFigures()
    for _ in range(30):
        after.served(1, 0.005)
    store.add({DayKey(1, "2026-12-06", SERVED): after})
    totals = store.served_totals()
    assert totals[1].requests - state.baseline[1].requests == 30
    assert store.get().rule == CanaryRule(passes=2)
    # a setting changed since a check began is never undone by the rule's decision
    assert not store.set(parse_setting({"mode": "off"}), by="rule", unless_changed="then")
    assert store.get().mode == "canary"
    assert store.set(parse_setting({"mode": "off"}), by="rule", unless_changed=state.canary)
    assert store.get().mode == "off" and store.rule_state() == state  # the last checks stay


def _calls(path: Path, name: str) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(
        isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) == name or getattr(node.func, "attr", None) == name)
        for node in ast.walk(tree)
    )


def test_only_the_scheduled_job_checks_a_canary_rule():
    """The rule is checked by the leader's scheduler alone: never by a request or a replica."""
    callers = sorted(
        str(path.relative_to(ROOT))
        for folder in ("scoring", "schedules", "ingest")
        for path in (ROOT / folder).rglob("*.py")
        if _calls(path, "check_canary")
    )
    assert callers == ["schedules/jobs.py"]
    jobs = {(j["func"], j["id"]) for j in _job_specs()}
    assert ("schedules.jobs:canary_check", "canary_check") in jobs


def test_a_rule_decides_through_the_registry_as_a_person_does():
    """A promotion by rule is the registry's ``promote`` (its record and log), never the index."""
    for path in (ROOT / "scoring" / "traffic").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        reached = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        assert not reached & {"index", "set_status"}, f"{path.name} goes round the registry"
    tree = ast.parse((ROOT / "scoring" / "traffic" / "check.py").read_text(encoding="utf-8"))
    assert any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "promote"
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr == "registry"
        for node in ast.walk(tree)
    ), "check.py promotes through something other than the registry"


def test_the_rule_fields_are_declared_once_in_canary_rule():
    """The API's schema, the CLI's sentence and the page's form name no rule field by hand."""
    for name in ("scoring/api/traffic.py", "scoring/service/traffic_cli.py",
                 "scoring/api/pages/traffic_control.py"):  # fmt: skip
        tree = ast.parse((ROOT / name).read_text(encoding="utf-8"))
        # not listings: the rule state's counts (two share the rule's names) and an example body
        apart = [
            n for n in ast.walk(tree)
            if (isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "RULE_STATE")
            or (isinstance(n, ast.Call) and getattr(n.func, "id", "") == "json_body")
        ]  # fmt: skip
        skipped = {id(n) for c in apart for n in ast.walk(c)}
        nodes = [n for n in ast.walk(tree) if id(n) not in skipped]
        named = {n.value for n in nodes if isinstance(n, ast.Constant)}
        named |= {n.arg for n in nodes if isinstance(n, ast.keyword)}
        listed = named & set(RULE_FIELDS)
        assert not listed, f"{name} lists rule fields by hand: {sorted(listed)}"
    for f in fields(CanaryRule):
        assert f.metadata.get("doc") and f.metadata.get("words"), f"{f.name} is not described"
    words = rule_words(CanaryRule(min_requests=7, passes=9, max_p99_ratio=1.25).to_dict())
    assert "after 7 requests each" in words and "9 passed promote" in words and "×1.25" in words


def _job_specs() -> list[dict]:
    from schedules.scheduler import job_specs
    from scoring.settings import load_settings

    return job_specs(load_settings(None, overrides={"paths": {"data_dir": "data"}}))


def test_a_traffic_database_of_the_last_release_is_upgraded_in_place(tmp_path):
    """Its rows keep their sums (no latency histogram: empty buckets) and take a rule."""
    import sqlite3

    path = tmp_path / "state.db"
    old = TrafficStore(StateDB.at(path))
    old.add({DayKey(1, "2026-12-01", SERVED): DayFigures(requests=7, rows=7, seconds=0.5)})
    old.db.dispose()
    with sqlite3.connect(path) as conn:  # back to the previous release's tables and version
        conn.execute("ALTER TABLE traffic_days DROP COLUMN latency")
        conn.execute("ALTER TABLE traffic DROP COLUMN rule")
        conn.execute("DROP TABLE canary_rule")
        conn.execute("UPDATE schema_versions SET version = 1 WHERE store = 'traffic'")
    store = TrafficStore(StateDB.at(path))
    [(key, figures)] = store.days()
    assert (key.version, figures.requests, figures.seconds) == (1, 7, 0.5)
    assert figures.p99_seconds() is None
    assert store.set(parse_setting({"mode": "canary", "fraction": 0.1, "rule": {}}))
    state = store.rule_state()
    assert state is not None and state.baseline[1].requests == 7
