"""What ``dropscore score`` shows while it works and says when it is done.

On a terminal (standard error a TTY) a bar with rows/s and an ETA appears once a run has taken a
second, so a small file prints nothing but its answer; piped or in CI logs there is no bar at
all. The bar's size is the terminal's, or 80×24 when the terminal does not say: on a pseudo-terminal
without a size (``docker exec -t``, some CI runners) tqdm took the screen for -1 rows high and
drew nothing at all. The answer on standard output ends with the rate:
``scored 1,000,000 rows in 3.2 s (312,000 rows/s) …``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Any

from scoring.bulk.batch import ScoreSummary

SHOW_AFTER_SECONDS = 1.0  # a run shorter than this shows no bar: it would only flicker
REFRESH_SECONDS = 0.25
FALLBACK_SIZE = os.terminal_size((80, 24))


def progress_bar(total: int | None, stream: IO[str] | None = None) -> Any:
    """Return a rows bar on a terminal (after a second), a silent one anywhere else."""
    from tqdm import tqdm  # only the score command draws one

    stream = stream or sys.stderr
    size = terminal_size(stream)
    return tqdm(
        total=total,
        unit=" rows",
        unit_scale=True,
        ncols=size.columns,
        nrows=size.lines,
        file=stream,
        disable=not stream.isatty(),
        delay=SHOW_AFTER_SECONDS,
        mininterval=REFRESH_SECONDS,
        desc="scoring",
    )


def terminal_size(stream: IO[str]) -> os.terminal_size:
    """Return the terminal's size; 80 columns or 24 lines where it reports none (zero)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError):  # no terminal: the bar is disabled anyway
        return FALLBACK_SIZE
    columns, lines = size.columns or FALLBACK_SIZE.columns, size.lines or FALLBACK_SIZE.lines
    return os.terminal_size((columns, lines))


def summary_line(summary: ScoreSummary, dst: Path) -> str:
    """Say what was scored, how fast, with which model, and where it went."""
    rate = summary.rows / summary.seconds if summary.seconds else 0
    return (
        f"scored {summary.rows_scored:,} rows in {summary.seconds:.1f} s ({rate:,.0f} rows/s)"
        f" with model {summary.model_version}, {summary.rows_failed:,} failed → {dst}"
    )
