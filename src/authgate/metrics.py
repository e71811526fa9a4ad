"""Prometheus metrics: what AuthGate counts, and ``/metrics`` behind its access rules.

Each app holds its own :class:`Metrics` (its own ``CollectorRegistry``), created in
``create_app``. Auth events are counted from :func:`authgate.audit.record`, the one
door every security event passes, through :data:`EVENT_COUNTERS`.

Several worker processes (``authgate serve``) share one private directory of
prometheus-client's multiprocess mode, prepared by :func:`prepare_multiprocess`
before the app and its metrics exist; ``/metrics`` then sums every worker's files.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Response, abort, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from authgate import logs
from authgate.errors import InvalidCredentials, problem
from authgate.openapi import PROBLEM, operation

if TYPE_CHECKING:
    from authgate.config import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Methods kept as a label value; anything else is counted as ``OTHER`` (bounded labels).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The ``route`` label of requests that matched no URL rule (404, probes, scanners).
UNMATCHED = "<unmatched>"
#: Latency buckets (seconds): token checks take about a millisecond, password checks
#: tens to hundreds of milliseconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
HASH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)

#: Audit event name -> (counter attribute, label values). Events not listed are still
#: counted by ``authgate_audit_events_total{event}``.
EVENT_COUNTERS: dict[str, tuple[str, dict[str, str]]] = {
    "login.succeeded": ("logins", {"result": "ok"}),
    "login.failed": ("logins", {"result": "failed"}),
    "token.issued": ("tokens_issued", {}),
    "refresh.rotated": ("tokens_refreshed", {}),
    "token.revoked": ("tokens_revoked", {"scope": "token"}),
    "session.ended": ("tokens_revoked", {"scope": "session"}),
    "tokens.revoked_all": ("tokens_revoked", {"scope": "all_sessions"}),
    "refresh.reuse_detected": ("refresh_reuse", {}),
    "login.throttled": ("throttled", {"kind": "login"}),
    "registration.throttled": ("throttled", {"kind": "registration"}),
}

METRICS_CHALLENGE = 'Bearer realm="metrics"'

bp = Blueprint("metrics", __name__)


class Metrics:
    """The counters and histograms of one app, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "authgate_http_requests",
            "HTTP requests by method, route (URL rule) and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "authgate_http_request_duration_seconds",
            "HTTP request latency by method and route (URL rule)",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.logins = Counter(
            "authgate_logins", "password checks by result (ok, failed)", ["result"], registry=r
        )
        self.tokens_issued = Counter(
            "authgate_tokens_issued", "logins that issued tokens (a new family)", registry=r
        )
        self.tokens_refreshed = Counter(
            "authgate_tokens_refreshed", "refresh tokens exchanged for new tokens", registry=r
        )
        self.tokens_revoked = Counter(
            "authgate_tokens_revoked",
            "revocations by scope (token, session, all_sessions)",
            ["scope"],
            registry=r,
        )
        self.refresh_reuse = Counter(
            "authgate_refresh_reuse_detected",
            "spent refresh tokens presented again (their family revoked)",
            registry=r,
        )
        self.throttled = Counter(
            "authgate_throttled_requests",
            "requests refused by the throttle, by kind (login, registration)",
            ["kind"],
            registry=r,
        )
        self.audit_events = Counter(
            "authgate_audit_events", "every audit event, by name", ["event"], registry=r
        )
        self.hash_seconds = Histogram(
            "authgate_password_hash_seconds",
            "time spent in argon2 (and legacy) password hashing, by operation (hash, verify)",
            ["operation"],
            buckets=HASH_BUCKETS,
            registry=r,
        )
        # The request counter and latency histogram of each (method, route, status):
        # ``labels()`` checks its arguments under a lock on every call, and this runs on
        # every request. Routes are URL rules (or UNMATCHED), so the keys are bounded.
        self._request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def count_event(self, event: str) -> None:
        """Count one audit event, and its dedicated counter if it has one."""
        self.audit_events.labels(event=event).inc()
        mapped = EVENT_COUNTERS.get(event)
        if mapped is not None:
            name, labels = mapped
            counter = getattr(self, name)
            (counter.labels(**labels) if labels else counter).inc()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request and its latency."""
        method = method if method in METHODS else "OTHER"
        series = self._request_series.get((method, route, status))
        if series is None:
            series = (
                self.requests.labels(method=method, route=route, status=str(status)),
                self.latency.labels(method=method, route=route),
            )
            self._request_series[(method, route, status)] = series
        count, latency = series
        count.inc()
        latency.observe(seconds)

    def exposition(self) -> bytes:
        """The text format of every metric: summed over workers in multiprocess mode."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def current() -> Metrics:
    """The current app's metrics."""
    return current_app.extensions["authgate"].metrics


