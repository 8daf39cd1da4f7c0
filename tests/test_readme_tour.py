"""The README's tour, run for real: every curl and CLI line against a real `dropscore serve`.

The tour is the fenced ``sh`` block under "## Two-minute tour", plus any ``sh`` block whose
previous line is ``<!-- tour -->``. Each command runs through bash, in order, in a temporary
copy of the project's settings and sample data, with the port substituted. What the README
shows is checked against what the command printed:

- ``# → {...}`` (alone on the next line, or at the end of the command's line): the JSON the
  command printed holds those keys with those values; numbers are compared to the digits shown.
- ``# → text … more text``: each part appears in the output, in that order.

A step whose effect is asynchronous is awaited before the next one, by one rule each: a file
copied into an inbox is awaited until the ledger shows it taken; a retrain started over HTTP
until its run ends. A line the harness cannot run or check fails the test, naming the line.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ROOT, free_port, wait_for
from tests.test_e2e_serve import Server

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
ARROW = "# → "
# where a drop of each kind rests: a score drop is scored on arrival, so its `normalized` is a
# step on the way (stopping there let `ls data/outbox/` run before the output was written)
SETTLED_FILE_STATES = {
    "train": {"normalized", "quarantined", "duplicate"},
    "score": {"scored", "quarantined", "duplicate"},
}
TERMINAL_RUN_STATES = {"succeeded", "failed", "skipped"}


@dataclass
class Step:
    """One command of the tour and what the README says it prints."""

    line: int
    command: str
    shown: list[str] = field(default_factory=list)


def tour_blocks(text: str) -> list[tuple[int, list[str]]]:
    """Return (first line number, lines) of each sh block of the tour."""
    lines = text.splitlines()
    blocks = []
    in_tour = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            in_tour = line.strip() == "## Two-minute tour"
        opted = i > 0 and lines[i - 1].strip() == "<!-- tour -->"
        if line.strip() == "```sh" and (in_tour or opted):
            end = lines.index("```", i + 1)
            blocks.append((i + 2, lines[i + 1 : end]))
            i = end
        i += 1
    return blocks


def parse_steps(text: str) -> list[Step]:
    """Turn the tour's blocks into commands (joining lines inside open quotes) and outputs."""
    steps: list[Step] = []
    for first, lines in tour_blocks(text):
        pending: list[str] = []
        start = first
        for offset, raw in enumerate(lines):
            number = first + offset
            stripped = raw.strip()
            if not pending:
                if not stripped:
                    continue
                if stripped.startswith(ARROW):
                    if not steps:
                        pytest.fail(f"README line {number}: an output shown before any command")
                    steps[-1].shown.append(stripped[len(ARROW) :])
                    continue
                if stripped.startswith("#"):
                    continue  # prose for people
                start = number
            pending.append(raw)
            joined = "\n".join(pending)
            if _complete(joined):
                step = Step(start, joined)
                inline = _inline_arrow(joined)
                if inline:
                    step.shown.append(inline)
                steps.append(step)
                pending = []
        if pending:
            pytest.fail(f"README line {start}: a command with an unclosed quote")
    return steps


def _complete(command: str) -> bool:
    try:
        shlex.split(command, comments=True)
    except ValueError:
        return False
    return True


def _inline_arrow(command: str) -> str | None:
    """The ``# → …`` comment at the end of a command's last line, if any."""
    last = command.splitlines()[-1]
    quote = None  # a '#' outside quotes starts the comment
    for i, ch in enumerate(last):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and last[i:].startswith(ARROW):
            return last[i + len(ARROW) :].strip()
    return None


def check_shown(step: Step, output: str) -> None:
    """Fail unless the command's output is what the README shows for it."""
    for shown in step.shown:
        where = f"README line {step.line} ({step.command.splitlines()[0][:60]!r})"
        if shown.lstrip().startswith("{"):
            expected, _ = json.JSONDecoder().raw_decode(shown.lstrip())
            actual = _json_in(output, where)
            _match(expected, actual, where)
        else:
            at = 0
            for part in (p.strip() for p in shown.split("…")):
                found = output.find(part, at)
                assert found >= 0, f"{where}: shows {part!r}, which the output lacks:\n{output}"
                at = found + len(part)


def _json_in(output: str, where: str) -> Any:
    start = output.find("{")
    assert start >= 0, f"{where}: shows JSON, but the command printed none:\n{output}"
    value, _ = json.JSONDecoder(parse_float=Decimal).raw_decode(output[start:])
    return value


def _match(expected: Any, actual: Any, where: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}: the output has no {key!r}: {actual!r}"
            _match(value, actual[key], f"{where} [{key}]")
    elif isinstance(expected, float):
        digits = len(repr(expected).partition(".")[2])
        rounded = round(Decimal(str(actual)), digits)
        assert rounded == Decimal(repr(expected)), f"{where}: shows {expected}, got {actual}"
    else:
        assert expected == actual, f"{where}: shows {expected!r}, got {actual!r}"


