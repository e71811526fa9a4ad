"""Flask-HTTPAuth objects: how a request proves who it is.

- ``password_auth``: Basic ``username:password`` only (for ``/api/token``, so a token can
  never buy a new token).
- ``basic_auth``: Basic, where the username field is first tried as a token (the
  original design: ``curl -u <token>:unused``), then as a username.
- ``token_auth``: ``Authorization: Bearer <token>`` (RFC 6750).
- ``multi_auth``: Basic or Bearer, whichever the request sent.
- ``access_token_auth``: an access token only, as Bearer or as the Basic username
  (``DELETE /api/token``: the token to revoke is the credential).

A token request is authorised from the verified claims alone (no database query): the
authenticated object is then a :class:`TokenIdentity`; a password request yields the
:class:`~authgate.models.User`. :func:`current_identity` returns either;
:func:`current_user` always returns the database row.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, NamedTuple

from flask import Response, g, request
from flask_httpauth import HTTPBasicAuth, HTTPTokenAuth, MultiAuth

from authgate import accounts, audit, tokens
from authgate.errors import InvalidCredentials, InvalidToken, problem
from authgate.extensions import db
from authgate.models import User


class TokenIdentity(NamedTuple):
    """Who a verified, unrevoked access token speaks for, read from its claims (a named
    tuple: built on every token request, at a third of a frozen dataclass's cost)."""

    id: int
    username: str
    claims: dict[str, Any]

    @property
    def session_id(self) -> str | None:
        """The token family (``sid``) the token belongs to."""
        sid = self.claims.get("sid")
        return sid if isinstance(sid, str) else None


REALM = "Authentication Required"
BASIC_CHALLENGE = f'Basic realm="{REALM}"'
BEARER = "Bearer"
BEARER_PREFIX = BEARER + " "


@functools.cache
def _synchronous(function: Any) -> Any:
    if inspect.iscoroutinefunction(function):
        raise TypeError(f"{function!r}: AuthGate's auth callbacks and views are synchronous")
    return function


class _SyncCallbacks:
    """Flask-HTTPAuth asks ``current_app.ensure_sync`` about every callback and view on
    every request (a context lookup and a coroutine check, ~2.5 us each); AuthGate's are
    all plain functions, so each is checked once and then called directly."""

    def ensure_sync(self, f: Any) -> Any:
        """``f`` itself; a coroutine function is refused (TypeError)."""
        return _synchronous(f)


class _BasicAuth(_SyncCallbacks, HTTPBasicAuth):
    """HTTPBasicAuth for synchronous callbacks."""


class _TokenAuth(_SyncCallbacks, HTTPTokenAuth):
    """HTTPTokenAuth for synchronous callbacks."""


class _MultiAuth(MultiAuth):
    """Flask-HTTPAuth's MultiAuth, with each scheme's decorated view built once, when the
    view is decorated, instead of on every request; the scheme is chosen as MultiAuth
    chooses it (the first whose scheme the ``Authorization`` header names, else the
    first), reading the header once.

    ``Authorization: Bearer <token>`` with a JWT-shaped token (the benchmark's hot path)
    is handed straight to the token scheme's ``verify_token`` callback, with the outcome
    Flask-HTTPAuth's decorator gives it: the callback's result in its ``g`` slot (so
    ``current_user()`` and the request log see it) and the view called, or, when the
    callback finds no one and the view is not ``optional``, its error handler with 401.
    What is left out is generic work this request cannot need: the header parsed a second
    time into a werkzeug ``Authorization``, the password and role callbacks. Any other
    header, any ``OPTIONS`` request and any view given a ``role`` go through
    Flask-HTTPAuth's own decorator (bench/README.md, item 10).
    """

    def login_required(self, f: Any = None, role: Any = None, optional: Any = None) -> Any:
        """Like :meth:`MultiAuth.login_required`."""
        if f is not None and (role is not None or optional is not None):
            raise ValueError("role and optional are the only supported arguments")

        def internal(view: Any) -> Any:
            auths = (self.main_auth, *self.additional_auths)
            views = [a.login_required(role=role, optional=optional)(view) for a in auths]

            by_scheme: dict[str, Any] = {}
            for auth, wrapped in zip(reversed(auths), reversed(views), strict=True):
                by_scheme[auth.scheme] = wrapped
            bearer = next((a for a in auths if a.scheme == BEARER), None)
            direct = isinstance(bearer, HTTPTokenAuth) and bearer.header is None and role is None
            plain_view = _synchronous(view)

            @functools.wraps(view)
            def decorated(*args: Any, **kwargs: Any) -> Any:
                current = request._get_current_object()  # type: ignore[attr-defined]
                header = current.headers.get("Authorization", "")
                if direct and current.method != "OPTIONS":
                    token = _bearer_token(header)
                    if token is not None:
                        user = bearer.verify_token_callback(token)
                        if user in (False, None) and not optional:
                            return bearer.auth_error_callback(401)
                        g.flask_httpauth_user = user
                        return plain_view(*args, **kwargs)
                return by_scheme.get(_scheme(header), views[0])(*args, **kwargs)

            return decorated

        return internal(f) if f else internal


def _bearer_token(header: str) -> str | None:
    """The token of ``Bearer <token>`` when it is JWT-shaped and Flask-HTTPAuth would read
    the very same string from the header (one space, no ``=``, no surrounding blanks);
    else None."""
    if not header.startswith(BEARER_PREFIX):
        return None
    token = header[len(BEARER_PREFIX) :]
    if "=" in token or token.strip() != token or not tokens.looks_like_jwt(token):
        return None
    return token


def _scheme(header: str) -> str | None:
    """The scheme an ``Authorization`` header names, as Flask-HTTPAuth's
    ``is_compatible_auth`` reads it (None without credentials after it)."""
    parts = header.split(None, 1)
    return parts[0] if len(parts) == 2 else None


password_auth = _BasicAuth(realm=REALM)
basic_auth = _BasicAuth(realm=REALM)
token_auth = _TokenAuth(scheme=BEARER, realm=REALM)
multi_auth = _MultiAuth(basic_auth, token_auth)
basic_token_auth = _BasicAuth(realm=REALM)
access_token_auth = _MultiAuth(basic_token_auth, token_auth)


def token_identity(token: str) -> TokenIdentity:
    """Who a valid, unrevoked first-party access token names; raises InvalidToken.

    Revocation (including deleted and disabled users) is applied by
    :func:`authgate.tokens.verify_access_token`; the database is read only for tokens
    that predate the ``preferred_username`` claim.
    """
    # An OAuth client's token carries only the scopes a person granted it; it is
    # checked by authgate.oauth.protection, never accepted as a first-party login.
    claims = tokens.verify_access_token(token, first_party=True)
    subject = str(claims["sub"])
    if not subject.isdigit():
        raise InvalidToken("no user subject", claims=claims)
    username = claims.get("preferred_username")
    if not isinstance(username, str):
        user = db.session.get(User, int(subject))
        if user is None or user.is_disabled:
            raise InvalidToken("no such user", reason="revoked", claims=claims)
        username = user.username
    return TokenIdentity(id=int(subject), username=username, claims=claims)


def record_rejection(error: InvalidToken) -> None:
    """Audit an access token this request was refused for (``token.rejected``): the reason,
    and the user, client and ``jti`` when the token's signature was good; never the token."""
    claims = error.claims or {}
    subject, client_id, jti = claims.get("sub"), claims.get("client_id"), claims.get("jti")
    detail = {"jti": jti} if isinstance(jti, str) else {}
    audit.record(
        "token.rejected",
        user_id=int(subject) if isinstance(subject, str) and subject.isdigit() else None,
        client_id=client_id if isinstance(client_id, str) else None,
        reason=error.reason,
        **detail,
    )


def _checked_identity(token: str, signed_only: bool = False) -> TokenIdentity | None:
    """:func:`token_identity`, or None with the refusal kept for the 401 to audit
    (:func:`_unauthorized`): a view may still accept the token by another door. With
    ``signed_only`` only the refusal of a token whose signature was good is kept: a Basic
    username that merely looks like a token is a username."""
    try:
        return token_identity(token)
    except InvalidToken as error:
        if not signed_only or error.claims is not None:
            g.rejected_token = error
        return None


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
def _verify_basic(username: str, password: str) -> User | TokenIdentity | None:
    if tokens.looks_like_jwt(username):
        identity = _checked_identity(username, signed_only=True)
        if identity is not None:
            return identity
    return _password_login(username, password)


@basic_token_auth.verify_password
def _verify_basic_token(username: str, password: str) -> TokenIdentity | None:
    return _checked_identity(username) if username else None


@token_auth.verify_token
def _verify_bearer(token: str) -> TokenIdentity | None:
    return _checked_identity(token) if token else None


def _unauthorized(bearer_sent: bool) -> Response:
    rejected = g.pop("rejected_token", None)
    if rejected is not None:
        record_rejection(rejected)
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


def unauthorized() -> Response:
    """The 401 that Flask-HTTPAuth's error handlers below give this request, for a view
    that authenticates with ``optional=True`` and then finds no one: the Basic challenge,
    and the Bearer one if the request sent a Bearer token (the scheme MultiAuth chose)."""
    header = request.headers.get("Authorization", "")
    return _unauthorized(bearer_sent=_scheme(header) == token_auth.scheme)


def _basic_error(status: int) -> Response:
    return _unauthorized(bearer_sent=False)


for _basic_scheme in (password_auth, basic_auth, basic_token_auth):
    _basic_scheme.error_handler(_basic_error)


@token_auth.error_handler
def _bearer_error(status: int) -> Response:
    return _unauthorized(bearer_sent=True)


def current_identity() -> User | TokenIdentity:
    """Who this request authenticated as (inside a ``login_required`` view), without a
    database query for token requests: has ``.id`` and ``.username``."""
    # Every Flask-HTTPAuth object stores the authenticated object in the same ``g`` slot.
    identity = multi_auth.current_user()
    if not isinstance(identity, User | TokenIdentity):
        raise InvalidCredentials("Unauthorized Access")
    return identity


def current_user() -> User:
    """The authenticated user's database row (inside a ``login_required`` view)."""
    identity = current_identity()
    if isinstance(identity, User):
        return identity
    user = db.session.get(User, identity.id)
    if user is None:
        raise InvalidCredentials("Unauthorized Access")
    return user


def current_token_claims() -> dict[str, Any] | None:
    """The claims of the access token this request authenticated with, if any."""
    identity = current_identity()
    return identity.claims if isinstance(identity, TokenIdentity) else None
