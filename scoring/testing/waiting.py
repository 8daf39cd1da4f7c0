"""The one polling helper, so no test or bench sleeps a fixed time and hopes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class TimedOut(AssertionError):
    """What was awaited did not come in time; a test fails on it as on a failed assertion."""


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll until predicate returns something truthy and return it; fail naming what was awaited.

    The predicate may raise to stop the wait early (a process that died will never be ready).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimedOut(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)
