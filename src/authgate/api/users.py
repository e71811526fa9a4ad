"""``/api/users``: register and look up accounts."""

from __future__ import annotations

from flask import Response, jsonify

from authgate import accounts, audit
from authgate.api import bp, json_body
from authgate.app_state import settings
from authgate.auth import current_user, multi_auth


@bp.post("/users")
def new_user() -> Response:
    """Register a user: ``201`` with ``{"id", "username"}`` and a ``Location`` header."""
    body = json_body("username", "password")
    user = accounts.register(body["username"], body["password"])
    response = jsonify(user.to_dict())
    response.status_code = 201
    response.headers["Location"] = f"{settings().issuer}/api/users/{user.id}"
    return response


@bp.get("/users/<int:user_id>")
def get_user(user_id: int) -> Response:
    """Public profile of a user; ``404`` if unknown."""
    return jsonify(accounts.get(user_id).to_dict())


#: How many of their own events a user sees (newest first).
MY_EVENTS_LIMIT = 100


@bp.get("/users/me/events")
@multi_auth.login_required
def my_events() -> Response:
    """The authenticated user's own security events, newest first (ASVS 16.2)."""
    user = current_user()
    events = audit.query(user_id=user.id, limit=MY_EVENTS_LIMIT)
    return jsonify({"events": [event.to_dict() for event in events]})
