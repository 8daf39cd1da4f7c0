"""Production WSGI servers: waitress in-process for ``serve``, gunicorn for ``api``.

``serve`` runs the watcher and the scheduler beside the API, which rules out a forking server
(threads do not survive fork, and APScheduler must not run in several workers); waitress is
threaded and pure Python. ``api`` is stateless, so gunicorn's pre-fork workers scale it across
cores; each worker builds its own app through the same factory after the fork. Both answer
through one front (``scoring.service.front``: waitress' event loop, request deadlines, a drain).
"""

from __future__ import annotations

import errno
import gc
import ipaddress
import logging
import math
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from scoring.settings import Settings

if TYPE_CHECKING:  # Flask and the app's modules load in the command that serves, not here
    from flask import Flask

    from scoring.service.front import FrontOptions

log = logging.getLogger("dropscore.server")


class CannotListen(Exception):
    """The API's address cannot be listened on (in use, not allowed, unknown); one line why."""


def listen_sockets(host: str, port: int, backlog: int = 1024) -> list[socket.socket]:
    """Bind and listen on every address ``host`` resolves to, before anything else starts.

    ``serve`` calls this before it starts the watcher and the scheduler, and hands the sockets
    to waitress: a port in use stops it at once with one line, and no other process can take
    the port between this check and its use. Connections that arrive meanwhile wait in the
    backlog and are answered once the app is up. Port 0 picks one port for every address.
    """
    try:
        infos = socket.getaddrinfo(
            host or None,
            port,
            socket.AF_UNSPEC,
            socket.SOCK_STREAM,
            socket.IPPROTO_TCP,
            socket.AI_PASSIVE,
        )
    except socket.gaierror as exc:
        raise CannotListen(
            f"cannot listen on {host}: {exc.strerror}; check [server] host"
        ) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in _unique(infos):
            if port == 0 and sockets:  # "localhost" → 127.0.0.1 and ::1: the same port on both
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            _listen(sock, address, backlog)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise CannotListen(_why(exc, host, port)) from None
    return sockets


def _unique(infos: list[tuple]) -> list[tuple]:
    """Drop repeated addresses (getaddrinfo may list one twice, and bind would then fail)."""
    seen: set[tuple[str, int]] = set()
    out = []
    for info in infos:
        key = (info[4][0].split("%", 1)[0], info[4][1])
        if key not in seen:
            seen.add(key)
            out.append(info)
    return out