# -- running it ------------------------------------------------------------------------------


def localize(command: str, port: int, tmp: Path, venv: Path | None = None) -> str:
    """Point the command at the test's server, venv and temporary folder."""
    venv = venv or Path(sys.executable).parent
    command = command.replace("localhost:8000", f"127.0.0.1:{port}")
    # /tmp/ first, and only where the README wrote it: the venv inserted next may itself live
    # under /tmp (a clone in /tmp), and must not be rewritten again.
    command = re.sub(r"(?<![\w./-])/tmp/", lambda _: f"{tmp}/", command)
    return command.replace(".venv/bin/", f"{venv}/")


def await_effects(step: Step, output: str, url: str) -> None:
    """Wait for what the step set going: a dropped file's intake, a retrain's run."""
    dropped = re.search(r"\bcp \S+ data/inbox/(train|score)/(\S+)", step.command)
    if dropped:
        kind, name = dropped.group(1), dropped.group(2)

        def taken() -> bool:
            files = requests.get(url + "/files?limit=200", timeout=5).json()["files"]
            settled = SETTLED_FILE_STATES[kind]
            return any(f["original_name"] == name and f["state"] in settled for f in files)

        wait_for(taken, 60, interval=0.1, what=f"the ledger to take {name}")
    if "/train" in step.command and "POST" in step.command:
        run_id = _json_in(output, f"README line {step.line}")["run_id"]

        def ended() -> bool:
            run = requests.get(f"{url}/runs/{run_id}", timeout=5).json()
            return run["state"] in TERMINAL_RUN_STATES

        wait_for(ended, 120, interval=0.2, what=f"run {run_id} to end")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh copy of what `make run` starts from: settings.toml and the sample data."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    shutil.copy(ROOT / "settings.toml", root / "settings.toml")
    shutil.copytree(ROOT / "data" / "sample", root / "data" / "sample")
    return root


def test_the_readme_tour_runs_as_shown(project: Path, tmp_path: Path) -> None:
    steps = parse_steps(README.read_text(encoding="utf-8"))
    assert len(steps) >= 10, "the tour lost its commands"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPSCORE")}
    env.update(DROPSCORE__SERVER__PORT=str(port), DROPSCORE__INGEST__STABLE_SECONDS="0.3")
    server = Server(["serve"], env, port, tmp_path / "serve.log", cwd=project)
    try:
        server.ready(timeout=120)
        for step in steps:
            command = localize(step.command, port, tmp_path)
            done = subprocess.run(
                ["bash", "-c", "set -o pipefail; " + command],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            output = done.stdout + done.stderr
            assert done.returncode == 0, (
                f"README line {step.line} failed ({done.returncode}):\n{command}\n{output}"
            )
            check_shown(step, done.stdout or done.stderr)
            await_effects(step, done.stdout, server.url)
    finally:
        assert server.stop() == 0, server.log.read_text()[-3000:]


def test_localize_keeps_a_venv_that_lives_under_tmp() -> None:
    # a clone in /tmp has its .venv under /tmp: the venv path must not be rewritten again
    command = "ls /tmp/out.csv && .venv/bin/dropscore files && curl localhost:8000/ready"
    shown = localize(command, 1234, Path("/tmp/pytest-9/t0"), Path("/tmp/clone/.venv/bin"))
    assert shown == (
        "ls /tmp/pytest-9/t0/out.csv && /tmp/clone/.venv/bin/dropscore files"
        " && curl 127.0.0.1:1234/ready"
    )


def test_the_parser_reads_outputs_and_multiline_commands() -> None:
    text = """## Two-minute tour

```sh
# prose
curl -s x -d '{"a":
  1}'
# → {"prediction": 210.03, "model_version": "1"}
curl -s -XPOST y   # → {"run_id": 2} (202)
.venv/bin/dropscore files   # prose after a command
# → more.csv … duplicate
```
"""
    steps = parse_steps(text)
    assert [s.command.splitlines()[0] for s in steps] == [
        "curl -s x -d '{\"a\":",
        "curl -s -XPOST y   # → {\"run_id\": 2} (202)",
        ".venv/bin/dropscore files   # prose after a command",
    ]
    assert steps[0].shown == ['{"prediction": 210.03, "model_version": "1"}']
    assert steps[1].shown == ['{"run_id": 2} (202)']
    check_shown(steps[0], '{"prediction": 210.0349, "model_version": "1"}')
    with pytest.raises(AssertionError, match=r"shows 210\.03"):
        check_shown(steps[0], '{"prediction": 210.04, "model_version": "1"}')
    with pytest.raises(AssertionError, match="shows 2"):
        check_shown(steps[1], '{"run_id": 3}')
    check_shown(steps[2], "5  more.csv  train  duplicate  of 1")
    with pytest.raises(AssertionError, match="lacks"):
        check_shown(steps[2], "5  more.csv  train  normalized")
