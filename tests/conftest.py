"""Fixtures: ``app``/``client`` on an isolated database, ``user``, and real ``server``s."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from authgate import create_app, database
from authgate.config import Settings
from authgate.extensions import db
from authgate.models import User
from tests.support import (
    REDIS_URL,
    TEST_SECRET,
    MigratedSchema,
    RedisServer,
    Server,
    TestClock,
    delete_redis_keys,
    isolated_database,
    on_postgresql,
    redis_prefix,
)

PASSWORD = "correct horse battery staple"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect ``postgresql`` tests on the SQLite pass (they run on the PostgreSQL pass)."""
    if on_postgresql():
        return
    deselected = [item for item in items if item.get_closest_marker("postgresql")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("postgresql")]


def make_settings(database_url: str, instance: Path, **overrides: Any) -> Settings:
    """Settings for an in-process test app (cheapest argon2 profile; the test Redis, if any,
    under a prefix of this test's own)."""
    values: dict[str, Any] = {
        "env": "testing",
        "secret_key": TEST_SECRET,
        "database_url": database_url,
        "instance_path": instance,
        "issuer": "http://authgate.test",
        "password_hash_profile": "cheapest",
    }
    if REDIS_URL:
        values.update(redis_url=REDIS_URL, redis_prefix=redis_prefix(database_url))
    values.update(overrides)
    return Settings(**values).resolved()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """An empty database of this test's own."""
    with isolated_database(tmp_path) as url:
        yield url


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a module to change the ``app`` fixture's settings."""
    return {}


@contextlib.contextmanager
def _pushed_app(database_url: str, instance: Path, **overrides: Any) -> Iterator[Flask]:
    """An app on ``database_url``, its context pushed; its connections closed after."""
    application = create_app(make_settings(database_url, instance, **overrides))
    with application.app_context():
        yield application
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="session")
def migrated_schema(tmp_path_factory: pytest.TempPathFactory) -> MigratedSchema:
    """What ``authgate db upgrade`` makes of an empty database, made once per run."""
    tmp = tmp_path_factory.mktemp("migrated")

    def upgrade(url: str) -> None:
        with _pushed_app(url, tmp):
            database.upgrade()

    return MigratedSchema(upgrade, tmp)


@pytest.fixture
def app(
    database_url: str,
    tmp_path: Path,
    settings_overrides: dict[str, Any],
    migrated_schema: MigratedSchema,
) -> Iterator[Flask]:
    """A migrated AuthGate app, its context pushed."""
    migrated_schema.lay_into(database_url)
    with _pushed_app(database_url, tmp_path, **settings_overrides) as application:
        yield application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Flask test client of ``app``."""
    return app.test_client()


class IsolatedClient(FlaskClient):
    """A test client whose every request gets a fresh app context, as on a real server.

    The ``app`` fixture keeps one app context pushed, so ``flask.g`` would otherwise
    survive from one request to the next (Flask-WTF caches the CSRF token there).
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        """Run the request on a worker thread (no app context there), then forget stale rows."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1) as pool:
            response = pool.submit(super().open, *args, **kwargs).result()
        db.session.rollback()  # end the test's read transaction: see what the request wrote
        return response


@pytest.fixture
def page_client(app: Flask) -> FlaskClient:
    """Test client for the HTML pages: sessions and CSRF behave as with a browser."""
    return IsolatedClient(app, app.response_class, use_cookies=True)


@pytest.fixture
def user(app: Flask) -> User:
    """A registered user ``miguel`` with password :data:`PASSWORD`."""
    from authgate import accounts

    return accounts.register("miguel", PASSWORD)


@contextlib.contextmanager
def _server_starter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """A factory for real server processes; all of them stopped when the context ends."""
    servers: list[Server] = []
    contexts: list[Any] = []

    def start(
        env: dict[str, str] | None = None,
        database_url: str | None = None,
        workers: int = 2,
        threads: int = 1,
    ) -> Server:
        tmp = tmp_path_factory.mktemp("server")
        if database_url is None:
            ctx = isolated_database(tmp)
            database_url = ctx.__enter__()
            contexts.append(ctx)
        server = Server(
            database_url=database_url, instance=tmp, env=env or {}, workers=workers, threads=threads
        )
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
        for ctx in reversed(contexts):
            ctx.__exit__(None, None, None)


@pytest.fixture
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """Factory for real server processes, stopped at teardown.

    ``start_server(env={...}, database_url=None, workers=2)``; servers started with the
    same ``database_url`` share one database.
    """
    with _server_starter(tmp_path_factory) as start:
        yield start


@pytest.fixture(scope="module")
def start_module_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Server]]:
    """``start_server`` for servers that a module's tests share (stopped after the module)."""
    with _server_starter(tmp_path_factory) as start:
        yield start


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    """One real server with default settings (real argon2 parameters)."""
    return start_server()


@pytest.fixture
def test_clock(tmp_path: Path) -> TestClock:
    """A clock file that real servers started with ``test_clock.env()`` read their time from."""
    return TestClock(tmp_path / "clock")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A Redis URL: AUTHGATE_TEST_REDIS_URL when set, else a throwaway redis-server."""
    if REDIS_URL:
        yield REDIS_URL
        return
    server = RedisServer(tmp_path).start()
    yield server.url
    server.stop()


@pytest.fixture
def own_redis_prefix(redis_url: str) -> Iterator[str]:
    """A random key prefix, so tests sharing one Redis never meet; its keys go at teardown."""
    import secrets

    prefix = f"test-{secrets.token_hex(6)}:"
    yield prefix
    delete_redis_keys(redis_url, prefix)
