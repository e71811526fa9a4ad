"""Sessions: token families (one login each) and their rotating refresh tokens.

A login starts a :class:`~authgate.models.TokenFamily` and gets a refresh token: 256
random bits, stored only as its SHA-256 digest, with an idle lifetime that each rotation
restarts, inside the family's absolute lifetime. Every access token bought with it
carries the family id as ``sid``, so revoking the family kills them all.

Rotation (RFC 9700 4.14.2, OAuth 2.0 Security BCP): each refresh spends the presented
token and returns a new one. Presenting a spent token again is *reuse*: the family is
revoked and ``refresh.reuse_detected`` audited, except within a short grace window
after the spend, where a concurrent second refresh of the same token gets the same new
refresh token. That works while storing digests only because a child token is derived
from its parent, ``HMAC(key, parent)``: whoever presents the parent within the window
can be handed the child again. The spend is a conditional ``UPDATE ... WHERE spent_at IS
NULL``, so exactly one of several concurrent requests (threads, workers, servers) wins.

The OAuth server reuses this module: :func:`start` with ``client_id`` and ``scope``,
:func:`rotate` with the authenticated ``client_id``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, delete, exists, insert, or_, select, update

from authgate import audit, clock, revocation, tokens
from authgate.config import derive_key
from authgate.errors import InvalidCredentials, InvalidRefreshToken, InvalidToken, NotFound
from authgate.extensions import db
from authgate.models import RefreshToken, TokenFamily, User, is_vschar

#: 256 random bits.
REFRESH_TOKEN_BYTES = 32
FAMILY_ID_BYTES = 16
#: Families dead (expired or revoked) for this long are deleted, with their refresh tokens.
PURGE_AFTER = dt.timedelta(days=1)
#: Anything outside these lengths is not one of our refresh tokens (43 characters).
MIN_TOKEN_LENGTH, MAX_TOKEN_LENGTH = 40, 64


@dataclass(frozen=True)
class TokenPair:
    """An access token plus the refresh token that renews it, in one family."""

    access: tokens.IssuedToken
    refresh_token: str
    family_id: str
    refresh_expires_in: int

    def to_dict(self) -> dict[str, Any]:
        """The token response body: the access token fields plus ``refresh_token``."""
        return {
            **self.access.to_dict(),
            "refresh_token": self.refresh_token,
            "refresh_expires_in": self.refresh_expires_in,
        }


def _settings() -> Any:
    return current_app.extensions["authgate"].settings


def digest(token: str) -> str:
    """The stored form of a refresh token: SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def _derivation_key() -> bytes:
    return derive_key(_settings().secret_key, "authgate refresh tokens")


