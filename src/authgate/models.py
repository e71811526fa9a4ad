"""Database models. Rules about a row live on its model; nothing here knows about HTTP."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
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
    # Ids are never reused, SQLite included: a user id is a token's ``sub`` and the key of
    # audit rows and revocations, which outlive a deleted account.
    __table_args__ = {"sqlite_autoincrement": True}

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


def secret_digest(secret: str) -> str:
    """Hex SHA-256 of a high-entropy secret (client secrets, authorization codes).

    A plain digest suffices because these secrets are 256 random bits: nothing can be
    guessed offline, and checking one costs microseconds instead of an argon2 hash.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


#: Grant types a client may be registered for (no implicit, no password: OAuth 2.1).
GRANT_TYPES = ("authorization_code", "client_credentials", "refresh_token")
CLIENT_TYPES = ("public", "confidential")
SECRET_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class OAuthClient(db.Model):  # type: ignore[name-defined]
    """A registered third-party application; implements Authlib's ``ClientMixin``.

    Confidential clients hold a secret, stored only as :func:`secret_digest`; public
    clients (browser and native apps) hold none and authenticate with ``none`` + PKCE.
    """

    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    name: Mapped[str] = mapped_column(String(128))
    client_type: Mapped[str] = mapped_column(String(16))
    redirect_uris: Mapped[list[str]] = mapped_column(db.JSON, default=list)
    scope: Mapped[str] = mapped_column(Text, default="")
    grant_types: Mapped[list[str]] = mapped_column(db.JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    secret_rotated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A resource server's client: may introspect every access token, not only its own.
    can_introspect: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    @property
    def is_public(self) -> bool:
        """True for clients that cannot keep a secret."""
        return self.client_type == "public"

    @property
    def client_metadata(self) -> dict[str, Any]:
        """RFC 7591 metadata Authlib consults (none beyond the columns)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """The representation shown by ``authgate client show``; never the secret."""
        return {
            "client_id": self.client_id,
            "name": self.name,
            "type": self.client_type,
            "redirect_uris": list(self.redirect_uris),
            "scope": self.scope,
            "grant_types": list(self.grant_types),
            "introspect": self.can_introspect,
            "token_endpoint_auth_methods": self.auth_methods(),
            "created_at": self.created_at.isoformat(),
            "secret_rotated_at": (
                self.secret_rotated_at.isoformat() if self.secret_rotated_at else None
            ),
        }

    def auth_methods(self) -> list[str]:
        """How this client authenticates at the token endpoint."""
        return ["none"] if self.is_public else list(SECRET_AUTH_METHODS)

    # --- authlib.oauth2.rfc6749.ClientMixin ---------------------------------------

    def get_client_id(self) -> str:
        """The public identifier."""
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        """The redirect URI to use when a request names none: only if exactly one exists."""
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The scope to grant: all registered scopes if none requested, None if any is not."""
        registered = self.scope.split()
        if not scope:
            return " ".join(registered)
        requested = list(dict.fromkeys(scope.split()))
        if not set(requested) <= set(registered):
            return None
        return " ".join(requested)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact string match against a registered URI (OAuth 2.1 2.3.1, no patterns)."""
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        """Compare the digest of ``client_secret`` with the stored one in constant time."""
        if self.secret_digest is None or not isinstance(client_secret, str):
            return False
        return hmac.compare_digest(secret_digest(client_secret), self.secret_digest)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Public clients use ``none`` (never at introspection); confidential ones a secret."""
        if self.is_public:
            return method == "none" and endpoint != "introspection"
        return method in SECRET_AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        """Only ``code``, and only for clients registered for the code grant."""
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        """True when the client is registered for ``grant_type``."""
        return grant_type in self.grant_types


#: The longest OIDC ``nonce`` an authorization request may carry (the column's width).
NONCE_MAX_LENGTH = 255


def is_vschar(value: object, max_length: int) -> bool:
    """True when ``value`` is 1 to ``max_length`` RFC 6749 VSCHAR characters (0x20-0x7E).

    What an identifier sent by a client must look like before a query sees it: anything
    else (a NUL, which PostgreSQL refuses in a query; more than the column holds) can
    match no row.
    """
    return (
        isinstance(value, str)
        and 0 < len(value) <= max_length
        and all(" " <= char <= "~" for char in value)
    )


class AuthorizationCode(db.Model):  # type: ignore[name-defined]
    """A single-use authorization code, stored only as a digest (Authlib's code mixins).

    ``used_at`` is set, atomically, by the one token request that redeems it; a second
    presentation finds it set and revokes what the first one obtained (RFC 6749 4.1.2).
    """

    __tablename__ = "oauth_authorization_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_digest: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text, default="")
    nonce: Mapped[str | None] = mapped_column(String(NONCE_MAX_LENGTH), nullable=True)
    auth_time: Mapped[int] = mapped_column()
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8))
    consent_id: Mapped[int | None] = mapped_column(nullable=True)
    # The token family (grant) the code was redeemed for, set with ``used_at`` atomically.
    family_id: Mapped[str | None] = mapped_column(
        ForeignKey("token_families.id", ondelete="SET NULL"), nullable=True, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def is_expired(self) -> bool:
        """True once the code's lifetime has passed."""
        return clock.now() >= self.expires_at

    # --- authlib AuthorizationCodeMixin (OAuth 2 and OIDC) -------------------------

    def get_redirect_uri(self) -> str:
        """The redirect URI the code was issued for; the token request must repeat it."""
        return self.redirect_uri

    def get_scope(self) -> str:
        """The scope the person consented to."""
        return self.scope

    def get_nonce(self) -> str | None:
        """The OIDC ``nonce`` of the authorization request."""
        return self.nonce

    def get_auth_time(self) -> int:
        """When the person logged in (epoch seconds), for the id_token's ``auth_time``."""
        return self.auth_time

    def get_acr(self) -> str | None:
        """No authentication context classes are defined."""
        return None

    def get_amr(self) -> list[str]:
        """Password login (RFC 8176 ``pwd``)."""
        return ["pwd"]


class Consent(db.Model):  # type: ignore[name-defined]
    """A person's remembered "Allow" for one client and one set of scopes."""

    __tablename__ = "oauth_consents"
    # Ids are never reused (authorization codes remember theirs, see User).
    __table_args__ = (
        UniqueConstraint("user_id", "client_id", "scope"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE")
    )
    # Sorted, space-separated: one row per distinct scope set.
    scope: Mapped[str] = mapped_column(String(1024))
    granted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=clock.now)

    def covers(self, scope: str) -> bool:
        """True when every scope in ``scope`` was consented to here."""
        return set(scope.split()) <= set(self.scope.split())
