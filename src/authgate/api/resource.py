"""``/api/resource``: the protected example resource of the original design."""

from __future__ import annotations

from flask import Response, jsonify

from authgate import oauth
from authgate.api import bp
from authgate.app_state import settings
from authgate.auth import current_identity, multi_auth
from authgate.errors import InvalidBearerToken
from authgate.oauth import protection
from authgate.openapi import PASSWORD_PROBLEMS, PROBLEM, RESOURCE, operation


@bp.get("/resource")
@operation(
    "The protected example resource",
    security=RESOURCE,
    responses={200: "Resource", **PASSWORD_PROBLEMS, 403: PROBLEM},
)
def get_resource() -> Response:
    """Greet the caller: a user (password or first-party token), or an OAuth client's token.

    An OAuth access token must carry the scope ``AUTHGATE_RESOURCE_SCOPE``; without it the
    answer is ``403`` with ``WWW-Authenticate: Bearer error="insufficient_scope"``.
    """
    if protection.presents_oauth_token():
        token = protection.require(oauth.resource_protector(), settings().resource_scope)
        name = token.subject_name()
        if name is None:
            raise InvalidBearerToken(realm="Authentication Required")
        return jsonify({"data": f"Hello, {name}!"})
    return _first_party()


@multi_auth.login_required
def _first_party() -> Response:
    return jsonify({"data": f"Hello, {current_identity().username}!"})
