"""Authlib's grant classes, configured for the OAuth 2.1 profile.

Only Authlib's storage hooks are written here, plus the hand-over to the token-lifecycle
machinery (a redeemed code starts a token family, a refresh rotates it); the grant logic
(request validation, client checks, error codes, PKCE comparison, OIDC) is Authlib's.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, OAuth2Request, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core import grants as oidc_grants
from joserfc.jwk import ECKey
from sqlalchemy import delete, exists, select

from authgate import audit, clock, keys
from authgate.app_state import settings
from authgate.errors import InvalidRefreshToken
from authgate.extensions import db
from authgate.models import (
    NONCE_MAX_LENGTH,
    AuthorizationCode,
    OAuthClient,
    User,
    is_vschar,
    secret_digest,
)
from authgate.oauth import issuance

#: Codes this long past their expiry are deleted when new codes are saved.
CODE_RETENTION_SECONDS = 24 * 3600
#: OIDC ``max_age``: a non-negative integer, in seconds (ten digits: over 300 years).
MAX_AGE = re.compile(r"[0-9]{1,10}")


@dataclass(frozen=True)
class Approval:
    """The person who approved an authorization request, as the pages know them."""

    user: User
    auth_time: int
    consent_id: int | None = None


def user_info(user: User, scope: str) -> UserInfo:
    """OIDC claims about ``user`` that ``scope`` allows: ``sub``; ``profile`` adds the name."""
    return UserInfo(sub=str(user.id), preferred_username=user.username).filter(scope)


class S256CodeChallenge(CodeChallenge):
    """PKCE as OAuth 2.1 profiles it: a challenge from every client, ``S256`` only.

    Authlib's extension lets confidential clients omit PKCE and accepts ``plain`` (and
    treats a missing method as ``plain``); both are refused here before it runs.
    """

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": compare_s256_code_challenge}

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        """Require ``code_challenge`` with ``code_challenge_method=S256`` (RFC 7636 4.3)."""
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge': PKCE is required.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class NonceRule:
    """Refuse a ``nonce`` that is not 1 to 255 printable ASCII characters (invalid_request).

    Runs once the client and redirect URI are verified, so the error goes back to the
    client (RFC 6749 4.1.2.1, OIDC Core 3.1.2.6), and before Authlib's replay lookup
    (:meth:`OpenIDCode.exists_nonce`, an ``after_`` hook) or the code's row see the value:
    PostgreSQL refuses a NUL in a query and a value longer than the column. A ``before_``
    hook, because Authlib keeps a hook type's hooks in a set (no order among them).
    Checked whatever the scope, since the code stores the nonce either way.
    """

    def __call__(self, grant: grants.AuthorizationCodeGrant) -> None:
        """Register the check on ``grant`` (an Authlib grant extension)."""
        grant.register_hook("before_validate_authorization_request_payload", self.validate)

    @staticmethod
    def validate(grant: grants.AuthorizationCodeGrant, redirect_uri: str) -> None:
        """Raise InvalidRequestError for a present but malformed ``nonce``."""
        nonce = grant.request.payload.data.get("nonce")
        if nonce and not is_vschar(nonce, NONCE_MAX_LENGTH):
            raise InvalidRequestError(
                f"'nonce' must be at most {NONCE_MAX_LENGTH} printable ASCII characters."
            )


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    """The authorization code grant; codes are stored as digests and single use."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    #: OIDC ``max_age`` of the request, in seconds; set by :class:`OpenIDCode`.
    max_age: int | None = None

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        """Store the code's digest with everything the token request will check."""
        approval: Approval = request.user
        data = request.payload.data
        now = clock.now()
        retention = dt.timedelta(seconds=CODE_RETENTION_SECONDS)
        db.session.execute(
            delete(AuthorizationCode).where(AuthorizationCode.expires_at < now - retention)
        )
        row = AuthorizationCode(
            code_digest=secret_digest(code),
            client_id=request.client.client_id,
            user_id=approval.user.id,
            redirect_uri=request.payload.redirect_uri or "",
            scope=request.scope or "",
            nonce=data.get("nonce"),
            auth_time=approval.auth_time,
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            consent_id=approval.consent_id,
            created_at=now,
            expires_at=now + dt.timedelta(seconds=settings().oauth_code_ttl),
        )
        db.session.add(row)
        db.session.commit()
        audit.record(
            "oauth.code.issued", user_id=approval.user.id, client_id=row.client_id, scope=row.scope
        )

    def query_authorization_code(self, code: str, client: OAuthClient) -> AuthorizationCode | None:
        """The live code for ``client``; a spent one revokes what it bought (RFC 6749 4.1.2)."""
        row = db.session.scalar(
            select(AuthorizationCode).where(AuthorizationCode.code_digest == secret_digest(code))
        )
        if row is None:
            return None
        if row.used_at is not None:
            _replayed(row, client)
            return None
        if row.client_id != client.client_id or row.is_expired():
            return None
        return row

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User | None:
        """Spend the code, starting its grant (one winner among concurrent requests)."""
        user = db.session.get(User, authorization_code.user_id)
        if user is None or user.is_disabled:
            return None
        pair = issuance.start_code_grant(authorization_code, user)
        if pair is None:
            _replayed(authorization_code, self.request.client)
            return None
        self.request.authgate_pair = pair  # type: ignore[attr-defined]
        return user

    def generate_token(
        self,
        user: User | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        """The tokens of the grant :meth:`authenticate_user` started (a token family)."""
        pair = self.request.authgate_pair  # type: ignore[attr-defined]
        return issuance.token_response(pair, scope or "", include_refresh_token)

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Keep the spent code (its ``used_at`` is set) so a replay is recognised."""


def _replayed(row: AuthorizationCode, client: OAuthClient) -> None:
    revoked = issuance.revoke_code_grant(row)
    audit.record(
        "oauth.code.replayed",
        user_id=row.user_id,
        client_id=client.client_id,
        code_client_id=row.client_id,
        revoked_tokens=revoked,
    )


class OpenIDCode(oidc_grants.OpenIDCode):
    """OIDC on the code grant: an ES256 ``id_token`` signed by the active key."""

    def validate_openid_authorization_request(self, grant: Any, redirect_uri: str) -> None:
        """Authlib's checks (the ``nonce`` replay) plus ``max_age`` (OIDC Core 3.1.2.1).

        A ``max_age`` that is not a non-negative integer is invalid_request, sent to the
        verified client; a good one is kept on the grant (``grant.max_age``) for the
        authorization page, which asks for the password again when the login is older.
        """
        max_age = grant.request.payload.data.get("max_age")
        if max_age is not None:
            if not MAX_AGE.fullmatch(max_age):
                raise InvalidRequestError("'max_age' must be a non-negative integer.")
            grant.max_age = int(max_age)
        super().validate_openid_authorization_request(grant, redirect_uri)

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        """True when this client already used ``nonce`` (replay of an authentication)."""
        return bool(
            db.session.scalar(
                select(
                    exists().where(
                        AuthorizationCode.client_id == request.payload.client_id,
                        AuthorizationCode.nonce == nonce,
                    )
                )
            )
        )

    def resolve_client_private_key(self, client: OAuthClient) -> ECKey:
        """The active signing key (the same one that signs access tokens)."""
        return keys.signing_key()[1]

    def get_client_algorithm(self, client: OAuthClient) -> str:
        """ES256, as published in the JWKS and the discovery document."""
        return keys.ALGORITHM

    def get_encode_header(self, client: OAuthClient) -> dict[str, str]:
        """Name the key, so verifiers pick it from the JWKS."""
        return {"alg": keys.ALGORITHM, "kid": keys.signing_key()[0], "typ": "JWT"}

    def get_client_claims(self, client: OAuthClient) -> dict[str, Any]:
        """``iss``, ``aud`` (the client), ``iat`` and ``exp`` from AuthGate's clock."""
        now = int(clock.timestamp())
        return {
            "iss": settings().issuer,
            "aud": client.client_id,
            "iat": now,
            "exp": now + settings().access_token_ttl,
        }

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        """Claims about the user for the id_token."""
        return user_info(user, scope)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Refresh with rotation and reuse detection, on the token-lifecycle machinery.

    Authlib validates the request (client, token ownership, scope); the rotation itself
    (spend, successor, grace window, reuse revokes the grant) is :func:`sessions.rotate`.
    """

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> issuance.IssuedRefreshToken | None:
        """The grant of ``refresh_token`` (spent or not: presenting a spent one is reuse)."""
        token = issuance.find_token(refresh_token, "refresh_token")
        return token if isinstance(token, issuance.IssuedRefreshToken) else None

    def authenticate_user(self, refresh_token: issuance.IssuedRefreshToken) -> User:
        """Rotate the refresh token; any refusal (reuse, expiry, revocation) is invalid_grant."""
        try:
            pair = issuance.rotate_refresh_token(
                self.request.form["refresh_token"], self.request.client
            )
        except InvalidRefreshToken as error:
            raise InvalidGrantError("The refresh token is invalid, expired or revoked.") from error
        self.request.authgate_pair = pair  # type: ignore[attr-defined]
        return refresh_token.family.user

    def issue_token(self, user: User, refresh_token: issuance.IssuedRefreshToken) -> dict[str, Any]:
        """The rotated pair; its access token narrowed to a smaller requested scope."""
        scope = self.request.payload.scope or refresh_token.get_scope()
        pair = self.request.authgate_pair  # type: ignore[attr-defined]
        pair = issuance.narrowed(pair, user, scope)
        return issuance.token_response(pair, scope, include_refresh_token=True)

    def revoke_old_credential(self, refresh_token: issuance.IssuedRefreshToken) -> None:
        """Nothing left to do: the rotation spent the old token."""


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """Tokens for a confidential client acting for itself: ``client_id``, no user."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
