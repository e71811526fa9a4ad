"""Access tokens: ES256-signed JWTs that any service can verify with the public JWKS.

Besides the registered claims, a token carries ``sid`` (its token family: one login) and
``preferred_username``, so a request can be authorised without a database query, and
:func:`verify_access_token` applies the revocation store on every call.
"""

from __future__ import annotations

import binascii
import secrets
from dataclasses import dataclass
from typing import Any

from flask import current_app
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwt import JWTClaimsRegistry

from authgate import clock, keys, revocation
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


def issue_access_token(
    user: User, sid: str | None = None, extra_claims: dict[str, Any] | None = None
) -> IssuedToken:
    """Sign an access token for ``user`` in token family ``sid`` with the active key.

    ``extra_claims`` (e.g. ``scope``, ``client_id`` for OAuth) are added but cannot
    replace the registered ones. With a ``client_id`` the token is an RFC 9068 access
    token of an OAuth client (``typ: at+jwt``), and names the user only if the person
    granted the ``profile`` scope.
    """
    settings = _settings()
    claims: dict[str, Any] = dict(extra_claims or {})
    claims.update(_registered_claims(str(user.id), settings.access_token_ttl))
    delegated = is_delegated(claims)
    if not delegated or "profile" in str(claims.get("scope") or "").split():
        claims["preferred_username"] = user.username
    if sid is not None:
        claims["sid"] = sid
    return _sign(claims, DELEGATED_TYPE if delegated else "JWT")


def issue_client_access_token(client_id: str, scope: str) -> IssuedToken:
    """Sign an RFC 9068 access token for an OAuth client acting for itself.

    Client credentials grant: no person is involved, so ``sub`` is the client (RFC 9068
    2.2); ``client_id``, ``scope`` and ``aud`` (this API) as for any OAuth token.
    """
    claims = {"client_id": client_id, "scope": scope}
    claims.update(_registered_claims(client_id, _settings().access_token_ttl))
    return _sign(claims, DELEGATED_TYPE)


def _registered_claims(subject: str, ttl: int) -> dict[str, Any]:
    settings = _settings()
    now = int(clock.timestamp())
    return {
        "iss": settings.issuer,
        "aud": settings.token_audience,
        "sub": subject,
        "iat": now,
        "exp": now + ttl,
        "jti": secrets.token_urlsafe(16),
    }


def _sign(claims: dict[str, Any], typ: str) -> IssuedToken:
    kid, key = keys.signing_key()
    header = {"alg": keys.ALGORITHM, "kid": kid, "typ": typ}
    token = jwt.encode(header, claims, key, algorithms=[keys.ALGORITHM])
    return IssuedToken(token=token, jti=claims["jti"], expires_in=claims["exp"] - claims["iat"])


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


def verify_access_token(token: str, check_revocation: bool = True) -> dict[str, Any]:
    """Verify signature (ES256 only), ``kid``, ``iss``, ``aud``, ``exp``; return the claims.

    Raises InvalidToken for any failure: malformed, ``alg: none``, HS256 forged with the
    public key, unknown ``kid``, expired, or issued for another issuer or audience; and
    TokenRevoked (a subclass) when the revocation store refuses it (see
    :func:`authgate.revocation.check`). ``check_revocation=False`` is for revoking a token.
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
    claims = decoded.claims
    if not isinstance(claims.get("iat", 0), int):
        raise InvalidToken("invalid token claims")
    if check_revocation:
        revocation.check(claims)
    return claims
