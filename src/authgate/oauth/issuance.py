"""What the authorization server issued, so it can be introspected and revoked.

WORK IN PROGRESS: the revocation side is built on the token-lifecycle machinery
(families, rotation, revocation store) once it lands.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2 import OAuth2Request

from authgate import audit, tokens
from authgate.errors import InvalidToken
from authgate.models import AuthorizationCode, Consent, OAuthClient


class IssuedAccessToken:
    """An OAuth access token presented to revocation or introspection."""

    token_type = "access_token"  # noqa: S105 (a token type name)

    def __init__(self, claims: dict[str, Any]) -> None:
        self.claims = claims

    @property
    def jti(self) -> str:
        """The token's id."""
        return str(self.claims["jti"])

    @property
    def user_id(self) -> int | None:
        """The person the token acts for, None for client-credentials tokens."""
        sub = str(self.claims["sub"])
        return int(sub) if sub != self.claims["client_id"] and sub.isdigit() else None

    def check_client(self, client: OAuthClient) -> bool:
        """True when issued to ``client``."""
        return bool(self.claims["client_id"] == client.client_id)

    def get_scope(self) -> str:
        """The granted scopes."""
        return str(self.claims.get("scope", ""))

    def is_expired(self) -> bool:
        """Expiry was checked with the signature."""
        return False

    def is_revoked(self) -> bool:
        """True when revoked."""
        return is_revoked(self.claims)

    def introspection(self) -> dict[str, Any]:
        """RFC 7662 2.2 members."""
        claims = self.claims
        body = {
            "active": True,
            "token_type": "Bearer",
            "client_id": claims["client_id"],
            "scope": claims.get("scope", ""),
            "sub": claims["sub"],
            "aud": claims["aud"],
            "iss": claims["iss"],
            "exp": claims["exp"],
            "iat": claims["iat"],
            "jti": claims["jti"],
        }
        return body


def tokens_claims(access_token: str) -> dict[str, Any]:
    """Verified claims of one of our access tokens."""
    return tokens.verify_access_token(access_token)


def begin_code_grant(request: OAuth2Request, code: AuthorizationCode) -> None:
    """A code was just redeemed: tokens issued for ``request`` belong to its grant."""
    request.authgate_code = code  # type: ignore[attr-defined]


def record(token: dict[str, Any], request: OAuth2Request) -> None:
    """Record and audit what the token endpoint is about to return."""
    claims = tokens_claims(token["access_token"])
    user = request.user
    audit.record(
        "oauth.token.issued",
        user_id=user.id if user is not None else None,
        client_id=request.client.client_id,
        grant_type=request.payload.grant_type,
        jti=claims["jti"],
        scope=token.get("scope", ""),
    )


def find_token(token_string: str, hint: str | None) -> IssuedAccessToken | None:
    """The OAuth token ``token_string`` names, or None (unknown, expired, forged)."""
    if tokens.looks_like_jwt(token_string):
        try:
            claims = tokens.verify_access_token(token_string)
        except InvalidToken:
            return None
        return IssuedAccessToken(claims) if tokens.is_delegated(claims) else None
    return None


def new_refresh_token(**_: Any) -> str | None:
    """Refresh tokens come with the token-lifecycle machinery."""
    raise NotImplementedError


def is_revoked(claims: dict[str, Any]) -> bool:
    """True when the access token was revoked."""
    return False  # WIP


def revoke(token: IssuedAccessToken) -> None:
    """Revoke ``token``."""
    raise NotImplementedError


def revoke_code_grant(code: AuthorizationCode) -> int:
    """Revoke everything issued from ``code``."""
    raise NotImplementedError


def revoke_consent(consent: Consent) -> int:
    """Revoke everything issued under ``consent``."""
    raise NotImplementedError


def revoke_client(client_id: str) -> None:
    """Revoke everything issued to ``client_id``."""
    raise NotImplementedError
