"""``/.well-known/*``: public documents other services fetch to trust our tokens."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from authgate import keys
from authgate.app_state import settings
from authgate.oauth import metadata
from authgate.openapi import operation

bp = Blueprint("wellknown", __name__, url_prefix="/.well-known")


@bp.get("/jwks.json")
@operation("Public signing keys (JWKS)", responses={200: "JWKS", 304: None})
def jwks() -> Response:
    """The public signing keys (RFC 7517), for offline token verification.

    Cacheable for ``AUTHGATE_JWKS_MAX_AGE`` seconds, with an ETag for cheap revalidation;
    a new key appears here at least that long before it signs anything.
    """
    response = jsonify(keys.jwks())
    response.headers["Cache-Control"] = f"public, max-age={settings().jwks_max_age}"
    response.add_etag()
    return response.make_conditional(request)


@bp.get("/oauth-authorization-server")
@operation("OAuth authorization server metadata", responses={200: "Metadata"})
def oauth_authorization_server() -> Response:
    """OAuth 2.0 Authorization Server Metadata (RFC 8414)."""
    response = jsonify(metadata.authorization_server())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/openid-configuration")
@operation("OpenID Connect discovery", responses={200: "Metadata"})
def openid_configuration() -> Response:
    """OpenID Connect Discovery 1.0 provider metadata."""
    response = jsonify(metadata.openid_provider())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
