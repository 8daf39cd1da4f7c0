"""Drift: dropscore's statistics beside Evidently's on the same data, and drift's cost on scoring.

**Against Evidently.** A generated reference and current frame (``--compare-rows`` each; 10,000
by default, so both tools' two-sample tests see every row: dropscore's sample is 10,000 rows)
hold numeric features unshifted, shifted slightly, by one standard deviation, rescaled and
skewed, and categorical ones unchanged, with a new category, and with shifted shares. Each tool
runs in a fresh process of its own (dropscore in ours, Evidently in ``bench/out/evidently-venv``,
built once by ``bench/_venv.py``), timed around the computation, its peak RSS measured
(``bench/_measure.py``). Then, per feature:

- the verdicts: dropscore's (PSI > 0.2, JS > 0.1 or KS p < 0.01) beside Evidently's under the
  same rule (its ``psi``, ``jensenshannon`` and ``ks`` stattests at those thresholds);
- the statistics where the method is the same: KS statistic (``ks_2samp`` on the same rows),
  normalized Wasserstein (Evidently's ``wasserstein``: the distance over the reference's
  standard deviation), and PSI and Jensen–Shannon computed by dropscore's own functions
  (``scoring.monitoring.stats``) on Evidently's bins (30 equal-width bins over both frames for a
  numeric feature, the categories otherwise; JS in base e, as Evidently's). dropscore's own PSI
  and JS use the reference's quantile bins (base 2 for JS): shown, not compared. The KS
  p-value is compared apart: dropscore's is the asymptotic one past 1,000,000 cells (10,000 rows
  a side is 100,000,000), Evidently's scipy's exact default; they must agree within
  ``scoring.monitoring.stats.ASYMP_TOLERANCE``.

**Cost on bulk scoring.** A Parquet drop (``--rows``) scored by the sample model to Parquet,
with drift (the batch hook, the profile read, the record written) and without, alternating which
goes first, ``--pairs`` pairs; the median per-pair time ratio (with / without) and its range,
and the same for the process's CPU time (all its threads): on a machine shared with other work
the wall-clock ratio moves with the neighbours, the CPU one much less.
Goal (issue 20): at most ×1.10 at 5,000,000 rows.

    .venv/bin/python -m bench.drift                     # 1,000,000-row drop, 3 pairs
    .venv/bin/python -m bench.drift --rows 5000000      # the size the goal is stated at
    .venv/bin/python -m bench.drift --no-evidently      # only the cost
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import machine_load, thread_settings
from bench._measure import Result, measure

GOAL = 1.10  # with drift / without, time of bulk scoring a Parquet drop
THRESHOLDS = {"psi": 0.2, "jensenshannon": 0.1, "ks": 0.01}
EVIDENTLY = ["evidently", "pandas<3"]  # evidently 0.7 imports a pandas 2 internal
EQUAL = 1e-9  # relative difference below which two statistics are the same number

OURS = """
import json, sys, time
import pyarrow.parquet as pq
from scoring.monitoring.accumulate import DriftAccumulator
from scoring.monitoring.profile import build_profile
from scoring.monitoring.report import Thresholds
ref, cur = pq.read_table(sys.argv[1]), pq.read_table(sys.argv[2])
started = time.perf_counter()
columns = {
    name: ("numeric" if name.startswith("n_") else "categorical",
           ref.column(name).to_numpy(zero_copy_only=False))
    for name in ref.column_names
}
accumulator = DriftAccumulator(build_profile(columns, None, seed=0))
for batch in cur.to_batches(max_chunksize=4096):
    accumulator.update({name: batch.column(name) for name in batch.schema.names})
report = accumulator.report(Thresholds())
seconds = time.perf_counter() - started
with open(sys.argv[3], "w") as out:
    json.dump({"seconds": seconds, "report": report.to_dict()}, out)
"""

EVIDENTLY_RUN = """
import json, sys, time, warnings
import pandas as pd
warnings.filterwarnings("ignore")
try:
    from evidently.legacy.report import Report
    from evidently.legacy.metrics import ColumnDriftMetric
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
except ImportError:  # before 0.7 the same API lived at the top level
    from evidently.report import Report
    from evidently.metrics import ColumnDriftMetric
    from evidently.pipeline.column_mapping import ColumnMapping
