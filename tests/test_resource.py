"""``authgate.resource`` against a real local HTTP issuer: verification, JWKS cache, introspection,
the Flask decorator and the WSGI middleware."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpcore
import httpx
import pytest
from flask import Flask
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey
from werkzeug.test import Client

from authgate import resource
from authgate.resource import (
    InsufficientScope,
    InvalidToken,
    IssuerUnavailable,
    RequireToken,
    Verifier,
    current_token,
    max_age,
    require_token,
)
from tests.resource_support import Clock, FakeIssuer

T = TypeVar("T")


@pytest.fixture
def issuer() -> Iterator[FakeIssuer]:
    """A running stand-in issuer."""
    fake = FakeIssuer().start()
    yield fake
    fake.stop()


@pytest.fixture
def clock() -> Clock:
    """The verifier's cache clock, moved by hand."""
    return Clock()


@pytest.fixture
def verifier(issuer: FakeIssuer, clock: Clock) -> Iterator[Verifier]:
    """A verifier of ``issuer`` without introspection."""
    verifier = Verifier(issuer.url, clock=clock)
    yield verifier
    verifier.close()


def settled(verifier: Verifier) -> Verifier:
    """``verifier`` once its background JWKS refresh, if one runs, has finished."""
    assert verifier._jwks is not None
    verifier._jwks.settle(10)
    return verifier


