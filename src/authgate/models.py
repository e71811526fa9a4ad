"""Database models. Rules about a row live on its model; nothing here knows about HTTP."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import DateTime, Index, String, Text, TypeDecorator
from sqlalchemy.orm import Mapped, mapped_column

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

    def to_dict(self) -> dict[str, Any]:
        """The public representation of a user."""
        return {"id": self.id, "username": self.username}


class SigningKey(db.Model):  # type: ignore[name-defined]
    """A token signing key pair; the private half is encrypted with the secret key."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(db.JSON)
    private_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
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
