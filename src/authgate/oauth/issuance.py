"""What the authorization server issued, on the token-lifecycle machinery.

A redeemed authorization code starts a token family (:func:`authgate.sessions.start`
with the client and the granted scope): its access tokens carry the family as ``sid``,
its refresh tokens rotate with reuse detection (:func:`authgate.sessions.rotate`), and
revoking the family (refresh-token revocation, code replay, a withdrawn consent, a
deleted client) refuses every one of them through :mod:`authgate.revocation`.
Client-credentials tokens have no user, hence no family; they are revoked by ``jti``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from authlib.oauth2 import OAuth2Request
from flask import request
from sqlalchemy import select, update

from authgate import audit, clock, revocation, sessions, tokens
from authgate.app_state import settings
from authgate.errors import InvalidToken
from authgate.extensions import db
from authgate.models import (
    AuthorizationCode,
    Consent,
    OAuthClient,
    RefreshToken,
    TokenFamily,
    User,
)
from authgate.oauth import protection


class IssuedAccessToken:
    """An OAuth access token (verified, unrevoked) presented to revocation or introspection."""

    token_type = "access_token"  # noqa: S105 (a token type name)

    def __init__(self, claims: dict[str, Any]) -> None:
        self.claims = claims

    @property
    def jti(self) -> str:
        """The token's id."""
        return str(self.claims["jti"])

    @property
    def family_id(self) -> str | None:
        """The grant (token family) of the token; None for client-credentials tokens."""
        sid = self.claims.get("sid")
        return sid if isinstance(sid, str) else None

    @property
    def user_id(self) -> int | None:
        """The person the token acts for; None for client-credentials tokens."""
        sub = str(self.claims["sub"])
        return int(sub) if sub.isdigit() and sub != self.claims.get("client_id") else None

    def check_client(self, client: OAuthClient) -> bool:
        """True when issued to ``client`` (never for AuthGate's own tokens)."""
        return bool(self.claims.get("client_id") == client.client_id)

    def get_scope(self) -> str:
        """The granted scopes."""
        return str(self.claims.get("scope") or "")

    def is_expired(self) -> bool:
        """Expiry was checked with the signature (AuthGate's clock)."""
        return False

    def is_revoked(self) -> bool:
        """Revocation was checked with the signature (the revocation store)."""
        return False

    def introspection(self) -> dict[str, Any]:
        """RFC 7662 2.2 members of an active access token."""
        claims = self.claims
        body: dict[str, Any] = {
            "active": True,
            "token_type": "Bearer",
            "scope": self.get_scope(),
            "sub": claims["sub"],
            "aud": claims["aud"],
            "iss": claims["iss"],
            "exp": claims["exp"],
            "iat": claims["iat"],
            "jti": claims["jti"],
        }
        if tokens.is_delegated(claims):
            body["client_id"] = claims["client_id"]
        user = db.session.get(User, self.user_id) if self.user_id is not None else None
        if user is not None:
            body["username"] = user.username
        return body


class IssuedRefreshToken:
    """A refresh token of an OAuth grant (a token family bound to a client)."""

    token_type = "refresh_token"  # noqa: S105 (a token type name)
    jti = None

    def __init__(self, row: RefreshToken) -> None:
        self.row = row
        self.family: TokenFamily = row.family

    @property
    def user_id(self) -> int:
        """The person the grant belongs to."""
        return self.family.user_id

    @property
    def family_id(self) -> str:
        """The grant (token family) the refresh token belongs to."""
        return self.family.id

    def check_client(self, client: OAuthClient) -> bool:
        """True when the grant was issued to ``client``."""
        return self.family.client_id == client.client_id

    def get_scope(self) -> str:
        """The scope of the grant."""
        return self.family.scope or ""

    def is_expired(self) -> bool:
        """Past its idle or its grant's absolute lifetime."""
        now = clock.now()
        return now >= self.row.expires_at or now >= self.family.expires_at

    def is_revoked(self) -> bool:
        """The grant was revoked, or this token was already exchanged (rotated)."""
        return self.family.revoked_at is not None or self.row.spent_at is not None

    def introspection(self) -> dict[str, Any]:
        """RFC 7662 2.2 members of an active refresh token."""
        return {
            "active": True,
            "token_type": "refresh_token",
            "client_id": self.family.client_id,
            "scope": self.get_scope(),
            "sub": str(self.family.user_id),
            "username": self.family.user.username,
            "iss": settings().issuer,
            "exp": int(min(self.row.expires_at, self.family.expires_at).timestamp()),
            "iat": int(self.row.created_at.timestamp()),
        }


