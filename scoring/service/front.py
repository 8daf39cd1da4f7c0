"""The HTTP front of ``serve`` and ``api``: waitress's event loop with deadlines and a drain.

waitress reads every connection in one event loop and hands only complete requests to its
threads, so a connection that is idle or trickles costs a file descriptor and a few KB, never a
request thread. What it lacks is added here:

- a deadline for a request's head (``[server] header_seconds`` from the connection's opening or
  its previous answer) and a slowest rate for its body (``[server] body_min_kb_per_second``):
  a client past either gets a 408 and the connection closes, so held sockets are freed;
- a connection limit as high as the process's file descriptors allow (waitress stops accepting
  at its default of 100, which 101 idle sockets reached), with ``poll`` instead of ``select``
  (which cannot watch descriptors above 1023);
- a drain on stop: the listening sockets close at once, uploads being received and answers being
  sent go on for up to ``[server] graceful_seconds``, idle connections close;
- a 507 with the JSON error body when the body buffer cannot be written (disk full, file too
  large), instead of a connection dropped without an answer.

``serve`` runs it in-process; ``api`` runs it in each gunicorn worker (``FrontWorker``), on the
sockets gunicorn's master opened, so both commands answer through the same front. There the
workers share a burst of new connections fairly (``scoring.service.balance``): keep-alive
clients stay on the worker that accepted them, and the first worker to wake took them all.
"""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from io import BufferedRandom
from pathlib import Path
from typing import Any, cast

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.buffers import OverflowableBuffer, TempfileBasedBuffer
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher

from scoring.errors import InsufficientStorage, error_body
from scoring.service.balance import Balance
from scoring.service.multipart import MultipartSpool, multipart_boundary, unnamed_file
from scoring.settings import Settings

log = logging.getLogger("dropscore.server")

LOOP_SECONDS = 0.5  # how long one poll waits: a stop is noticed within this
FD_RESERVE = 256  # descriptors kept for files, the database and the model, not for connections
MIN_CONNECTIONS = 100  # waitress' own default, should the descriptor limit be low
UNKNOWN = sys.maxsize  # body bytes still to come when a chunked body's end is not known
ACCEPT_BATCH = 256  # connections accepted in one turn of the loop
DEFER_PAUSE = 0.002  # how long a worker leaving a new connection to a sibling pauses its loop
DEFER_SECONDS = 0.25  # after this long waiting for a sibling, a worker takes the connection
DEFER_GAP = 0.05  # deferrals further apart than this are separate waits
CHANNEL_SECONDS = 120  # an answer's reader that takes nothing for this long is dropped


@dataclass(frozen=True)
class FrontOptions:
    """What the front needs of the settings: threads, the body cap and its deadlines."""

    threads: int
    max_body: int
    header_seconds: float
    body_min_bytes_per_second: float
    graceful_seconds: float
    spool_dir: Path | None = None  # where a large body is buffered (None: the system's temp)
    cap_setting: str = "max_upload_mb"  # the [server] key whose value max_body is


def front_options(settings: Settings, max_body: int) -> FrontOptions:
    """Read the front's options from ``[server]``; ``max_body``: the largest body of any route."""
    from scoring.api.limits import spool_dir  # where uploads are spooled: the same folder

    server = settings.server
    return FrontOptions(
        threads=server.threads,
        max_body=max_body,
        header_seconds=server.header_seconds,
        body_min_bytes_per_second=server.body_min_kb_per_second * 1024,
        graceful_seconds=server.graceful_seconds,
        spool_dir=spool_dir(settings),
        cap_setting=max(("max_upload_mb", "max_json_mb"), key=lambda k: getattr(server, k)),
    )


def raise_fd_limit() -> int:
    """Raise this process's descriptor soft limit to its hard limit; return the soft limit.

    Every held connection is a descriptor: the default soft limit (often 1024) would cap
    connections long before memory does. The hard limit is the administrator's, left alone.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # a container may refuse: keep the soft limit
            pass
    return soft


def connection_limit(fd_limit: int) -> int:
    """Return how many connections to hold open: the descriptors left after a reserve."""
    return max(MIN_CONNECTIONS, fd_limit - FD_RESERVE)


def timeout_answer() -> bytes:
    """Return the 408 sent to a client whose request did not arrive in time, then closed."""
    return _answer(
        408,
        "Request Timeout",
        error_body(
            "request_timeout",
            "the request did not arrive in time; send its headers within [server]"
            " header_seconds and its body no slower than [server] body_min_kb_per_second",
        ),
    )


def storage_answer(exc: OSError) -> bytes:
    """Return the 507 sent when the request's body cannot be stored (disk full, file too big)."""
    error = InsufficientStorage(
        f"the server could not store the request body ({exc.strerror or exc}); retry later,"
        " or send it to another replica"
    )
    return _answer(error.status, "Insufficient Storage", error.body())


