"""``/api/token``: log in for a token pair, refresh it, revoke it."""

from __future__ import annotations

from flask import Response, jsonify, request

from authgate import sessions
from authgate.api import bp, json_body
from authgate.auth import access_token_auth, current_token_claims, password_auth
from authgate.openapi import BASIC, BEARER, BODY_PROBLEMS, PASSWORD_PROBLEMS, PROBLEM, operation


def _token_response(pair: sessions.TokenPair) -> Response:
    response = jsonify(pair.to_dict())
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/token", methods=["GET", "POST"])
@operation(
    "Log in: a token pair for a password",
    security=BASIC,
    responses={200: "TokenPair", **PASSWORD_PROBLEMS},
)
@password_auth.login_required
def new_token() -> Response:
    """Issue an access token and a refresh token; only a password is accepted, never a token."""
    pair = sessions.start(
        password_auth.current_user(),
        ip=request.remote_addr,
        user_agent=request.user_agent.string,
    )
    return _token_response(pair)


@bp.post("/token/refresh")
@operation(
    "Rotate a refresh token",
    body="RefreshRequest",
    responses={200: "TokenPair", **BODY_PROBLEMS, 401: PROBLEM},
)
def refresh_token() -> Response:
    """Rotate a refresh token: a new access token and a new refresh token."""
    body = json_body("refresh_token")
    pair = sessions.rotate(
        body["refresh_token"], ip=request.remote_addr, user_agent=request.user_agent.string
    )
    return _token_response(pair)


@bp.delete("/token")
@operation(
    "Log out: revoke this access token and its family",
    security=(*BASIC, *BEARER),
    responses={204: None, 401: PROBLEM},
)
@access_token_auth.login_required
def revoke_current_token() -> tuple[str, int]:
    """Log out: revoke the access token this request carries and its whole family."""
    claims = current_token_claims()
    assert claims is not None
    sessions.logout(claims)
    return "", 204


@bp.post("/token/revoke")
@operation(
    "Revoke a token (RFC 7009)", body="RevokeRequest", responses={200: None, **BODY_PROBLEMS}
)
def revoke_token() -> tuple[str, int]:
    """RFC 7009 revocation of an access or refresh token: ``200`` even for unknown tokens."""
    body = json_body("token")
    hint = body.get("token_type_hint")
    sessions.revoke_token(body["token"], hint if isinstance(hint, str) else None)
    return "", 200