def _origin() -> dict[str, str | None]:
    """Where the token request came from, for the user's list of sessions."""
    return {"ip": request.remote_addr, "user_agent": request.user_agent.string or None}


def start_code_grant(code: AuthorizationCode, user: User) -> sessions.TokenPair | None:
    """Redeem ``code``: start its grant (a token family) and spend the code, atomically.

    The family is created first and the code is then claimed with a conditional
    ``UPDATE ... WHERE used_at IS NULL`` that also records the family: exactly one of
    several concurrent redemptions wins, and a loser always finds the winner's family to
    revoke (RFC 6749 4.1.2). Returns None when the code was already spent.
    """
    pair = sessions.start(user, client_id=code.client_id, scope=code.scope, **_origin())
    claimed = db.session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.id == code.id, AuthorizationCode.used_at.is_(None))
        .values(used_at=clock.now(), family_id=pair.family_id)
        .execution_options(synchronize_session=False)
    )
    db.session.expire(code, ["used_at", "family_id"])  # the loaded code did not see the UPDATE
    db.session.commit()
    if claimed.rowcount == 1:  # type: ignore[attr-defined]
        return pair
    family = db.session.get(TokenFamily, pair.family_id)
    if family is not None:
        sessions.revoke_family(family, reason="code_replay")
    return None


def rotate_refresh_token(token: str, client: OAuthClient) -> sessions.TokenPair:
    """Spend ``token`` for ``client`` and return the grant's next pair (rotation).

    Reuse of a spent token revokes the whole grant (:func:`authgate.sessions.rotate`).
    Raises InvalidRefreshToken.
    """
    return sessions.rotate(token, client_id=client.client_id, **_origin())


def narrowed(pair: sessions.TokenPair, user: User, scope: str) -> sessions.TokenPair:
    """``pair`` with an access token for ``scope`` if narrower than the grant (RFC 6749 6)."""
    family = db.session.get(TokenFamily, pair.family_id)
    if family is None or scope == family.scope:
        return pair
    extra = {"client_id": family.client_id, "scope": scope}
    access = tokens.issue_access_token(user, sid=family.id, extra_claims=extra)
    return dataclasses.replace(pair, access=access)


def token_response(
    pair: sessions.TokenPair, scope: str, include_refresh_token: bool
) -> dict[str, Any]:
    """The RFC 6749 5.1 body for a pair (Authlib adds ``id_token`` for OIDC)."""
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "access_token": pair.access.token,
        "expires_in": pair.access.expires_in,
        "scope": scope,
    }
    if include_refresh_token:
        body["refresh_token"] = pair.refresh_token
    return body


def record(token: dict[str, Any], request: OAuth2Request) -> None:
    """Audit a client-credentials token (grants with a person are audited by sessions)."""
    if request.payload.grant_type != "client_credentials":
        return
    claims = tokens.verify_access_token(token["access_token"], check_revocation=False)
    audit.record(
        "token.issued",
        client_id=request.client.client_id,
        grant_type="client_credentials",
        jti=claims["jti"],
        scope=token.get("scope", ""),
    )