ref, cur = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
tests = json.loads(sys.argv[4])
numeric = [c for c in ref.columns if c.startswith("n_")]
categorical = [c for c in ref.columns if not c.startswith("n_")]
mapping = ColumnMapping(numerical_features=numeric, categorical_features=categorical)
wanted = []
for column in ref.columns:
    for test, threshold in tests.items():
        if test in ("ks", "wasserstein") and column not in numeric:
            continue
        wanted.append((column, test, threshold))
started = time.perf_counter()
report = Report(metrics=[
    ColumnDriftMetric(column_name=c, stattest=t, stattest_threshold=h) for c, t, h in wanted])
report.run(reference_data=ref, current_data=cur, column_mapping=mapping)
found = report.as_dict()["metrics"]
seconds = time.perf_counter() - started
out = [
    {"column": c, "test": t, "score": m["result"]["drift_score"],
     "drifted": bool(m["result"]["drift_detected"])}
    for (c, t, _), m in zip(wanted, found)
]
with open(sys.argv[3], "w") as fh:
    json.dump({"seconds": seconds, "results": out}, fh)
"""


def frames(rows: int, seed: int = 0) -> tuple[Any, Any]:
    """A reference and a current frame: each feature a known kind of change (or none)."""
    import pandas as pd

    rng = np.random.default_rng(seed)

    def make(n: int, current: bool) -> pd.DataFrame:
        shift = 1.0 if current else 0.0
        colours = ["red", "green", "blue", "grey"]
        return pd.DataFrame(
            {
                "n_same": rng.normal(0.0, 1.0, n),
                "n_small": rng.normal(0.02 * shift, 1.0, n),
                "n_shift": rng.normal(shift, 1.0, n),  # one standard deviation
                "n_scale": rng.normal(0.0, 1.0 + shift, n),
                "n_skew": rng.exponential(2.0, n),
                "c_same": rng.choice(colours, n, p=[0.4, 0.3, 0.2, 0.1]),
                "c_new": rng.choice(
                    [*colours, "purple"] if current else colours,
                    n,
                    p=[0.3, 0.2, 0.2, 0.1, 0.2] if current else [0.4, 0.3, 0.2, 0.1],
                ),
                "c_mix": rng.choice(
                    colours, n, p=[0.1, 0.2, 0.3, 0.4] if current else [0.4, 0.3, 0.2, 0.1]
                ),
            }
        )

    return make(rows, False), make(rows, True)


def evidently_counts(ref: Any, cur: Any) -> tuple[np.ndarray, np.ndarray]:
    """Count both frames' values in Evidently's bins (its ``get_binned_data``): equal-width bins
    over both (Sturges' rule) for a numeric feature with more than 20 values, the categories
    otherwise."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(ref) and ref.nunique() > 20:
        both = np.concatenate([ref.to_numpy(), cur.to_numpy()])
        edges = np.histogram_bin_edges(both, "sturges")
        return np.histogram(ref, edges)[0], np.histogram(cur, edges)[0]
    keys = sorted(set(ref.dropna()) | set(cur.dropna()))
    ref_counts, cur_counts = ref.value_counts(), cur.value_counts()
    return (
        np.array([ref_counts.get(k, 0) for k in keys]),
        np.array([cur_counts.get(k, 0) for k in keys]),
    )


def _relative(a: float | None, b: float | None) -> float:
    if a is None or b is None:
        return math.inf
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def compare(rows: int, work: Path, env: dict[str, str]) -> None:
    """Run both tools on the same frames; print verdicts, equal statistics, time and memory."""
    from bench import _venv
    from scoring.monitoring import stats

    python = _venv.ensure("evidently", EVIDENTLY)
    print(f"evidently {_venv.version(python, 'evidently')} in {python.parent.parent}")
    ref, cur = frames(rows)
    ref_path, cur_path = work / "reference.parquet", work / "current.parquet"
    ref.to_parquet(ref_path)
    cur.to_parquet(cur_path)
    ours_out, theirs_out = work / "ours.json", work / "evidently.json"
    tests = {**THRESHOLDS, "wasserstein": 0.1}
    runs: dict[str, Result] = {
        "dropscore": measure(
            "dropscore",
            [sys.executable, "-c", OURS, str(ref_path), str(cur_path), str(ours_out)],
            env, rows, work / "ours.log", cwd=Path(__file__).resolve().parents[1],
        ),
        "evidently": measure(
            "evidently",
            [str(python), "-c", EVIDENTLY_RUN, str(ref_path), str(cur_path), str(theirs_out),
             json.dumps(tests)],
            {k: v for k, v in env.items() if k != "PYTHONPATH"}, rows, work / "evidently.log",
        ),
    }  # fmt: skip
    ours = json.loads(ours_out.read_text())
    theirs = json.loads(theirs_out.read_text())
    by = {(r["column"], r["test"]): r for r in theirs["results"]}
    print(f"\nreference {rows:,} rows, current {rows:,} rows, {len(ref.columns)} features")
    header = (
        f"{'feature':9} {'dropscore':10} {'evidently':10} {'KS p (both)':>22} "
        f"{'Wass. norm (both)':>24} {'PSI on its bins':>26} {'JS on its bins':>26}"
    )
    print(header)
    agree, worst, ks_worst = 0, 0.0, 0.0
    for column in ours["report"]["features"]:
        name, mine = column["name"], column["stats"]
        theirs_drifted = any(by[(name, t)]["drifted"] for t in THRESHOLDS if (name, t) in by)
        ref_counts, cur_counts = evidently_counts(ref[name], cur[name])
        psi_mine = stats.psi(ref_counts, cur_counts)  # Evidently's epsilon is ours, 1e-4 ...
        refilled = _tiny_share(ref_counts) or _tiny_share(cur_counts)  # ... unless it refills
        js_mine = stats.js_distance(ref_counts, cur_counts) * math.sqrt(math.log(2))  # base e
        pairs = [
            (mine.get("ks_pvalue"), by.get((name, "ks"), {}).get("score")),
            (mine.get("wasserstein_norm"), by.get((name, "wasserstein"), {}).get("score")),
            (psi_mine, by[(name, "psi")]["score"]),
            (js_mine, by[(name, "jensenshannon")]["score"]),
        ]
        cells = []
        for i, (a, b) in enumerate(pairs):
            if a is None and b is None:
                cells.append("-")
                continue
            if i == 2 and refilled:  # not the same method: Evidently's own empty-bin share
                cells.append(f"{a:.4g} / {b:.4g} *")
                continue
            if i == 0 and a is not None and b is not None:  # asymptotic against exact
                ks_worst = max(ks_worst, abs(a - b))
                cells.append(f"{a:.4g} / {b:.4g}")
                continue
            worst = max(worst, _relative(a, b))
            cells.append(f"{a:.4g} / {b:.4g}")
        agree += column["drifted"] == theirs_drifted
        print(
            f"{name:9} {_word(column['drifted']):10} {_word(theirs_drifted):10} "
            f"{cells[0]:>22} {cells[1]:>24} {cells[2]:>26} {cells[3]:>26}"
        )
    total = len(ours["report"]["features"])
    print(f"\nverdicts: {agree} of {total} features the same")
    print(f"statistics of the same method: largest relative difference {worst:.2g}")
    print(
        f"KS p-value (dropscore's asymptotic, Evidently's exact): largest absolute difference"
        f" {ks_worst:.2g} (tolerance {stats.ASYMP_TOLERANCE})"
    )
    print(
        "* not compared: a bin holds at most 0.01% of one frame, so Evidently fills that frame's"
        " empty bins with that share / 10^6 instead of the 1e-4 both use otherwise"
    )
    for name, run in runs.items():
        inner = (ours if name == "dropscore" else theirs)["seconds"]
        print(
            f"{name:10} computation {inner:.3f} s; process {run.seconds:.2f} s,"
            f" peak RSS {run.peak_mb:.0f} MiB"
        )


def _tiny_share(counts: np.ndarray) -> bool:
    """Tell whether Evidently's ``get_binned_data`` fills this frame's empty bins with its
    smallest share / 10^6 (a share of at most 1e-4 present) rather than 1e-4."""
    shares = counts / counts.sum()
    present = shares[shares > 0]
    return bool((shares == 0).any() and len(present) and present.min() <= 1e-4)


def _word(drifted: bool | None) -> str:
    return {True: "drifted", False: "stable", None: "-"}[drifted]


def cost(rows: int, pairs: int, work: Path) -> None:
    """Time bulk scoring of a Parquet drop with drift and without, alternating, pairs times."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ingest.base.config import ReadOptions
    from scoring.bulk.batch import score_path
    from scoring.models.factory import open_model
    from scoring.monitoring.bulk import BulkDrift
    from scoring.monitoring.reference import profile_step
    from scoring.settings import load_settings
    from scoring.testing.checkout import SAMPLE

    settings = load_settings(
        None, env={}, overrides={"paths": {"data_dir": str(work / "data")}, "training": {}}
    )
    model = open_model(settings)
    frame = pd.read_csv(SAMPLE)
    from scoring.lifecycle.training import train

    result = train(frame, settings.model)
    card = {
        "estimator": settings.model.estimator,
        "metrics": result.metrics,
        "schema": result.schema.to_dict(),
    }
    version = model.registry.register(result.pipeline, card)
    model.registry.promote(version)
    profile_step(model.registry, version, frame, result)
    loaded = model.champion.peek()
    assert loaded is not None
    rng = np.random.default_rng(1)
    features = frame.drop(columns="target")
    picks = rng.integers(0, len(features), rows)
    drop = features.iloc[picks].reset_index(drop=True)
    drop = drop + rng.normal(0, 0.002, drop.shape)
    src = work / "drop.parquet"
    pq.write_table(pa.Table.from_pandas(drop, preserve_index=False), src)
    print(f"\ncost on bulk scoring: a {rows:,}-row Parquet drop, {drop.shape[1]} features")
    drift = BulkDrift(model)
    read = ReadOptions(batch_rows=settings.scoring.batch_rows)

    parts: dict[str, list[float]] = {"profile read": [], "scoring": [], "report + record": []}

    cpu: dict[bool, list[float]] = {True: [], False: []}

    def run(with_drift: bool) -> float:
        started, cpu_started = time.perf_counter(), time.process_time()
        watch = drift.watch(loaded) if with_drift else None
        read_at = time.perf_counter()
        score_path(src, work / "out.parquet", loaded, read=read, fmt="parquet", observe=watch)
        scored_at = time.perf_counter()
        if with_drift:
            found = drift.record(watch, source="cli", ref="bench")
            assert found is not None
            ended = time.perf_counter()
            for part, seconds in zip(
                parts, (read_at - started, scored_at - read_at, ended - scored_at), strict=True
            ):
                parts[part].append(seconds)
        cpu[with_drift].append(time.process_time() - cpu_started)
        return time.perf_counter() - started

    run(True)  # warm: the libraries, the page cache, the profile's first read
    with_times, without_times = [], []
    for pair in range(pairs):
        order = (True, False) if pair % 2 == 0 else (False, True)
        for side in order:
            (with_times if side else without_times).append(run(side))
    ratios = [w / o for w, o in zip(with_times, without_times, strict=True)]
    model.stop()
    with_s, without_s = statistics.median(with_times), statistics.median(without_times)
    print(
        f"with drift {with_s:.2f} s, without {without_s:.2f} s"
        f" (medians of {pairs}); ratio ×{statistics.median(ratios):.3f} median"
        f" (range ×{min(ratios):.3f}–×{max(ratios):.3f}; pairs"
        f" {', '.join(f'{r:.3f}' for r in ratios)}); goal ≤ ×{GOAL:.2f} at 5,000,000 rows"
    )
    cpu_ratios = [w / o for w, o in zip(cpu[True][1:], cpu[False], strict=True)]  # not the warm
    print(
        f"CPU time (all threads): with drift {statistics.median(cpu[True][1:]):.2f} s, without"
        f" {statistics.median(cpu[False]):.2f} s; ratio ×{statistics.median(cpu_ratios):.3f}"
        f" median (range ×{min(cpu_ratios):.3f}–×{max(cpu_ratios):.3f})"
    )
    shown = ", ".join(f"{k} {statistics.median(v[1:]):.3f} s" for k, v in parts.items())
    print(f"with drift, where the time goes (medians): {shown}")


def main(argv: list[str] | None = None) -> int:
    """Run the comparison with Evidently and the cost on scoring; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the scored drop")
    parser.add_argument("--pairs", type=int, default=3, help="with/without pairs (at least 3)")
    parser.add_argument("--compare-rows", type=int, default=10_000, help="rows of each frame")
    parser.add_argument("--no-evidently", action="store_true", help="only the cost on scoring")
    args = parser.parse_args(argv)
    print(machine_load())
    env = {**os.environ, **thread_settings()}
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        work = Path(tmp)
        if not args.no_evidently:
            compare(args.compare_rows, work, env)
        cost(args.rows, max(3, args.pairs), work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
