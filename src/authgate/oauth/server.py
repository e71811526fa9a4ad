"""The authorization server, assembled from Authlib's Flask integration.

Grants: authorization code (+ PKCE S256 required, + OpenID Connect), refresh token,
client credentials; no implicit, no password grant. Endpoints: revocation,
introspection, userinfo. RFC 9207 ``iss`` on every authorization response.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer as _AuthorizationServer
from authlib.integrations.flask_oauth2 import ResourceProtector
from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749.authenticate_client import (
    authenticate_client_secret_basic,
    authenticate_client_secret_post,
)
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc9207 import IssuerParameter
from flask import Flask

from authgate import audit, clients, tokens
from authgate.app_state import settings
from authgate.models import OAuthClient, User
from authgate.oauth import issuance
from authgate.oauth.endpoints import IntrospectionEndpoint, RevocationEndpoint, UserInfoEndpoint
from authgate.oauth.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
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


def _audited(method: str, authenticate: ClientAuth) -> ClientAuth:
    """Wrap one of Authlib's secret checks so a wrong secret is audited."""

    def check(query_client: Callable[[str], Any], request: OAuth2Request) -> OAuthClient | None:
        client = authenticate(query_client, request)
        if client is None:
            if method == "client_secret_basic":
                client_id, secret = extract_basic_authorization(request.headers)
            else:
                client_id, secret = request.form.get("client_id"), request.form.get("client_secret")
            if client_id and secret:
                audit.record("oauth.client.auth_failed", client_id=client_id[:128], method=method)
        return client

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
        "client_secret_basic", _audited("client_secret_basic", authenticate_client_secret_basic)
    )
    server.register_client_auth_method(
        "client_secret_post", _audited("client_secret_post", authenticate_client_secret_post)
    )
    server.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True), OpenIDCode()])
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