def _answer(status: int, reason: str, body: dict[str, Any]) -> bytes:
    """Build a complete HTTP/1.1 response that closes the connection."""
    payload = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + payload


class SpoolBuffer(OverflowableBuffer):
    """waitress' body buffer, whose file (past 512 KB in memory) is made in the spool folder.

    The file is unnamed (``O_TMPFILE`` where the system has it: nothing is left behind if the
    process dies) and on the data folder's disk rather than ``/tmp``, which may be memory; the
    upload route then gives it a name instead of copying it (``scoring.api.uploads``).
    """

    def __init__(self, overflow: int, directory: Path | None) -> None:
        super().__init__(overflow)
        self.directory = directory

    def _set_large_buffer(self) -> None:
        old: Any = self.buf  # waitress' own buffers, which its stubs type as plain files
        self.buf = cast(Any, SpoolFile(self.directory, old))
        if old is not None:
            old.close()
        self.overflowed = True


class SpoolFile(TempfileBasedBuffer):
    """waitress' file buffer, its file made in ``directory``."""

    def __init__(self, directory: Path | None, from_buffer: Any) -> None:
        self.directory = directory  # before waitress' __init__, which calls newfile()
        super().__init__(from_buffer)

    def newfile(self) -> BufferedRandom:
        """Open an unnamed file in the spool folder (the buffer closes it, and it is gone)."""
        return unnamed_file(self.directory)


class FrontParser(HTTPRequestParser):
    """waitress' request parser, buffering the body in a ``SpoolBuffer``."""

    def __init__(self, adj: Adjustments, directory: Path | None) -> None:
        super().__init__(adj)
        self.directory = directory

    def parse_header(self, header_plus: bytes) -> None:
        """Parse the head as waitress does, then give the body receiver our buffer.

        A multipart body too large for memory is decoded as it arrives
        (``scoring.service.multipart``), so that its file part is written to disk once.
        """
        super().parse_header(header_plus)
        if self.body_rcv is not None:  # nothing of the body has arrived yet
            boundary = multipart_boundary(self.headers.get("CONTENT_TYPE", ""))
            large = self.chunked or self.content_length >= self.adj.inbuf_overflow
            if boundary is not None and large and self.command == "POST":
                spool: Any = MultipartSpool(boundary, self.directory)
                self.body_rcv.buf = spool
            else:
                self.body_rcv.buf = SpoolBuffer(self.adj.inbuf_overflow, self.directory)


class JsonErrorTask(ErrorTask):
    """waitress' answer to a request it could not read, in dropscore's JSON error shape.

    A bad request line, headers over waitress' limit, or a chunked body over the largest body
    any route takes are refused before the app sees them; the client still gets
    ``{"error": {"code", "message", "details"}}``, a 413 naming the setting.
    """

    def execute(self) -> None:
        """Write the error as JSON and close the connection after it."""
        from scoring.api.errors import HTTP_CODES
        from scoring.api.limits import MB, too_large

        error: Any = cast(Any, self.request).error  # the parser's Error (stubs type request oddly)
        if error.code == 413:
            options = cast(FrontChannel, self.channel).server.front.options
            refusal = too_large(options.cap_setting, options.max_body / MB)
            body = refusal.body()
        else:
            code = HTTP_CODES.get(error.code, "http_error")
            body = error_body(code, f"{error.reason}: {error.body}")
        payload = json.dumps(body).encode()
        self.status = f"{error.code} {error.reason}"
        cast(list[tuple[str, str]], self.response_headers).append(
            ("Content-Type", "application/json")
        )
        self.set_close_on_finish()
        self.content_length = len(payload)
        self.write(payload)


