"""What every bench shares: the machine's load up front, and statistics over alternating pairs.

On a shared machine absolute figures drift with the neighbours, so each bench runs project and
baseline alternately, several pairs, and reports the median of the per-pair ratios with their
range: drift between pairs moves both sides of a pair alike.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Thread-count variables of the numeric libraries; the project and its baseline get the same.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def machine_load() -> str:
    """Describe the load before a bench starts, so a reader can weigh its absolute figures."""
    one, five, fifteen = os.getloadavg()
    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return (
        f"machine: {cores} cores ({usable} usable), load average {one:.2f} / {five:.2f} / "
        f"{fifteen:.2f} (1 / 5 / 15 min){'  BUSY: only the ratios count' if one > usable else ''}"
    )


def thread_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The OMP/BLAS thread variables set here, to give project and baseline alike."""
    environ = os.environ if environ is None else environ
    return {k: environ[k] for k in THREAD_VARIABLES if environ.get(k)}


@dataclass(frozen=True)
class Ratios:
    """Per-pair ratios (project / baseline, higher is better for the project)."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def __str__(self) -> str:
        shown = ", ".join(f"{v:.2f}" for v in self.values)
        return f"×{self.median:.2f} median (range ×{self.low:.2f}–×{self.high:.2f}; pairs {shown})"


def ratios(project: Sequence[float], baseline: Sequence[float]) -> Ratios:
    """Pair the i-th project figure with the i-th baseline figure (both higher-is-better)."""
    if len(project) != len(baseline) or not project:
        raise ValueError("ratios need the same, non-zero number of project and baseline figures")
    return Ratios(tuple(p / b for p, b in zip(project, baseline, strict=True)))
