"""Who is logged in on the HTML pages: a signed session cookie holding a user id.

The cookie is ``HttpOnly``, ``SameSite=Lax`` and ``Secure`` (unless
``AUTHGATE_INSECURE_COOKIES=1``); a login lasts ``AUTHGATE_LOGIN_SESSION_TTL`` seconds.
It also holds a MAC of the user's password hash at login, so any change of the password
(however it was made) ends the page login, as it ends every other login.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from flask import Flask, Request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from authgate import clock
from authgate.app_state import settings
from authgate.config import derive_key
from authgate.extensions import db
from authgate.models import User

USER_KEY = "uid"
AUTH_TIME_KEY = "auth_time"
MARK_KEY = "mark"
#: Set by a login, consumed by the next authorization request (OIDC ``prompt=login``).
FRESH_KEY = "fresh_login"
#: How long after the login that flag still counts (the redirect back takes a moment).
FRESH_LOGIN_SECONDS = 60


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, except that a request without the session cookie
    (every API request) gets its empty session without building the cookie signer first,
    which Flask does on every request (bench/README.md, item 9)."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """The session of ``request``: empty when it sent no session cookie."""
        if app.secret_key and (
            "HTTP_COOKIE" not in request.environ
            or not request.cookies.get(self.get_cookie_name(app))
        ):
            return self.session_class()
        return super().open_session(app, request)


@dataclass(frozen=True)
class Person:
    """The logged-in user and when they typed their password."""

    user: User
    auth_time: int


def log_in(user: User) -> None:
    """Start a new session for ``user`` (any previous session data is dropped)."""
    session.clear()
    session[USER_KEY] = user.id
    session[AUTH_TIME_KEY] = int(clock.timestamp())
    session[MARK_KEY] = _password_mark(user)
    session[FRESH_KEY] = True


def log_out() -> None:
    """End the session."""
    session.clear()


def current() -> Person | None:
    """The logged-in person; None if nobody is, the login is too old, or the user is gone,
    disabled, logged out everywhere or changed their password after this login."""
    user_id = session.get(USER_KEY)
    auth_time = session.get(AUTH_TIME_KEY)
    mark = session.get(MARK_KEY)
    if not isinstance(user_id, int) or not isinstance(auth_time, int) or not isinstance(mark, str):
        return None
    if clock.timestamp() - auth_time > settings().login_session_ttl:
        session.clear()
        return None
    user = db.session.get(User, user_id)
    if (
        user is None
        or user.is_disabled
        or _logged_out_everywhere(user, auth_time)
        or not hmac.compare_digest(mark, _password_mark(user))
    ):
        session.clear()
        return None
    return Person(user=user, auth_time=auth_time)


def _password_mark(user: User) -> str:
    """A MAC of the user's password hash: it changes with the password (the cookie is
    signed, not encrypted, so the hash itself is never put in it)."""
    key = derive_key(settings().secret_key, "authgate login sessions")
    return hmac.new(key, user.password_hash.encode(), hashlib.sha256).hexdigest()[:32]


def _logged_out_everywhere(user: User, auth_time: int) -> bool:
    """True when the user ended every session (``DELETE /api/users/me/tokens``) since."""
    valid_after = user.tokens_valid_after
    return valid_after is not None and auth_time < valid_after.timestamp()


def take_fresh_login() -> bool:
    """True (once) when the password was typed just before this request: the login set
    the flag and was at most :data:`FRESH_LOGIN_SECONDS` ago (a flag left by a login that
    no authorization request followed goes stale)."""
    flagged = session.pop(FRESH_KEY, False)
    auth_time = session.get(AUTH_TIME_KEY)
    return (
        flagged is True
        and isinstance(auth_time, int)
        and clock.timestamp() - auth_time <= FRESH_LOGIN_SECONDS
    )
