"""Protect another service with AuthGate access tokens (an OAuth 2 resource server).

Imported by *your* APIs, not by AuthGate itself, and it loads nothing of AuthGate's app::

    from authgate.resource import current_token, require_token

    @app.get("/orders")
    @require_token(scope="orders:read")
    def orders():
        return {"owner": current_token["sub"]}

Configured by the issuer URL alone (``app.config["AUTHGATE_ISSUER"]`` or the
``AUTHGATE_ISSUER`` environment variable). The JWKS is found through the issuer's RFC 8414
metadata, cached as its ``Cache-Control: max-age`` says (revalidated with its ``ETag``),
and fetched again for an unknown ``kid`` at most once a minute, so a token is verified
without calling AuthGate. With ``AUTHGATE_INTROSPECT_CLIENT_ID``/``_SECRET`` (a client
created with ``authgate client create --introspect``) every token is also checked at the
introspection endpoint (RFC 7662), answers cached a few seconds, so revocations are seen.

Errors follow RFC 6750 3: ``401`` + ``WWW-Authenticate: Bearer error="invalid_token"``,
``403`` ``insufficient_scope``, with JSON bodies ``{"error", "error_description"}``.
"""

from __future__ import annotations

import binascii
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import wraps
from typing import Any, Generic, TypeVar

import httpcore
import httpx
from flask import Flask, current_app, g, request
from joserfc import jws, jwt
from joserfc.errors import ExpiredTokenError, InvalidClaimError, JoseError, MissingClaimError
from joserfc.jwk import KeySet, import_key
from joserfc.jwt import JWTClaimsRegistry
from werkzeug.datastructures import ResponseCacheControl
from werkzeug.http import parse_cache_control_header
from werkzeug.local import LocalProxy

