"""The revocation store: no database query per check, shared across processes, Redis-safe."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from authgate import create_app, revocation
from authgate.config import ConfigError, Settings
from authgate.extensions import db
from authgate.models import User
from tests.conftest import make_settings
from tests.support import free_port
from tests.test_refresh import greets, login
from tests.test_tokens import bearer


class FrozenMonotonic:
    """Stands in for the ``time`` module inside authgate.revocation: a cache clock we move."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def monotonic(self) -> float:
        """The frozen monotonic time."""
        return self.now


@pytest.fixture
def cache_clock(monkeypatch: pytest.MonkeyPatch) -> FrozenMonotonic:
    """Freeze the revocation caches' clock, so a test decides when they go stale."""
    frozen = FrozenMonotonic()
    monkeypatch.setattr(revocation, "time", SimpleNamespace(monotonic=frozen.monotonic))
    return frozen


def count_statements(app: Flask) -> list[str]:
    """A list that collects every SQL statement the app's engine runs from now on."""
    statements: list[str] = []

    def collect(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", collect)
    return statements


def poll_until(predicate: Callable[[], bool], seconds: float = 1.0) -> bool:
    """True as soon as ``predicate`` holds, False if it never did within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def test_models_and_migrations_agree(app: Flask) -> None:
    """The migrated schema is exactly what models.py declares."""
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert diff == []


def test_token_check_runs_no_query_in_the_common_case(
    client: FlaskClient, user: User, cache_clock: FrozenMonotonic, app: Flask
) -> None:
    """Once warm, token requests run no SQL; a stale cache costs one query, not one per request."""
    token = login(client)["token"]
    assert greets(client, token)
    statements = count_statements(app)
    for _ in range(20):
        assert greets(client, token)
    assert statements == []
    cache_clock.now += 1.0
    for _ in range(20):
        assert greets(client, token)
    expected = 0 if app.extensions["authgate"].settings.redis_url else 1
    assert len(statements) == expected, statements


@pytest.fixture
def second_app(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Factory of a second app on the test's database (as a second process would be)."""
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        other = create_app(make_settings(database_url, tmp_path / "other", **overrides))
        apps.append(other)
        return other

    yield make
    for other in apps:
        with other.app_context():
            db.engine.dispose()


def test_revocation_in_one_app_reaches_another_within_a_second(
    client: FlaskClient, user: User, second_app: Callable[..., Flask]
) -> None:
    """Two apps (as two processes would) on one database: a revocation flips within 1 s."""
    token = login(client)["token"]
    other_client = second_app().test_client()
    assert greets(other_client, token)
    assert client.delete("/api/token", headers=bearer(token)).status_code == 204
    assert poll_until(lambda: not greets(other_client, token))


def test_expired_entries_are_forgotten() -> None:
    """A snapshot drops entries once every token they affect has expired."""
    snapshot = revocation.Snapshot()
    snapshot.apply(revocation.Entry(revocation.JTI, "a", 0, 100.0, 200.0, 1))
    snapshot.apply(revocation.Entry(revocation.USER, "7", 150, 100.0, 300.0, 2))
    snapshot.prune(250.0)
    assert snapshot.jtis == {} and snapshot.user_not_before("7") == 150
    snapshot.prune(301.0)
    assert snapshot.user_not_before("7") == 0


def test_newest_user_entry_wins() -> None:
    """Re-enabling a user (a later, lower not_before) replaces the disabled marker."""
    snapshot = revocation.Snapshot()
    snapshot.apply(revocation.Entry(revocation.USER, "7", revocation.DISABLED, 100.0, 900.0, 1))
    snapshot.apply(revocation.Entry(revocation.USER, "7", 120, 120.0, 900.0, 2))
    snapshot.apply(revocation.Entry(revocation.USER, "7", revocation.DISABLED, 100.0, 900.0, 1))
    assert snapshot.user_not_before("7") == 120


# ---------------------------------------------------------------- a Redis of our own


class ThrowawayRedis:
    """A redis-server process of this test's own, to kill and restart at will."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (empty: no persistence) and wait until it answers."""
        binary = shutil.which("redis-server")
        assert binary, "redis-server is required by the test suite"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        assert poll_until(lambda: _pings(client), seconds=10)
        client.close()

    def stop(self) -> None:
        """Kill it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    """A throwaway Redis server, killed at teardown."""
    server = ThrowawayRedis(tmp_path)
    server.start()
    yield server
    server.stop()


PREFIX = "t-own:" + secrets.token_hex(4) + ":"


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Tests that use ``own_redis`` run their app against it."""
    if "own_redis" not in request.fixturenames:
        return {}
    server: ThrowawayRedis = request.getfixturevalue("own_redis")
    return {"redis_url": server.url, "redis_prefix": PREFIX}


def test_redis_entries_expire_with_the_token(
    own_redis: ThrowawayRedis, client: FlaskClient, user: User
) -> None:
    """A revoked jti lives in Redis, under the prefix, exactly as long as the token would."""
    token = login(client)["token"]
    client.delete("/api/token", headers=bearer(token))
    keys = redis.Redis.from_url(own_redis.url)
    names = sorted(k.decode() for k in keys.keys("*"))
    assert names and all(name.startswith(PREFIX) for name in names)
    jti_key = next(n for n in names if n.startswith(PREFIX + "rv:jti:"))
    family_key = next(n for n in names if n.startswith(PREFIX + "rv:family:"))
    assert 590_000 < keys.pttl(jti_key) <= 605_000
    assert 590_000 < keys.pttl(family_key) <= 605_000
    keys.close()


def test_redis_outage_falls_back_to_database_and_recovers(
    own_redis: ThrowawayRedis,
    client: FlaskClient,
    user: User,
    second_app: Callable[..., Flask],
) -> None:
    """Redis down: checks use the database and refuse revoked tokens; Redis back: used again."""
    other = second_app(redis_url=own_redis.url, redis_prefix=PREFIX)
    other_client = other.test_client()
    before, during, after = login(client), login(client), login(client)
    client.delete("/api/token", headers=bearer(before["token"]))
    assert poll_until(lambda: not greets(other_client, before["token"]))
    assert greets(other_client, during["token"])

    own_redis.stop()
    assert client.delete("/api/token", headers=bearer(during["token"])).status_code == 204
    assert poll_until(lambda: not greets(other_client, during["token"]))
    assert not greets(other_client, before["token"])
    assert greets(other_client, after["token"])
    assert other.extensions["authgate"].revocation.redis_down_until > 0

    own_redis.start()  # empty: everything written before the outage is gone
    keys = redis.Redis.from_url(own_redis.url)

    def still_refused_and_resynced() -> bool:
        assert not greets(other_client, during["token"])
        assert not greets(other_client, before["token"])
        return bool(keys.exists(PREFIX + revocation.SYNCED_MARKER))

    assert poll_until(still_refused_and_resynced, seconds=5)
    assert client.delete("/api/token", headers=bearer(after["token"])).status_code == 204
    assert poll_until(lambda: not greets(other_client, after["token"]))
    assert len(keys.keys(PREFIX + "rv:jti:*")) == 3
    keys.close()


def test_revocation_that_missed_redis_is_enforced_by_the_database_backstop(
    own_redis: ThrowawayRedis,
    client: FlaskClient,
    user: User,
    second_app: Callable[..., Flask],
    cache_clock: FrozenMonotonic,
) -> None:
    """A revocation whose writer could not reach Redis is still enforced by Redis users,
    from the database view they refresh every BACKSTOP_SECONDS."""
    token = login(client)["token"]
    assert greets(client, token)
    cut_off = second_app(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_prefix=PREFIX)
    assert cut_off.test_client().delete("/api/token", headers=bearer(token)).status_code == 204
    cache_clock.now += revocation.BACKSTOP_SECONDS
    assert not greets(client, token)
    keys = redis.Redis.from_url(own_redis.url)
    assert keys.keys(PREFIX + "rv:jti:*") == []
    keys.close()


def test_revocation_cache_longer_than_a_second_is_refused(tmp_path: Path) -> None:
    """AUTHGATE_REVOCATION_CACHE_MS above 1000 would break the 1 s promise: a config error."""
    with pytest.raises(ConfigError, match="REVOCATION_CACHE_MS"):
        Settings.from_env(
            {"AUTHGATE_INSTANCE_PATH": str(tmp_path), "AUTHGATE_REVOCATION_CACHE_MS": "1500"}
        )