class FrontChannel(HTTPChannel):
    """One client connection: waitress' channel with deadlines, a drain and a 507."""

    server: FrontServer
    error_task_class = JsonErrorTask

    def __init__(self, server: FrontServer, sock: socket.socket, addr: Any, adj: Any, map: Any):
        super().__init__(server, sock, addr, adj, map=map)
        self.waiting_since = time.monotonic()  # since when it owes us a request's head
        self.body_since: float | None = None  # when the current request's body began
        self.discard: int | None = None  # body bytes still to read and drop after a 507

    def receiving_body(self) -> bool:
        """Say whether a request's body is arriving (its head is complete, its body not yet)."""
        request = self.request
        return request is not None and request.headers_finished and not request.completed

    def in_flight(self) -> bool:
        """Say whether this connection holds work a drain must finish: a body or an answer."""
        return bool(self.requests or self.total_outbufs_len or self.receiving_body())

    def readable(self) -> bool:
        """Read as waitress does, except that a draining front reads only bodies under way."""
        if self.server.draining and not self.receiving_body() and self.discard is None:
            return False
        return bool(super().readable())

    def received(self, data: bytes) -> bool:
        """Parse data as waitress does; answer 507 when the body cannot be buffered."""
        if self.discard is not None:
            return self._drop(data)
        if self.request is None:
            self.request = FrontParser(self.adj, self.server.front.options.spool_dir)
        try:
            return bool(super().received(data))
        except OSError as exc:  # the body buffer's file could not be written
            self._refuse_body(exc, len(data))
            return True
        finally:
            self._track_body()

    def service(self) -> None:
        """Run the request in a worker thread; the next request's head is owed from now."""
        super().service()
        self.waiting_since = time.monotonic()

    def overdue(self, now: float, options: FrontOptions) -> bool:
        """Say whether this connection missed its head deadline or its body is too slow."""
        if self.requests or self.total_outbufs_len or self.will_close or self.close_when_flushed:
            return False  # a request is being answered: its time is the app's, not the client's
        if self.discard is not None:
            return now - self.waiting_since > options.header_seconds
        if self.body_since is not None and self.request is not None:
            elapsed = now - self.body_since
            rate = self.request.body_bytes_received / elapsed if elapsed > 0 else float("inf")
            return elapsed > options.header_seconds and rate < options.body_min_bytes_per_second
        return now - self.waiting_since > options.header_seconds

    def time_out(self) -> None:
        """Answer 408 to a client that started a request (close silently when it sent nothing).

        A client still sending a refused body already has its 507: it is closed, no second answer.
        """
        started = self.request is not None
        self._drop_request()
        self.discard = None
        if started:
            self._send_and_close(timeout_answer())
        else:
            self.will_close = True

    def _track_body(self) -> None:
        """Note when the current request's body began, and forget it once the request is whole."""
        if self.receiving_body():
            if self.body_since is None:
                self.body_since = time.monotonic()
        else:
            self.body_since = None

    def _refuse_body(self, exc: OSError, chunk: int) -> None:
        """Answer 507 at once, then read and drop what the client still sends of its body."""
        request = self.request
        log.warning(
            "request body not stored",
            extra={"error": str(exc), "path": getattr(request, "path", None)},
        )
        left = UNKNOWN  # a chunked body: read until the client closes, or header_seconds idle
        if request is not None and not request.chunked:
            left = max(0, request.content_length - request.body_bytes_received - chunk)
        self._drop_request()
        self.waiting_since = time.monotonic()
        self._send(storage_answer(exc))
        if left:
            self.discard = left  # the client is still sending: read it, or it sees a reset
        else:
            self.close_when_flushed = True

    def _drop(self, data: bytes) -> bool:
        """Drop body bytes after a 507; close once the announced body has all arrived."""
        assert self.discard is not None
        self.discard -= len(data)
        self.waiting_since = time.monotonic()
        if self.discard <= 0:
            self.discard = None
            self.close_when_flushed = True
        return True

    def _drop_request(self) -> None:
        """Free the partial request (its body buffer, maybe a temporary file)."""
        if self.request is not None:
            # Closing flushes what the full disk refused, which fails again; the file closes anyway.
            with contextlib.suppress(OSError):
                self.request.close()
            self.request = None
        self.body_since = None

    def _send(self, data: bytes) -> None:
        """Queue bytes for the loop to send (from the loop's thread, like waitress' 100)."""
        with self.outbuf_lock:
            self.outbufs[-1].append(data)
            self.current_outbuf_count += len(data)
            self.total_outbufs_len += len(data)

    def _send_and_close(self, data: bytes) -> None:
        """Send a last answer and close the connection once it is flushed."""
        self._send(data)
        self.close_when_flushed = True


