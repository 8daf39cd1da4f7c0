"""The test session's S3: one moto_server on 127.0.0.1 and one fresh bucket, for every test
(and every xdist worker).

``tests/conftest.py`` exposes it as the session fixture ``s3`` (an ``S3Endpoint``: endpoint URL,
bucket, dummy ``AWS_*`` environment); each test takes its own prefix with ``s3.fresh_prefix()``
so tests share the server and never each other's keys. ``s3_env`` puts the credentials in this
process's environment for one test (the stores read ``AWS_*`` from there, as in production).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scoring.testing.moto import S3Endpoint
from scoring.testing.shared import shared

__all__ = ["S3Endpoint", "s3_session", "storage_settings"]


def s3_session(session: Path) -> Iterator[S3Endpoint]:
    """Yield the session's endpoint: one moto_server and bucket for all its processes.

    The first process to ask starts it (through ``scoring.testing.shared``, its log in
    ``session/moto``); the last to leave stops it.
    """
    with shared("moto", session) as info:
        yield S3Endpoint(**info)


def storage_settings(s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch, label: str = "t") -> dict:
    """Put the credentials in the environment and return a fresh prefix's ``[storage]``."""
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return s3.settings(s3.fresh_prefix(label))
