"""Access tokens: ES256-signed JWTs that any service can verify with the public JWKS."""

from __future__ import annotations

import binascii
import secrets
from dataclasses import dataclass
from typing import Any

from flask import current_app
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwt import JWTClaimsRegistry

from authgate import clock, keys
from authgate.errors import InvalidToken
from authgate.models import User

#: Tokens longer than this are refused before any parsing (a JWT of ours is ~400 bytes).
MAX_TOKEN_LENGTH = 4096
#: ``typ`` of access tokens issued to OAuth clients (RFC 9068 2.1).
DELEGATED_TYPE = "at+jwt"


@dataclass(frozen=True)
class IssuedToken:
    """A freshly signed access token and its lifetime."""

    token: str
    jti: str
    expires_in: int

    def to_dict(self) -> dict[str, Any]:
        """The token response body (the original ``token``/``duration``, plus RFC 6749 names)."""
        return {
            "token": self.token,
            "duration": self.expires_in,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }


def _settings() -> Any:
    return current_app.extensions["authgate"].settings


def issue_access_token(user: User) -> IssuedToken:
    """Sign an access token for ``user`` with the active key."""
    settings = _settings()
    kid, key = keys.signing_key()
    now = int(clock.timestamp())
    jti = secrets.token_urlsafe(16)
    claims = {
        "iss": settings.issuer,
        "aud": settings.token_audience,
        "sub": str(user.id),
        "iat": now,
        "exp": now + settings.access_token_ttl,
        "jti": jti,
    }
    header = {"alg": keys.ALGORITHM, "kid": kid, "typ": "JWT"}
    token = jwt.encode(header, claims, key, algorithms=[keys.ALGORITHM])
    return IssuedToken(token=token, jti=jti, expires_in=settings.access_token_ttl)


def issue_delegated_access_token(
    client_id: str, user: User | None, scope: str, expires_in: int
) -> IssuedToken:
    """Sign an RFC 9068 access token for an OAuth client.

    ``typ: at+jwt``, ``client_id``, ``scope``, ``aud`` (this API); ``sub`` is the user,
    or the client itself when no person is involved (client credentials, RFC 9068 2.2).
    """
    settings = _settings()
    kid, key = keys.signing_key()
    now = int(clock.timestamp())
    jti = secrets.token_urlsafe(16)
    claims = {
        "iss": settings.issuer,
        "aud": settings.token_audience,
        "sub": str(user.id) if user is not None else client_id,
        "client_id": client_id,
        "scope": scope,
        "iat": now,
        "exp": now + expires_in,
        "jti": jti,
    }
    header = {"alg": keys.ALGORITHM, "kid": kid, "typ": DELEGATED_TYPE}
    token = jwt.encode(header, claims, key, algorithms=[keys.ALGORITHM])
    return IssuedToken(token=token, jti=jti, expires_in=expires_in)


def is_delegated(claims: dict[str, Any]) -> bool:
    """True for tokens issued to an OAuth client (they carry ``client_id``)."""
    return "client_id" in claims


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header of a JWT-shaped string, unverified ({} if unparsable); for routing only."""
    if not looks_like_jwt(token):
        return {}
    try:
        return dict(jws.extract_compact(token.encode()).headers())
    except (JoseError, ValueError, TypeError, KeyError, binascii.Error):
        return {}


def looks_like_jwt(value: str) -> bool:
    """Cheap shape test: three base64url segments (used to route Basic usernames)."""
    return value.count(".") == 2 and len(value) <= MAX_TOKEN_LENGTH


def verify_access_token(token: str) -> dict[str, Any]:
    """Verify signature (ES256 only), ``kid``, ``iss``, ``aud``, ``exp``; return the claims.

    Raises InvalidToken for any failure: malformed, ``alg: none``, HS256 forged with the
    public key, unknown ``kid``, expired, or issued for another issuer or audience.
    """
    if not isinstance(token, str) or not looks_like_jwt(token):
        raise InvalidToken("malformed token")
    settings = _settings()
    try:
        header = jws.extract_compact(token.encode()).headers()
        keyset = keys.verification_keys(header.get("kid"))
        decoded = jwt.decode(token, keyset, algorithms=[keys.ALGORITHM])
        registry = JWTClaimsRegistry(
            now=int(clock.timestamp()),
            iss={"essential": True, "value": settings.issuer},
            aud={"essential": True, "value": settings.token_audience},
            sub={"essential": True},
            exp={"essential": True},
            jti={"essential": True},
        )
        registry.validate(decoded.claims)
    except (JoseError, ValueError, TypeError, KeyError, binascii.Error) as exc:
        raise InvalidToken("invalid or expired token") from exc
    return decoded.claims
