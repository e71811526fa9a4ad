"""``AUTHGATE_METRICS_LISTEN``: ``/metrics`` on an address of its own, in a process of its own.

``authgate serve`` starts it (:func:`start`) next to the API server: it reads the
workers' multiprocess files, applies the same network and token rules as the API
port's ``/metrics``, and exits with its parent. A process of its own, because a
thread in the serving parent would be forked into every worker.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from flask import Flask
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import ThreadingWSGIServer

from authgate.app import create_app
from authgate.config import Settings
from authgate.errors import Throttled
from authgate.metrics import METRICS_CHALLENGE, MULTIPROC_ENV, check_token, network_allowed

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Scrapes are not worth a log line each."""


def start(settings: Settings) -> subprocess.Popen[bytes] | None:
    """Start the listener process when ``AUTHGATE_METRICS_LISTEN`` is set (call it after
    :func:`authgate.metrics.prepare_multiprocess`, whose directory it inherits)."""
    if settings.metrics_listen_address is None:
        return None
    return subprocess.Popen([sys.executable, "-m", "authgate.metrics_listener"])  # noqa: S603


def stop(process: subprocess.Popen[bytes] | None) -> None:
    """Stop the listener process (the serving parent, at shutdown)."""
    if process is not None and process.poll() is None:
        process.terminate()
        process.wait(timeout=10)


def application(auth_app: Flask) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    """The listener's WSGI app: ``GET /metrics`` under the access rules, 404 elsewhere.

    The metrics token is checked inside ``auth_app``, an AuthGate app of the listener's
    own (:func:`authgate.metrics.check_token`), so it is throttled and audited as on the
    API port; the client address is the socket's (the listener trusts no proxy header).
    """
    settings = auth_app.extensions["authgate"].settings

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def header(name: str) -> str | None:
            return environ.get("HTTP_" + name.upper().replace("-", "_"))

        allowed = network_allowed(settings, environ.get("REMOTE_ADDR"), header, False)
        if environ.get("PATH_INFO") != "/metrics" or not allowed:
            return _answer(start_response, "404 Not Found", b"not found\n")
        with auth_app.request_context(environ):
            try:
                accepted = check_token(header("Authorization"))
            except Throttled as exc:
                extra = [("Retry-After", str(exc.retry_after))]
                return _answer(start_response, "429 Too Many Requests", b"throttled\n", extra)
        if not accepted:
            extra = [("WWW-Authenticate", METRICS_CHALLENGE)]
            return _answer(start_response, "401 Unauthorized", b"bearer token required\n", extra)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return _answer(start_response, "200 OK", generate_latest(registry), [], CONTENT_TYPE_LATEST)

    return app


def _answer(
    start_response: StartResponse,
    status: str,
    body: bytes,
    extra: list[tuple[str, str]] | None = None,
    content_type: str = "text/plain; charset=utf-8",
) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Cache-Control", "no-store"), *(extra or [])]
    start_response(status, headers)
    return [body]


def main() -> None:
    """Serve until the parent (``authgate serve``) is gone or stops this process."""
    # The parent read the same settings and already warned about them (e.g. a secret
    # file's mode); refusals still end this process.
    logging.getLogger("authgate.config").setLevel(logging.ERROR)
    settings = Settings.from_env()
    address = settings.metrics_listen_address
    if address is None or not os.environ.get(MULTIPROC_ENV):
        sys.exit(
            "authgate metrics listener: started without AUTHGATE_METRICS_LISTEN or a "
            "metrics directory"
        )
    host, port = address
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

    server = make_server(
        host,
        port,
        application(create_app(settings)),
        server_class=Server,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    parent = os.getppid()
    while os.getppid() == parent:  # orphaned (parent killed): leave too
        time.sleep(1)
    server.shutdown()


if __name__ == "__main__":
    main()
