"""Database models. Rules about a row live on its model; nothing here knows about HTTP."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, String, Text, TypeDecorator
from sqlalchemy.orm import Mapped, mapped_column, relationship

from authgate import clock
from authgate.extensions import db


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops tzinfo)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        """Normalise to UTC before writing."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        """Attach UTC to values that come back naive."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class User(db.Model):  # type: ignore[name-defined]
    """An account. ``username_key`` is the NFKC-casefolded form that makes names unique."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    username_key: Mapped[str] = mapped_column(String(256), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    # Access tokens issued (``iat``) before this second are dead: logout everywhere.
    tokens_valid_after: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A disabled user cannot log in, and every token of theirs is refused.
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @property
    def is_disabled(self) -> bool:
        """True when an operator disabled the account."""
        return self.disabled_at is not None

    def to_dict(self) -> dict[str, Any]:
        """The public representation of a user."""
        return {"id": self.id, "username": self.username}

    def to_private_dict(self) -> dict[str, Any]:
        """What the user may see about their own account (``GET /api/users/me``)."""
        return {
            "id": self.id,
            "username": self.username,
            "created_at": self.created_at.isoformat(),
            "tokens_valid_after": _iso(self.tokens_valid_after),
        }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class TokenFamily(db.Model):  # type: ignore[name-defined]
    """One login (a *session*): the chain of refresh tokens and the access tokens they bought.

    ``client_id`` and ``scope`` are None for first-party logins (``/api/token``) and name the
    client and granted scope for OAuth grants. Revoking the family kills every token in it.
    """

    __tablename__ = "token_families"
    __table_args__ = (
        Index("ix_token_families_revoked_at", "revoked_at"),
        Index("ix_token_families_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    scope: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    last_used_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(512), nullable=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)

    user: Mapped[User] = relationship(lazy="joined")

    def is_live(self, now: dt.datetime) -> bool:
        """Neither revoked nor past its absolute lifetime."""
        return self.revoked_at is None and now < self.expires_at

    def to_dict(self) -> dict[str, Any]:
        """The representation in ``GET /api/users/me/sessions``."""
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "client_id": self.client_id,
            "scope": self.scope,
            "ip": self.ip,
            "user_agent": self.user_agent,
        }


class RefreshToken(db.Model):  # type: ignore[name-defined]
    """One refresh token of a family, stored only as the SHA-256 digest of its value.

    ``spent_at`` is set when it is rotated; presenting it again after the grace window is
    reuse and revokes the family. ``expires_at`` is the idle expiry.
    """

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("token_families.id", ondelete="CASCADE"), index=True
    )
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("refresh_tokens.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    spent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    family: Mapped[TokenFamily] = relationship(lazy="joined")


class Revocation(db.Model):  # type: ignore[name-defined]
    """One revocation, kept until no token it affects can still be alive.

    ``kind`` is ``jti`` (one access token), ``family`` (every token of a login) or ``user``
    (access tokens of the user with ``iat < not_before``). The table is the source of truth
    for the revocation store and the feed from which processes refresh their caches.
    """

    __tablename__ = "revocations"
    __table_args__ = (
        Index("ix_revocations_created_at", "created_at"),
        Index("ix_revocations_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[float] = mapped_column(db.Float)
    expires_at: Mapped[float] = mapped_column(db.Float)


class SigningKey(db.Model):  # type: ignore[name-defined]
    """A token signing key pair; the private half is encrypted with the secret key."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(db.JSON)
    private_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    # When it starts signing: after a pre-publication window, so cached JWKS know it first.
    activates_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    # Set to withdraw a key from signing before a successor activates (emergency rotation).
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditEvent(db.Model):  # type: ignore[name-defined]
    """One security-relevant event (ASVS 16.2): who, what, when, from where."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_user_id_at", "user_id", "at"),
        Index("ix_audit_events_event_at", "event", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    event: Mapped[str] = mapped_column(String(64))
    # No foreign key: the trail outlives the account it describes.
    user_id: Mapped[int | None] = mapped_column(nullable=True)
    client_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(512), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(db.JSON, default=dict)

    def to_dict(self) -> dict[str, Any]:
        """The representation shown to users and by ``authgate audit --json``."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "event": self.event,
            "user_id": self.user_id,
            "client_id": self.client_id,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "request_id": self.request_id,
            "detail": self.detail,
        }
