"""No session parks in ``pg_advisory_lock``: a lock is waited for by try-lock and backoff.

A blocking ``pg_advisory_lock`` holds a server connection per waiter for as long as it waits, so
a backlog of intake threads could use up ``max_connections`` (the API's state database too).
``AdvisoryLocks.acquire`` tries on one connection per name instead; this check keeps it so.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ingest", "scoring", "schedules")
# Session-level only: ``StateDB.write``'s transaction lock waits on a pooled connection (bounded).
BLOCKING = re.compile(r"\bpg_advisory_lock(?:_shared)?\s*\(")


def blocking_waits(source: str) -> list[int]:
    """Give the lines that call a blocking session-level advisory lock function."""
    return [n for n, line in enumerate(source.splitlines(), 1) if BLOCKING.search(line)]


def test_no_code_waits_in_a_blocking_advisory_lock() -> None:
    found = {
        str(path.relative_to(ROOT)): lines
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if (lines := blocking_waits(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_the_check_sees_what_it_looks_for() -> None:
    assert blocking_waits('conn.execute("SELECT true FROM pg_advisory_lock(%s)")') == [1]
    assert blocking_waits('conn.execute("SELECT pg_advisory_lock_shared(1)")') == [1]
    assert blocking_waits('conn.execute("SELECT pg_try_advisory_lock(%s)")') == []
    assert blocking_waits('conn.execute("SELECT pg_advisory_unlock(%s)")') == []
