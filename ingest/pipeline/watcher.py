"""The watcher: notices complete files in the inboxes and hands them to the intake, one at a time.

Events are only hints. A watchdog handler records candidate paths and never raises; a stability
thread takes a candidate once its size and mtime held still for ``stable_seconds`` and it opens
for reading; one worker thread calls ``Intake.take``. A start-up scan and a rescan every
``rescan_seconds`` catch files that arrived while nothing ran or whose events were lost, so a
missed event delays a file but never loses it. A supervisor restarts a dead thread.

One watcher serves every model: each model's intake owns its own two inboxes, and a file is
handed to the intake whose inbox it sits in, so one model's drop can never reach another's lake.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from ingest.base.config import KINDS, IngestConfig
from ingest.base.formats import is_unfinished_name
from ingest.base.logs import bound
from ingest.base.names import as_text, shown
from ingest.pipeline.candidates import Candidate, Inboxes, Signature, signature
from ingest.pipeline.intake import Intake
from ingest.pipeline.markers import OrphanMarkers, file_marker, is_marker, is_ready, marked_file
from ingest.state.locks import held_for_writing

log = logging.getLogger("dropscore.ingest")

_ARRIVAL_EVENTS = frozenset({"created", "modified", "moved", "closed"})
_SUPERVISE_SECONDS = 0.2
_QUEUE_POLL_SECONDS = 0.2
_OBSERVER_RETRY_SECONDS = 5.0


class _Handler(FileSystemEventHandler):
    """Turns watchdog events into candidates; it never raises, never reads a file."""

    def __init__(self, inboxes: Inboxes, kind_of: dict[Path, str], marker: str) -> None:
        super().__init__()
        self._inboxes = inboxes
        self._kind_of = kind_of
        self._marker = marker

    def dispatch(self, event: FileSystemEvent) -> None:
        """Record arrivals: created, modified, closed, and the destination of a move."""
        try:
            if event.is_directory or event.event_type not in _ARRIVAL_EVENTS:
                return
            raw = event.dest_path if event.event_type == "moved" else event.src_path
            path = Path(os.fsdecode(raw))
            if is_marker(path, self._marker):  # a ready marker makes its file worth a look
                path = marked_file(path, self._marker)
            kind = self._kind_of.get(path.parent)
            if kind is not None and not is_unfinished_name(path.name):
                self._inboxes.note(path, kind)
        except Exception:  # an event handler must never take the observer down
            log.debug("ignored an event", exc_info=True)


def _iso(timestamp: float | None) -> str | None:
    """Show an epoch time as ISO-8601 UTC, or None when it never happened."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat() if timestamp else None


def _opens(path: Path) -> bool:
    """Tell whether the file can be opened for reading now and no writer still holds it open.

    A writer that pauses longer than ``stable_seconds`` with the file open keeps it here. A
    link is never opened (it could point at a FIFO): it is refused without reading.
    """
    if path.is_symlink():
        return True
    try:
        with open(path, "rb"):
            pass
    except OSError:
        return False
    return not held_for_writing(path)


