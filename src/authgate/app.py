"""The application factory."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from flask import Flask, Response, g, request
from sqlalchemy import event
from werkzeug.routing import IntegerConverter, Map

from authgate import database, errors, http_hygiene, logs, metrics
from authgate.app_state import AppState
from authgate.config import Settings
from authgate.extensions import csrf, db
from authgate.passwords import Hasher, HashingSlots, PasswordPolicy, common_passwords
from authgate.throttle import Throttle
from authgate.tokens import VerifiedTokens

REQUEST_ID_HEADER = "X-Request-ID"
log = logging.getLogger("authgate")


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    """Build an AuthGate app from ``settings`` (default: the environment) plus overrides."""
    if settings is None:
        settings = Settings.from_env(**overrides)
    elif overrides:
        raise TypeError("pass either settings or overrides, not both")
    app = Flask(__name__, instance_path=str(settings.instance_path.resolve()))
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=database.engine_options(settings),
        JSON_SORT_KEYS=False,
        # The login/consent pages' session cookie (see authgate.web.login_session).
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=not settings.insecure_cookies,
        # CSRF is checked by the web blueprint's forms only; the JSON API has no cookies.
        WTF_CSRF_CHECK_DEFAULT=False,
    )
    app.debug = settings.debug and not settings.is_production
    hasher = Hasher(settings.password_hash_profile)
    app.extensions["authgate"] = AppState(
        settings=settings,
        hasher=hasher,
        password_policy=PasswordPolicy(
            min_length=settings.password_min_length,
            max_length=settings.password_max_length,
            blocklist=common_passwords() if settings.password_blocklist else None,
        ),
        throttle=Throttle(settings),
        hashing_slots=HashingSlots(
            settings.hash_memory_mib, hasher.parameters, settings.hash_wait_ms / 1000
        ),
        verified_tokens=VerifiedTokens(settings.token_cache_size),
    )
    if not settings.ratelimit:
        log.warning("rate limiting is OFF (AUTHGATE_RATELIMIT=0): passwords can be guessed freely")
    if not settings.password_blocklist:
        log.warning("common-password blocklist is OFF (AUTHGATE_PASSWORD_BLOCKLIST=0)")
    db.init_app(app)
    csrf.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            synchronous = settings.sqlite_synchronous.upper()
            event.listen(
                db.engine, "connect", lambda conn, rec: _sqlite_pragmas(conn, rec, synchronous)
            )
    errors.register(app)
    # First installed, so their after_request hooks run last and see the final status.
    logs.install(app)
    metrics.install(app)
    _register_blueprints(app)
    app.before_request(_assign_request_id)
    app.after_request(_request_id_header)
    http_hygiene.install(app, settings)
    return app


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, synchronous: str = "FULL") -> None:
    """WAL lets several workers share one SQLite file (their wait for the write lock is
    the driver's ``timeout``, see :func:`authgate.database.engine_options`); ``synchronous``
    is AUTHGATE_SQLITE_SYNCHRONOUS (NORMAL: no fsync per commit in WAL)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={'NORMAL' if synchronous == 'NORMAL' else 'FULL'}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class DatabaseId(IntegerConverter):
    """``<int:...>`` path segments: 1 to 2**31 - 1, the range of an SQL ``INTEGER`` key.

    A larger number would overflow PostgreSQL's ``integer`` (a 500); out of range is a 404.
    """

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(url_map, *args, **kwargs)


def _register_blueprints(app: Flask) -> None:
    from authgate import api, health, oauth, openapi, web, wellknown
    from authgate.web import login_session

    app.url_map.converters["int"] = DatabaseId
    app.register_blueprint(api.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(wellknown.bp)
    app.register_blueprint(web.bp)
    app.session_interface = login_session.SessionInterface()
    oauth.init_app(app)


def _assign_request_id() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    valid = 0 < len(incoming) <= 64 and incoming.replace("-", "").isalnum()
    g.request_id = incoming if valid else secrets.token_hex(8)


def _request_id_header(response: Response) -> Response:
    if "request_id" in g:
        response.headers[REQUEST_ID_HEADER] = g.request_id
    return response


__all__ = ["create_app"]
