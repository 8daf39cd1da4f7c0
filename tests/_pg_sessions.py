"""End the PostgreSQL session holding an advisory lock, as a lost network or dead process does."""

from __future__ import annotations

import time

from sqlalchemy import text

from ingest.state.db import StateDB
from ingest.state.locks import AdvisoryLocks

_HOLDERS = text(
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND classid::bigint = :high AND objid::bigint = :low"
)
_ALIVE = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")


def end_lock_session(db: StateDB, name: str, patience: float = 60.0) -> None:
    """Terminate the server session holding lock ``name`` and wait until it is gone."""
    key = AdvisoryLocks(db).key(name)
    with db.read() as conn:
        [pid] = conn.execute(
            _HOLDERS, {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}
        ).scalars()
    with db.write() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        with db.read() as conn:
            if not conn.execute(_ALIVE, {"pid": pid}).scalar():
                return
        time.sleep(0.05)
    raise AssertionError(f"session {pid} still there after {patience}s")
