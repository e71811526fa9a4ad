"""The machine-facing OAuth endpoints; each hands the request to Authlib."""

from __future__ import annotations

from flask import Response

from authgate.oauth import authorization_server, bp
from authgate.openapi import CLIENT, FORM, OAUTH_ERROR, OAUTH_ERRORS, USERINFO, operation


@bp.post("/token")
@operation(
    "Token endpoint",
    security=CLIENT,
    body="TokenRequest",
    body_type=FORM,
    responses={200: "TokenResponse", **OAUTH_ERRORS},
)
def issue_token() -> Response:
    """Token endpoint (RFC 6749 3.2): authorization_code, refresh_token, client_credentials."""
    return authorization_server().create_token_response()


@bp.post("/revoke")
@operation(
    "Revocation endpoint",
    security=CLIENT,
    body="TokenForm",
    body_type=FORM,
    responses={200: None, **OAUTH_ERRORS},
)
def revoke_token() -> Response:
    """Revocation endpoint (RFC 7009), client-authenticated."""
    return authorization_server().create_endpoint_response("revocation")


@bp.post("/introspect")
@operation(
    "Introspection endpoint",
    security=CLIENT,
    body="TokenForm",
    body_type=FORM,
    responses={200: "Introspection", **OAUTH_ERRORS},
)
def introspect_token() -> Response:
    """Introspection endpoint (RFC 7662), for confidential clients."""
    return authorization_server().create_endpoint_response("introspection")


@bp.route("/userinfo", methods=["GET", "POST"])
@operation(
    "OpenID Connect UserInfo",
    security=USERINFO,
    responses={200: "UserInfo", 401: OAUTH_ERROR, 403: OAUTH_ERROR},
)
def userinfo() -> Response:
    """OpenID Connect UserInfo endpoint, for access tokens with the ``openid`` scope."""
    return authorization_server().create_endpoint_response("userinfo")
