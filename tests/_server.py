"""A real threaded WSGI server (waitress) on 127.0.0.1 for an app built in the test."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve the app on a free port; yield its URL, then close every socket and stop."""
    from waitress import create_server

    # as `serve` does, waitress passes X-Forwarded-* on: [server] trusted_proxies judges them
    wsgi = create_server(
        app, host="127.0.0.1", port=0, threads=4, clear_untrusted_proxy_headers=False
    )
    thread = threading.Thread(target=wsgi.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{wsgi.effective_port}"
    finally:
        # Close every socket from inside the server's own loop, which then ends: closing them
        # from this thread would pull them from under a select() still running there.
        # A worker finishing a response pulls the trigger too; when that wakes the loop first,
        # it runs this thunk (closing the trigger) before our own pull writes: EBADF, done.
        with contextlib.suppress(OSError):
            wsgi.trigger.pull_trigger(lambda: [ch.close() for ch in list(wsgi._map.values())])
        thread.join(timeout=10)
        wsgi.task_dispatcher.shutdown()
        for model in app.extensions["dropscore"].models.values():
            model.champion.stop()