def test_import_does_not_load_authgate_app() -> None:
    """Importing authgate.resource loads neither AuthGate's app nor its database layer."""
    code = (
        "import sys, authgate.resource; "
        "print(sorted(m for m in ('authgate.app', 'sqlalchemy', 'authlib', 'argon2') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_valid_token_returns_its_claims(issuer: FakeIssuer, verifier: Verifier) -> None:
    """A token signed by a published key, for this issuer and unexpired, yields its claims."""
    claims = verifier.verify(issuer.token(sub="7", preferred_username="miguel"))
    assert claims["sub"] == "7"
    assert claims["preferred_username"] == "miguel"
    assert issuer.hits == {"/.well-known/oauth-authorization-server": 1, "/jwks": 1}


def test_jwks_cached_for_max_age_then_revalidated_with_etag(
    issuer: FakeIssuer, verifier: Verifier, clock: Clock
) -> None:
    """Within max-age no request reaches the issuer; after it, a conditional GET (304)."""
    for _ in range(5):
        verifier.verify(issuer.token())
    assert issuer.hits["/jwks"] == 1
    clock.advance(59)
    verifier.verify(issuer.token())
    assert issuer.hits["/jwks"] == 1
    clock.advance(2)
    verifier.verify(issuer.token())  # the old keys serve while the refresh runs
    assert settled(verifier) and issuer.hits["/jwks"] == 2
    assert issuer.not_modified == 1
    clock.advance(30)
    verifier.verify(issuer.token())
    assert issuer.hits["/jwks"] == 2  # the 304 renewed the lifetime


def test_max_age_header_is_respected_and_bounded() -> None:
    """Cache-Control decides the lifetime, within 5 s and one day; no header means 300 s."""
    assert max_age("public, max-age=120") == 120
    assert max_age(None) == 300
    assert max_age("no-store") == 5
    assert max_age("max-age=0") == 5
    assert max_age("max-age=999999999") == 86400


def test_short_max_age_makes_keys_refetch_sooner(
    issuer: FakeIssuer, verifier: Verifier, clock: Clock
) -> None:
    """With max-age=10 and no ETag, the whole JWKS is fetched again after 10 seconds."""
    issuer.cache_control = "max-age=10"
    issuer.etags = False
    verifier.verify(issuer.token())
    clock.advance(11)
    verifier.verify(issuer.token())
    assert settled(verifier) and issuer.hits["/jwks"] == 2
    assert issuer.not_modified == 0


def test_unknown_kid_refetches_at_most_once_per_minute(
    issuer: FakeIssuer, verifier: Verifier, clock: Clock
) -> None:
    """Tokens naming unknown keys trigger one JWKS fetch per minute, however many arrive."""
    verifier.verify(issuer.token())
    stranger = ECKey.generate_key("P-256", private=True)
    stranger.ensure_kid()
    for _ in range(20):
        with pytest.raises(InvalidToken, match="unknown signing key"):
            verifier.verify(issuer.token(key=stranger))
    assert issuer.hits["/jwks"] == 1
    clock.advance(30)
    with pytest.raises(InvalidToken):
        verifier.verify(issuer.token(key=stranger))
    assert issuer.hits["/jwks"] == 1
    clock.advance(30)
    for _ in range(5):
        with pytest.raises(InvalidToken):
            verifier.verify(issuer.token(key=stranger))
    assert issuer.hits["/jwks"] == 2


def test_new_key_is_picked_up_on_unknown_kid(
    issuer: FakeIssuer, verifier: Verifier, clock: Clock
) -> None:
    """After a rotation, a token signed by the new key is accepted once the refetch is due."""
    issuer.cache_control = "max-age=3600"
    verifier.verify(issuer.token())
    new_key = issuer.add_key()
    with pytest.raises(InvalidToken, match="unknown signing key"):
        verifier.verify(issuer.token(key=new_key))  # fetched less than a minute ago
    clock.advance(60)
    assert verifier.verify(issuer.token(key=new_key))["sub"] == "42"
    assert issuer.hits["/jwks"] == 2


def test_unusable_keys_in_the_jwks_are_skipped(issuer: FakeIssuer, verifier: Verifier) -> None:
    """Symmetric, encryption, kid-less and unknown-type keys do not spoil the key set."""
    issuer.extra_jwks = [
        {"kty": "oct", "kid": "shared", "k": "c2VjcmV0"},
        {**issuer.jwks()["keys"][0], "kid": "enc-key", "use": "enc"},
        {"kty": "XYZ", "kid": "future"},
        {"kty": "EC", "crv": "P-256", "x": "bad", "y": "bad", "kid": "broken"},
        {"kty": "EC"},
    ]
    assert verifier.verify(issuer.token())["sub"] == "42"
    for kid in ("shared", "enc-key", "future", "broken"):
        with pytest.raises(InvalidToken, match="unknown signing key"):
            verifier.verify(issuer.token(header={"kid": kid}))


def test_issuer_down_keeps_cached_keys_and_fails_closed_without_them(
    issuer: FakeIssuer, clock: Clock
) -> None:
    """Known keys keep verifying while the issuer is down; with no keys at all: 503."""
    verifier = Verifier(issuer.url, clock=clock)
    verifier.verify(issuer.token())
    issuer.down = True
    clock.advance(61)
    assert verifier.verify(issuer.token())["sub"] == "42"
    verifier.close()

    cold = Verifier(issuer.url, clock=clock)
    with pytest.raises(IssuerUnavailable):
        cold.verify(issuer.token())
    before = dict(issuer.hits)
    with pytest.raises(IssuerUnavailable):
        cold.verify(issuer.token())
    assert issuer.hits == before  # no retry within RETRY_SECONDS
    issuer.down = False
    clock.advance(5)
    assert cold.verify(issuer.token())["sub"] == "42"
    cold.close()


def finishes(work: Callable[[], T], within: float = 30) -> T:
    """``work()``'s result or error, failing the test if it is still running after ``within``
    seconds (a liveness bound far above what the code under test may take, not a timing)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within)
    assert not thread.is_alive(), "still waiting for the issuer"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def with_introspection(issuer: FakeIssuer, clock: Clock, **options: Any) -> Verifier:
    """A verifier of ``issuer`` that also introspects every token."""
    return Verifier(
        issuer.url,
        introspect_client_id="rs",
        introspect_client_secret="rs-secret",
        clock=clock,
        **options,
    )


def introspecting(issuer: FakeIssuer, clock: Clock, timeout: float) -> Verifier:
    """A verifier with introspection, its metadata and keys already fetched."""
    verifier = with_introspection(issuer, clock, timeout=timeout)
    verifier.verify(issuer.token())
    return verifier


def test_expired_keys_serve_while_a_hanging_issuer_is_asked_again(
    issuer: FakeIssuer, clock: Clock
) -> None:
    """Keys past their max-age are revalidated in the background: a token signed by a key
    we hold is verified at once even though the issuer holds the refresh for a minute."""
    verifier = Verifier(issuer.url, clock=clock, timeout=60)
    verifier.verify(issuer.token())
    issuer.stall()
    clock.advance(61)
    for _ in range(3):
        assert finishes(lambda: verifier.verify(issuer.token()))["sub"] == "42"
    assert issuer.held.acquire(timeout=10)  # the refresh reached the issuer and waits there
    assert issuer.hits["/jwks"] == 2  # one refresh at a time
    issuer.release()
    settled(verifier)
    verifier.close()


def test_unknown_kid_waits_for_a_hanging_issuer_at_most_the_timeout(
    issuer: FakeIssuer, clock: Clock
) -> None:
    """A token naming a key we do not hold needs the issuer: 503 once the timeout passed,
    while tokens of known keys keep passing."""
    verifier = Verifier(issuer.url, clock=clock, timeout=0.5)
    verifier.verify(issuer.token())
    new_key = issuer.add_key()
    issuer.stall("trickle")  # the fetch outlives the wait, whatever the machine's load
    clock.advance(60)
    # Whichever ends first, the wait or the refresh (both at the timeout): 503.
    with pytest.raises(IssuerUnavailable, match="did not arrive in time|cannot fetch"):
        finishes(lambda: verifier.verify(issuer.token(key=new_key)))
    assert verifier.verify(issuer.token(key=issuer.keys[0]))["sub"] == "42"
    issuer.release()
    settled(verifier)
    clock.advance(60)  # the failed fetch counts for the once-a-minute rule
    assert verifier.verify(issuer.token(key=new_key))["sub"] == "42"
    verifier.close()


def test_a_trickling_issuer_is_cut_off_at_the_timeout(issuer: FakeIssuer, clock: Clock) -> None:
    """An issuer sending one byte every 0.1 s never trips httpx's per-read timeout; the
    overall timeout still ends the wait (503), and then the breaker refuses at once."""
    verifier = introspecting(issuer, clock, timeout=1)
    issuer.stall("trickle")
    with pytest.raises(IssuerUnavailable, match="cannot reach"):
        finishes(lambda: verifier.verify(issuer.token()))
    assert issuer.hits["/introspect"] == 2
    with pytest.raises(IssuerUnavailable, match="retrying soon"):
        verifier.verify(issuer.token())
    assert issuer.hits["/introspect"] == 2  # refused without asking
    issuer.release()
    clock.advance(5)
    assert verifier.verify(issuer.token())["sub"] == "42"
    verifier.close()


def test_introspection_breaker_lets_one_request_probe(issuer: FakeIssuer, clock: Clock) -> None:
    """After a failure only one request at a time asks again; the others get 503 at once,
    and the probe's success closes the breaker."""
    verifier = introspecting(issuer, clock, timeout=30)
    issuer.down = True
    with pytest.raises(IssuerUnavailable, match="refused us"):
        verifier.verify(issuer.token())
    issuer.down = False
    issuer.stall()
    clock.advance(5)
    probe = threading.Thread(target=verifier.verify, args=(issuer.token(),), daemon=True)
    probe.start()
    assert issuer.held.acquire(timeout=10)
    asked = issuer.hits["/introspect"]
    with pytest.raises(IssuerUnavailable, match="retrying soon"):
        verifier.verify(issuer.token())
    assert issuer.hits["/introspect"] == asked
    issuer.release()
    probe.join(30)
    assert not probe.is_alive()
    assert verifier.verify(issuer.token())["sub"] == "42"
    assert issuer.hits["/introspect"] == asked + 1
    verifier.close()


def test_a_trickled_key_refresh_ends_by_its_deadline(issuer: FakeIssuer, clock: Clock) -> None:
    """A background refresh that the issuer trickles ends at its own deadline, so the next
    one can start: a key the issuer removed stops being accepted once a refresh succeeds."""
    verifier = Verifier(issuer.url, clock=clock, timeout=1)
    old_key = issuer.keys[0]
    verifier.verify(issuer.token())
    issuer.stall("trickle")
    clock.advance(61)
    assert verifier.verify(issuer.token())["sub"] == "42"  # starts the trickled refresh
    assert issuer.held.acquire(timeout=10)
    finishes(lambda: settled(verifier))  # over at its deadline, the issuer still trickling
    issuer.release()
    issuer.keys.remove(old_key)
    issuer.add_key()
    clock.advance(5)
    verifier.verify(issuer.token())
    settled(verifier)
    with pytest.raises(InvalidToken, match="unknown signing key"):
        verifier.verify(issuer.token(key=old_key))
    assert issuer.hits["/jwks"] == 3
    verifier.close()


def test_one_verification_waits_at_most_one_timeout(issuer: FakeIssuer, clock: Clock) -> None:
    """The timeout bounds all the calls of one verification together: keys then
    introspection, each answered in 0.6 s, do not fit in 1 s (503); the keys fetched
    serve the next token."""
    verifier = with_introspection(issuer, clock, timeout=1)
    issuer.delays = {"/jwks": 0.6, "/introspect": 0.6}
    with pytest.raises(IssuerUnavailable):
        verifier.verify(issuer.token())
    settled(verifier)
    clock.advance(5)  # the introspection breaker's wait
    assert verifier.verify(issuer.token())["sub"] == "42"
    assert issuer.hits["/jwks"] == 1
    verifier.close()


def test_new_kid_while_the_issuer_is_down_is_unavailable_not_invalid(
    issuer: FakeIssuer, verifier: Verifier, clock: Clock
) -> None:
    """While the keys cannot be fetched, a token naming a key we do not hold may be signed
    by a new key: 503 (try again), not 401 (your token is bad)."""
    verifier.verify(issuer.token())
    new_key = issuer.add_key()
    issuer.down = True
    clock.advance(60)
    for _ in range(3):
        with pytest.raises(IssuerUnavailable, match="signing keys"):
            verifier.verify(issuer.token(key=new_key))
        settled(verifier)
    issuer.down = False
    clock.advance(5)
    verifier.verify(issuer.token())  # a known key: served, and starts a refresh
    settled(verifier)
    assert verifier.verify(issuer.token(key=new_key))["sub"] == "42"


NESTED = b"[" * 200_000 + b"]" * 200_000  # valid JSON whose parsing overflows the stack


def test_any_failure_of_a_refresh_backs_off(issuer: FakeIssuer, clock: Clock) -> None:
    """An answer that breaks the JSON parser (RecursionError) is a failed refresh like any
    other: the keys held keep serving and the issuer is asked again after 5 s, not on
    every request."""
    verifier = Verifier(issuer.url, clock=clock)
    verifier.verify(issuer.token())
    issuer.raw["/jwks"] = NESTED
    clock.advance(61)
    for _ in range(10):
        assert verifier.verify(issuer.token())["sub"] == "42"
        settled(verifier)
    assert issuer.hits["/jwks"] == 2
    verifier.close()


def test_a_probe_failing_oddly_does_not_jam_the_breaker(issuer: FakeIssuer, clock: Clock) -> None:
    """A half-open probe that fails with something unexpected (here an answer that breaks
    the JSON parser) re-opens the breaker, which lets the next probe through 5 s later."""
    verifier = introspecting(issuer, clock, timeout=5)
    issuer.down = True
    with pytest.raises(IssuerUnavailable):
        verifier.verify(issuer.token())
    issuer.down = False
    issuer.raw["/introspect"] = NESTED
    clock.advance(5)
    with pytest.raises(IssuerUnavailable, match="cannot reach"):
        verifier.verify(issuer.token())
    del issuer.raw["/introspect"]
    clock.advance(5)
    assert verifier.verify(issuer.token())["sub"] == "42"
    verifier.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_afresh(issuer: FakeIssuer, clock: Clock) -> None:
    """A verifier used before a pre-forking server forks (a warm-up) works in the child,
    although the refresh the parent had in flight does not exist there."""
    verifier = Verifier(issuer.url, clock=clock, timeout=2)
    verifier.verify(issuer.token())
    issuer.stall()
    clock.advance(61)
    verifier.verify(issuer.token())  # a refresh in flight, held by the issuer
    assert issuer.held.acquire(timeout=10)
    new_key = issuer.add_key()
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            outcome = verifier.verify(issuer.token(key=new_key))["sub"]
        except BaseException as exc:
            outcome = repr(exc)
        os.write(writer, outcome.encode())
        os._exit(0)
    os.close(writer)
    issuer.release()  # the child's own calls need the issuer answering
    with os.fdopen(reader) as pipe:
        outcome = pipe.read()
    os.waitpid(child, 0)
    assert outcome == "42"
    verifier.close()


def test_a_flood_of_interim_answers_ends_at_the_deadline(issuer: FakeIssuer) -> None:
    """A server sending ``100 Continue`` without end has data for every read; the call
    still ends when its deadline has passed."""
    http = resource.IssuerHTTP(timeout=1)
    issuer.stall("flood")
    with pytest.raises(httpx.TimeoutException):
        finishes(lambda: http.request("GET", issuer.url + "/jwks"))
    issuer.release()
    http.close()


def test_environment_proxies_are_used_within_the_deadline(
    issuer: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY applies as in any httpx client, and a proxy that trickles is cut off at
    the deadline like the issuer itself."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", issuer.url)  # the fake issuer plays the proxy
    http = resource.IssuerHTTP(timeout=1)
    answer = http.request("GET", "http://issuer.invalid/jwks")
    assert answer.status_code == 404  # the proxy was asked for the absolute URL
    assert issuer.hits == {"http://issuer.invalid/jwks": 1}
    issuer.stall("trickle")
    with pytest.raises(httpx.TimeoutException):
        finishes(lambda: http.request("GET", "http://issuer.invalid/jwks"))
    issuer.release()
    http.close()


def test_each_address_of_a_name_is_tried_within_one_deadline(
    issuer: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name with several addresses: a refused one is skipped for the next, and once the
    deadline has passed no further address is tried."""
    port = int(issuer.url.rsplit(":", 1)[1])
    real = socket.getaddrinfo

    def addresses(*addresses: str) -> None:
        found = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]
        monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: found)

    addresses("127.0.0.2", "127.0.0.1")  # nothing listens on 127.0.0.2: refused
    http = resource.IssuerHTTP(timeout=2)
    assert http.request("GET", f"http://issuer.test:{port}/jwks").status_code == 200

    tried: list[str] = []
    connect = httpcore.SyncBackend.connect_tcp

    def spent(backend: Any, host: str, *args: Any, **kwargs: Any) -> Any:
        tried.append(host)
        time.sleep(0.3)  # as a connection that times out, using up the deadline
        raise httpcore.ConnectTimeout("timed out")

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", spent)
    addresses("127.0.0.3", "127.0.0.4", "127.0.0.5")
    slow = resource.IssuerHTTP(timeout=0.2)
    with pytest.raises(httpx.ConnectTimeout):
        slow.request("GET", f"http://issuer.test:{port}/jwks")
    assert tried == ["127.0.0.3"]
    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect)
    monkeypatch.setattr(socket, "getaddrinfo", real)
    http.close()


def test_keys_held_stop_serving_a_day_past_their_max_age(
    issuer: FakeIssuer, verifier: Verifier, clock: Clock
) -> None:
    """While the issuer cannot be reached the keys held keep serving, for a day past their
    max-age at most: a key the issuer withdrew meanwhile does not live for ever."""
    verifier.verify(issuer.token())
    issuer.down = True
    clock.advance(60 + 86400 - 10)
    assert verifier.verify(issuer.token())["sub"] == "42"
    settled(verifier)
    clock.advance(10)
    with pytest.raises(IssuerUnavailable, match="signing keys"):
        verifier.verify(issuer.token())
    settled(verifier)
    issuer.down = False
    clock.advance(5)
    assert verifier.verify(issuer.token())["sub"] == "42"  # waits for the refresh


def test_an_unusable_introspection_endpoint_is_unavailable_not_an_error(
    issuer: FakeIssuer, clock: Clock
) -> None:
    """Metadata naming an introspection endpoint that is no http(s) URL: 503, not 500."""
    for endpoint in ("http://[::1", 42, "ftp://x/introspect"):
        metadata = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
        metadata["introspection_endpoint"] = endpoint
        issuer.raw["/.well-known/oauth-authorization-server"] = json.dumps(metadata).encode()
        verifier = Verifier(
            issuer.url, introspect_client_id="rs", introspect_client_secret="s", clock=clock
        )
        with pytest.raises(IssuerUnavailable, match="no introspection endpoint"):
            verifier.verify(issuer.token())
        verifier.close()


def test_the_breaker_survives_an_unexpected_error_and_a_spent_deadline(
    issuer: FakeIssuer, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception from an introspection call re-opens the breaker (never
    leaving it half-open for good); a call never made, because the request's time was
    spent before it, leaves the breaker closed."""
    verifier = introspecting(issuer, clock, timeout=5)
    introspector = verifier._introspector
    assert introspector is not None
    with pytest.raises(IssuerUnavailable):
        introspector.is_active(issuer.token(), deadline=time.monotonic() - 1)
    asked = issuer.hits["/introspect"]
    assert verifier.verify(issuer.token())["sub"] == "42"  # closed: asked at once
    assert issuer.hits["/introspect"] == asked + 1

    issuer.down = True
    with pytest.raises(IssuerUnavailable):
        verifier.verify(issuer.token())
    issuer.down = False
    clock.advance(5)
    broken = resource.IssuerHTTP.request

    def odd(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("something unexpected")

    monkeypatch.setattr(resource.IssuerHTTP, "request", odd)
    with pytest.raises(RuntimeError):
        verifier.verify(issuer.token())  # the half-open probe
    monkeypatch.setattr(resource.IssuerHTTP, "request", broken)
    with pytest.raises(IssuerUnavailable, match="retrying soon"):
        verifier.verify(issuer.token())
    clock.advance(5)
    assert verifier.verify(issuer.token())["sub"] == "42"
    verifier.close()


def test_threads_of_a_forked_child_start_afresh_together(
    issuer: FakeIssuer, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several threads making a forked child's first verifications at once (simulated: the
    verifier's pid is another process's, getpid slowed to widen the window) all succeed."""
    verifier = Verifier(issuer.url, clock=clock)
    verifier.verify(issuer.token())
    verifier._pid = -1
    real_getpid = os.getpid

    def slow_getpid() -> int:
        time.sleep(0.01)
        return real_getpid()

    monkeypatch.setattr(os, "getpid", slow_getpid)
    token = issuer.token()
    outcomes: list[str] = []

    def first_verification() -> None:
        try:
            outcomes.append(verifier.verify(token)["sub"])
        except Exception as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=first_verification) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    monkeypatch.setattr(os, "getpid", real_getpid)
    assert outcomes == ["42"] * 8
    verifier.close()


def test_keys_past_the_stale_limit_stay_refused_between_retries(
    issuer: FakeIssuer, verifier: Verifier, clock: Clock
) -> None:
    """Past the day of grace, a failed refresh's 5 s of back-off gives the old keys no new
    life: every token is refused until a refresh succeeds."""
    verifier.verify(issuer.token())
    issuer.down = True
    clock.advance(60 + 86400 + 3600)
    for _ in range(3):
        with pytest.raises(IssuerUnavailable, match="signing keys"):
            verifier.verify(issuer.token())
        settled(verifier)


class Racing(Verifier):
    """A verifier in which another thread starts afresh (a forked child's first requests)
    right after every read of its per-process state."""

    racing = False

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if name in ("_jwks", "_introspector") and object.__getattribute__(self, "racing"):
            object.__setattr__(self, name, None)
        return value


def test_starting_afresh_between_two_reads_never_skips_a_check(
    issuer: FakeIssuer, clock: Clock
) -> None:
    """A revoked token is refused even when the state is reset between the check that
    introspection is set up and its use (once, that skipped introspection)."""
    verifier = Racing(
        issuer.url, introspect_client_id="rs", introspect_client_secret="rs-secret", clock=clock
    )
    verifier.verify(issuer.token())
    token = issuer.token()
    issuer.revoked.add(token)
    verifier.racing = True
    with pytest.raises(InvalidToken, match="revoked"):
        verifier.verify(token)
    verifier.close()


def test_a_request_short_of_time_does_not_open_the_breaker(
    issuer: FakeIssuer, clock: Clock
) -> None:
    """A cold start that spends most of the timeout on the keys leaves introspection too
    little time: that request gets 503, but the breaker stays closed for the next."""
    verifier = with_introspection(issuer, clock, timeout=1)
    issuer.delays = {"/jwks": 0.9, "/introspect": 0.2}
    with pytest.raises(IssuerUnavailable):
        verifier.verify(issuer.token())
    settled(verifier)
    assert verifier.verify(issuer.token())["sub"] == "42"
    verifier.close()


def test_only_the_probe_ends_the_probing(issuer: FakeIssuer, clock: Clock) -> None:
    """A call admitted before the breaker opened, ending (spared, short of time) while the
    half-open probe still waits, lets no second probe through."""
    verifier = introspecting(issuer, clock, timeout=5)
    introspector = verifier._introspector
    assert introspector is not None
    go = {name: threading.Event() for name in ("early", "probe")}
    asked = {name: threading.Event() for name in ("early", "probe")}

    def ask(token: str, deadline: float | None) -> bool:
        if token in go:
            asked[token].set()
            go[token].wait(30)
            if token == "early":
                raise IssuerUnavailable("timed out") from httpx.TimeoutException("timed out")
            return True
        raise IssuerUnavailable("refused") from ValueError("refused")

    introspector._ask = ask  # type: ignore[method-assign]
    # Started with 0.5 s of a 5 s timeout left: its timeout is spared.
    early_deadline = time.monotonic() + 0.5
    early = threading.Thread(
        target=_settled_call, args=(introspector, "early", early_deadline), daemon=True
    )
    early.start()
    assert asked["early"].wait(10)  # admitted while the breaker was closed
    with pytest.raises(IssuerUnavailable):
        introspector.is_active("fails")  # opens the breaker
    clock.advance(5)
    probe = threading.Thread(target=introspector.is_active, args=("probe",), daemon=True)
    probe.start()
    assert asked["probe"].wait(10)
    go["early"].set()
    early.join(30)
    with pytest.raises(IssuerUnavailable, match="retrying soon"):
        introspector.is_active("another")
    go["probe"].set()
    probe.join(30)
    assert introspector.is_active("probe")  # the probe's success closed the breaker
    verifier.close()


def _settled_call(introspector: resource.Introspector, token: str, deadline: float) -> None:
    """``introspector.is_active``, whose refusal the test does not need."""
    with contextlib.suppress(IssuerUnavailable):
        introspector.is_active(token, deadline)


def test_oversized_answers_are_refused(issuer: FakeIssuer, clock: Clock) -> None:
    """A JWKS larger than 1 MiB is not read into memory: no keys, 503."""
    issuer.extra_jwks = [{"kty": "XYZ", "kid": "padding", "x": "a" * (1 << 20)}]
    verifier = Verifier(issuer.url, clock=clock)
    with pytest.raises(IssuerUnavailable, match="signing keys"):
        verifier.verify(issuer.token())
    verifier.close()


def _forged_hs256(issuer: FakeIssuer) -> str:
    public = json.dumps(issuer.jwks()["keys"][0]).encode()
    key = OctKey.import_key(public)
    claims = {"iss": issuer.url, "sub": "1", "exp": int(time.time()) + 60, "jti": "x"}
    return jwt.encode({"alg": "HS256", "kid": issuer.keys[0].kid, "typ": "JWT"}, claims, key)


def _alg_none(issuer: FakeIssuer) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    header = {"alg": "none", "kid": issuer.keys[0].kid, "typ": "JWT"}
    claims = {"iss": issuer.url, "sub": "1", "exp": int(time.time()) + 60, "jti": "x"}
    return f"{part(header)}.{part(claims)}."


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda i: i.token(exp=int(time.time()) - 1), "token expired"),
        (lambda i: i.token(iss="http://evil.test"), "claim iss"),
        (lambda i: i.token(sub=None), "claim sub"),
        (lambda i: i.token(jti=None), "claim jti"),
        (lambda i: i.token(exp=None), "claim exp"),
        (lambda i: i.token(nonce="n", aud="c_client"), "ID token"),
        (lambda i: i.token(typ="dpop+jwt"), "not an access token"),
        (lambda i: i.token()[:-4] + "AAAA", "signature"),
        (lambda i: "not.a.jwt", "malformed"),
        (lambda i: "x" * 5000, "malformed"),
        (_forged_hs256, "algorithm"),
        (_alg_none, "algorithm"),
    ],
)
def test_bad_tokens_are_refused(
    issuer: FakeIssuer, verifier: Verifier, make: Any, reason: str
) -> None:
    """Expired, foreign, incomplete, ID, forged and malformed tokens raise InvalidToken."""
    with pytest.raises(InvalidToken, match=reason):
        verifier.verify(make(issuer))


def test_audience_is_checked_only_when_asked(issuer: FakeIssuer, verifier: Verifier) -> None:
    """Without ``audience`` any aud passes; with it, aud must contain it."""
    token = issuer.token(aud="https://orders.example")
    assert verifier.verify(token)["aud"] == "https://orders.example"
    assert verifier.verify(token, audience="https://orders.example")
    with pytest.raises(InvalidToken, match="claim aud"):
        verifier.verify(token, audience="https://billing.example")
    with pytest.raises(InvalidToken, match="claim aud"):
        verifier.verify(issuer.token(aud=None), audience="https://orders.example")


def test_scope_is_checked_only_when_asked(issuer: FakeIssuer, verifier: Verifier) -> None:
    """Every required scope must be granted; first-party tokens (no scope) pass without one."""
    oauth = issuer.token(typ="at+jwt", client_id="c_1", scope="orders:read profile")
    assert verifier.verify(oauth, scope="orders:read")["client_id"] == "c_1"
    assert verifier.verify(oauth, scope=["orders:read", "profile"])
    with pytest.raises(InsufficientScope) as caught:
        verifier.verify(oauth, scope="orders:read orders:write")
    assert caught.value.scope == "orders:read orders:write"
    first_party = issuer.token()
    assert verifier.verify(first_party)
    with pytest.raises(InsufficientScope):
        verifier.verify(first_party, scope="orders:read")


def test_metadata_naming_another_issuer_is_refused(issuer: FakeIssuer, clock: Clock) -> None:
    """A verifier configured with a URL the metadata does not name trusts no key (RFC 8414 3.3)."""
    verifier = Verifier(issuer.url.replace("127.0.0.1", "localhost"), clock=clock)
    with pytest.raises(IssuerUnavailable):
        verifier.verify(issuer.token())
    verifier.close()


def test_introspection_catches_revocation_within_its_cache_time(
    issuer: FakeIssuer, clock: Clock
) -> None:
    """With introspection, answers are cached a few seconds; then a revocation is seen."""
    verifier = with_introspection(issuer, clock, introspect_cache_seconds=3)
    token = issuer.token()
    for _ in range(5):
        verifier.verify(token)
    assert issuer.hits["/introspect"] == 1
    issuer.revoked.add(token)
    verifier.verify(token)  # still cached as active
    clock.advance(3)
    with pytest.raises(InvalidToken, match="revoked"):
        verifier.verify(token)
    assert issuer.hits["/introspect"] == 2
    with pytest.raises(InvalidToken, match="revoked"):
        verifier.verify(token)
    assert issuer.hits["/introspect"] == 2  # the negative answer is cached too
    verifier.close()


def test_introspection_failure_fails_closed(issuer: FakeIssuer, clock: Clock) -> None:
    """Wrong introspection credentials or an issuer that is down refuse the token (503)."""
    verifier = Verifier(
        issuer.url, introspect_client_id="rs", introspect_client_secret="wrong", clock=clock
    )
    with pytest.raises(IssuerUnavailable):
        verifier.verify(issuer.token())
    verifier.close()


def test_introspection_needs_both_id_and_secret(issuer: FakeIssuer) -> None:
    """Half an introspection configuration is a configuration error."""
    with pytest.raises(ValueError, match="INTROSPECT"):
        Verifier(issuer.url, introspect_client_id="rs")


def test_introspection_options_can_be_given_in_code(issuer: FakeIssuer) -> None:
    """The introspection client given as an option (RequireToken, AuthGateResource) is
    used, and wins over the configuration's."""
    config = {
        "AUTHGATE_ISSUER": issuer.url,
        "AUTHGATE_INTROSPECT_CLIENT_ID": "from-config",
        "AUTHGATE_INTROSPECT_CLIENT_SECRET": "config-secret",
    }
    verifier = Verifier.from_config(
        config, introspect_client_id="rs", introspect_client_secret="rs-secret"
    )
    assert verifier._introspect == ("rs", "rs-secret")
    assert Verifier.from_config(config)._introspect == ("from-config", "config-secret")
    RequireToken(
        Flask(__name__), issuer.url, introspect_client_id="rs", introspect_client_secret="s"
    )


def _orders_app(issuer: FakeIssuer, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(AUTHGATE_ISSUER=issuer.url, **config)

    @app.get("/me")
    @require_token
    def me() -> dict[str, Any]:
        return {"sub": current_token["sub"]}

    @app.get("/orders")
    @require_token(scope="orders:read")
    def orders() -> dict[str, Any]:
        return {"orders": [], "owner": current_token["sub"]}

    return app


def test_flask_decorator_answers_rfc6750(issuer: FakeIssuer) -> None:
    """require_token: 200 with the claims, 401 without or with a bad token, 403 for scope."""
    client = _orders_app(issuer).test_client()
    assert client.get("/me", headers={"Authorization": f"Bearer {issuer.token()}"}).json == {
        "sub": "42"
    }

    missing = client.get("/me")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert missing.json["error"] == "invalid_request"

    expired = client.get(
        "/me", headers={"Authorization": f"Bearer {issuer.token(exp=int(time.time()) - 5)}"}
    )
    assert expired.status_code == 401
    assert expired.headers["WWW-Authenticate"].startswith(
        'Bearer realm="api", error="invalid_token"'
    )
    assert expired.json == {"error": "invalid_token", "error_description": "token expired"}

    no_scope = client.get("/orders", headers={"Authorization": f"Bearer {issuer.token()}"})
    assert no_scope.status_code == 403
    assert 'error="insufficient_scope"' in no_scope.headers["WWW-Authenticate"]
    assert 'scope="orders:read"' in no_scope.headers["WWW-Authenticate"]
    assert no_scope.json["error"] == "insufficient_scope"

    granted = issuer.token(typ="at+jwt", client_id="c_1", scope="orders:read")
    ok = client.get("/orders", headers={"Authorization": f"Bearer {granted}"})
    assert ok.status_code == 200
    assert ok.json == {"orders": [], "owner": "42"}

    basic = client.get("/me", headers={"Authorization": "Basic bWlndWVsOnB5dGhvbg=="})
    assert basic.status_code == 401
    empty = client.get("/me", headers={"Authorization": "Bearer "})
    assert empty.status_code == 400
    assert empty.json["error"] == "invalid_request"


def test_flask_issuer_from_environment(issuer: FakeIssuer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without app.config, the AUTHGATE_ISSUER environment variable names the issuer."""
    monkeypatch.setenv("AUTHGATE_ISSUER", issuer.url)
    app = Flask(__name__)

    @app.get("/me")
    @require_token
    def me() -> dict[str, Any]:
        return dict(current_token)

    response = app.test_client().get("/me", headers={"Authorization": f"Bearer {issuer.token()}"})
    assert response.status_code == 200
    assert response.json["iss"] == issuer.url


def test_wsgi_middleware_protects_any_app(issuer: FakeIssuer) -> None:
    """RequireToken puts the claims in the environ, refuses bad tokens, skips exempt paths."""

    def plain_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        claims = environ.get("authgate.token")
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"sub": claims["sub"] if claims else None}).encode()]

    client = Client(RequireToken(plain_app, issuer.url, scope="orders:read", exempt=["/healthz"]))
    granted = issuer.token(typ="at+jwt", client_id="c_1", scope="orders:read")
    ok = client.get("/orders", headers={"Authorization": f"Bearer {granted}"})
    assert ok.status_code == 200
    assert ok.json == {"sub": "42"}
    refused = client.get("/orders", headers={"Authorization": f"Bearer {issuer.token()}"})
    assert refused.status_code == 403
    assert refused.json["error"] == "insufficient_scope"
    assert client.get("/orders").status_code == 401
    assert client.get("/healthz").json == {"sub": None}


def test_missing_issuer_is_a_startup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """AuthGateResource(app) refuses to start without AUTHGATE_ISSUER (config or environment)."""
    from authgate.resource import AuthGateResource

    monkeypatch.delenv("AUTHGATE_ISSUER", raising=False)
    with pytest.raises(RuntimeError, match="AUTHGATE_ISSUER"):
        AuthGateResource(Flask(__name__))
    with pytest.raises(ValueError, match="http"):
        AuthGateResource(leeway=0).init_app(_configured(AUTHGATE_ISSUER="ftp://authgate.example"))


def _configured(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    return app
