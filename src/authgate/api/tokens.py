"""``/api/token``: exchange a username and password for an access token."""

from __future__ import annotations

from flask import Response, jsonify

from authgate import audit, tokens
from authgate.api import bp
from authgate.auth import password_auth


@bp.route("/token", methods=["GET", "POST"])
@password_auth.login_required
def new_token() -> Response:
    """Issue an access token; only a password is accepted here, never a token."""
    user = password_auth.current_user()
    issued = tokens.issue_access_token(user)
    audit.record("token.issued", user_id=user.id, jti=issued.jti)
    response = jsonify(issued.to_dict())
    response.headers["Cache-Control"] = "no-store"
    return response
