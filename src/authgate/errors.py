"""Domain exceptions and their one mapping to RFC 9457 ``application/problem+json``.

Views and services raise; :func:`register` turns every exception into JSON here,
so no error ever reaches a client as an HTML page or a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy.exc
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "urn:authgate:problem:"
#: ``Retry-After`` (seconds) of a 503 caused by an unreachable database.
DATABASE_RETRY_AFTER = 5
#: SQLite errors that mean "busy now", not a bug (another writer holds the file too long).
SQLITE_TRANSIENT = ("database is locked", "database is busy", "unable to open database")


class AuthGateError(Exception):
    """Base of every error AuthGate raises on purpose; carries its HTTP mapping."""

    status = 400
    slug = "bad-request"
    title = "Bad Request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra

    def headers(self) -> dict[str, str]:
        """Extra response headers (e.g. ``Retry-After``)."""
        return {}


class InvalidInput(AuthGateError):
    """Raised when a request body or field is missing, of the wrong type, or malformed."""

    slug = "invalid-input"
    title = "Invalid input"


class PasswordRejected(InvalidInput):
    """Raised when a new password breaks the password policy; ``detail`` says why."""

    slug = "password-rejected"
    title = "Password rejected"


class UsernameTaken(AuthGateError):
    """Raised when registering a username whose normalised form already exists."""

    status = 409
    slug = "username-taken"
    title = "Username taken"


class NotFound(AuthGateError):
    """Raised when a requested resource does not exist."""

    status = 404
    slug = "not-found"
    title = "Not Found"


class InvalidCredentials(AuthGateError):
    """Raised for any failed password check: unknown user, wrong password, bad hash.

    One error for every cause, so the answer tells an attacker nothing (ASVS 6.3.8).
    """

    status = 401
    slug = "invalid-credentials"
    title = "Unauthorized"


class InvalidToken(AuthGateError):
    """Raised when an access token is malformed, forged, expired or not for us.

    ``reason`` says which, for the audit log (``token.rejected``): ``malformed``,
    ``invalid``, ``expired``, ``revoked`` or ``wrong_kind`` (an OAuth client's token at a
    first-party door, or the reverse). ``claims`` are the token's claims when its
    signature was verified, else None.
    """

    status = 401
    slug = "invalid-token"
    title = "Unauthorized"
    reason = "invalid"

    def __init__(
        self,
        detail: str | None = None,
        *,
        reason: str | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        if reason is not None:
            self.reason = reason
        self.claims = claims


class Throttled(AuthGateError):
    """Raised before any password is checked when a throttle is over its limit.

    The same answer, with the same ``Retry-After``, for existing and unknown accounts
    and for right and wrong passwords (ASVS 6.3.1, NIST SP 800-63B-4 throttling).
    """

    status = 429
    slug = "throttled"
    title = "Too Many Requests"

    def __init__(self, retry_after: int) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(
            f"too many failed attempts; retry after {self.retry_after} seconds",
            retry_after=self.retry_after,
        )

    def headers(self) -> dict[str, str]:
        """``Retry-After`` in whole seconds (RFC 9110 10.2.3)."""
        return {"Retry-After": str(self.retry_after)}


class ServiceBusy(AuthGateError):
    """Raised when every password-hashing slot of this worker stayed busy too long."""

    status = 503
    slug = "busy"
    title = "Service Unavailable"

    def __init__(self, retry_after: int = 1) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__("the server is busy hashing passwords; retry shortly")

    def headers(self) -> dict[str, str]:
        """``Retry-After`` in whole seconds."""
        return {"Retry-After": str(self.retry_after)}


class ServiceUnavailable(AuthGateError):
    """Raised (or mapped from a database error) when the database cannot be reached in time:
    connection refused or timed out, pool exhausted, statement timeout, SQLite locked."""

    status = 503
    slug = "unavailable"
    title = "Service Unavailable"

    def __init__(self, retry_after: int = DATABASE_RETRY_AFTER) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__("the database is unavailable; retry shortly")

    def headers(self) -> dict[str, str]:
        """``Retry-After`` in whole seconds."""
        return {"Retry-After": str(self.retry_after)}


class TokenRevoked(InvalidToken):
    """Raised when a valid access token was revoked: by its ``jti``, its family (``sid``),
    or because its user logged out everywhere, was disabled or deleted."""

    slug = "token-revoked"
    reason = "revoked"


class InvalidRefreshToken(AuthGateError):
    """Raised when a refresh token is unknown, expired, spent, revoked or not the caller's.

    One answer for every cause; the audit log records which (by family id, never the token).
    """

    status = 401
    slug = "invalid-refresh-token"
    title = "Unauthorized"

    def headers(self) -> dict[str, str]:
        """RFC 6750 challenge: the presented token is not valid."""
        return {"WWW-Authenticate": 'Bearer realm="Authentication Required", error="invalid_token"'}


class InvalidBearerToken(InvalidToken):
    """Raised when an OAuth access token is malformed, forged, expired or revoked (RFC 6750 3.1)."""

    def __init__(self, realm: str) -> None:
        super().__init__("invalid, expired or revoked access token")
        self.realm = realm

    def headers(self) -> dict[str, str]:
        """The Bearer challenge with ``error="invalid_token"``."""
        return {"WWW-Authenticate": f'Bearer realm="{self.realm}", error="invalid_token"'}


class InsufficientScope(AuthGateError):
    """Raised when a valid OAuth access token lacks the scope a resource needs (RFC 6750 3.1)."""

    status = 403
    slug = "insufficient-scope"
    title = "Forbidden"

    def __init__(self, scope: str, realm: str) -> None:
        super().__init__(f"this resource needs the scope {scope!r}", scope=scope)
        self.scope = scope
        self.realm = realm

    def headers(self) -> dict[str, str]:
        """The Bearer challenge naming the missing scope."""
        challenge = f'Bearer realm="{self.realm}", error="insufficient_scope", scope="{self.scope}"'
        return {"WWW-Authenticate": challenge}


def problem(
    status: int,
    title: str,
    detail: str,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """Build an RFC 9457 problem response."""
    body = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
    response = Response(
        json.dumps(body, separators=(",", ":")),
        status=status,
        mimetype="application/problem+json",
        headers=headers,
    )
    return response


def _domain_error(error: AuthGateError) -> Response:
    return problem(
        error.status,
        error.title,
        error.detail,
        PROBLEM_TYPE_BASE + error.slug,
        headers=error.headers(),
        **error.extra,
    )


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    headers = {k: v for k, v in error.get_headers() if k.lower() not in {"content-type"}}
    response = problem(status, error.name, error.description or error.name, headers=headers)
    return response


def is_database_unavailable(error: BaseException) -> bool:
    """True for database errors that mean "unreachable or busy now", not a bug: lost or
    refused connections, timeouts (connect, pool, statement), SQLite lock contention."""
    if isinstance(error, sqlalchemy.exc.TimeoutError):  # no pooled connection in time
        return True
    if not isinstance(error, sqlalchemy.exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if not isinstance(error, sqlalchemy.exc.OperationalError):
        return False
    if error.orig is not None and type(error.orig).__module__.startswith("sqlite3"):
        return any(text in str(error.orig) for text in SQLITE_TRANSIENT)
    # PostgreSQL (psycopg): connection failures, admin shutdown, statement timeout.
    return True


def _database_error(error: sqlalchemy.exc.SQLAlchemyError) -> Response:
    if not is_database_unavailable(error):
        return _unexpected_error(error)
    # Never str(error): it carries the statement's parameters (digests, hashes).
    orig = getattr(error, "orig", None)
    reason = str(orig).strip().splitlines()[0][:200] if orig is not None else type(error).__name__
    log.warning("database unavailable (%s: %s); answering 503", type(orig).__name__, reason)
    return _domain_error(ServiceUnavailable())


def _unexpected_error(error: Exception) -> Response:
    log.exception("unhandled error", exc_info=error)
    return problem(500, "Internal Server Error", "The server failed to handle the request.")


def register(app: Flask) -> None:
    """Install the JSON error handlers on ``app``."""
    app.register_error_handler(AuthGateError, _domain_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(sqlalchemy.exc.SQLAlchemyError, _database_error)
    app.register_error_handler(Exception, _unexpected_error)
