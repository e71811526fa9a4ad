"""The authorization server, assembled from Authlib's Flask integration.

Grants: authorization code (+ PKCE S256 required, + OpenID Connect), refresh token,
client credentials; no implicit, no password grant. Endpoints: revocation,
introspection, userinfo. RFC 9207 ``iss`` on every authorization response.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer as _AuthorizationServer
from authlib.integrations.flask_oauth2 import ResourceProtector
from authlib.oauth2 import OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749.authenticate_client import (
    authenticate_client_secret_basic,
    authenticate_client_secret_post,
    authenticate_none,
)
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc9207 import IssuerParameter
from flask import Flask

from authgate import audit, clients, throttle, tokens
from authgate.app_state import settings
from authgate.errors import Throttled
from authgate.models import OAuthClient, User
from authgate.oauth import issuance
from authgate.oauth.endpoints import IntrospectionEndpoint, RevocationEndpoint, UserInfoEndpoint
from authgate.oauth.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    NonceRule,
    OpenIDCode,
    RefreshTokenGrant,
    S256CodeChallenge,
)

ClientAuth = Callable[[Callable[[str], Any], OAuth2Request], OAuthClient | None]


class AuthorizationServer(_AuthorizationServer):
    """Authlib's Flask authorization server with AuthGate's client store and tokens."""

    def query_client(self, client_id: str) -> OAuthClient | None:
        """The registered client ``client_id``, or None."""
        return clients.find(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Record what was issued, so it can be introspected and revoked."""
        issuance.record(token, request)


class Issuer(IssuerParameter):
    """RFC 9207: ``iss`` in every authorization response, errors included."""

    def get_issuer(self) -> str:
        """This server's issuer identifier."""
        return settings().issuer


def _access_token(client: OAuthClient, grant_type: str, user: User | None, scope: str) -> str:
    """Client credentials only: grants with a person issue through their token family."""
    if user is not None:
        raise RuntimeError(f"{grant_type} tokens are issued by the grant's token family")
    return tokens.issue_client_access_token(client.client_id, scope or "").token


def _expires_in(client: OAuthClient, grant_type: str) -> int:
    return settings().access_token_ttl


class ClientThrottled(OAuth2Error):
    """Too many failed secrets for this client: ``429`` with ``Retry-After``, no check made."""

    error = "temporarily_unavailable"
    status_code = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many failed attempts; retry after {retry_after} seconds.")
        self.retry_after = retry_after

    def get_headers(self) -> list[tuple[str, str]]:
        """JSON headers plus ``Retry-After``."""
        return [*super().get_headers(), ("Retry-After", str(self.retry_after))]


#: The one description of every failed client authentication, whatever the cause.
AUTH_FAILED = "Client authentication failed."
#: The throttle account of Basic credentials too malformed to name a client (no client id
#: holds a NUL): they are counted per address like any failure, and against one another.
MALFORMED_BASIC = "\0malformed-basic"


def _presented(method: str, request: OAuth2Request) -> tuple[str | None, str | None]:
    if method == "client_secret_basic":
        return extract_basic_authorization(request.headers)
    return request.form.get("client_id"), request.form.get("client_secret")


def _attempt(presented: str) -> throttle.Attempt:
    """Ask the shared throttle whether the client id ``presented`` (its first 128
    characters) may be checked now (``client:<id>``).

    An id no client can have (e.g. with a NUL, which PostgreSQL cannot store) is throttled
    like an unknown client, but not written down. Raises ClientThrottled.
    """
    client_id = presented[:128]
    label = client_id if clients.is_client_id(client_id) else None
    try:
        return throttle.check("client:" + client_id, client_id=label)
    except Throttled as error:
        raise ClientThrottled(error.retry_after) from error


