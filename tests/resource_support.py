"""A stand-in issuer for ``authgate.resource`` unit tests: a real HTTP server on loopback.

It publishes RFC 8414 metadata, a JWKS (with ``Cache-Control`` and ``ETag`` as told) and an
introspection endpoint, counts what it was asked, and signs tokens with its own keys.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from joserfc import jwt
from joserfc.jwk import ECKey


@dataclass
class Clock:
    """A monotonic clock the test moves by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@dataclass
class FakeIssuer:
    """Issuer endpoints served by a ThreadingHTTPServer; settable behaviour, request counts."""

    keys: list[ECKey] = field(default_factory=list)
    cache_control: str | None = "public, max-age=60"
    etags: bool = True
    down: bool = False
    introspection_client: tuple[str, str] = ("rs", "rs-secret")
    revoked: set[str] = field(default_factory=set)
    #: JWKs published besides the signing keys (to test that unusable ones are skipped).
    extra_jwks: list[dict[str, Any]] = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)
    not_modified: int = 0
    server: ThreadingHTTPServer | None = None
    #: Seconds the answers are delayed by, by path.
    delays: dict[str, float] = field(default_factory=dict)
    #: Bodies answered (status 200) instead of the real ones, by path.
    raw: dict[str, bytes] = field(default_factory=dict)
    #: Released once per request that arrives while the issuer is stalled (see stall()).
    held: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    _stall: str | None = None
    _released: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if not self.keys:
            self.add_key()

    @property
    def url(self) -> str:
        """The issuer identifier (and base URL)."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add_key(self) -> ECKey:
        """Generate a new ES256 key and publish it."""
        key = ECKey.generate_key("P-256", private=True)
        key.ensure_kid()
        self.keys.append(key)
        return key

    def jwks(self) -> dict[str, Any]:
        """The published JWK Set."""
        keys = [{**k.as_dict(private=False), "use": "sig", "alg": "ES256"} for k in self.keys]
        return {"keys": [*self.extra_jwks, *keys]}

    def token(
        self,
        key: ECKey | None = None,
        typ: str = "JWT",
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A signed token; claims default to a valid first-party access token."""
        key = key or self.keys[-1]
        now = int(time.time())
        body = {"iss": self.url, "aud": self.url, "sub": "42", "iat": now, "exp": now + 600}
        body["jti"] = secrets.token_urlsafe(8)
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        jose = {"alg": "ES256", "kid": key.kid, "typ": typ, **(header or {})}
        return jwt.encode(jose, body, key, algorithms=["ES256"])

    def stall(self, how: str = "silent") -> None:
        """Hold every request from now on until release(): ``silent``ly; or ``trickle``,
        one byte of a never-ending header every 0.1 s; or ``flood``, ``100 Continue``
        answers as fast as they go (no per-read timeout ever fires on either)."""
        self._released.clear()
        self._stall = how

    def release(self) -> None:
        """Let held requests go: silent ones are answered, trickled ones cut off."""
        self._stall = None
        self._released.set()

    def start(self) -> FakeIssuer:
        """Serve on a free loopback port in a daemon thread."""
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Quiet."""

            def do_GET(self) -> None:  # noqa: N802
                issuer._count(self.path)
                if not self._pass_stall():
                    return
                if issuer.down:
                    self._send(503, {"error": "down"})
                elif self.path == "/.well-known/oauth-authorization-server":
                    self._send(200, issuer._metadata())
                elif self.path == "/jwks":
                    self._jwks()
                else:
                    self._send(404, {})

            def do_POST(self) -> None:  # noqa: N802
                issuer._count(self.path)
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(length).decode())
                if not self._pass_stall():
                    return
                if issuer.down or self.path != "/introspect":
                    self._send(503, {})
                elif not issuer._client_ok(self.headers.get("Authorization", "")):
                    self._send(401, {"error": "invalid_client"})
                else:
                    token = form.get("token", [""])[0]
                    self._send(200, {"active": token not in issuer.revoked})

            def _pass_stall(self) -> bool:
                """Wait out a delay and a stall, or answer a raw body; False when the
                request is answered (raw) or was trickled and cut off."""
                time.sleep(issuer.delays.get(self.path, 0.0))
                if self.path in issuer.raw:
                    self._send_bytes(200, issuer.raw[self.path])
                    return False
                mode = issuer._stall
                if mode is None:
                    return True
                issuer.held.release()
                if mode == "silent":
                    issuer._released.wait(60)
                    return True
                with contextlib.suppress(OSError):  # the client gave up: it may
                    if mode == "flood":
                        burst = b"HTTP/1.1 100 Continue\r\n\r\n" * 1000
                        while not issuer._released.is_set():  # keeps the socket full
                            self.wfile.write(burst)
                    else:
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                        while not issuer._released.wait(0.1):
                            self.wfile.write(b"a")
                self.close_connection = True
                return False

            def _jwks(self) -> None:
                body = json.dumps(issuer.jwks()).encode()
                tag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if issuer.etags and self.headers.get("If-None-Match") == tag:
                    issuer.not_modified += 1
                    self.send_response(304)
                    self._cache_headers(tag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self._cache_headers(tag)
                self.end_headers()
                self.wfile.write(body)

            def _cache_headers(self, tag: str) -> None:
                if issuer.cache_control is not None:
                    self.send_header("Cache-Control", issuer.cache_control)
                if issuer.etags:
                    self.send_header("ETag", tag)

            def _send(self, status: int, document: dict[str, Any]) -> None:
                self._send_bytes(status, json.dumps(document).encode())

            def _send_bytes(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Shut the server down and close its socket."""
        self.release()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def _count(self, path: str) -> None:
        self.hits[path] = self.hits.get(path, 0) + 1

    def _metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/jwks",
            "introspection_endpoint": f"{self.url}/introspect",
        }

    def _client_ok(self, authorization: str) -> bool:
        expected = base64.b64encode(":".join(self.introspection_client).encode()).decode()
        return secrets.compare_digest(authorization, f"Basic {expected}")
