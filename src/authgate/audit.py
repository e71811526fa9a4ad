"""The audit trail: one function records every security event (ASVS 16.2-16.4)."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import g, has_request_context, request

from authgate import clock
from authgate.extensions import db
from authgate.models import AuditEvent

log = logging.getLogger("authgate.audit")

MAX_TEXT = 512


def _clip(value: str | None) -> str | None:
    return value[:MAX_TEXT] if value else value


def record(
    event: str,
    *,
    user_id: int | None = None,
    client_id: str | None = None,
    **detail: Any,
) -> AuditEvent:
    """Store one audit event as a database row and emit it as one JSON log line.

    ``detail`` must never hold a password, a token or a secret; tokens are named
    by their ``jti`` only. User-supplied text stays a JSON string value, so a
    newline in it cannot forge a second log line. Commits the session.
    """
    ip = user_agent = request_id = None
    if has_request_context():
        ip = request.remote_addr
        user_agent = _clip(request.user_agent.string)
        request_id = g.get("request_id")
    row = AuditEvent(
        at=clock.now(),
        event=event,
        user_id=user_id,
        client_id=client_id,
        ip=ip,
        user_agent=user_agent,
        request_id=request_id,
        detail=detail,
    )
    db.session.add(row)
    db.session.commit()
    log.info(json.dumps({"audit": row.to_dict()}, ensure_ascii=True, sort_keys=True))
    return row