class FrontServer(TcpWSGIServer):
    """One listening socket of the front; its maintenance enforces the request deadlines."""

    channel_class = FrontChannel

    def __init__(self, front: Front, sock: socket.socket) -> None:
        self.front = front
        super().__init__(
            front.app,
            map=front.map,
            _sock=sock,
            dispatcher=front.dispatcher,
            adj=front.adj,
            bind_socket=False,
            sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()),
        )

    def channels(self) -> list[FrontChannel]:
        """Return this socket's open connections (a copy: closing one changes the dict)."""
        return list(cast(dict[int, FrontChannel], self.active_channels).values())

    @property
    def draining(self) -> bool:
        """Say whether the front is stopping: no new requests are read."""
        return self.front.draining

    def handle_accept(self) -> None:
        """Accept every waiting connection (up to the limit), not one per turn of the loop.

        waitress accepts one per turn, and each turn polls every open connection: a burst of a
        thousand connections then kept a new client waiting in the backlog for seconds.
        """
        room = min(ACCEPT_BATCH, self.adj.connection_limit - len(self.front.map))
        for taken in range(max(1, room)):
            if not self.front.may_accept():  # another worker holds fewer: it takes the rest
                if not taken:
                    self.front.defer()
                return
            before = len(self.front.map)
            super().handle_accept()
            if len(self.front.map) == before:  # nothing left to accept (or it failed): done
                self.front.settled()
                return

    def maintenance(self, now: float) -> None:
        """Close idle keep-alive connections, and time out late heads and slow bodies."""
        super().maintenance(int(now))
        tick = time.monotonic()
        for channel in self.channels():
            if channel.overdue(tick, self.front.options):
                channel.time_out()


