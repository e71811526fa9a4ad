"""Logging: one line per request (``authgate.request``), as text or JSON.

A request line names the URL rule, never the raw path or query string (a query string
can carry a token), and never a header value: what a request *is*, not what it sent.
``AUTHGATE_LOG_FORMAT=json`` turns every log line into one JSON object; records that
carry structured ``fields`` (requests, audit events) have them as keys of that object.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import logging.handlers
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flask import Flask, Request, Response, g, request
from sqlalchemy import inspect as sa_inspect

if TYPE_CHECKING:
    from flask.ctx import _AppCtxGlobals

    from authgate.config import Settings

log = logging.getLogger("authgate.request")

#: Attribute of a LogRecord holding its structured fields (``extra={"fields": {...}}``).
FIELDS = "fields"
#: Stateless, so shared: ``json.dumps(..., default=str)`` would build one per line.
_ENCODER = json.JSONEncoder(ensure_ascii=True, default=str)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process id, then the record's
    fields (or its message when it has none)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one line of JSON (newlines in values stay escaped)."""
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,  # which worker process
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            entry.update(fields)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry)


def configure(settings: Settings) -> None:
    """Send every log record to stderr in ``AUTHGATE_LOG_FORMAT`` (the serving process)."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())


@contextlib.contextmanager
def held_until_configured() -> Iterator[None]:
    """Hold the records logged in this block (while the settings that say how to log are
    read) and write them once :func:`configure` ran in it, in its format; if the block
    fails first, they go to the handlers there were before."""
    root = logging.getLogger()
    before = list(root.handlers)
    held = logging.handlers.MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1)
    for handler in before:
        root.removeHandler(handler)
    root.addHandler(held)
    try:
        yield
    finally:
        root.removeHandler(held)
        configured = [handler for handler in root.handlers if handler not in before]
        if not configured:  # the block ended before configure(): put things back
            for handler in before:
                root.addHandler(handler)
        for record in held.buffer:
            if logging.getLogger(record.name).isEnabledFor(record.levelno):
                for handler in configured or before:
                    handler.handle(record)
        held.close()


def _loaded_id(identity: Any) -> Any:
    """``identity.id`` without a database query: a User row expired by a rollback (the
    database went away mid-request) keeps its primary key in its identity key."""
    state = sa_inspect(identity, raiseerr=False)
    if state is None:  # not a mapped object (a TokenIdentity, or nothing)
        return getattr(identity, "id", None)
    return state.identity[0] if state.identity else None


def _user_id(context: _AppCtxGlobals) -> int | None:
    # Flask-HTTPAuth keeps the authenticated User or TokenIdentity here; OAuth bearer
    # requests leave their verified claims in g.token_claims (authgate.oauth.protection).
    identity = context.get("flask_httpauth_user")
    if identity is not None:
        user_id = _loaded_id(identity)
        if isinstance(user_id, int):
            return user_id
    claims = context.get("token_claims")
    subject = str(claims.get("sub", "")) if isinstance(claims, dict) else ""
    return int(subject) if subject.isdigit() else None


def request_fields(response: Response, seconds: float) -> dict[str, Any]:
    """What the request line says about this request: no path, query or header values."""
    # One context lookup each for the request and g: every access through the proxies
    # costs one, and this runs on every request (bench/README.md, item 9).
    current: Request = request._get_current_object()  # type: ignore[attr-defined]
    context: _AppCtxGlobals = g._get_current_object()  # type: ignore[attr-defined]
    method, rule = current.method, current.url_rule
    return {
        "event": "request",
        "method": method if len(method) <= 10 else "OTHER",
        "route": rule.rule if rule is not None else None,
        "status": response.status_code,
        "duration_ms": round(seconds * 1000, 3),
        "request_id": context.get("request_id"),
        "user_id": _user_id(context),
        "ip": current.remote_addr,
    }


def request_seconds() -> float:
    """Seconds since this request began: one clock, started by :func:`install`'s hook, for
    the request line and the latency metrics."""
    started = g.get("request_started")
    return time.perf_counter() - started if started is not None else 0.0


def install(app: Flask) -> None:
    """Log exactly one ``authgate.request`` line per request of ``app`` (and start the
    request clock of :func:`request_seconds`: install this before the metrics)."""

    def start() -> None:
        g.request_started = time.perf_counter()

    def finish(response: Response) -> Response:
        if not log.isEnabledFor(logging.INFO):
            return response
        fields = request_fields(response, request_seconds())
        log.info(
            "%s %s %s %.1fms request_id=%s user_id=%s ip=%s",
            fields["method"],
            fields["route"],
            fields["status"],
            fields["duration_ms"],
            fields["request_id"],
            fields["user_id"],
            fields["ip"],
            extra={FIELDS: fields},
        )
        return response

    app.before_request(start)
    app.after_request(finish)
