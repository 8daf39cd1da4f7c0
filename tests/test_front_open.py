"""``serve`` and ``api`` on a network address with no API key say so, loudly, and how to fix it.

Real processes on ``0.0.0.0``: stderr carries one plain WARNING line for the person who started
it (naming ``dropscore keys add NAME --role admin`` and ``[server] api_keys``) and the JSON log
event. With a key in the key store, or on loopback, nothing is said.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from scoring.testing.ports import free_port
from scoring.testing.processes import process_env
from scoring.testing.waiting import wait_for

pytestmark = pytest.mark.slow

EVENT = "open to the network without a key"


@contextmanager
def launched(args: list[str], env: dict[str, str], folder: Path) -> Iterator[Path]:
    """Run ``dropscore ARGS`` with stderr in its own file; yield that file; SIGTERM it after."""
    err = folder / f"{args[0]}.stderr"
    with open(folder / f"{args[0]}.stdout", "w") as out, open(err, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scoring", *args], env=env, stdout=out, stderr=fh
        )
        try:
            yield err
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def events(text: str) -> list[dict]:
    """Return the JSON log events among stderr's lines."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def said(err: Path, event: str) -> bool:
    return any(e.get("event") == event for e in events(err.read_text()))


@pytest.mark.parametrize("command", ["serve", "api"])
def test_a_network_address_without_a_key_is_a_warning_saying_how_to_add_one(
    command: str, tmp_path: Path
) -> None:
    env = process_env(tmp_path / "data", free_port())
    with launched([command, "--host", "0.0.0.0"], env, tmp_path) as err:
        wait_for(lambda: said(err, EVENT), timeout=120, what="the warning")
        text = err.read_text()
    warnings = [line for line in text.splitlines() if line.startswith("WARNING: ")]
    assert len(warnings) == 1, text
    assert "http://0.0.0.0:" in warnings[0]
    assert "no API key is set" in warnings[0]
    assert "`dropscore keys add NAME --role admin`" in warnings[0]
    assert "[server] api_keys" in warnings[0]
    event = next(e for e in events(text) if e.get("event") == EVENT)
    assert event["level"] == "warning"
    assert event["urls"] == [warnings[0].split()[1]]


def test_a_key_in_the_store_or_a_loopback_address_says_nothing(tmp_path: Path) -> None:
    env = process_env(tmp_path / "data", free_port())
    with launched(["api"], env, tmp_path) as err:  # 127.0.0.1, no key: nobody else can reach it
        wait_for(lambda: said(err, "listening"), timeout=120, what="api listening")
    assert not said(err, EVENT) and "WARNING" not in err.read_text()

    added = subprocess.run(
        [sys.executable, "-m", "scoring", "keys", "add", "ops", "--role", "admin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    env = process_env(tmp_path / "data", free_port())
    with launched(["api", "--host", "0.0.0.0"], env, tmp_path) as err:
        wait_for(lambda: said(err, "listening"), timeout=120, what="api listening")
    assert not said(err, EVENT) and "WARNING" not in err.read_text()
