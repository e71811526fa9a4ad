"""Access tokens: ES256-signed JWTs that any service can verify with the public JWKS.

Besides the registered claims, a token carries ``sid`` (its token family: one login) and
``preferred_username``, so a request can be authorised without a database query, and
:func:`verify_access_token` applies the revocation store on every call.

A signature check costs more than the rest of a token-protected request (see
``bench/README.md``), so each process keeps the tokens it already verified in a bounded
:class:`VerifiedTokens` cache: a repeated token skips parsing and the signature check, and
nothing else (expiry, key publication and revocation are checked on every request).
"""

from __future__ import annotations

import binascii
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from cachetools import LRUCache
from flask import current_app
from joserfc import jws, jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwt import JWTClaimsRegistry

from authgate import clock, keys, revocation
from authgate.errors import InvalidToken
from authgate.models import User

if TYPE_CHECKING:
    from authgate.app_state import AppState
    from authgate.config import Settings

#: Tokens longer than this are refused before any parsing (a JWT of ours is ~400 bytes).
MAX_TOKEN_LENGTH = 4096
#: ``typ`` of access tokens issued to OAuth clients (RFC 9068 2.1).
DELEGATED_TYPE = "at+jwt"
#: :attr:`InvalidToken.reason` of a token refused for its kind (first-party vs OAuth).
WRONG_KIND = "wrong_kind"


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


class Verified(NamedTuple):
    """What one verified token yielded: its JOSE header, its claims, its key id."""

    header: dict[str, Any]
    claims: dict[str, Any]
    kid: str | None


class VerifiedTokens:
    """A bounded per-process cache of access tokens whose signature was verified.

    Keyed by a 256-bit BLAKE2b digest of the token (the token itself is not kept). An
    entry is dropped when it is read at or after the token's ``exp``, or earlier, least
    recently used first, when ``maxsize`` entries are held (cachetools' LRU cache: a lookup
    costs a fifth of its TLRU cache's, which sweeps expired entries on every call).
    ``maxsize`` 0 switches it off.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: LRUCache[bytes, Verified] = LRUCache(maxsize=max(maxsize, 1))
        self._lock = threading.Lock()

    def get(self, digest: bytes) -> Verified | None:
        """The entry for a token digest, or None (also once the token has expired)."""
        if not self.maxsize:
            return None
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None and entry.claims["exp"] <= time.time():
                del self._entries[digest]
                return None
            return entry

    def put(self, digest: bytes, verified: Verified) -> None:
        """Remember a token that passed every check."""
        if self.maxsize:
            with self._lock:
                self._entries[digest] = verified

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _digest(token: str) -> bytes:
    # BLAKE2b rather than SHA-256: as strong, and CPython's own code where hashlib's SHA-256
    # is an OpenSSL call: 2.7 us instead of 4.6 us inside a request (bench/README.md, item 9).
    return hashlib.blake2b(token.encode(), digest_size=32).digest()


def _settings() -> Any:
    return current_app.extensions["authgate"].settings


def _verified_tokens() -> VerifiedTokens:
    return current_app.extensions["authgate"].verified_tokens


def _cached(token: str) -> Verified | None:
    """The cache entry of ``token``: only what was verified is remembered."""
    cache = _verified_tokens()
    return cache.get(_digest(token)) if cache.maxsize else None


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
    # This process just signed it: its first use here need not check the signature again.
    _verified_tokens().put(_digest(token), Verified(dict(header), dict(claims), kid))
    return IssuedToken(token=token, jti=claims["jti"], expires_in=claims["exp"] - claims["iat"])


def is_delegated(claims: dict[str, Any]) -> bool:
    """True for tokens issued to an OAuth client (they carry ``client_id``)."""
    return "client_id" in claims


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header of a JWT-shaped string, unverified ({} if unparsable); for routing only."""
    if not looks_like_jwt(token):
        return {}
    cached = _cached(token)
    if cached is not None:
        return dict(cached.header)
    try:
        return dict(jws.extract_compact(token.encode()).headers())
    except (JoseError, ValueError, TypeError, KeyError, binascii.Error):
        return {}


def looks_like_jwt(value: str) -> bool:
    """Cheap shape test: three base64url segments (used to route Basic usernames)."""
    return value.count(".") == 2 and len(value) <= MAX_TOKEN_LENGTH


