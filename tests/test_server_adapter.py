"""``authgate.server``: the granian adapter and the server choice (no process started)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask import Flask

from authgate import server


def call(app: Any, body: bytes, method: str = "POST") -> tuple[list[tuple[str, str]], list[bytes]]:
    """Run a WSGI app through the adapter; the headers it started with and its body."""
    started: list[tuple[str, str]] = []

    def start_response(status: str, headers: list[tuple[str, str]], *exc: Any) -> None:
        started.extend(headers)

    environ = {
        "REQUEST_METHOD": method,
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "wsgi.input": io.BytesIO(body),
    }
    return started, server.buffered(app)(environ, start_response)


def reader(read: int) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        environ["wsgi.input"].read(read)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"a", b"b"])

    return app


def test_the_body_is_handed_over_in_one_chunk() -> None:
    headers, body = call(reader(0), b"", method="GET")
    assert body == [b"ab"]
    assert ("Connection", "close") not in headers


def test_a_fully_read_request_body_keeps_the_connection() -> None:
    headers, _ = call(reader(-1), b"x" * 100)
    assert ("Connection", "close") not in headers


def test_an_unread_request_body_closes_the_connection() -> None:
    headers, _ = call(reader(10), b"x" * 100)
    assert ("Connection", "close") in headers


def test_unknown_servers_are_refused() -> None:
    with pytest.raises(ValueError, match="granian, gunicorn"):
        server.run(Flask(__name__), "127.0.0.1", 0, 1, 1, server="waitress")
