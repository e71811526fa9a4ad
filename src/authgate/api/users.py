"""``/api/users``: register and look up accounts; ``/api/users/me``: your own account."""

from __future__ import annotations

from flask import Response, jsonify

from authgate import accounts, audit, sessions
from authgate.api import bp, json_body
from authgate.app_state import settings
from authgate.auth import TokenIdentity, current_identity, current_user, multi_auth
from authgate.openapi import BODY_PROBLEMS, PASSWORD_PROBLEMS, PROBLEM, USER, operation


@bp.post("/users")
@operation(
    "Register a user",
    body="Credentials",
    responses={
        201: "User",
        **BODY_PROBLEMS,
        409: PROBLEM,
        429: PROBLEM,
        503: PROBLEM,
    },
)
def new_user() -> Response:
    """Register a user: ``201`` with ``{"id", "username"}`` and a ``Location`` header."""
    body = json_body("username", "password")
    user = accounts.register(body["username"], body["password"])
    response = jsonify(user.to_dict())
    response.status_code = 201
    response.headers["Location"] = f"{settings().issuer}/api/users/{user.id}"
    return response


@bp.get("/users/<int:user_id>")
@operation("A user's public profile", responses={200: "User", 404: PROBLEM})
def get_user(user_id: int) -> Response:
    """Public profile of a user; ``404`` if unknown."""
    return jsonify(accounts.get(user_id).to_dict())


def _current_session() -> str | None:
    identity = current_identity()
    return identity.session_id if isinstance(identity, TokenIdentity) else None


@bp.get("/users/me")
@operation("Your account", security=USER, responses={200: "PrivateUser", **PASSWORD_PROBLEMS})
@multi_auth.login_required
def get_me() -> Response:
    """The authenticated user's own account."""
    return jsonify(current_user().to_private_dict())


@bp.put("/users/me/password")
@operation(
    "Change your password",
    security=USER,
    body="PasswordChange",
    responses={204: None, **BODY_PROBLEMS, **PASSWORD_PROBLEMS},
)
@multi_auth.login_required
def change_password() -> tuple[str, int]:
    """Change the password (the current one is required); every other token is revoked."""
    body = json_body("password", "new_password")
    accounts.change_password(
        current_user(), body["password"], body["new_password"], keep_session=_current_session()
    )
    return "", 204


@bp.delete("/users/me")
@operation(
    "Delete your account",
    security=USER,
    body="PasswordConfirmation",
    responses={204: None, **BODY_PROBLEMS, **PASSWORD_PROBLEMS},
)
@multi_auth.login_required
def delete_me() -> tuple[str, int]:
    """Delete the account (the password is required again) and every token of it."""
    body = json_body("password")
    accounts.delete(current_user(), body["password"])
    return "", 204


@bp.delete("/users/me/tokens")
@operation("Log out everywhere", security=USER, responses={204: None, **PASSWORD_PROBLEMS})
@multi_auth.login_required
def logout_everywhere() -> tuple[str, int]:
    """Revoke every token of the user issued until now, on every device."""
    accounts.logout_everywhere(current_user())
    return "", 204


@bp.get("/users/me/sessions")
@operation("Your live logins", security=USER, responses={200: "Sessions", **PASSWORD_PROBLEMS})
@multi_auth.login_required
def list_sessions() -> Response:
    """The user's live logins (token families), the one of this request marked ``current``."""
    current = _current_session()
    return jsonify(
        {
            "sessions": [
                {**family.to_dict(), "current": family.id == current}
                for family in sessions.live_sessions(current_user())
            ]
        }
    )


@bp.delete("/users/me/sessions/<session_id>")
@operation(
    "End one login",
    security=USER,
    responses={204: None, 404: PROBLEM, **PASSWORD_PROBLEMS},
)
@multi_auth.login_required
def end_session(session_id: str) -> tuple[str, int]:
    """End one of the user's logins; ``404`` if it is not theirs."""
    sessions.end_session(current_user(), session_id)
    return "", 204


#: How many of their own events a user sees (newest first).
MY_EVENTS_LIMIT = 100


@bp.get("/users/me/events")
@operation("Your security events", security=USER, responses={200: "Events", **PASSWORD_PROBLEMS})
@multi_auth.login_required
def my_events() -> Response:
    """The authenticated user's own security events, newest first (ASVS 16.2)."""
    user = current_user()
    events = audit.query(user_id=user.id, limit=MY_EVENTS_LIMIT)
    return jsonify({"events": [event.to_dict() for event in events]})
