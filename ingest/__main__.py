"""Run the watcher alone: ``python -m ingest --data-dir DIR`` until SIGTERM or SIGINT.

For tests and debugging; the product's ``dropscore worker``/``serve`` wire Intake and Watcher
the same way. Logs are one JSON object per line on stderr, extras included.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from ingest.base.config import IngestConfig
from ingest.base.layout import DataLayout
from ingest.base.logs import BoundFields, JsonFormatter
from ingest.pipeline.intake import Intake
from ingest.pipeline.watcher import Watcher
from ingest.state.ledger import Ledger


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the few settings the standalone runner needs."""
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--stable-seconds", type=float, default=2.0)
    parser.add_argument("--rescan-seconds", type=float, default=30.0)
    parser.add_argument("--poll", action="store_true", help="use the polling observer")
    parser.add_argument("--max-attempts", type=int, default=5)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Recover, watch until a stop signal, stop cleanly, and return the exit code."""
    args = parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(BoundFields())
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    config = IngestConfig(
        DataLayout(args.data_dir.resolve()),
        stable_seconds=args.stable_seconds,
        rescan_seconds=args.rescan_seconds,
        poll=args.poll,
        max_attempts=args.max_attempts,
    )
    config.make_dirs()
    ledger = Ledger.at(config.db_path)
    ledger.initialize()
    watcher = Watcher(config, Intake(config, ledger))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    watcher.start()
    while not stop.wait(0.5):
        pass
    return 0 if watcher.stop(timeout=60) else 1


if __name__ == "__main__":
    sys.exit(main())