def verify_access_token(
    token: str, check_revocation: bool = True, first_party: bool = False
) -> dict[str, Any]:
    """Verify signature (ES256 only), ``kid``, ``iss``, ``aud``, ``exp``; return the claims.

    Raises InvalidToken for any failure: malformed, ``alg: none``, HS256 forged with the
    public key, unknown ``kid``, expired, or issued for another issuer or audience; and
    TokenRevoked (a subclass) when the revocation store refuses it (see
    :func:`authgate.revocation.check`). ``check_revocation=False`` is for revoking a token.

    ``first_party=True`` also refuses an OAuth client's token: one whose ``typ`` header
    says ``at+jwt`` before its signature is checked (the OAuth path checks it), and any
    token whose verified claims carry a ``client_id``.

    A token this process verified before (:class:`VerifiedTokens`) skips parsing and the
    signature check; its time claims and its key's publication are checked again.
    """
    if not isinstance(token, str) or not looks_like_jwt(token):
        raise InvalidToken("malformed token", reason="malformed")
    state: AppState = current_app.extensions["authgate"]  # once: runs on every request
    claims = _verified_claims(state, token, first_party)
    if first_party and is_delegated(claims):
        raise InvalidToken("an OAuth client's token", reason=WRONG_KIND, claims=claims)
    if check_revocation:
        revocation.check(claims, state)
    return claims


class _ClaimsRegistry(JWTClaimsRegistry):
    """joserfc's claim rules, with :data:`~authgate.revocation.CLOCK_SKEW_SECONDS` of
    leeway for ``iat`` only: a token issued by an instance whose clock runs a little ahead
    is valid on this one at once (else a revocation made here right after the login would
    not find it valid, and would do nothing). ``exp`` stays exact."""

    def validate_iat(self, value: object) -> None:
        """Accept an ``iat`` up to the skew allowance in the future."""
        if isinstance(value, int) and self.now < value <= self.now + revocation.CLOCK_SKEW_SECONDS:
            return
        super().validate_iat(value)


def _claims_registry(settings: Settings, now: int) -> JWTClaimsRegistry:
    return _ClaimsRegistry(
        now=now,
        iss={"essential": True, "value": settings.issuer},
        aud={"essential": True, "value": settings.token_audience},
        sub={"essential": True},
        exp={"essential": True},
        jti={"essential": True},
    )


def _times_valid(claims: dict[str, Any], now: int) -> bool:
    """The time rules of :class:`_ClaimsRegistry`, for claims that already passed the full
    validation: all that can change while a token is cached."""
    return (
        claims["exp"] > now
        and claims.get("nbf", now) <= now
        and claims.get("iat", now) <= now + revocation.CLOCK_SKEW_SECONDS
    )


def _verified_claims(state: AppState, token: str, first_party: bool) -> dict[str, Any]:
    """The claims of a token whose signature and claims are valid now (cached or checked);
    with ``first_party``, a token whose header says ``at+jwt`` is refused unchecked."""
    now = int(clock.timestamp(state.settings))
    digest = _digest(token)  # once, for the lookup and, on a miss, the put
    cached = state.verified_tokens.get(digest)
    if cached is not None and keys.is_published(cached.kid, state.keys):
        if not _times_valid(cached.claims, now):
            reason = "expired" if cached.claims["exp"] <= now else "invalid"
            raise InvalidToken("invalid or expired token", reason=reason, claims=cached.claims)
        return dict(cached.claims)
    try:
        header = jws.extract_compact(token.encode()).headers()
        if first_party and header.get("typ") == DELEGATED_TYPE:
            raise InvalidToken("an OAuth client's token", reason=WRONG_KIND)
        keyset = keys.verification_keys(header.get("kid"), state.keys)
        decoded = jwt.decode(token, keyset, algorithms=[keys.ALGORITHM])
    except (JoseError, ValueError, TypeError, KeyError, binascii.Error) as exc:
        raise InvalidToken("invalid or expired token") from exc
    claims = decoded.claims  # signed by one of our keys from here on
    try:
        _claims_registry(state.settings, now).validate(claims)
    except ExpiredTokenError as exc:
        raise InvalidToken("invalid or expired token", reason="expired", claims=claims) from exc
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise InvalidToken("invalid or expired token") from exc
    if not isinstance(claims.get("iat", 0), int):
        raise InvalidToken("invalid token claims")
    state.verified_tokens.put(digest, Verified(dict(header), dict(claims), header.get("kid")))
    return claims
