"""``/api/users/me/consents``: what a person allowed OAuth clients, and withdrawing it."""

from __future__ import annotations

from flask import Response, jsonify

from authgate import consents
from authgate.api import bp
from authgate.auth import current_user, multi_auth
from authgate.openapi import PASSWORD_PROBLEMS, PROBLEM, USER, operation


@bp.get("/users/me/consents")
@operation("Your OAuth consents", security=USER, responses={200: "Consents", **PASSWORD_PROBLEMS})
@multi_auth.login_required
def list_consents() -> Response:
    """The consents the user gave (first-party credentials only, never an OAuth token)."""
    return jsonify({"consents": consents.list_for(current_user().id)})


@bp.delete("/users/me/consents")
@operation("Withdraw every consent", security=USER, responses={204: None, **PASSWORD_PROBLEMS})
@multi_auth.login_required
def withdraw_all_consents() -> Response:
    """Withdraw every consent and revoke every token issued under them: ``204``."""
    consents.withdraw(current_user().id)
    return Response(status=204)


@bp.delete("/users/me/consents/<int:consent_id>")
@operation(
    "Withdraw one consent",
    security=USER,
    responses={204: None, 404: PROBLEM, **PASSWORD_PROBLEMS},
)
@multi_auth.login_required
def withdraw_consent(consent_id: int) -> Response:
    """Withdraw one consent and revoke the tokens issued under it: ``204``, or ``404``."""
    consents.withdraw(current_user().id, consent_id)
    return Response(status=204)