class Front:
    """waitress on sockets already listening, run by our own loop until ``stop()`` says so."""

    def __init__(
        self,
        app: Any,
        sockets: list[socket.socket],
        options: FrontOptions,
        balance: Balance | None = None,
    ) -> None:
        self.app = app
        self.options = options
        self.balance = balance  # the sibling workers' connection counts (gunicorn), or None
        self._deferred: float | None = None  # since when a waiting connection was left to others
        self._last_defer = 0.0  # the last time one was (waits are continuous within DEFER_GAP)
        self.draining = False
        self.map: dict[int, Any] = {}
        self.adj = Adjustments(
            threads=options.threads,
            ident="dropscore",
            connection_limit=connection_limit(raise_fd_limit()),
            asyncore_use_poll=True,  # select() cannot watch descriptors above 1023
            cleanup_interval=1,  # deadlines are checked every second
            channel_timeout=CHANNEL_SECONDS,
            max_request_body_size=options.max_body,
            clear_untrusted_proxy_headers=False,  # the app judges them: [server] trusted_proxies
        )
        self.dispatcher = ThreadedTaskDispatcher()
        self.dispatcher.set_thread_count(options.threads)
        if options.spool_dir is not None:
            options.spool_dir.mkdir(parents=True, exist_ok=True)
        self.servers = [FrontServer(self, sock) for sock in sockets]

    def run(self, stop: Callable[[], bool], tick: Callable[[], None] = lambda: None) -> None:
        """Serve until ``stop()`` is true, then drain; ``tick`` runs after every poll."""
        try:
            while not stop():
                wasyncore.poll2(LOOP_SECONDS, self.map)
                if self.balance is not None:  # the siblings see this one alive, and its count
                    self.balance.publish(self.held())
                tick()
            self.drain(tick)
        finally:
            self.close()

    def may_accept(self) -> bool:
        """Say whether this process takes a new connection now (always, with no siblings).

        No when a sibling worker holds fewer (``scoring.service.balance``), unless a connection
        has waited ``DEFER_SECONDS`` for the others: a sibling slow to take its share never
        keeps a client waiting longer than that.
        """
        if self.balance is None:
            return True
        if self.balance.may_accept(self.held()):
            self._deferred = None
            return True
        now = time.monotonic()
        # Overdue only within one wait: a deferral long past (a sibling took that connection)
        # says nothing about the connection waiting now, which gets a wait of its own.
        waiting = self._deferred is not None and now - self._last_defer < DEFER_GAP
        if waiting and now - cast(float, self._deferred) >= DEFER_SECONDS:
            self._last_defer = now  # the rest of this backlog is taken too, not one per wait
            return True
        return False

    def held(self) -> int:
        """Count the connections this process holds open."""
        held = 0
        for server in self.servers:
            held += len(cast(dict[int, FrontChannel], server.active_channels))
        return held

    def defer(self) -> None:
        """Leave a waiting connection to a sibling for a moment (the socket stays watched)."""
        now = time.monotonic()
        if self._deferred is None or now - self._last_defer >= DEFER_GAP:
            self._deferred = now  # a new wait starts
        self._last_defer = now
        time.sleep(DEFER_PAUSE)  # the poll wakes again at once while it waits: no spinning

    def settled(self) -> None:
        """Forget a wait: nothing is left to accept."""
        self._deferred = None

    def drain(self, tick: Callable[[], None] = lambda: None) -> None:
        """Stop accepting at once; finish bodies and answers under way, up to the grace period."""
        self.draining = True
        if self.balance is not None:
            self.balance.leave()  # the siblings no longer wait for this one to take its share
        for server in self.servers:
            # The listening socket only: its trigger still wakes the loop for answers under way.
            wasyncore.dispatcher.close(server)  # new connections are refused from now on
        deadline = time.monotonic() + self.options.graceful_seconds
        busy = self._close_idle()
        if busy:
            log.info("draining", extra={"connections": busy})
        while busy and time.monotonic() < deadline:
            wasyncore.poll2(min(LOOP_SECONDS, max(0.0, deadline - time.monotonic())), self.map)
            tick()
            busy = self._close_idle()
        if busy:
            log.warning("grace period over; closing", extra={"connections": busy})

    def _close_idle(self) -> int:
        """Close every connection with nothing under way; return how many remain busy."""
        busy = 0
        for server in self.servers:
            for channel in server.channels():
                if channel.in_flight():
                    busy += 1
                else:
                    channel.handle_close()
        return busy

    def close(self) -> None:
        """Close every socket and stop the request threads."""
        self.dispatcher.shutdown(cancel_pending=True, timeout=5)
        wasyncore.close_all(self.map)


def front_worker(options: FrontOptions, workers: int) -> type:
    """Return a gunicorn worker class that serves through the front with these options.

    gunicorn keeps what it is good at (pre-fork, restarts, the heartbeat, the master's
    sockets); the worker answers through the same loop as ``serve`` instead of gthread's
    thread per connection. SIGTERM (gunicorn's graceful stop) drains; SIGQUIT and SIGINT quit;
    SIGHUP reloads the settings in place. The ``workers`` share one table of their connection
    counts, made here in the master before it forks them.
    """
    import os

    from gunicorn.workers.base import Worker

    from scoring.service.reload import RELOADER_KEY, reload_on_sighup

    balance = Balance(workers)  # in the master, before the fork: every worker shares it

    class FrontWorker(Worker):
        """A gunicorn worker running the front on the sockets its master listens on."""

        def run(self) -> None:
            """Serve until gunicorn stops this worker or its master goes away, then drain."""
            # gunicorn's listeners wrap the socket itself: waitress wants the socket
            listeners = [getattr(listener, "sock", listener) for listener in self.sockets]
            front = Front(self.wsgi, listeners, options, balance)
            balance.join()
            reloader = getattr(self.wsgi, "extensions", {}).get(RELOADER_KEY)
            if reloader is not None:  # SIGHUP (the master forwards it): reload in place
                reload_on_sighup(reloader)
            last = 0.0

            def beat() -> None:
                nonlocal last
                now = time.monotonic()
                if now - last >= 1.0:  # the master's liveness file: once a second is plenty
                    self.notify()
                    last = now

            try:
                front.run(lambda: not self.alive or self.ppid != os.getppid(), beat)
            finally:
                balance.leave()

    return FrontWorker
