"""``/api/resource``: the protected example resource of the original design."""

from __future__ import annotations

from flask import Response, jsonify

from authgate.api import bp
from authgate.auth import current_identity, multi_auth


@bp.get("/resource")
@multi_auth.login_required
def get_resource() -> Response:
    """Greet the authenticated user (a token request needs no database query)."""
    return jsonify({"data": f"Hello, {current_identity().username}!"})
