"""Operational endpoints: ``/healthz`` (the process answers), ``/readyz`` (its
dependencies answer too)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from authgate.app_state import settings
from authgate.errors import problem
from authgate.extensions import db
from authgate.openapi import PROBLEM, operation

bp = Blueprint("health", __name__)

#: Seconds a load balancer should wait before asking /readyz again after a 503.
READY_RETRY_AFTER = 5


@bp.get("/healthz")
@operation("Liveness", responses={200: "Status"}, tags=["operations"])
def healthz() -> Response:
    """Liveness: the process serves requests. No database or Redis work (the benchmark floor)."""
    response = jsonify(status="ok")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/readyz")
@operation("Readiness", responses={200: "Status", 503: PROBLEM}, tags=["operations"])
def readyz() -> Response:
    """Readiness: the database (and Redis, when configured) answer within the check timeout.

    ``200`` with each check's status, else a ``503`` problem with ``Retry-After``. Every
    check is bounded by ``AUTHGATE_READYZ_TIMEOUT_MS`` whatever the driver's own timeouts,
    and says only ``ok``, ``error`` or ``timeout``: an error's text could name a host or a
    password from a URL.
    """
    timeout = settings().readyz_timeout_ms / 1000
    checks = {"database": bounded(_database_check(), timeout)}
    if settings().redis_url:
        checks["redis"] = bounded(_redis_check(settings().redis_url, timeout), timeout)
    body = {name: {"status": status} for name, status in checks.items()}
    failed = [name for name, status in checks.items() if status != "ok"]
    if failed:
        return problem(
            503,
            "Service Unavailable",
            f"not ready: {', '.join(failed)}",
            headers={"Retry-After": str(READY_RETRY_AFTER), "Cache-Control": "no-store"},
            checks=body,
        )
    response = jsonify(status="ok", checks=body)
    response.headers["Cache-Control"] = "no-store"
    return response


def bounded(check: Callable[[], None], timeout: float) -> str:
    """Run ``check`` on a daemon thread: ``ok``, ``error`` if it raised, ``timeout`` if it
    did not finish within ``timeout`` seconds (the thread is left to its driver's timeout)."""
    outcome: list[str] = []

    def run() -> None:
        try:
            check()
        except Exception:  # noqa: BLE001 (any failure means "not ready")
            outcome.append("error")
        else:
            outcome.append("ok")

    thread = threading.Thread(target=run, name="authgate-readyz", daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else "timeout"


def _database_check() -> Callable[[], None]:
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def check() -> None:
        with app.app_context(), db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    return check


def _redis_check(url: str, timeout: float) -> Callable[[], None]:
    def check() -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        try:
            client.ping()
        finally:
            client.close()

    return check