class Watcher:
    """Watches every model's ``inbox/train`` and ``inbox/score`` and feeds complete files to the
    intake that owns the inbox.

    ``config`` gives the watch settings ([ingest], the same for every model); each intake brings
    its own folders.
    """

    def __init__(self, config: IngestConfig, intake: Intake, *more: Intake) -> None:
        self.config = config
        self.intake = intake
        self.intakes = (intake, *more)
        # each inbox folder → (the intake that takes its files, the kind of its files)
        self._route = {i.config.inbox(k): (i, k) for i in self.intakes for k in KINDS}
        self._inboxes = Inboxes()
        self._queue: queue.Queue[tuple[Path, str, Signature]] = queue.Queue()
        self._stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._observer: BaseObserver | None = None
        self._observer_kind = "none"
        self._restarts = 0
        self._scans = 0
        self._last_scan: float | None = None
        self._in_flight: Path | None = None
        self._started = False
        self._observer_retry_at = 0.0
        self._tick = max(0.02, min(0.1, config.stable_seconds / 5))
        self._orphans = OrphanMarkers(config.ready_marker)
        self._rescanned = threading.Event()  # each rescan: retry drops a full disk left waiting
        self._scan_soon = threading.Event()  # an intake was added: list its inboxes now
        self._changing = threading.Lock()  # add/remove and the observer's (re)start
        self._handler: _Handler | None = None
        self._watches: dict[Path, Any] = {}  # each inbox → its watchdog watch, to unschedule

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start observing, scanning, stabilizing and taking; the worker recovers first."""
        if self._started:
            raise RuntimeError("a Watcher starts once; build a new one to start again")
        self._started = True
        self._make_dirs()
        self._observer = self._start_observer()
        self._scan()  # files that waited while nothing ran
        for name in ("worker", "stability"):
            self._spawn(name)
        self._spawn("supervisor")
        log.info("watcher started", extra={"observer": self._observer_kind})

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop taking new files, let the in-flight one finish, and join; True if all ended."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        supervisor = self._threads.get("supervisor")
        if supervisor is not None:
            supervisor.join(max(0.0, deadline - time.monotonic()))  # no restarts from here on
        if self._observer is not None:
            self._observer.stop()
        for thread in list(self._threads.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._observer is not None:
            self._observer.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads.values() if t.is_alive()]
        if self._observer is not None and self._observer.is_alive():
            alive.append("observer")
        if alive:
            log.warning("watcher threads still running after stop", extra={"threads": alive})
        else:
            log.info("watcher stopped")
        return not alive

    def add(self, intake: Intake) -> None:
        """Watch one more model's inboxes (a reload found its section); its files are listed at
        once."""
        with self._changing:
            intake.config.make_dirs()
            self.intakes = (*self.intakes, intake)
            self._route = {**self._route, **{intake.config.inbox(k): (intake, k) for k in KINDS}}
            self._rewatch()
        self._scan_soon.set()
        log.info("inboxes watched", extra={"model": intake.model})

    def remove(self, model: str) -> None:
        """Stop watching one model's inboxes (its section was removed); a file of it already
        being taken finishes; one merely queued stays in its inbox."""
        with self._changing:
            self.intakes = tuple(i for i in self.intakes if i.model != model)
            self._route = {f: r for f, r in self._route.items() if r[0].model != model}
            self._rewatch()
        log.info("inboxes no longer watched", extra={"model": model})

    def _rewatch(self) -> None:
        """Bring the running observer's watches in line with the routes (under ``_changing``)."""
        observer, handler = self._observer, self._handler
        if observer is None or handler is None:
            return
        handler._kind_of = {folder: k for folder, (_, k) in self._route.items()}
        for folder in set(self._watches) - set(self._route):
            with contextlib.suppress(Exception):
                observer.unschedule(self._watches.pop(folder))
        for folder in set(self._route) - set(self._watches):
            self._watches[folder] = observer.schedule(handler, str(folder), recursive=False)

    def is_alive(self) -> bool:
        """Tell whether the watcher is running: observer and supervisor up, not stopped."""
        supervisor = self._threads.get("supervisor")
        return (
            self._started
            and not self._stop.is_set()
            and supervisor is not None
            and supervisor.is_alive()
            and self._observer is not None
            and self._observer_healthy()
        )

    def status(self) -> dict[str, Any]:
        """Report liveness, observer kind, backlog and restarts, for ``/health``."""
        last = self._inboxes.last_event
        return {
            "alive": self.is_alive(),
            "observer": self._observer_kind,
            "backlog": self._inboxes.backlog(),
            "in_flight": shown(self._in_flight.name) if self._in_flight else None,
            "last_event": _iso(last),
            "restarts": self._restarts,
            "scans": self._scans,
            "last_scan": _iso(self._last_scan),
            "threads": {name: t.is_alive() for name, t in self._threads.items()},
        }

    # -- observer ----------------------------------------------------------------------------

    def _start_observer(self) -> BaseObserver:
        """Start the native observer, or polling when asked or when native cannot start."""
        if not self.config.poll:
            try:
                return self._schedule(Observer(), "native")
            except Exception as exc:  # e.g. the inotify watch or instance limit
                log.warning(
                    "native file events unavailable, polling instead", extra={"error": str(exc)}
                )
        interval = min(1.0, max(0.1, self.config.stable_seconds / 4))
        return self._schedule(PollingObserver(timeout=interval), "polling")

    def _make_dirs(self) -> None:
        for intake in self.intakes:
            intake.config.make_dirs()

    def _schedule(self, observer: BaseObserver, kind: str) -> BaseObserver:
        """Watch every inbox (not recursively) with one handler and start the observer."""
        kind_of = {folder: k for folder, (_, k) in self._route.items()}
        handler = _Handler(self._inboxes, kind_of, self.config.ready_marker)
        observer.daemon = True
        watches: dict[Path, Any] = {}
        try:
            for folder in kind_of:
                watches[folder] = observer.schedule(handler, str(folder), recursive=False)
            observer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                observer.stop()  # release whatever watches were already added
            raise
        self._observer_kind = kind
        self._handler, self._watches = handler, watches
        return observer

    # -- threads -----------------------------------------------------------------------------

    def _spawn(self, name: str) -> None:
        """Start one named thread running its loop under a guard that logs how it ended."""
        target = {
            "worker": self._work,
            "stability": self._stabilize,
            "supervisor": self._supervise,
        }[name]
        thread = threading.Thread(
            target=self._guarded,
            args=(name, target),
            name=f"dropscore-ingest-{name}",
            daemon=True,
        )
        self._threads[name] = thread
        thread.start()

    def _guarded(self, name: str, target: Any) -> None:
        """Run a thread loop; a crash is logged (the supervisor restarts it), never printed."""
        try:
            target()
        except BaseException:
            log.exception("watcher thread died", extra={"watcher_thread": name})

    def _supervise(self) -> None:
        """Restart a dead worker, stability thread or observer until stop."""
        while not self._stop.wait(_SUPERVISE_SECONDS):
            for name in ("worker", "stability"):
                if not self._threads[name].is_alive() and not self._stop.is_set():
                    self._restarts += 1
                    log.warning(
                        "restarting watcher thread",
                        extra={"watcher_thread": name, "restarts": self._restarts},
                    )
                    self._spawn(name)
            if not self._observer_healthy() and time.monotonic() >= self._observer_retry_at:
                self._restart_observer()

    def _restart_observer(self) -> None:
        """Start a new observer (inboxes recreated if deleted); on failure, retry later."""
        log.warning("restarting file observer", extra={"restarts": self._restarts + 1})
        old = self._observer
        if old is not None:
            with contextlib.suppress(Exception):
                old.stop()
        try:
            self._make_dirs()
            with self._changing:
                self._observer = self._start_observer()
        except Exception:
            self._observer_retry_at = time.monotonic() + _OBSERVER_RETRY_SECONDS
            log.exception("file observer could not restart; rescans continue meanwhile")
        finally:
            self._restarts += 1

    def _observer_healthy(self) -> bool:
        """Tell whether the observer and each folder's emitter still run (a deleted inbox
        stops its emitter while the observer lives on)."""
        observer = self._observer
        if observer is None or self._stop.is_set():
            return True
        return observer.is_alive() and all(e.is_alive() for e in observer.emitters)

    def _stabilize(self) -> None:
        """Check candidates every tick and rescan the inboxes every ``rescan_seconds``."""
        next_scan = time.monotonic() + self.config.rescan_seconds
        while not self._stop.wait(self._tick):
            if time.monotonic() >= next_scan or self._scan_soon.is_set():
                self._scan_soon.clear()
                self._scan()
                next_scan = time.monotonic() + self.config.rescan_seconds
            self._check_candidates()

    def _scan(self) -> None:
        """List every inbox and note every file not already known, in case events were lost."""
        for folder, (_, kind) in self._route.items():
            try:
                entries = list(os.scandir(folder))
            except OSError as exc:
                log.warning("cannot list inbox", extra={"inbox": str(folder), "error": str(exc)})
                continue
            self._orphans.check([Path(e.path) for e in entries], kind)
            for entry in entries:
                if is_marker(Path(entry.name), self.config.ready_marker):
                    continue  # never a drop; its file is looked at on its own
                if is_unfinished_name(entry.name) or not (
                    entry.is_file(follow_symlinks=False) or entry.is_symlink()
                ):
                    continue
                path = Path(entry.path)
                failed = self._inboxes.failed_as(path)
                if failed is not None and failed == signature(path):
                    continue
                self._inboxes.note(path, kind, from_event=False)
        self._inboxes.prune_failed()
        self._rescanned.set()
        self._scans += 1
        self._last_scan = time.time()

    def _check_candidates(self) -> None:
        """Queue each candidate whose size and mtime held still for ``stable_seconds``."""
        now = time.monotonic()
        for path, cand in self._inboxes.snapshot():
            sig = signature(path)
            if sig is None or not (path.is_symlink() or is_ready(path, self.config.ready_marker)):
                self._inboxes.forget(path)  # gone, or waiting for its marker (which notes it)
            elif sig != cand.signature:
                cand.signature, cand.since = sig, now
            elif self._held_still(cand, sig, now) and _opens(path) and self._inboxes.promote(path):
                self._queue.put((path, cand.kind, sig))

    def _held_still(self, cand: Candidate, sig: Signature, now: float) -> bool:
        """Tell whether an unchanged signature has been still for ``stable_seconds``.

        Two checks ``stable_seconds`` apart prove it. On a local disk the mtime is the local
        clock's record of the last write, so an unchanged mtime at least ``stable_seconds`` old
        proves it too, whenever we first saw the file: events that arrive late (watchdog holds
        events behind an unpaired move for 0.5 s) or a start-up scan then add no extra wait.
        Network shares (``poll``) may have skewed clocks, so there only the two checks count.
        """
        stable = self.config.stable_seconds
        if now - cand.since >= stable:
            return True
        return not self.config.poll and time.time() - sig[1] / 1e9 >= stable

    def _work(self) -> None:
        """Recover (also after a restart: a dead worker may have left a claim), then take."""
        for intake in self.intakes:
            try:
                intake.resume()
            except Exception:
                log.exception("recover failed; continuing with new drops")
        while not self._stop.is_set():
            if self._rescanned.is_set():
                self._rescanned.clear()
                self._retry_waiting()
            try:
                path, kind, sig = self._queue.get(timeout=_QUEUE_POLL_SECONDS)
            except queue.Empty:
                continue
            self._in_flight = path
            try:
                self._take(path, kind, sig)
            finally:
                self._in_flight = None

    def _retry_waiting(self) -> None:
        """Take again, in this worker thread, the drops a full disk left in processing/.

        Its own (counted in ``waiting``) with a whole ``resume``; those another process left
        (``dropscore ingest``, a stopped replica) from the ledger, when no live process holds them.
        """
        for intake in self.intakes:
            try:
                if intake.waiting:
                    intake.resume()
                else:
                    intake.resume_deferred()
            except Exception:
                log.exception("retrying waiting drops failed; the next rescan tries again")

    def _take(self, path: Path, kind: str, sig: Signature) -> None:
        """Take one stable file, unless it changed or vanished since it was judged stable."""
        current = signature(path)
        if current is None:
            self._inboxes.done(path)
            return
        if current != sig:  # written to again while queued: back to the stability check
            self._inboxes.done(path)
            self._inboxes.note(path, kind, from_event=False)
            return
        route = self._route.get(path.parent)
        if route is None:  # its model was removed meanwhile: the file stays in its inbox
            self._inboxes.done(path)
            return
        intake = route[0]
        with bound(model=intake.model):  # this drop's events, the watcher's own too
            self._take_with(intake, path, kind, sig)

    def _take_with(self, intake: Intake, path: Path, kind: str, sig: Signature) -> None:
        failed: Signature | None = None
        try:
            record = intake.take(path, kind)
            file_marker(intake.ledger, record, path, self.config.ready_marker)
        except FileNotFoundError:
            log.info(
                "vanished before it was claimed", extra={"file": shown(path.name), "kind": kind}
            )
        except Exception as exc:
            log.exception(
                "could not take",
                extra={"file": shown(path.name), "kind": kind, "error": as_text(str(exc))},
            )
            failed = sig
        finally:
            self._inboxes.done(path, failed_signature=failed)
