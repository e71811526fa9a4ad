"""The audit trail: one function records every security event (ASVS 16.2-16.4)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from flask import g, has_request_context, request
from sqlalchemy import insert, select

from authgate import clock, metrics
from authgate.extensions import db
from authgate.models import AuditEvent

log = logging.getLogger("authgate.audit")

MAX_TEXT = 512

# Built once: a statement with its values bound at execution is compiled once and cached,
# where ``insert(table).values(...)`` per call costs ~100 us to build.
_INSERT = insert(AuditEvent.__table__)

#: The event names in use, with when each is recorded (ASVS 16.3). Features add theirs
#: here, so ``authgate audit --event`` and readers of the log share one vocabulary.
EVENTS = {
    "login.succeeded": "a password check succeeded (any door: Basic, /api/token, pages)",
    "login.failed": "a password check failed; detail.reason: unknown_user | wrong_password "
    "| disabled",
    "login.throttled": "a credential check was refused by the throttle (429), before hashing",
    "registration.throttled": "a registration was refused by the per-address limit (429)",
    "registration.failed": "a registration was refused (409); detail.reason: username_taken",
    "password.rehashed": "a stored hash was upgraded to current argon2id parameters",
    "password.changed": "an account's password was changed; other sessions revoked",
    "user.created": "an account was registered",
    "user.deleted": "an account was deleted",
    "user.disabled": "an operator disabled an account (every token refused)",
    "user.enabled": "an operator re-enabled an account",
    "users.imported": "users were imported from a REST-auth database",
    "token.issued": "an access (and refresh) token was issued; detail.jti",
    "refresh.rotated": "a refresh token was exchanged for new tokens",
    "refresh.failed": "a refresh token was refused (unknown, expired, spent, revoked)",
    "refresh.reuse_detected": "a spent refresh token was presented again; its family revoked",
    "token.rejected": "an access token was refused (401): detail.reason malformed | invalid | "
    "expired | revoked | wrong_kind, and detail.jti, user and client when its signature was "
    "good",
    "token.revoked": "a token was revoked; detail.jti or the family",
    "tokens.revoked_all": "logout everywhere: every token of a user revoked",
    "session.ended": "one login (token family) was ended by its user",
    "logout": "a person logged out of the login and consent pages",
    "oauth.client.created": "an OAuth client was registered",
    "oauth.client.deleted": "an OAuth client was deleted; detail.revoked_grants",
    "oauth.client.secret_rotated": "an OAuth client's secret was replaced",
    "oauth.client.auth_failed": "an OAuth client failed to authenticate (a wrong secret, or "
    "a client_id alone naming no public client); detail.method (and reason: "
    "malformed_client_id for an id no client can have, not recorded, or "
    "malformed_basic_credentials)",
    "oauth.code.issued": "an authorization code was issued after consent",
    "oauth.code.replayed": "a spent authorization code was presented again; its tokens revoked",
    "oauth.consent.granted": "a person granted a client a set of scopes",
    "oauth.consent.withdrawn": "a person withdrew a remembered consent",
    "oauth.authorization.granted": "a person approved a client on the consent page",
    "oauth.authorization.denied": "a person denied a client on the consent page",
    "metrics.refused": "a /metrics request (API port or metrics listener) sent no or a "
    "wrong metrics token (throttled per address like a password)",
    "key.rotated": "a new signing key was created (and will become active)",
    "throttle.reset": "an operator cleared an account's failure streak",
}


def _clip(value: str | None) -> str | None:
    return value[:MAX_TEXT] if value else value


def record(
    event: str,
    *,
    user_id: int | None = None,
    client_id: str | None = None,
    **detail: Any,
) -> None:
    """Store one audit event as a database row and emit it as one JSON log line (when the
    ``authgate.audit`` logger lets INFO through).

    ``detail`` must never hold a password, a token or a secret; tokens are named
    by their ``jti`` only. User-supplied text stays a JSON string value, so a
    newline in it cannot forge a second log line. Commits the session (with whatever
    the caller left pending, so a change and its audit event are stored together).
    """
    ip = user_agent = request_id = None
    if has_request_context():
        ip = request.remote_addr
        user_agent = _clip(request.user_agent.string)
        request_id = g.get("request_id")
    values = {
        "at": clock.now(),
        "event": event,
        "user_id": user_id,
        "client_id": client_id,
        "ip": ip,
        "user_agent": user_agent,
        "request_id": request_id,
        "detail": detail,
    }
    # A prepared Core INSERT: the row is written once and never read back, and the ORM's
    # unit of work costs several times more (on SQLite, under the writer lock).
    row_id = db.session.execute(_INSERT, values).inserted_primary_key[0]
    # The line is built only when it will be written: after a login's argon2 hash this
    # runs with cold CPU caches (bench/README.md, items 8 and 11).
    entry: dict[str, Any] | None = None
    if log.isEnabledFor(logging.INFO):
        entry = {"audit": AuditEvent(id=row_id, **values).to_dict()}
        line = json.dumps(entry, ensure_ascii=True, sort_keys=True)
    db.session.commit()
    if entry is not None:
        log.info(line, extra={"fields": entry})
    metrics.current().count_event(event)


def query(
    *,
    user_id: int | None = None,
    event: str | None = None,
    since: dt.datetime | None = None,
    limit: int | None = None,
) -> list[AuditEvent]:
    """Audit events, newest first, filtered by user, event name and start time."""
    statement = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    if user_id is not None:
        statement = statement.where(AuditEvent.user_id == user_id)
    if event is not None:
        statement = statement.where(AuditEvent.event == event)
    if since is not None:
        statement = statement.where(AuditEvent.at >= since)
    if limit is not None:
        statement = statement.limit(limit)
    return list(db.session.scalars(statement))