def _child_token(parent: str) -> str:
    """The refresh token that replaces ``parent``: HMAC-SHA256 under a key derived from
    the secret key, so it is as unguessable as a random one to anyone without the key."""
    mac = hmac.new(_derivation_key(), parent.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _idle_expiry(family: TokenFamily, now: dt.datetime) -> dt.datetime:
    idle = now + dt.timedelta(seconds=_settings().refresh_token_idle_ttl)
    return min(idle, family.expires_at)


def _pair(user: User, family: TokenFamily, refresh_token: str, now: dt.datetime) -> TokenPair:
    extra = {"client_id": family.client_id, "scope": family.scope} if family.client_id else None
    access = tokens.issue_access_token(user, sid=family.id, extra_claims=extra)
    remaining = (_idle_expiry(family, now) - now).total_seconds()
    return TokenPair(access, refresh_token, family.id, max(0, int(remaining)))


def start(
    user: User,
    *,
    client_id: str | None = None,
    scope: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> TokenPair:
    """Start a login for ``user``: a new family, its first refresh token, an access token.

    Raises InvalidCredentials for a disabled user. Audits ``token.issued``.
    """
    if user.is_disabled:
        raise InvalidCredentials("Unauthorized Access")
    now = clock.now()
    family = TokenFamily(
        id=secrets.token_urlsafe(FAMILY_ID_BYTES),
        user_id=user.id,
        client_id=client_id,
        scope=scope,
        created_at=now,
        last_used_at=now,
        ip=ip,
        user_agent=user_agent[:512] if user_agent else None,
        expires_at=now + dt.timedelta(seconds=_settings().refresh_token_absolute_ttl),
    )
    token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    _purge(now)
    db.session.add(family)
    db.session.add(
        RefreshToken(
            digest=digest(token),
            family_id=family.id,
            created_at=now,
            expires_at=_idle_expiry(family, now),
        )
    )
    pair = _pair(user, family, token, now)
    # One transaction: the login and its audit event are stored together (one commit).
    audit.record(
        "token.issued",
        user_id=user.id,
        client_id=client_id,
        family_id=family.id,
        jti=pair.access.jti,
    )
    return pair


def _purge(now: dt.datetime) -> None:
    """Delete families dead for a day (ON DELETE CASCADE takes their refresh tokens).

    Their access tokens expired long ago; a refresh token of a purged family is simply
    unknown, which answers the same 401 as a revoked one.
    """
    cutoff = now - PURGE_AFTER
    db.session.execute(
        delete(TokenFamily).where(
            or_(TokenFamily.expires_at < cutoff, TokenFamily.revoked_at < cutoff)
        )
    )


def _refuse(reason: str, row: RefreshToken | None = None) -> InvalidRefreshToken:
    family = row.family if row is not None else None
    audit.record(
        "refresh.failed",
        user_id=family.user_id if family else None,
        client_id=family.client_id if family else None,
        family_id=family.id if family else None,
        reason=reason,
    )
    return InvalidRefreshToken("invalid refresh token")


# The statements of a rotation, built once (building one per call costs ~100 us, and the
# writes run under SQLite's one writer lock); values are bound at execution. Core
# statements on the tables: the ORM's unit of work costs several times more.
_FIND = select(RefreshToken).where(RefreshToken.digest == bindparam("digest"))
_TOKENS = RefreshToken.__table__
_SPEND = update(_TOKENS).where(_TOKENS.c.id == bindparam("row"), _TOKENS.c.spent_at.is_(None))
_INSERT_TOKEN = insert(_TOKENS)
_FAMILIES = TokenFamily.__table__
_TOUCH_FAMILY = update(_FAMILIES).where(_FAMILIES.c.id == bindparam("family"))


def _find(token: object) -> RefreshToken | None:
    if not isinstance(token, str) or not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
        return None
    return db.session.scalar(_FIND, {"digest": digest(token)})


def rotate(
    token: str,
    *,
    client_id: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> TokenPair:
    """Spend ``token`` and return a new access token and refresh token of the same family.

    ``client_id`` must be the client the family was issued to (None: first party).
    Raises InvalidRefreshToken if the token is unknown, expired, of a revoked family or
    another client, or of a disabled user; and on reuse (spent more than
    ``AUTHGATE_REFRESH_GRACE_SECONDS`` ago), after revoking the whole family.
    """
    row = _find(token)
    if row is None:
        raise _refuse("unknown")
    family = row.family
    now = clock.now()
    if family.client_id != client_id:
        raise _refuse("wrong_client", row)
    if family.revoked_at is not None:
        raise _refuse("family_revoked", row)
    if now >= family.expires_at or now >= row.expires_at:
        raise _refuse("expired", row)
    user = family.user
    if user.is_disabled:
        raise _refuse("user_disabled", row)
    child = _child_token(token)
    child_expires_at = _idle_expiry(family, now)
    # Signed before the first write: on SQLite the database's one writer lock is held
    # from the first write to the commit, and every other worker's write waits for it.
    pair = _pair(user, family, child, now)
    if row.spent_at is None and _spend(row, now):
        _store_child(row, family, digest(child), child_expires_at, now, ip, user_agent)
        # Committed with its audit event, in one transaction (see _rotated).
        return _rotated(pair, user.id, family.id, family.client_id, concurrent=False)
    db.session.refresh(row)
    db.session.refresh(family)
    spent = row.spent_at
    if spent is not None and _within_grace(spent, now, child) and family.revoked_at is None:
        user_id, family_id, client_id = user.id, family.id, family.client_id
        db.session.rollback()
        return _rotated(pair, user_id, family_id, client_id, concurrent=True)
    revoke_family(family, reason="reuse")
    audit.record(
        "refresh.reuse_detected",
        user_id=family.user_id,
        client_id=family.client_id,
        family_id=family.id,
        spent_at=spent.isoformat() if spent else None,
    )
    raise InvalidRefreshToken("invalid refresh token")


def _within_grace(spent: dt.datetime, now: dt.datetime, child: str) -> bool:
    """A repeat of a just-spent token is a concurrent duplicate (or a retry whose answer
    was lost) only within the grace window and while its successor is still unused;
    once the client moved on, a repeat can only be a copy."""
    if now - spent > dt.timedelta(seconds=_settings().refresh_grace_seconds):
        return False
    successor = db.session.scalar(select(RefreshToken).where(RefreshToken.digest == digest(child)))
    return successor is not None and successor.spent_at is None


def _spend(row: RefreshToken, now: dt.datetime) -> bool:
    """Mark ``row`` spent unless another request already did; True if this one won."""
    result = db.session.execute(_SPEND, {"row": row.id, "spent_at": now})
    db.session.expire(row, ["spent_at"])  # a Core statement: the loaded row did not see it
    return result.rowcount == 1  # type: ignore[attr-defined]


def _store_child(
    parent: RefreshToken,
    family: TokenFamily,
    child_digest: str,
    expires_at: dt.datetime,
    now: dt.datetime,
    ip: str | None,
    user_agent: str | None,
) -> None:
    """Insert the spent token's successor and note the family's use, as prepared Core
    statements like :func:`_spend` (they run under SQLite's writer lock); the loaded
    ``family``'s touched columns are expired, so a later read sees the update."""
    db.session.execute(
        _INSERT_TOKEN,
        {
            "digest": child_digest,
            "family_id": family.id,
            "parent_id": parent.id,
            "created_at": now,
            "expires_at": expires_at,
        },
    )
    used: dict[str, Any] = {"family": family.id, "last_used_at": now}
    if ip:
        used["ip"] = ip
    if user_agent:
        used["user_agent"] = user_agent[:512]
    db.session.execute(_TOUCH_FAMILY, used)
    db.session.expire(family, ["last_used_at", "ip", "user_agent"])


def _rotated(
    pair: TokenPair, user_id: int, family_id: str, client_id: str | None, concurrent: bool
) -> TokenPair:
    # Commits the session: the rotation (if any is pending) and its audit event together.
    audit.record(
        "refresh.rotated",
        user_id=user_id,
        client_id=client_id,
        family_id=family_id,
        jti=pair.access.jti,
        concurrent=concurrent,
    )
    return pair


def revoke_family(family: TokenFamily, reason: str) -> None:
    """End one login: its refresh tokens stop working and its access tokens are refused."""
    if family.revoked_at is None:
        family.revoked_at = clock.now()
        family.revoked_reason = reason
        db.session.commit()
    revocation.revoke_families([family.id])


def revoke_refresh_token(token: str) -> TokenFamily | None:
    """Revoke the family of a refresh token (RFC 7009); the family, or None if unknown."""
    row = _find(token)
    if row is None:
        return None
    family = row.family
    revoke_family(family, reason="revoked")
    return family


def revoke_all(user: User, reason: str, keep: str | None = None) -> list[str]:
    """Revoke every family of ``user`` except ``keep``; return the revoked family ids.

    Without ``keep`` also refuses every access token issued before this second
    (``tokens_valid_after``), so nothing the user held survives (logout everywhere).
    """
    now = clock.now()
    query = select(TokenFamily).where(
        TokenFamily.user_id == user.id, TokenFamily.revoked_at.is_(None)
    )
    if keep is not None:
        query = query.where(TokenFamily.id != keep)
    families = db.session.scalars(query).all()
    for family in families:
        family.revoked_at = now
        family.revoked_reason = reason
    not_before = math.floor(now.timestamp())
    if keep is None:
        user.tokens_valid_after = dt.datetime.fromtimestamp(not_before, dt.UTC)
    db.session.commit()
    ids = [family.id for family in families]
    revocation.revoke_families(ids)
    if keep is None:
        revocation.revoke_user_tokens(user.id, not_before)
    return ids


def live_sessions(user: User) -> list[TokenFamily]:
    """The user's families that can still refresh: not revoked, not expired, not idle."""
    now = clock.now()
    usable = exists().where(
        RefreshToken.family_id == TokenFamily.id,
        RefreshToken.spent_at.is_(None),
        RefreshToken.expires_at > now,
    )
    return list(
        db.session.scalars(
            select(TokenFamily)
            .where(
                TokenFamily.user_id == user.id,
                TokenFamily.revoked_at.is_(None),
                TokenFamily.expires_at > now,
                usable,
            )
            .order_by(TokenFamily.last_used_at.desc())
        )
    )


def end_session(user: User, family_id: str) -> None:
    """Revoke one of ``user``'s families; NotFound if it is not theirs, unknown or malformed."""
    family = db.session.get(TokenFamily, family_id) if is_vschar(family_id, 64) else None
    if family is None or family.user_id != user.id:
        raise NotFound("no such session")
    revoke_family(family, reason="ended")
    audit.record("session.ended", user_id=user.id, family_id=family.id)


def logout(claims: dict[str, Any]) -> None:
    """Revoke the access token with these (verified) claims and its whole family."""
    revocation.deny_token(str(claims["jti"]), float(claims["exp"]))
    family = db.session.get(TokenFamily, claims["sid"]) if claims.get("sid") else None
    if family is not None:
        revoke_family(family, reason="logout")
    audit.record(
        "token.revoked",
        user_id=_user_id(claims),
        jti=claims["jti"],
        family_id=claims.get("sid"),
        how="logout",
    )


def revoke_token(token: str, hint: str | None = None) -> None:
    """RFC 7009: revoke an access token (by ``jti``) or a refresh token (its family).

    Unknown, malformed, expired or foreign tokens are ignored without an error, so the
    answer tells nothing about the token. ``hint`` (``access_token``/``refresh_token``)
    only orders the attempts.
    """
    as_access = tokens.looks_like_jwt(token)
    if hint == "refresh_token" or not as_access:  # noqa: S105 (a token type name)
        family = revoke_refresh_token(token)
        if family is not None:
            audit.record(
                "token.revoked", user_id=family.user_id, family_id=family.id, how="refresh_token"
            )
            return
    if as_access:
        try:
            claims = tokens.verify_access_token(token, check_revocation=False)
        except InvalidToken:
            return
        revocation.deny_token(str(claims["jti"]), float(claims["exp"]))
        audit.record(
            "token.revoked", user_id=_user_id(claims), jti=claims["jti"], how="access_token"
        )


def _user_id(claims: dict[str, Any]) -> int | None:
    subject = str(claims.get("sub", ""))
    return int(subject) if subject.isdigit() else None
