"""The machine-facing OAuth endpoints; each hands the request to Authlib."""

from __future__ import annotations

from flask import Response

from authgate.oauth import authorization_server, bp


@bp.post("/token")
def issue_token() -> Response:
    """Token endpoint (RFC 6749 3.2): authorization_code, refresh_token, client_credentials."""
    return authorization_server().create_token_response()


@bp.post("/revoke")
def revoke_token() -> Response:
    """Revocation endpoint (RFC 7009), client-authenticated."""
    return authorization_server().create_endpoint_response("revocation")


@bp.post("/introspect")
def introspect_token() -> Response:
    """Introspection endpoint (RFC 7662), for confidential clients."""
    return authorization_server().create_endpoint_response("introspection")


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """OpenID Connect UserInfo endpoint, for access tokens with the ``openid`` scope."""
    return authorization_server().create_endpoint_response("userinfo")
