"""Flask-HTTPAuth objects: how a request proves who it is.

- ``password_auth``: Basic ``username:password`` only (for ``/api/token``, so a token can
  never buy a new token).
- ``basic_auth``: Basic, where the username field is first tried as a token (the
  original design: ``curl -u <token>:unused``), then as a username.
- ``token_auth``: ``Authorization: Bearer <token>`` (RFC 6750).
- ``multi_auth``: Basic or Bearer, whichever the request sent.
"""

from __future__ import annotations

from flask import Response, g
from flask_httpauth import HTTPBasicAuth, HTTPTokenAuth, MultiAuth

from authgate import accounts, tokens
from authgate.errors import InvalidCredentials, InvalidToken, problem
from authgate.extensions import db
from authgate.models import User

REALM = "Authentication Required"
BASIC_CHALLENGE = f'Basic realm="{REALM}"'

password_auth = HTTPBasicAuth(realm=REALM)
basic_auth = HTTPBasicAuth(realm=REALM)
token_auth = HTTPTokenAuth(scheme="Bearer", realm=REALM)
multi_auth = MultiAuth(basic_auth, token_auth)


def user_from_token(token: str) -> User | None:
    """The live user an access token names, or None if the token or user is invalid."""
    try:
        claims = tokens.verify_access_token(token)
    except InvalidToken:
        return None
    if tokens.is_delegated(claims):
        # An OAuth client's token carries only the scopes a person granted it; it is
        # checked by authgate.oauth.protection, never accepted as a first-party login.
        return None
    user = db.session.get(User, int(claims["sub"])) if claims["sub"].isdigit() else None
    if user is not None:
        g.token_claims = claims
    return user


def _password_login(username: str, password: str) -> User | None:
    if not username:
        return None
    try:
        return accounts.authenticate(username, password)
    except InvalidCredentials:
        return None


@password_auth.verify_password
def _verify_password_only(username: str, password: str) -> User | None:
    return _password_login(username, password)


@basic_auth.verify_password
def _verify_basic(username: str, password: str) -> User | None:
    if tokens.looks_like_jwt(username):
        user = user_from_token(username)
        if user is not None:
            return user
    return _password_login(username, password)


@token_auth.verify_token
def _verify_bearer(token: str) -> User | None:
    return user_from_token(token) if token else None


def _unauthorized(bearer_sent: bool) -> Response:
    response = problem(
        401,
        "Unauthorized",
        "Unauthorized Access",
        type_="urn:authgate:problem:unauthorized",
    )
    response.headers.add("WWW-Authenticate", BASIC_CHALLENGE)
    if bearer_sent:
        response.headers.add("WWW-Authenticate", f'Bearer realm="{REALM}", error="invalid_token"')
    return response


@password_auth.error_handler
def _password_error(status: int) -> Response:
    return _unauthorized(bearer_sent=False)


@basic_auth.error_handler
def _basic_error(status: int) -> Response:
    return _unauthorized(bearer_sent=False)


@token_auth.error_handler
def _bearer_error(status: int) -> Response:
    return _unauthorized(bearer_sent=True)


def current_user() -> User:
    """The authenticated user of this request (inside a ``login_required`` view)."""
    user = multi_auth.current_user() or basic_auth.current_user() or token_auth.current_user()
    if user is None:
        raise InvalidCredentials("Unauthorized Access")
    return user