def find_token(
    token: str, hint: str | None, first_party: bool = False, asking: str | None = None
) -> IssuedAccessToken | IssuedRefreshToken | None:
    """The OAuth token ``token`` names, or None (unknown, expired, revoked, first-party,
    or an access token whose client or user no longer exists).

    No hint is needed: access tokens are JWTs, refresh tokens opaque. A refresh token is
    returned even when spent or revoked (its ``is_revoked`` says so), so that the refresh
    grant can detect reuse. ``first_party`` also finds AuthGate's own access tokens (for
    resource servers allowed to introspect them). ``asking`` is the id of the
    authenticated client that asks (it exists: its tokens need no lookup).
    """
    if tokens.looks_like_jwt(token):
        try:
            claims = tokens.verify_access_token(token)
        except InvalidToken:
            return None
        if tokens.is_delegated(claims):
            # A client-credentials token has no grant that deleting its client revokes: it
            # is inactive once the client is gone (as /api/resource refuses it). A person's
            # token needs no lookup: deleting the user or the client revoked it.
            access = protection.AccessToken(claims)
            machine = not access.has_user
            if machine and access.client_id != asking and access.get_client() is None:
                return None
            return IssuedAccessToken(claims)
        return IssuedAccessToken(claims) if first_party else None
    if not isinstance(token, str) or not 40 <= len(token) <= 64:
        return None
    row = db.session.scalar(
        select(RefreshToken).where(RefreshToken.digest == sessions.digest(token))
    )
    if row is None or row.family.client_id is None:
        return None
    return IssuedRefreshToken(row)


def revoke(token: IssuedAccessToken | IssuedRefreshToken) -> None:
    """Revoke one access token (by ``jti``), or a refresh token's whole grant (RFC 7009 2.1)."""
    if isinstance(token, IssuedAccessToken):
        revocation.deny_token(token.jti, float(token.claims["exp"]))
    else:
        sessions.revoke_family(token.family, reason="revoked")


def _revoke_families(families: list[TokenFamily], reason: str) -> int:
    for family in families:
        sessions.revoke_family(family, reason=reason)
    return len(families)


def revoke_code_grant(code: AuthorizationCode) -> int:
    """Revoke the grant ``code`` was redeemed for (after a replay); how many were revoked."""
    family = db.session.get(TokenFamily, code.family_id) if code.family_id else None
    return _revoke_families([family] if family is not None else [], "code_replay")


def revoke_consent(consent: Consent) -> int:
    """Revoke the grants ``consent`` stood for; how many were revoked.

    Those are the grants its codes were redeemed for, and every grant of the same user and
    client that no remaining consent of theirs covers. The second part finds grants whose
    code rows are gone (they are deleted a day after they expire,
    ``CODE_RETENTION_SECONDS``, while a grant lives up to
    ``AUTHGATE_REFRESH_TOKEN_ABSOLUTE_TTL``); a grant a remaining consent covers stays, as
    the client could obtain it again without asking.
    """
    by_code = select(AuthorizationCode.family_id).where(AuthorizationCode.consent_id == consent.id)
    families = db.session.scalars(
        select(TokenFamily).where(
            TokenFamily.user_id == consent.user_id,
            TokenFamily.client_id == consent.client_id,
            TokenFamily.revoked_at.is_(None),
        )
    ).all()
    linked = set(db.session.scalars(by_code))
    others = db.session.scalars(
        select(Consent).where(
            Consent.user_id == consent.user_id,
            Consent.client_id == consent.client_id,
            Consent.id != consent.id,
        )
    ).all()

    def withdrawn(family: TokenFamily) -> bool:
        scope = family.scope or ""
        return family.id in linked or not any(other.covers(scope) for other in others)

    return _revoke_families(
        [family for family in families if withdrawn(family)], "consent_withdrawn"
    )


def revoke_client(client_id: str) -> int:
    """Revoke every grant of a client being deleted; how many were revoked.

    Its client-credentials tokens (no grant) are refused by AuthGate's endpoints because
    the client no longer exists; they expire within ``AUTHGATE_ACCESS_TOKEN_TTL``.
    """
    families = db.session.scalars(
        select(TokenFamily).where(
            TokenFamily.client_id == client_id, TokenFamily.revoked_at.is_(None)
        )
    ).all()
    return _revoke_families(list(families), "client_deleted")