def _failed(
    attempt: throttle.Attempt,
    method: str,
    status_code: int,
    description: str = AUTH_FAILED,
    reason: str = "malformed_client_id",
) -> InvalidClientError:
    """Count a failed client authentication, audit it, and return the error to raise."""
    throttle.record_failure(attempt)
    detail = {} if attempt.client_id is not None else {"reason": reason}
    audit.record("oauth.client.auth_failed", client_id=attempt.client_id, method=method, **detail)
    return InvalidClientError(status_code=status_code, description=description)


def _throttled(method: str, authenticate: ClientAuth) -> ClientAuth:
    """Wrap one of Authlib's secret checks in the shared throttle, and audit failures.

    The throttle (``"client:" + client_id``, per address and per client) is asked before
    the secret is looked at, exactly like a password; a wrong secret, an unknown client or
    malformed Basic credentials count as a failure and are audited
    (``oauth.client.auth_failed``).
    """

    def check(query_client: Callable[[str], Any], request: OAuth2Request) -> OAuthClient | None:
        try:
            client_id, secret = _presented(method, request)
        except ValueError as error:  # a bare "Authorization: Basic", or not UTF-8
            attempt = _attempt(MALFORMED_BASIC)
            raise _failed(
                attempt, method, 401, "Malformed Basic credentials.", "malformed_basic_credentials"
            ) from error
        if not client_id or not secret:
            return authenticate(query_client, request)  # this method was not used
        attempt = _attempt(client_id)
        client = None
        if attempt.client_id is not None:  # a well-formed id
            with contextlib.suppress(InvalidClientError):
                client = authenticate(query_client, request)
        if client is None:
            raise _failed(attempt, method, 401 if method == "client_secret_basic" else 400)
        throttle.record_success(attempt)
        return client

    return check


def _identified(authenticate: ClientAuth) -> ClientAuth:
    """Wrap Authlib's ``none`` method: a public client names itself by ``client_id`` alone.

    An unknown id and the id of a confidential client (which must authenticate, RFC 6749
    3.2.1) get the answer of a wrong secret, ``401 invalid_client`` with a Basic
    challenge (RFC 6749 5.2), and are counted and audited like one: the answer does not
    tell which ids exist. A public client's own request asks no throttle: it has no
    secret to guess, and failures others send with its id must not lock it out.
    """

    def check(query_client: Callable[[str], Any], request: OAuth2Request) -> OAuthClient | None:
        client_id = request.payload.client_id
        if not client_id or request.payload.data.get("client_secret"):
            return authenticate(query_client, request)  # this method was not used
        client = None
        with contextlib.suppress(InvalidClientError):
            client = authenticate(query_client, request)
        if client is not None and client.check_endpoint_auth_method("none", "token"):
            return client
        raise _failed(_attempt(str(client_id)), "none", 401)

    return check


def create_server(app: Flask, protector: ResourceProtector) -> AuthorizationServer:
    """Assemble the authorization server for ``app``; ``protector`` guards userinfo."""
    server = AuthorizationServer()
    server.init_app(app)
    server.scopes_supported = list(settings_of(app).scope_catalog)
    server.register_token_generator(
        "default",
        BearerTokenGenerator(
            access_token_generator=_access_token,
            expires_generator=_expires_in,
        ),
    )
    server.register_client_auth_method(
        "client_secret_basic", _throttled("client_secret_basic", authenticate_client_secret_basic)
    )
    server.register_client_auth_method(
        "client_secret_post", _throttled("client_secret_post", authenticate_client_secret_post)
    )
    server.register_client_auth_method("none", _identified(authenticate_none))
    server.register_grant(
        AuthorizationCodeGrant, [S256CodeChallenge(required=True), NonceRule(), OpenIDCode()]
    )
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_extension(Issuer())
    server.register_endpoint(RevocationEndpoint)
    server.register_endpoint(IntrospectionEndpoint)
    server.register_endpoint(UserInfoEndpoint(resource_protector=protector))
    return server


def settings_of(app: Flask) -> Any:
    """The AuthGate settings of ``app`` (no app context needed)."""
    return app.extensions["authgate"].settings