@contextlib.contextmanager
def timed_hash(operation: str) -> Iterator[None]:
    """Time a password hash or verification into ``authgate_password_hash_seconds``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        current().hash_seconds.labels(operation=operation).observe(time.perf_counter() - started)


# --- multiprocess mode -----------------------------------------------------------------


def prepare_multiprocess() -> str:
    """Create a private metrics directory (mode 0700) and switch prometheus-client to it.

    Call it in the serving parent before the app (and so any metric) is created and
    before any worker starts, whatever the server. A directory inherited through the
    environment is not reused: stale files from another run would add to the totals.
    Returns the directory; :func:`cleanup_multiprocess` removes it.
    """
    directory = tempfile.mkdtemp(prefix="authgate-metrics-")  # mkdtemp: mode 0700
    os.environ[MULTIPROC_ENV] = directory
    # prometheus-client picks its value class when imported; metrics created from now on
    # must write to the shared files, so pick again now that the directory is set.
    values.ValueClass = values.get_value_class()
    return directory


def cleanup_multiprocess(directory: str) -> None:
    """Remove the metrics directory (the serving parent, at shutdown)."""
    shutil.rmtree(directory, ignore_errors=True)


def mark_worker_dead(pid: int) -> None:
    """Forget a dead worker's live gauges (its counters stay: totals must not go down)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)


# --- /metrics and who may read it ---------------------------------------------------------

#: Headers a reverse proxy adds; a request carrying one came through a proxy.
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def network_allowed(
    settings: Settings,
    remote_addr: str | None,
    header: Callable[[str], str | None],
    via_trusted_proxy: bool,
) -> bool:
    """True when the client address is in ``AUTHGATE_METRICS_ALLOW``.

    A request that came through a proxy AuthGate does not trust is refused: behind an
    untrusted local proxy every Internet client would otherwise look like loopback.
    """
    proxied = any(header(name) is not None for name in FORWARDING_HEADERS)
    if proxied and not via_trusted_proxy:
        return False
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    return any(address in network for network in settings.metrics_allow_networks)


def _token_accepted(settings: Settings, authorization: str | None) -> bool:
    """True when no metrics token is configured or ``authorization`` is ``Bearer <token>``
    with the configured token (constant-time comparison)."""
    if not settings.metrics_token:
        return True
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), settings.metrics_token.encode())


def check_token(authorization: str | None) -> bool:
    """:func:`_token_accepted` as the credential check it is (inside a request of an AuthGate
    app): throttled before the comparison, like every password and client secret, per
    client address (:mod:`authgate.throttle`; raises Throttled), and a refused token is
    recorded as ``metrics.refused``. A scraper's own address is never locked out by
    someone else's guesses."""
    # Imported here: audit imports this module, and throttle imports audit.
    from authgate import audit, throttle
    from authgate.app_state import settings as current_settings

    settings = current_settings()
    if not settings.metrics_token:
        return True
    try:
        with throttle.guard("metrics:" + throttle.client_address()):
            if not _token_accepted(settings, authorization):
                raise InvalidCredentials("wrong metrics token")
    except InvalidCredentials:
        audit.record("metrics.refused")
        return False
    return True


@bp.get("/metrics")
@operation(
    "Prometheus metrics",
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        },
        401: PROBLEM,
        404: PROBLEM,
        429: PROBLEM,
    },
    tags=["operations"],
    description="Readable from AUTHGATE_METRICS_ALLOW networks only (404 elsewhere); with "
    "AUTHGATE_METRICS_TOKEN set, also needs `Authorization: Bearer <metrics token>` "
    "(wrong tokens are throttled per client address: 429).",
)
def metrics_view() -> Response:
    """Prometheus text format, for allowed networks (and the token holder, if configured)."""
    from authgate.app_state import settings as current_settings

    settings = current_settings()
    via_proxy = "werkzeug.proxy_fix.orig" in request.environ
    allowed = network_allowed(settings, request.remote_addr, request.headers.get, via_proxy)
    if settings.metrics_listen or not allowed:
        # Served elsewhere (a separate listener) or not to this network: nothing here.
        abort(404)
    if not check_token(request.headers.get("Authorization")):
        return problem(
            401,
            "Unauthorized",
            "metrics require a bearer token",
            headers={"WWW-Authenticate": METRICS_CHALLENGE},
        )
    response = Response(current().exposition(), content_type=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def install(app: Flask) -> None:
    """Count every request of ``app`` by URL rule and status, with its latency (timed by
    the request clock of :func:`authgate.logs.install`, installed first)."""

    def finish(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        current().observe_request(
            request.method, route, response.status_code, logs.request_seconds()
        )
        return response

    app.after_request(finish)
    app.register_blueprint(bp)
