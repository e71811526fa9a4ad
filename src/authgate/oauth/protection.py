"""Protecting resources with OAuth access tokens: Authlib's ``ResourceProtector``.

Tokens are verified by :func:`authgate.tokens.verify_access_token` (ES256 only, key
by ``kid``, AuthGate's clock) and checked against the revocation store; Authlib's
bearer validator then enforces expiry, revocation and scope with RFC 6750 errors.
"""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import TokenMixin
from authlib.oauth2.rfc6750 import BearerTokenValidator, InsufficientScopeError
from flask import g, request

from authgate import clients, tokens
from authgate.auth import REALM, record_rejection
from authgate.errors import InsufficientScope, InvalidBearerToken, InvalidToken
from authgate.extensions import db
from authgate.models import OAuthClient, User


class AccessToken(TokenMixin):
    """A verified OAuth access token (its JWT claims), as Authlib's validators see it."""

    def __init__(self, claims: dict[str, Any]) -> None:
        self.claims = claims

    @property
    def scope(self) -> str:
        """The granted scopes, space-separated."""
        return str(self.claims.get("scope") or "")

    @property
    def client_id(self) -> str:
        """The client the token was issued to."""
        return str(self.claims["client_id"])

    @property
    def has_user(self) -> bool:
        """False for client-credentials tokens, whose subject is the client itself."""
        return self.claims["sub"] != self.client_id

    def get_scope(self) -> str:
        """The granted scopes."""
        return self.scope

    def check_client(self, client: OAuthClient) -> bool:
        """True when the token was issued to ``client``."""
        return self.client_id == client.client_id

    def get_expires_in(self) -> int:
        """Seconds the token was valid for when issued."""
        return int(self.claims["exp"]) - int(self.claims["iat"])

    def is_expired(self) -> bool:
        """Expiry was checked when the signature was (with AuthGate's clock)."""
        return False

    def is_revoked(self) -> bool:
        """Revocation (token, grant, user) was checked with the signature."""
        return False

    def get_user(self) -> User | None:
        """The person the client acts for; None for client-credentials tokens."""
        if not self.has_user or not str(self.claims["sub"]).isdigit():
            return None
        return db.session.get(User, int(self.claims["sub"]))

    def get_client(self) -> OAuthClient | None:
        """The client the token was issued to (None if since deleted)."""
        return clients.find(self.client_id)

    def subject_name(self) -> str | None:
        """The username, or for a machine token the client's name; None if either is gone."""
        if self.has_user:
            user = self.get_user()
            return user.username if user else None
        client = self.get_client()
        return client.name if client else None


def load_access_token(token: str) -> AccessToken | None:
    """A verified OAuth access token, or None (forged, expired, not ours, first-party);
    a refused token is audited (``token.rejected``) here, for every OAuth door."""
    try:
        claims = tokens.verify_access_token(token)
        if not tokens.is_delegated(claims):
            raise InvalidToken("a first-party token", reason=tokens.WRONG_KIND, claims=claims)
    except InvalidToken as error:
        record_rejection(error)
        return None
    g.token_claims = claims  # for the request line's user id (authgate.logs)
    return AccessToken(claims)


class ScopeMissing(InsufficientScopeError):
    """``insufficient_scope`` with the ``WWW-Authenticate`` header RFC 6750 3 asks for."""

    def __init__(self, scopes: list[str]) -> None:
        super().__init__()
        self.scopes = scopes

    def get_headers(self) -> list[tuple[str, str]]:
        """JSON headers plus the Bearer challenge naming the scope needed."""
        scope = " ".join(self.scopes)
        challenge = f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'
        return [*super().get_headers(), ("WWW-Authenticate", challenge)]


class AccessTokenValidator(BearerTokenValidator):
    """Bearer validator for AuthGate's RFC 9068 access tokens."""

    def authenticate_token(self, token_string: str) -> AccessToken | None:
        """Verify the JWT; None makes Authlib answer ``invalid_token``."""
        return load_access_token(token_string)

    def validate_token(self, token: Any, scopes: Any, request: Any) -> None:
        """Authlib's checks, with a ``WWW-Authenticate`` on ``insufficient_scope``."""
        try:
            super().validate_token(token, scopes, request)
        except InsufficientScopeError as error:
            raise ScopeMissing(list(scopes or [])) from error


def create_protector() -> ResourceProtector:
    """A resource protector accepting AuthGate's OAuth access tokens."""
    protector = ResourceProtector()
    protector.register_token_validator(AccessTokenValidator(realm=REALM))
    return protector


def presents_oauth_token() -> bool:
    """True when the request carries a Bearer token that claims to be an OAuth access token.

    Routing only (the ``typ`` header is read unverified); the protector verifies it.
    """
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return tokens.unverified_header(value.strip()).get("typ") == tokens.DELEGATED_TYPE


def require(protector: ResourceProtector, scope: str) -> AccessToken:
    """The request's OAuth token if it is valid and holds ``scope``.

    Raises InsufficientScope (403) or InvalidBearerToken (401), both carrying the RFC 6750
    ``WWW-Authenticate`` challenge, for AuthGate's one JSON error path.
    """
    try:
        token: AccessToken = protector.acquire_token([scope])
    except ScopeMissing as error:
        raise InsufficientScope(scope, realm=REALM) from error
    except OAuth2Error as error:
        raise InvalidBearerToken(realm=REALM) from error
    return token
