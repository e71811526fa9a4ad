"""Remembered consents: a person's "Allow" for one client and one set of scopes.

A remembered consent lets the next authorization request with the same (or a smaller)
scope set skip the consent page. Withdrawing it also revokes every token issued under it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from authgate import audit, clients, clock
from authgate.errors import NotFound
from authgate.extensions import db
from authgate.models import Consent
from authgate.oauth import issuance


def normalized(scope: str) -> str:
    """The canonical form of a scope set: sorted, deduplicated, space-separated."""
    return " ".join(sorted(set(scope.split())))


def find_covering(user_id: int, client_id: str, scope: str) -> Consent | None:
    """A remembered consent of this user for this client that covers ``scope``."""
    rows = db.session.scalars(
        select(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id)
    )
    return next((row for row in rows if row.covers(scope)), None)


def remember(user_id: int, client_id: str, scope: str) -> Consent:
    """Remember that the user allowed ``client_id`` the scopes in ``scope``."""
    key = normalized(scope)
    existing = db.session.scalar(
        select(Consent).where(
            Consent.user_id == user_id, Consent.client_id == client_id, Consent.scope == key
        )
    )
    if existing is not None:
        return existing
    row = Consent(user_id=user_id, client_id=client_id, scope=key, granted_at=clock.now())
    db.session.add(row)
    try:
        db.session.commit()
    except IntegrityError:  # the same consent given twice at once: keep the first
        db.session.rollback()
        return remember(user_id, client_id, scope)
    audit.record("oauth.consent.granted", user_id=user_id, client_id=client_id, scope=key)
    return row


def list_for(user_id: int) -> list[dict[str, Any]]:
    """The user's remembered consents, for ``GET /api/users/me/consents``."""
    rows = db.session.scalars(
        select(Consent).where(Consent.user_id == user_id).order_by(Consent.id)
    )
    result = []
    for row in rows:
        client = clients.find(row.client_id)
        result.append(
            {
                "id": row.id,
                "client_id": row.client_id,
                "client_name": client.name if client else None,
                "scope": row.scope,
                "granted_at": row.granted_at.isoformat(),
            }
        )
    return result


def withdraw(user_id: int, consent_id: int | None = None) -> int:
    """Forget one consent (or all of the user's) and revoke the tokens issued under it.

    Returns how many consents were withdrawn; raises NotFound for an unknown ``consent_id``.
    """
    query = select(Consent).where(Consent.user_id == user_id)
    if consent_id is not None:
        query = query.where(Consent.id == consent_id)
    rows = list(db.session.scalars(query))
    if consent_id is not None and not rows:
        raise NotFound(f"no consent {consent_id}")
    for row in rows:
        revoked = issuance.revoke_consent(row)
        db.session.delete(row)
        db.session.commit()
        audit.record(
            "oauth.consent.withdrawn",
            user_id=user_id,
            client_id=row.client_id,
            scope=row.scope,
            revoked_grants=revoked,
        )
    return len(rows)