__all__ = [
    "AuthGateResource",
    "InsufficientScope",
    "InvalidToken",
    "IssuerUnavailable",
    "JWKSCache",
    "MissingToken",
    "RequireToken",
    "TokenError",
    "Verifier",
    "current_token",
    "require_token",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Signature algorithms accepted (AuthGate signs with ES256 only).
ALGORITHMS = ("ES256",)
#: JOSE ``typ`` of AuthGate's access tokens: first-party ``JWT``, OAuth ``at+jwt`` (RFC 9068).
ACCESS_TOKEN_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
#: An unknown ``kid`` makes us fetch the JWKS again at most this often.
UNKNOWN_KID_REFETCH_SECONDS = 60.0
#: JWKS lifetime when the issuer sends no ``max-age``; bounds on what it may say.
DEFAULT_MAX_AGE = 300.0
MIN_MAX_AGE = 5.0
MAX_MAX_AGE = 86400.0
#: Keys held past their max-age keep serving while the issuer cannot be reached, this long
#: at most; then tokens get 503 (a key the issuer withdrew must not live for ever).
MAX_STALE_SECONDS = 86400.0
#: After a failed call, wait this long before trying the issuer again.
RETRY_SECONDS = 5.0
#: Longest a request waits for one answer of the issuer: connecting, headers and body
#: together (``Verifier(timeout=...)``).
TIMEOUT_SECONDS = 5.0
#: A larger answer from the issuer is refused (a JWKS or introspection answer is small).
MAX_RESPONSE_BYTES = 1 << 20
#: How long an introspection answer is trusted, and how many answers are kept.
INTROSPECT_CACHE_SECONDS = 5.0
INTROSPECT_CACHE_SIZE = 10_000
MAX_TOKEN_LENGTH = 4096
#: Claims only an OpenID Connect ID token carries: an ID token is not an access token.
ID_TOKEN_CLAIMS = ("nonce", "at_hash", "auth_time")
METADATA_PATHS = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")
EXTENSION = "authgate.resource"
ENVIRON_KEY = "authgate.token"


# --- errors -------------------------------------------------------------------------


class TokenError(Exception):
    """Base of every refusal; carries the RFC 6750 ``error`` code and HTTP status."""

    status = 401
    error: str | None = "invalid_token"

    def __init__(self, description: str, scope: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.scope = scope

    def challenge(self, realm: str) -> str:
        """The ``WWW-Authenticate`` value (RFC 6750 3)."""
        parts = [f'realm="{realm}"']
        if self.error:
            parts += [f'error="{self.error}"', f'error_description="{self.description}"']
        if self.scope:
            parts.append(f'scope="{self.scope}"')
        return "Bearer " + ", ".join(parts)

    def response(self, realm: str) -> tuple[int, list[tuple[str, str]], bytes]:
        """``(status, headers, JSON body)`` of the refusal, for any framework."""
        body = {"error": self.error or "invalid_request", "error_description": self.description}
        if self.scope:
            body["scope"] = self.scope
        headers = [
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
            ("WWW-Authenticate", self.challenge(realm)),
        ]
        return self.status, headers, json.dumps(body, separators=(",", ":")).encode()


class MissingToken(TokenError):
    """Raised when the request carries no Bearer token (401 without an error code, 6750 3.1)."""

    error = None


class MalformedRequest(TokenError):
    """Raised for an ``Authorization: Bearer`` header without a usable token (400)."""

    status = 400
    error = "invalid_request"


class InvalidToken(TokenError):
    """Raised when the token is malformed, forged, expired, for another issuer or audience,
    not an access token, or revoked (401 ``invalid_token``)."""


class InsufficientScope(TokenError):
    """Raised when a valid token lacks a required scope (403 ``insufficient_scope``)."""

    status = 403
    error = "insufficient_scope"


class IssuerUnavailable(TokenError):
    """Raised when the keys or the introspection answer cannot be obtained from the issuer
    (503: fail closed, never accept a token we could not check)."""

    status = 503
    error = "temporarily_unavailable"

    def response(self, realm: str) -> tuple[int, list[tuple[str, str]], bytes]:
        """As for any refusal, plus ``Retry-After``."""
        status, headers, body = super().response(realm)
        return status, [*headers, ("Retry-After", str(int(RETRY_SECONDS)))], body


# --- calls to the issuer ------------------------------------------------------------

_calls = threading.local()  # .deadline: time.monotonic() by which this thread's call ends


def _left(timeout: float | None, spent: type[Exception]) -> float | None:
    """``timeout`` cut to what is left of this thread's call deadline; raises ``spent``
    (an httpcore timeout) once nothing is left, so a server that keeps sending (a flood of
    ``100 Continue``, a fast trickle) cannot keep a call going past it."""
    deadline = getattr(_calls, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise spent("the call's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the calling thread's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Read, within the deadline."""
        return self._stream.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Write, within the deadline."""
        self._stream.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        """Close the connection."""
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        """The TLS handshake, within the deadline."""
        left = _left(timeout, httpcore.ConnectTimeout)
        upgraded = self._stream.start_tls(ssl_context, server_hostname, left)
        return _DeadlineStream(upgraded)

    def get_extra_info(self, info: str) -> Any:
        """As the wrapped connection answers."""
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, every connect cut to the calling thread's deadline."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Connect to each address of ``host`` in turn, all within the deadline (the name
        lookup excepted): one deadline, not one per address."""
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        failure: Exception = httpcore.ConnectError(f"no address for {host}")
        for address in dict.fromkeys(str(entry[4][0]) for entry in found):
            left = _left(timeout, httpcore.ConnectTimeout)
            try:
                connection = self._backend.connect_tcp(
                    address, port, left, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            return _DeadlineStream(connection)
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        """Connect, within the deadline."""
        left = _left(timeout, httpcore.ConnectTimeout)
        connection = self._backend.connect_unix_socket(path, left, socket_options)
        return _DeadlineStream(connection)

    def sleep(self, seconds: float) -> None:
        """Sleep (httpcore's retries; AuthGate's client makes none)."""
        self._backend.sleep(seconds)


def _on_deadlines(client: httpx.Client) -> httpx.Client:
    """``client`` with every connection pool on :class:`_DeadlineBackend`: the direct one
    and one per proxy the environment names (``HTTP(S)_PROXY``, ``ALL_PROXY``,
    ``NO_PROXY``, read by httpx as usual). httpx takes no network backend, so this sets the
    attribute its pools read when they open a connection (httpx and httpcore are pinned;
    the trickle tests, direct and through a proxy, fail if that changes)."""
    for transport in (client._transport, *client._mounts.values()):
        if transport is not None:
            transport._pool._network_backend = _DeadlineBackend()  # type: ignore[attr-defined]
    return client


@dataclass(frozen=True)
class Answer:
    """An answer of the issuer, read in full."""

    status_code: int
    headers: httpx.Headers
    content: bytes

    def json(self) -> Any:
        """The body as JSON; raises ValueError."""
        return json.loads(self.content)


class IssuerHTTP:
    """HTTP to the issuer, each call ending by its deadline.

    httpx's timeouts bound each network operation, not a call: an issuer (or a proxy in
    front of it) sending a byte every few seconds would hold a request for ever. Here every
    connect, read and write of a call is cut to what is left of the call's deadline, so the
    whole call (connection, TLS, headers, body) ends in time, the name lookup excepted.
    Answers are asked uncompressed and read up to MAX_RESPONSE_BYTES. The httpx client is
    created on first use (after a pre-forking server forked).
    """

    def __init__(self, timeout: float = TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        """The httpx client, created on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = _on_deadlines(
                        httpx.Client(timeout=self.timeout, headers={"Accept-Encoding": "identity"})
                    )
        return self._client

    def deadline(self) -> float:
        """The deadline of a call (or of all the calls of one request) starting now."""
        return time.monotonic() + self.timeout

    def request(
        self, method: str, url: str, *, deadline: float | None = None, **options: Any
    ) -> Answer:
        """Make a call that ends by ``deadline`` (default: the timeout from now); raises
        httpx.HTTPError (a timeout included)."""
        deadline = self.deadline() if deadline is None else deadline
        budget = deadline - time.monotonic()
        if budget <= 0:
            raise httpx.TimeoutException("no time left to ask the issuer")
        _calls.deadline = deadline
        try:
            with self.client.stream(method, url, timeout=budget, **options) as response:
                if response.headers.get("Content-Encoding", "identity") != "identity":
                    raise httpx.DecodingError("a compressed answer, though none was asked for")
                body = bytearray()
                for chunk in response.iter_raw():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise httpx.DecodingError(f"answer over {MAX_RESPONSE_BYTES} bytes")
        finally:
            _calls.deadline = None
        return Answer(response.status_code, response.headers, bytes(body))

    def close(self) -> None:
        """Close the httpx client (connections to the issuer)."""
        if self._client is not None:
            self._client.close()


class Call(Generic[T]):
    """Work running in a daemon thread of its own (a key refresh); wait with :meth:`result`."""

    def __init__(self, work: Callable[[], T]) -> None:
        self._done = threading.Event()
        self._value: T | None = None
        self._error: Exception | None = None
        threading.Thread(target=self._run, args=(work,), daemon=True).start()

    def _run(self, work: Callable[[], T]) -> None:
        try:
            self._value = work()
        except Exception as exc:  # handed to whoever waits
            self._error = exc
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        """True once the work has finished."""
        return self._done.is_set()

    def result(self, deadline: float) -> T:
        """The work's result; raises httpx.TimeoutException if it is not done by
        ``deadline`` (``time.monotonic()``), or the work's own error."""
        if not self._done.wait(max(deadline - time.monotonic(), 0.0)):
            raise httpx.TimeoutException("the issuer did not answer in time")
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


# --- discovery and keys -------------------------------------------------------------


@dataclass(frozen=True)
class IssuerMetadata:
    """What we need from the issuer's RFC 8414 / OIDC discovery document."""

    issuer: str
    jwks_uri: str
    introspection_endpoint: str | None


def discover(issuer: str, http: IssuerHTTP, deadline: float | None = None) -> IssuerMetadata:
    """Read the issuer's metadata (RFC 8414, then OpenID Connect Discovery), by ``deadline``.

    The document must name exactly ``issuer`` (RFC 8414 3.3), so a wrong URL cannot
    redirect us to somebody else's keys. Raises IssuerUnavailable.
    """
    deadline = http.deadline() if deadline is None else deadline
    for path in METADATA_PATHS:
        try:
            response = http.request("GET", issuer + path, deadline=deadline)
            document = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, RecursionError):
            continue
        if not isinstance(document, dict):
            continue
        if document.get("issuer") != issuer or not _is_http_url(document.get("jwks_uri")):
            log.error("issuer metadata at %s names another issuer or no jwks_uri", issuer + path)
            continue
        endpoint = document.get("introspection_endpoint")
        endpoint = endpoint if _is_http_url(endpoint) else None
        return IssuerMetadata(issuer, document["jwks_uri"], endpoint)
    raise IssuerUnavailable("cannot read the issuer's metadata")


def _is_http_url(value: Any) -> bool:
    """True for an http(s) URL httpx can send to."""
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        return False
    try:
        return bool(httpx.URL(value).host)
    except (httpx.InvalidURL, ValueError):
        return False


def max_age(cache_control: str | None) -> float:
    """Seconds a response may be cached, from ``Cache-Control`` (bounded, see MIN_MAX_AGE)."""
    if cache_control is None:
        return DEFAULT_MAX_AGE
    directives = parse_cache_control_header(cache_control, cls=ResponseCacheControl)
    if directives.no_store or directives.no_cache:
        return MIN_MAX_AGE
    seconds = DEFAULT_MAX_AGE if directives.max_age is None else float(directives.max_age)
    return min(max(seconds, MIN_MAX_AGE), MAX_MAX_AGE)


@dataclass(frozen=True)
class _KeysState:
    keys: KeySet | None = None
    kids: frozenset[str] = frozenset()
    etag: str | None = None
    expires_at: float = float("-inf")
    fetched_at: float = float("-inf")
    failed: bool = False  # the last fetch failed: an unknown kid may yet be the issuer's
    usable_until: float = float("-inf")  # fresh until + MAX_STALE_SECONDS


class JWKSCache:
    """The issuer's public keys, cached per process.

    Fresh for the ``max-age`` the issuer sends; then revalidated (``If-None-Match`` with
    the ``ETag``) in the background: while one refresh runs, requests go on with the keys
    we hold, so a slow or unreachable issuer delays no token signed by a known key. A
    token naming a ``kid`` we do not hold (or the very first token) waits for a fetch, up
    to its deadline; that fetch happens only if the last one is at least
    ``refetch_interval`` seconds old, so forged ``kid`` values cannot make us hammer the
    issuer. When the issuer is unreachable, the keys we hold keep working, a ``kid`` we
    do not hold is answered IssuerUnavailable (not "unknown": it may be a new key), and
    we retry every RETRY_SECONDS. A refresh ends by its own deadline, whatever the issuer
    does.
    """

    def __init__(
        self,
        jwks_uri: str,
        http: IssuerHTTP,
        clock: Callable[[], float] = time.monotonic,
        refetch_interval: float = UNKNOWN_KID_REFETCH_SECONDS,
    ) -> None:
        self.jwks_uri = jwks_uri
        self._http = http
        self._clock = clock
        self._refetch_interval = refetch_interval
        self._state = _KeysState()
        self._refreshing: Call[_KeysState] | None = None
        self._lock = threading.Lock()

    def keys_for(self, kid: str, deadline: float | None = None) -> KeySet:
        """A key set holding ``kid``; waits for a fetch until ``deadline`` at most if it
        needs one. Raises InvalidToken (unknown kid) or IssuerUnavailable."""
        state, now = self._state, self._clock()
        usable = kid in state.kids and now < state.usable_until
        if usable and now < state.expires_at:
            return state.keys  # type: ignore[return-value]
        refresh = self._refresh_if_due(kid)
        if refresh is not None and not usable:  # stale keys serve; others wait for new ones
            try:
                refresh.result(self._http.deadline() if deadline is None else deadline)
            except httpx.TimeoutException as exc:
                raise IssuerUnavailable("the issuer's signing keys did not arrive in time") from exc
        state = self._state
        if state.keys is None or self._clock() >= state.usable_until:
            raise IssuerUnavailable("cannot fetch the issuer's signing keys")
        if kid in state.kids:
            return state.keys
        if state.failed:
            raise IssuerUnavailable("cannot fetch the issuer's signing keys")
        raise InvalidToken("unknown signing key")

    def settle(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a refresh in flight (tests, shutdown)."""
        refresh = self._refreshing
        if refresh is not None:
            refresh.result(time.monotonic() + timeout)

    def _refresh_if_due(self, kid: str) -> Call[_KeysState] | None:
        """The refresh in flight, else a new one if the keys are due one, else None."""
        with self._lock:
            if self._refreshing is not None and not self._refreshing.done:
                return self._refreshing
            state, now = self._state, self._clock()
            unknown = kid not in state.kids and now - state.fetched_at >= self._refetch_interval
            if now < state.expires_at and not unknown:
                return None
            self._refreshing = Call(self._refresh)
            return self._refreshing

    def _refresh(self) -> _KeysState:
        state, now = self._state, self._clock()
        headers = {"If-None-Match": state.etag} if state.etag and state.keys else {}
        try:
            response = self._http.request("GET", self.jwks_uri, headers=headers)
            if response.status_code == 304 and state.keys is not None:
                keys, kids = state.keys, state.kids
            elif response.status_code == 200:
                keys, kids = _import_jwks(response.json())
            else:
                raise ValueError(f"status {response.status_code}")
        except Exception as exc:  # whatever went wrong, keep the keys and retry later
            log.warning("cannot refresh JWKS from %s: %s", self.jwks_uri, exc)
            retry_at = now + RETRY_SECONDS
            fresh = dataclasses.replace(state, expires_at=retry_at, fetched_at=now, failed=True)
        else:
            expires_at = now + max_age(response.headers.get("Cache-Control"))
            etag = response.headers.get("ETag", state.etag if response.status_code == 304 else None)
            usable_until = expires_at + MAX_STALE_SECONDS
            fresh = _KeysState(keys, kids, etag, expires_at, now, False, usable_until)
        self._state = fresh
        return fresh


def _import_jwks(document: Any) -> tuple[KeySet, frozenset[str]]:
    """Signing keys with a ``kid`` from a JWK Set document; keys we cannot use (encryption
    keys, unknown types, no ``kid``, symmetric) are skipped, not fatal."""
    imported = []
    for data in document["keys"]:
        if not isinstance(data, dict) or not isinstance(data.get("kid"), str):
            continue
        if data.get("use") == "enc" or data.get("kty") == "oct":
            continue
        try:
            imported.append(import_key(data))
        except (JoseError, ValueError, TypeError, KeyError, binascii.Error):
            log.warning("skipping unusable key %s in the JWKS", data.get("kid"))
    return KeySet(imported), frozenset(str(key.kid) for key in imported)


# --- introspection ------------------------------------------------------------------


class Introspector:
    """Asks the issuer whether a token is still active (RFC 7662), answers cached briefly.

    The cache is keyed by a SHA-256 digest of the token (never the token itself), holds
    at most INTROSPECT_CACHE_SIZE answers, and trusts each for ``ttl`` seconds: a
    revocation reaches this service within ``ttl``.

    A failed call opens a circuit breaker: for RETRY_SECONDS every token not in the cache
    is refused at once (IssuerUnavailable, 503) instead of each request waiting for an
    issuer that is down; then one request tries again while the others are still
    refused, and its success closes the breaker.
    """

    def __init__(
        self,
        endpoint: str,
        client_id: str,
        client_secret: str,
        http: IssuerHTTP,
        ttl: float = INTROSPECT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self._auth = (client_id, client_secret)
        self._http = http
        self._ttl = ttl
        self._clock = clock
        self._answers: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()
        self._down_until: float | None = None
        self._probing = False

    def is_active(self, token: str, deadline: float | None = None) -> bool:
        """True when the issuer says the token is active, asked by ``deadline`` at most;
        raises IssuerUnavailable."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        cached = self._answers.get(key)
        if cached is not None and now < cached[1]:
            return cached[0]
        probe = self._admit()
        budget = self._http.timeout if deadline is None else deadline - time.monotonic()
        try:
            active = self._ask(token, deadline)
        except IssuerUnavailable as exc:
            # A timeout of a call that started with less than half the timeout left (this
            # request's time went on discovery and keys) says little about the endpoint:
            # the breaker stays as it was.
            timed_out = isinstance(exc.__cause__, httpx.TimeoutException)
            spared = timed_out and budget < self._http.timeout / 2
            self._settle(probe, "spared" if spared else "failed")
            raise
        except BaseException:  # whatever it was, the breaker opens (never stays half-open)
            self._settle(probe, "failed")
            raise
        self._settle(probe, "answered")
        if self._ttl > 0:
            with self._lock:
                self._prune(now)
                self._answers[key] = (active, now + self._ttl)
        return active

    def _admit(self) -> bool:
        """Let the call through unless the breaker is open (or half-open and probing);
        True when this call is the half-open breaker's probe."""
        with self._lock:
            if self._down_until is None:
                return False
            if self._probing or self._clock() < self._down_until:
                raise IssuerUnavailable("the introspection endpoint is failing; retrying soon")
            self._probing = True
            return True

    def _settle(self, probe: bool, outcome: str) -> None:
        """After a call: ``failed`` opens the breaker, ``answered`` closes it, ``spared``
        leaves it as it is; only the probe itself ends the probing."""
        with self._lock:
            if outcome == "failed":
                self._down_until = self._clock() + RETRY_SECONDS
            elif outcome == "answered":
                self._down_until = None
            if probe:
                self._probing = False

    def _ask(self, token: str, deadline: float | None) -> bool:
        try:
            response = self._http.request(
                "POST",
                self.endpoint,
                deadline=deadline,
                data={"token": token, "token_type_hint": "access_token"},
                auth=self._auth,
            )
            answer = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, RecursionError) as exc:
            log.warning("introspection at %s failed: %s", self.endpoint, exc)
            raise IssuerUnavailable("cannot reach the introspection endpoint") from exc
        if not isinstance(answer, dict):
            log.error("introspection at %s answered %s", self.endpoint, response.status_code)
            raise IssuerUnavailable("the introspection endpoint refused us")
        return answer.get("active") is True

    def _prune(self, now: float) -> None:
        if len(self._answers) < INTROSPECT_CACHE_SIZE:
            return
        self._answers = {k: v for k, v in self._answers.items() if v[1] > now}
        while len(self._answers) >= INTROSPECT_CACHE_SIZE:
            del self._answers[next(iter(self._answers))]


# --- verification -------------------------------------------------------------------


def _scopes(scope: str | Iterable[str] | None) -> list[str]:
    if scope is None:
        return []
    return scope.split() if isinstance(scope, str) else [s for item in scope for s in item.split()]


class Verifier:
    """Verifies AuthGate access tokens for one issuer; thread-safe, one per process.

    ``introspect_client_id``/``_secret`` turn on revocation awareness; ``leeway`` allows
    that many seconds of clock skew on ``exp``; ``timeout`` is the longest one
    verification waits for the issuer, all its calls together. ``clock`` is for tests.
    Used in a process forked from the one that built it, it starts afresh (no connection,
    lock or call in flight is shared with the parent).
    """

    def __init__(
        self,
        issuer: str,
        *,
        introspect_client_id: str | None = None,
        introspect_client_secret: str | None = None,
        introspect_cache_seconds: float = INTROSPECT_CACHE_SECONDS,
        leeway: int = 0,
        algorithms: Iterable[str] = ALGORITHMS,
        timeout: float = TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not issuer.startswith(("http://", "https://")):
            raise ValueError("AUTHGATE_ISSUER must be the issuer's http(s) URL")
        if bool(introspect_client_id) != bool(introspect_client_secret):
            raise ValueError("set both AUTHGATE_INTROSPECT_CLIENT_ID and _SECRET, or neither")
        if not timeout > 0:
            raise ValueError("the issuer timeout must be a positive number of seconds")
        self.issuer = issuer.rstrip("/")
        self.leeway = leeway
        self.algorithms = list(algorithms)
        self._introspect = (introspect_client_id, introspect_client_secret)
        self._introspect_ttl = introspect_cache_seconds
        self.timeout = timeout
        self._clock = clock
        self._start_afresh()

    def _start_afresh(self) -> None:
        """No HTTP client, keys, breaker or lock yet: in a new verifier, or in a forked
        child, where the parent's threads (a refresh in flight) do not exist."""
        self._http = IssuerHTTP(self.timeout)
        self._lock = threading.Lock()
        self._jwks: JWKSCache | None = None
        self._introspector: Introspector | None = None
        self._failed_at = float("-inf")
        # Last: a thread that sees this process's pid sees the fresh state too (two
        # threads starting afresh at once just build it twice).
        self._pid = os.getpid()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **options: Any) -> Verifier:
        """A verifier configured from ``config`` (e.g. ``app.config``), else the environment.

        Reads ``AUTHGATE_ISSUER`` (required), ``AUTHGATE_INTROSPECT_CLIENT_ID``,
        ``AUTHGATE_INTROSPECT_CLIENT_SECRET``, ``AUTHGATE_INTROSPECT_CACHE_SECONDS``.
        """

        def setting(name: str) -> Any:
            value = config.get(name)
            # This module runs inside other services, which configure it like AuthGate.
            return value if value not in (None, "") else os.environ.get(name) or None

        issuer = setting("AUTHGATE_ISSUER")
        if not issuer:
            raise RuntimeError("set AUTHGATE_ISSUER (app.config or environment) to use tokens")
        cache = setting("AUTHGATE_INTROSPECT_CACHE_SECONDS")
        if cache is not None:
            options.setdefault("introspect_cache_seconds", float(cache))
        # Options given in code win over the configuration.
        options.setdefault("introspect_client_id", setting("AUTHGATE_INTROSPECT_CLIENT_ID"))
        options.setdefault("introspect_client_secret", setting("AUTHGATE_INTROSPECT_CLIENT_SECRET"))
        return cls(str(issuer), **options)

    def close(self) -> None:
        """Close the HTTP client (connections to the issuer)."""
        self._http.close()

    @property
    def introspection_enabled(self) -> bool:
        """True when tokens are also checked at the introspection endpoint."""
        return bool(self._introspect[0])

    def verify(
        self,
        token: str,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | None = None,
    ) -> dict[str, Any]:
        """Verify ``token`` and return its claims.

        Checks the ES256 signature with the issuer's published keys, ``typ`` (an access
        token, never an ID token), ``iss``, ``exp``, ``sub`` and ``jti``; ``aud`` contains
        ``audience`` if given; every scope in ``scope`` was granted (space-separated
        string or list); and, with introspection on, that the token is not revoked.
        Raises InvalidToken, InsufficientScope or IssuerUnavailable.
        """
        header = self._header(token)
        if self._pid != os.getpid():
            self._start_afresh()
        deadline = self._http.deadline()  # for all of this token's calls to the issuer
        keys = self._keys(deadline).keys_for(header["kid"], deadline)
        claims = self._decode(token, keys, audience)
        introspector = self._introspection(deadline) if self.introspection_enabled else None
        if introspector is not None and not introspector.is_active(token, deadline):
            raise InvalidToken("token revoked or unknown to the issuer")
        missing = [s for s in _scopes(scope) if s not in str(claims.get("scope") or "").split()]
        if missing:
            raise InsufficientScope("the token lacks a required scope", " ".join(_scopes(scope)))
        return claims

    def _header(self, token: str) -> dict[str, Any]:
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise InvalidToken("malformed token")
        try:
            header = dict(jws.extract_compact(token.encode()).headers())
        except (JoseError, ValueError, TypeError, KeyError, binascii.Error) as exc:
            raise InvalidToken("malformed token") from exc
        if str(header.get("typ", "")).lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("not an access token")
        if header.get("alg") not in self.algorithms or not isinstance(header.get("kid"), str):
            raise InvalidToken("unsupported algorithm or missing key id")
        return header

    def _decode(self, token: str, keys: KeySet, audience: str | None) -> dict[str, Any]:
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": self.issuer},
            "sub": {"essential": True},
            "exp": {"essential": True},
            "jti": {"essential": True},
        }
        if audience is not None:
            options["aud"] = {"essential": True, "value": audience}
        registry = JWTClaimsRegistry(now=lambda: int(time.time()), leeway=self.leeway, **options)
        try:
            claims = jwt.decode(token, keys, algorithms=self.algorithms).claims
            registry.validate(claims)
        except ExpiredTokenError as exc:
            raise InvalidToken("token expired") from exc
        except (InvalidClaimError, MissingClaimError) as exc:
            raise InvalidToken(f"invalid or missing claim {exc.claim}") from exc
        except (JoseError, ValueError, TypeError, KeyError, binascii.Error) as exc:
            raise InvalidToken("invalid signature or claims") from exc
        if any(name in claims for name in ID_TOKEN_CLAIMS):
            raise InvalidToken("an ID token is not an access token")
        return claims

    def _metadata(self, deadline: float) -> IssuerMetadata:
        """Discovery (the caller holds the lock); retried every RETRY_SECONDS while it fails."""
        if self._clock() - self._failed_at < RETRY_SECONDS:
            raise IssuerUnavailable("cannot read the issuer's metadata")
        try:
            return discover(self.issuer, self._http, deadline)
        except IssuerUnavailable:
            self._failed_at = self._clock()
            raise

    @contextlib.contextmanager
    def _locked(self, deadline: float) -> Iterator[None]:
        """Hold the lock, waiting for it until ``deadline`` (another request discovers)."""
        lock = self._lock  # the one released is the one acquired, even if replaced meanwhile
        if not lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            raise IssuerUnavailable("the issuer's metadata did not arrive in time")
        try:
            yield
        finally:
            lock.release()

    # Each attribute is read once into a local: another thread may start afresh (a
    # forked child's first requests) between two reads of it.

    def _keys(self, deadline: float) -> JWKSCache:
        jwks = self._jwks
        if jwks is None:
            with self._locked(deadline):
                jwks = self._jwks
                if jwks is None:
                    metadata = self._metadata(deadline)
                    if self.introspection_enabled:
                        self._introspector = self._make_introspector(metadata)
                    jwks = self._jwks = JWKSCache(metadata.jwks_uri, self._http, clock=self._clock)
        return jwks

    def _make_introspector(self, metadata: IssuerMetadata) -> Introspector:
        client_id, secret = self._introspect
        if not metadata.introspection_endpoint or client_id is None or secret is None:
            self._failed_at = self._clock()  # retried with the metadata, not on every request
            log.error("introspection is configured but %s publishes no endpoint", self.issuer)
            raise IssuerUnavailable("the issuer publishes no introspection endpoint")
        return Introspector(
            metadata.introspection_endpoint,
            client_id,
            secret,
            self._http,
            ttl=self._introspect_ttl,
            clock=self._clock,
        )

    def _introspection(self, deadline: float) -> Introspector:
        introspector = self._introspector
        if introspector is None:
            with self._locked(deadline):
                introspector = self._introspector
                if introspector is None:
                    introspector = self._make_introspector(self._metadata(deadline))
                    self._introspector = introspector
        return introspector


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 2.1).

    Raises MissingToken when there is no Bearer credential, MalformedRequest when the
    header says Bearer but carries no single token.
    """
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        raise MissingToken("a Bearer token is required")
    value = value.strip()
    if not value or " " in value:
        raise MalformedRequest("malformed Authorization header")
    return value


# --- Flask ----------------------------------------------------------------------------


class AuthGateResource:
    """Flask extension holding an app's :class:`Verifier`.

    Optional: ``require_token`` creates one on first use. Calling ``AuthGateResource(app)``
    checks the configuration at start-up and lets you set options (``realm``, ``leeway``).
    The verifier (and its HTTP client) is built lazily, in the worker process that uses it.
    """

    def __init__(self, app: Flask | None = None, realm: str = "api", **options: Any) -> None:
        self.realm = realm
        self.options = options
        self._verifier: Verifier | None = None
        self._config: Mapping[str, Any] = {}
        self._lock = threading.Lock()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register on ``app``; raises RuntimeError/ValueError when the configuration is bad."""
        self._config = app.config
        Verifier.from_config(app.config, **self.options)  # validate now, build later
        app.extensions[EXTENSION] = self

    @property
    def verifier(self) -> Verifier:
        """This app's verifier, built on first use."""
        if self._verifier is None:
            with self._lock:
                if self._verifier is None:
                    self._verifier = Verifier.from_config(self._config, **self.options)
        return self._verifier


def _extension() -> AuthGateResource:
    extension = current_app.extensions.get(EXTENSION)
    if extension is None:
        extension = AuthGateResource()
        extension._config = current_app.config
        extension = current_app.extensions.setdefault(EXTENSION, extension)
    return extension  # type: ignore[no-any-return]


F = TypeVar("F", bound=Callable[..., Any])


def require_token(
    view: F | None = None,
    *,
    scope: str | Iterable[str] | None = None,
    audience: str | None = None,
) -> Any:
    """Decorate a Flask view so that it needs a valid AuthGate access token.

    ``@require_token`` accepts any access token of the issuer; ``scope="orders:read"``
    (space-separated or a list: all are needed) and ``audience`` add checks. The claims
    are in :data:`current_token` (and ``flask.g.authgate_token``) inside the view.
    """

    def decorate(function: F) -> F:
        @wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            extension = _extension()
            try:
                token = bearer_token(request.headers.get("Authorization"))
                claims = extension.verifier.verify(token, scope=scope, audience=audience)
            except TokenError as error:
                status, headers, body = error.response(extension.realm)
                return current_app.response_class(body, status=status, headers=headers)
            g.authgate_token = claims
            return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate(view) if view is not None else decorate


def _current_claims() -> dict[str, Any]:
    claims = g.get("authgate_token")
    if claims is None:
        raise RuntimeError("current_token is only set inside a view decorated by require_token")
    return claims  # type: ignore[no-any-return]


#: The verified claims of the request's token (inside a ``require_token`` view).
current_token: dict[str, Any] = LocalProxy(_current_claims)  # type: ignore[assignment]


# --- any WSGI app -------------------------------------------------------------------


class RequireToken:
    """WSGI middleware: every request needs a valid token, except under ``exempt`` paths.

    The claims are put in ``environ["authgate.token"]``. Options as for
    :func:`require_token`, plus ``issuer`` (default: the ``AUTHGATE_ISSUER`` environment
    variable) and the :class:`Verifier` options (introspection, ``leeway``).
    """

    def __init__(
        self,
        app: Callable[..., Any],
        issuer: str | None = None,
        *,
        scope: str | Iterable[str] | None = None,
        audience: str | None = None,
        exempt: Iterable[str] = (),
        realm: str = "api",
        **options: Any,
    ) -> None:
        self.app = app
        self.scope = scope
        self.audience = audience
        self.exempt = tuple(exempt)
        self.realm = realm
        config = {"AUTHGATE_ISSUER": issuer} if issuer else {}
        Verifier.from_config(config, **options)  # validate now, build in the worker
        self._config = config
        self._options = options
        self._verifier: Verifier | None = None
        self._lock = threading.Lock()

    @property
    def verifier(self) -> Verifier:
        """The verifier, built on first use (after a pre-forking server forked)."""
        if self._verifier is None:
            with self._lock:
                if self._verifier is None:
                    self._verifier = Verifier.from_config(self._config, **self._options)
        return self._verifier

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Verify the request's token, then call the wrapped app; or refuse (RFC 6750)."""
        path = environ.get("PATH_INFO", "")
        if any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.exempt):
            return self.app(environ, start_response)
        try:
            token = bearer_token(environ.get("HTTP_AUTHORIZATION"))
            claims = self.verifier.verify(token, scope=self.scope, audience=self.audience)
        except TokenError as error:
            status, headers, body = error.response(self.realm)
            reason = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}
            start_response(f"{status} {reason.get(status, 'Service Unavailable')}", headers)
            return [body]
        environ[ENVIRON_KEY] = claims
        return self.app(environ, start_response)
