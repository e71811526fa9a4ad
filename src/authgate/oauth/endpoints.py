"""Authlib's revocation (RFC 7009), introspection (RFC 7662) and OIDC userinfo endpoints."""

from __future__ import annotations

from typing import Any

from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6750 import InvalidTokenError
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint
from authlib.oidc.core import UserInfo
from authlib.oidc.core import UserInfoEndpoint as _UserInfoEndpoint
from joserfc.jwk import ECKey

from authgate import audit, keys
from authgate.app_state import settings
from authgate.models import OAuthClient, User
from authgate.oauth import issuance
from authgate.oauth.grants import user_info

SECRET_METHODS = ["client_secret_basic", "client_secret_post"]


class RevocationEndpoint(_RevocationEndpoint):
    """``POST /oauth/revoke``: a client revokes one of its tokens.

    Revoking a refresh token ends its whole grant, access tokens included (RFC 7009 2.1).
    Public clients identify themselves with ``client_id`` (method ``none``).
    """

    CLIENT_AUTH_METHODS = [*SECRET_METHODS, "none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        """The access or refresh token ``token_string`` names (the hint is only a hint)."""
        return issuance.find_token(token_string, token_type_hint)

    def revoke_token(self, token: Any, request: OAuth2Request) -> None:
        """Revoke ``token`` (and, for a refresh token, everything issued under its grant)."""
        issuance.revoke(token)
        audit.record(
            "token.revoked",
            user_id=token.user_id,
            client_id=request.client.client_id,
            how="oauth_revocation",
            token_type=token.token_type,
            jti=token.jti,
            family_id=token.family_id,
        )


class IntrospectionEndpoint(_IntrospectionEndpoint):
    """``POST /oauth/introspect``: a confidential client asks about one of its tokens.

    A client registered with ``--introspect`` (a resource server) may ask about every
    access token, AuthGate's own included (RFC 7662 2.1 leaves the policy to us).
    """

    CLIENT_AUTH_METHODS = SECRET_METHODS

    def authenticate_token(self, request: OAuth2Request, client: OAuthClient) -> Any:
        """The token named in the request, if ``client`` may learn about it."""
        self.check_params(request, client)
        token = issuance.find_token(
            request.form["token"],
            request.form.get("token_type_hint"),
            first_party=client.can_introspect,
            asking=client.client_id,
        )
        if token is not None and self.check_permission(token, client, request):
            return token
        return None

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        """The access or refresh token ``token_string`` names, or None."""
        return issuance.find_token(token_string, token_type_hint)

    def check_permission(self, token: Any, client: OAuthClient, request: OAuth2Request) -> bool:
        """A client learns only about tokens issued to it, unless it is an introspector;
        others read ``active: false``."""
        if client.can_introspect and token.token_type == "access_token":  # noqa: S105
            return True
        return bool(token.check_client(client))

    def introspect_token(self, token: Any) -> dict[str, Any]:
        """The RFC 7662 2.2 members for an active token."""
        return dict(token.introspection())


class UserInfoEndpoint(_UserInfoEndpoint):
    """``GET/POST /oauth/userinfo``: OIDC claims for the person behind an access token."""

    def get_issuer(self) -> str:
        """This server's issuer identifier."""
        return settings().issuer

    def generate_user_info(self, user: User | None, scope: str) -> UserInfo:
        """Claims the token's scope allows; machine tokens have no person to describe."""
        if user is None:
            raise InvalidTokenError("The access token does not belong to a user.")
        return user_info(user, scope)

    def resolve_private_key(self) -> ECKey:
        """The active signing key (for clients registered for signed userinfo)."""
        return keys.signing_key()[1]
