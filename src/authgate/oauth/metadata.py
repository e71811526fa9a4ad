"""Discovery documents: RFC 8414 server metadata and OpenID provider metadata.

Built as Authlib's metadata classes, so ``.validate()`` checks them against the RFCs.
"""

from __future__ import annotations

from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.discovery import OpenIDProviderMetadata

from authgate import keys
from authgate.app_state import settings

TOKEN_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
SECRET_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


def _common() -> dict[str, object]:
    issuer = settings().issuer
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "scopes_supported": list(settings().scope_catalog),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "revocation_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "introspection_endpoint_auth_methods_supported": SECRET_AUTH_METHODS,
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
    }


def authorization_server() -> AuthorizationServerMetadata:
    """``/.well-known/oauth-authorization-server``."""
    return AuthorizationServerMetadata(_common())


def openid_provider() -> OpenIDProviderMetadata:
    """``/.well-known/openid-configuration``."""
    issuer = settings().issuer
    return OpenIDProviderMetadata(
        {
            **_common(),
            "userinfo_endpoint": f"{issuer}/oauth/userinfo",
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [keys.ALGORITHM],
            "claims_supported": [
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "at_hash",
                "amr",
                "preferred_username",
            ],
            "prompt_values_supported": ["none", "login", "consent"],
        }
    )
