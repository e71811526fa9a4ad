"""Run the WSGI app under a production-grade, pre-forking server: granian or gunicorn.

granian (Rust HTTP stack, Python WSGI workers) is the default: on the benchmark machine it
serves AuthGate's endpoints at about twice the rate of gunicorn (see ``bench/README.md``).
gunicorn (sync worker, or gthread with ``threads > 1``) stays available with
``--server gunicorn``.

Neither server is allowed to interpret ``X-Forwarded-*``: forwarded headers are AuthGate's
business (``AUTHGATE_TRUSTED_PROXIES``, through ProxyFix in :mod:`authgate.http_hygiene`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask

#: The servers ``authgate serve --server`` accepts; the first is the default.
SERVERS = ("granian", "gunicorn")
DEFAULT_SERVER = SERVERS[0]


def run(
    app: Flask,
    host: str,
    port: int,
    workers: int,
    threads: int,
    server: str = DEFAULT_SERVER,
    **options: Any,
) -> None:
    """Serve ``app`` on ``host:port`` with ``workers`` processes of ``threads`` threads.

    ``server`` is one of :data:`SERVERS`; ``options`` are extra settings of that server
    (gunicorn settings by name, or ``granian.server.Server`` keyword arguments).
    """
    if server == "gunicorn":
        run_gunicorn(app, host, port, workers, threads, **options)
    elif server == "granian":
        run_granian(app, host, port, workers, threads, **options)
    else:
        raise ValueError(f"unknown server {server!r}; choose one of {', '.join(SERVERS)}")


def _child_exit(_server: Any, worker: Any) -> None:
    """Gunicorn hook in the parent: a worker died; forget its live metrics."""
    from authgate import metrics

    metrics.mark_worker_dead(worker.pid)


def gunicorn_options(host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    """gunicorn settings for AuthGate (``options`` passed to :func:`run` override them)."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "accesslog": None,
        "graceful_timeout": 10,
        "timeout": 30,
        "control_socket_disable": True,
        # Forwarded headers are AuthGate's business (AUTHGATE_TRUSTED_PROXIES, through
        # ProxyFix); gunicorn would otherwise believe X-Forwarded-Proto from 127.0.0.1.
        "forwarded_allow_ips": "",
        "secure_scheme_headers": {},
        "child_exit": _child_exit,
    }


def run_gunicorn(
    app: Flask, host: str, port: int, workers: int, threads: int, **options: Any
) -> None:
    """Serve ``app`` with gunicorn (sync worker, gthread when ``threads > 1``)."""
    from gunicorn.app.base import BaseApplication

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {**gunicorn_options(host, port, workers, threads), **options}.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            return app

    _Gunicorn().run()


def run_granian(
    app: Flask, host: str, port: int, workers: int, threads: int, **options: Any
) -> None:
    """Serve ``app`` with granian's WSGI interface: ``threads`` blocking threads per worker.

    Workers are forked from this process (the app object is inherited, not re-imported);
    granian never reads ``X-Forwarded-*`` (its proxy-headers wrapper is not used).
    """
    from granian.constants import Interfaces
    from granian.server import Server

    settings: dict[str, Any] = {
        "address": host,
        "port": port,
        "interface": Interfaces.WSGI,
        "workers": workers,
        "blocking_threads": threads,
        "log_access": False,
        "respawn_failed_workers": True,
        "workers_kill_timeout": 10,
        **options,
    }
    wsgi = buffered(app)
    Server("authgate", **settings).serve(target_loader=lambda *_: wsgi, wrap_loader=False)


def buffered(app: WSGIApplication) -> WSGIApplication:
    """``app`` adapted to granian: one-chunk bodies, and no reuse after an unread body.

    granian sends a list in one call from Rust; any other iterable is pulled chunk by chunk
    across the Python boundary, which cost about a fifth of a worker's time on small JSON
    responses (py-spy). AuthGate's responses are small and never streamed.

    When the app answers without reading the whole request body (``413``, ``415``), the
    answer says ``Connection: close``: the client must not send its next request on a
    connection the server is about to drop.
    """

    def wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        length = environ.get("CONTENT_LENGTH") or "0"
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if length != "0" or chunked:
            body = _CountingInput(environ["wsgi.input"], -1 if chunked else _int(length))
            environ["wsgi.input"] = body
            plain_start = start_response

            def start_response(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                if not body.exhausted():
                    headers = [*headers, ("Connection", "close")]
                return plain_start(status, headers, *exc)

        answer = app(environ, start_response)
        try:
            return [b"".join(answer)]
        finally:
            close = getattr(answer, "close", None)
            if close is not None:
                close()

    return wsgi


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1


class _CountingInput:
    """``wsgi.input`` that knows whether the app read the whole body (``expected`` bytes,
    or up to the end for a chunked body: ``expected`` -1)."""

    def __init__(self, stream: Any, expected: int) -> None:
        self._stream = stream
        self._expected = expected
        self._read = 0
        self._eof = False

    def exhausted(self) -> bool:
        """True when every byte of the body was read."""
        return self._eof or (self._expected >= 0 and self._read >= self._expected)

    def _count(self, data: bytes) -> bytes:
        self._read += len(data)
        if not data:
            self._eof = True
        return data

    def read(self, size: int = -1) -> bytes:
        """Read like the wrapped stream, counting."""
        return self._count(self._stream.read(size) if size is not None else self._stream.read())

    def readline(self, size: int = -1) -> bytes:
        """Read a line like the wrapped stream, counting."""
        return self._count(self._stream.readline(size))

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line
