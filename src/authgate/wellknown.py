"""``/.well-known/*``: public documents other services fetch to trust our tokens."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from authgate import keys

bp = Blueprint("wellknown", __name__, url_prefix="/.well-known")


@bp.get("/jwks.json")
def jwks() -> Response:
    """The public signing keys (RFC 7517), for offline token verification."""
    response = jsonify(keys.jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