def _listen(sock: socket.socket, address: tuple, backlog: int) -> None:
    """Set waitress' own socket options, bind and listen."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart reuses TIME_WAIT
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(address)
    sock.listen(backlog)


def _why(exc: OSError, host: str, port: int) -> str:
    """Word a failed bind as one line a person can act on."""
    where = f"port {port} on {host}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where} is in use (by another dropscore?); choose another with --port or"
            " DROPSCORE__SERVER__PORT"
        )
    if exc.errno == errno.EACCES:
        return f"{where} needs privileges this user lacks; choose a port above 1023 with --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; check [server] host"
    return f"cannot listen on {where}: {exc.strerror}"


def serve_threaded(app: Flask, sockets: list[socket.socket], options: FrontOptions) -> None:
    """Serve on the sockets ``listen_sockets`` opened until SIGTERM or SIGINT, then drain.

    The first signal stops accepting at once and lets uploads being received and answers being
    sent finish, for up to ``[server] graceful_seconds``; a second signal exits at once.
    """
    from scoring.service.front import Front

    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise SystemExit(0)
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    front = Front(app, sockets, options)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
    log.info("listening", extra={"url": url_of(sockets[0]), "threads": options.threads})
    settle()
    front.run(stop.is_set)


def url_of(sock: socket.socket) -> str:
    """Return the http URL a listening socket answers on (IPv6 addresses in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def warn_if_open(settings: Settings, sockets: list[socket.socket]) -> None:
    """Warn, on stderr and in the log, when the API listens beyond loopback without any key.

    Anyone who can reach the address could then score, train and promote. A warning, not a
    refusal: a network policy or a proxy may guard it, which this process cannot see.
    """
    exposed = [url_of(sock) for sock in sockets if not _loopback(sock)]
    if not exposed or _any_key(settings):
        return
    how = (
        "add a key with `dropscore keys add NAME --role admin` (or [server] api_keys),"
        " or listen on 127.0.0.1"
    )
    print(
        f"WARNING: {', '.join(exposed)} is reachable from the network and no API key is set:"
        f" anyone who reaches it can score, train and promote; {how}",
        file=sys.stderr,
        flush=True,
    )
    log.warning("open to the network without a key", extra={"urls": exposed, "fix": how})


def _loopback(sock: socket.socket) -> bool:
    """Say whether a listening socket answers only this machine."""
    address = sock.getsockname()[0].split("%", 1)[0]
    return ipaddress.ip_address(address).is_loopback


def _any_key(settings: Settings) -> bool:
    """Say whether auth is on: a key in settings or a live one in the key store."""
    from sqlalchemy.exc import SQLAlchemyError

    from scoring.models.factory import open_shared

    if settings.server.api_keys:
        return True
    if not settings.shared_db_path.is_file():  # a first start: no key can exist yet
        return False
    try:
        return bool(open_shared(settings).keys.live_hashes())
    except SQLAlchemyError:  # unreadable: say nothing rather than cry wolf or stop the start
        return True


def gunicorn_options(
    bind: str | list[str], workers: int, threads: int, front: FrontOptions | None = None
) -> dict[str, Any]:
    """Return dropscore's gunicorn options, also used by the benchmark's baseline app.

    With ``front``, each worker answers through dropscore's front (the loop ``serve`` uses:
    deadlines, no thread per idle connection, a drain on SIGTERM); without it, gthread.
    """
    from scoring.service.front import front_worker

    return {
        "bind": bind,
        "workers": workers,
        "worker_class": front_worker(front, workers) if front is not None else "gthread",
        "threads": threads,
        "timeout": 300,
        # the master waits this long for its workers' drain before it kills them
        "graceful_timeout": math.ceil(front.graceful_seconds if front is not None else 30) + 5,
        "keepalive": 5,
        "preload_app": False,
        "accesslog": None,
        "post_worker_init": _one_blas_thread,
        # gunicorn's default control socket is one path per user: replicas on one
        # machine would take it from each other. dropscore does not use it.
        "control_socket_disable": True,
        "forwarded_allow_ips": "",  # the app judges X-Forwarded-*: [server] trusted_proxies
    }


def run_gunicorn(
    factory: Callable[[], Any],
    options: dict[str, Any],
    on_reload: Callable[[], None] | None = None,
) -> None:
    """Run gunicorn with these options until it stops; each worker calls factory after fork.

    With ``on_reload``, SIGHUP to the master calls it and forwards the signal to each worker,
    which reloads in place (``scoring.service.reload``) instead of gunicorn's own reload (new
    workers, old ones stopped): the models already served never stop, and no keep-alive
    connection is closed under a client. A worker started later calls the factory, which
    builds from the settings ``on_reload`` kept.
    """
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter

    class Forwarding(Arbiter):
        """gunicorn's master, forwarding SIGHUP to its workers instead of replacing them."""

        def handle_hup(self) -> None:
            if on_reload is None:
                return super().handle_hup()
            on_reload()
            for pid in list(self.WORKERS):
                self.kill_worker(pid, signal.SIGHUP)

    class Application(BaseApplication):
        """gunicorn's embedding API: options from our dict, the app from our factory."""

        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return factory()

        def run(self) -> None:
            try:
                Forwarding(self).run()
            except RuntimeError as exc:  # gunicorn's own way to report a failed start
                print(f"\nError: {exc}\n", file=sys.stderr, flush=True)
                sys.exit(1)

    Application().run()


def serve_gunicorn(
    settings: Settings,
    factory: Callable[[Settings], Flask],
    workers: int,
    reread: Callable[[], Settings] | None = None,
) -> None:
    """Run gunicorn with ``workers`` processes, each building the app after fork.

    SIGHUP to the master reads the settings again with ``reread`` for the workers it starts
    later (an invalid file: one log line, and they keep the running settings) and forwards the
    signal to each worker, which reloads its models in place; a reload by ``POST
    /admin/reload`` in one worker sends the master that signal, so every worker follows.
    """
    from scoring.api.monitoring import MULTIPROC_ENV
    from scoring.service.front import front_options

    if not os.environ.get(MULTIPROC_ENV):
        raise RuntimeError(f"{MULTIPROC_ENV} must be set before prometheus_client is imported")
    server = settings.server
    preload_modules()
    sockets = listen_sockets(server.host, server.port)  # a port in use: one line, nothing forked
    url = url_of(sockets[0])
    warn_if_open(settings, sockets)
    # gunicorn takes bound sockets as fd://N and closes N itself: detach them from our objects
    binds = [f"fd://{sock.detach()}" for sock in sockets]
    front = front_options(settings, body_cap(settings))
    options = gunicorn_options(binds, workers, server.threads, front)
    options["child_exit"] = _mark_dead  # Prometheus' multiprocess files of a dead worker
    log.info("listening", extra={"url": url, "workers": workers})
    current = [settings]  # what the next workers build their app from (the master's copy)

    def on_reload() -> None:
        from scoring.service.reload import changed_outside_models
        from scoring.settings import SettingsError

        if reread is None:
            return
        try:
            new = reread()
        except SettingsError as exc:
            log.error(f"settings not reloaded: {exc}")
            return
        log.info(
            "settings reloaded; each worker reloads",
            extra={
                "models": list(new.model_names),
                # these hold for the master's whole life
                "needs_restart": changed_outside_models(settings, new),
            },
        )
        current[0] = new

    run_gunicorn(lambda: settle(factory(current[0])), options, on_reload)


def settle(app: Any = None) -> Any:
    """Take what the process holds for life out of the garbage collector's scans; return app.

    Modules, the app and the champion stay until the process ends, yet every full collection
    walked them all (about 60 ms quiet, 300 ms on a loaded machine, every request thread of the
    process paused meanwhile): a latency tail that grows with what is loaded. Frozen, they are
    skipped and a collection looks only at what requests allocated. Call once the app is warm.
    No collection first: it would delay the first answer by that same pause, to free a few
    hundred objects.
    """
    gc.freeze()
    return app


def preload_modules() -> None:
    """Import the app's and the model loader's modules in the master, once, before the fork.

    Each worker then only builds its app and loads the champion (its threads start after the
    fork), instead of every worker importing scikit-learn and skops at the same time: workers
    are ready sooner and share those pages. Call after the BLAS/OpenMP variables are set.
    """
    import skops.io  # noqa: F401 - imports scikit-learn and scipy

    import scoring.api.app  # noqa: F401 - Flask, the views, prometheus_client


def body_cap(settings: Settings) -> int:
    """Return the largest body any endpoint accepts, in bytes: the server's own cap."""
    server = settings.server
    return int(max(server.max_json_mb, server.max_upload_mb) * 1024 * 1024)


def _one_blas_thread(_worker: Any) -> None:
    """Keep BLAS to one thread per worker: two workers on two cores, no spinning threads.

    OpenMP reads its limit per thread, so ``OMP_NUM_THREADS`` (set by the ``api`` command
    before anything loads OpenMP) is what reaches gunicorn's request threads; this call covers
    the BLAS pools that were already started.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _mark_dead(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
