"""``/api/resource``: the protected example resource of the original design."""

from __future__ import annotations

from flask import Response, jsonify

from authgate import oauth
from authgate.api import bp
from authgate.app_state import settings
from authgate.auth import TokenIdentity, multi_auth, unauthorized
from authgate.errors import InvalidBearerToken
from authgate.models import User
from authgate.oauth import protection
from authgate.openapi import PASSWORD_PROBLEMS, PROBLEM, RESOURCE, operation


@bp.get("/resource")
@operation(
    "The protected example resource",
    security=RESOURCE,
    responses={200: "Resource", **PASSWORD_PROBLEMS, 403: PROBLEM},
)
@multi_auth.login_required(optional=True)
def get_resource() -> Response:
    """Greet the caller: a user (password or first-party token), or an OAuth client's token.

    The first-party check runs first, so the common request pays for no OAuth routing. An
    OAuth access token must carry the scope ``AUTHGATE_RESOURCE_SCOPE``; without it the
    answer is ``403`` with ``WWW-Authenticate: Bearer error="insufficient_scope"``.
    """
    identity = multi_auth.current_user()
    if isinstance(identity, User | TokenIdentity):
        return jsonify({"data": f"Hello, {identity.username}!"})
    if protection.presents_oauth_token():
        token = protection.require(oauth.resource_protector(), settings().resource_scope)
        name = token.subject_name()
        if name is None:
            raise InvalidBearerToken(realm="Authentication Required")
        return jsonify({"data": f"Hello, {name}!"})
    return unauthorized()
