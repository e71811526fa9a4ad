"""Pool and timeout settings, and which database errors become a 503 (errors.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
from flask import Flask
from sqlalchemy import create_engine, text

from authgate import database, errors
from authgate.config import ConfigError, Settings


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """A short statement timeout (PostgreSQL), to see it enforced."""
    return {"db_statement_timeout_ms": 300}


def settings(**values: Any) -> Settings:
    """Testing settings with ``values``."""
    return Settings(env="testing", secret_key="k" * 40, **values).resolved()


def test_pool_defaults_and_sqlite_options(tmp_path: Path) -> None:
    """Defaults: 5 + 5 connections per worker, 5 s pool wait, pre-ping, statement parameters
    kept out of errors; SQLite waits 30 s for a lock and gets no libpq arguments."""
    options = database.engine_options(settings(instance_path=tmp_path))
    assert options == {
        "hide_parameters": True,
        "pool_size": 5,
        "max_overflow": 5,
        "pool_timeout": 5,
        "pool_pre_ping": True,
        "connect_args": {"timeout": 30},
    }


def test_postgresql_timeouts_keep_the_url_options() -> None:
    """connect_timeout and statement_timeout go to libpq; an ``options`` of the URL (here a
    search_path) is kept, not replaced."""
    url = "postgresql+psycopg://u@db.internal/app?options=-csearch_path%3Dtenant"
    options = database.engine_options(
        settings(database_url=url, db_connect_timeout=3, db_statement_timeout_ms=1500)
    )
    assert options["connect_args"] == {
        "connect_timeout": 3,
        "options": "-csearch_path=tenant -c statement_timeout=1500",
    }
    no_limit = database.engine_options(
        settings(database_url="postgresql+psycopg://u@db/app", db_statement_timeout_ms=0)
    )
    assert no_limit["connect_args"] == {"connect_timeout": 5}


def test_pool_settings_come_from_the_environment(tmp_path: Path) -> None:
    """AUTHGATE_DB_* variables are read, typed and validated."""
    environ = {
        "AUTHGATE_DB_POOL_SIZE": "12",
        "AUTHGATE_DB_MAX_OVERFLOW": "0",
        "AUTHGATE_DB_POOL_TIMEOUT": "7",
        "AUTHGATE_DB_POOL_PRE_PING": "0",
        "AUTHGATE_INSTANCE_PATH": str(tmp_path),
    }
    options = database.engine_options(Settings.from_env(environ))
    assert (options["pool_size"], options["max_overflow"]) == (12, 0)
    assert (options["pool_timeout"], options["pool_pre_ping"]) == (7, False)
    for name, bad in [
        ("AUTHGATE_DB_POOL_SIZE", "0"),
        ("AUTHGATE_DB_CONNECT_TIMEOUT", "0"),
        ("AUTHGATE_DB_MAX_OVERFLOW", "-1"),
        ("AUTHGATE_DB_STATEMENT_TIMEOUT_MS", "-5"),
    ]:
        with pytest.raises(ConfigError, match=name.removeprefix("AUTHGATE_")):
            Settings.from_env({**environ, name: bad})


def sqlite_error(tmp_path: Path, statement: str, lock: bool) -> sqlalchemy.exc.DBAPIError:
    """The real SQLAlchemy error of ``statement`` on a SQLite file (write-locked if ``lock``)."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    if lock:
        holder.execute("BEGIN EXCLUSIVE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with engine.begin() as connection:
            connection.execute(text(statement))
    except sqlalchemy.exc.DBAPIError as exc:
        return exc
    finally:
        engine.dispose()
        holder.close()
    raise AssertionError("no error")


def raising(app: Flask, error: Exception) -> Any:
    """A test client whose GET /boom raises ``error`` inside a request."""

    def boom() -> None:
        raise error

    app.add_url_rule("/boom", "boom", boom)
    return app.test_client()


def test_sqlite_lock_timeout_is_a_503(app: Flask, tmp_path: Path) -> None:
    """ "database is locked" (a writer held the file past the busy timeout) answers 503."""
    error = sqlite_error(tmp_path, "INSERT INTO t VALUES (1)", lock=True)
    assert "database is locked" in str(error.orig)
    response = raising(app, error).get("/boom")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == str(errors.DATABASE_RETRY_AFTER)
    assert response.json["type"] == "urn:authgate:problem:unavailable"


def test_other_database_errors_stay_500_without_statement_details(
    app: Flask, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug ("no such table") is not disguised as an outage: 500 JSON, logged."""
    error = sqlite_error(tmp_path, "SELECT * FROM missing", lock=False)
    assert not errors.is_database_unavailable(error)
    response = raising(app, error).get("/boom")
    assert response.status_code == 500
    assert response.json["title"] == "Internal Server Error"
    assert "unhandled error" in caplog.text


def test_logged_database_errors_carry_no_statement_parameters(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed statement's bound values (digests, nonces) never reach the log: the engine
    hides them (``hide_parameters``), while the 500 is still logged."""
    from authgate.extensions import db

    secret = "digest-0f1e2d3c4b5a69788796a5b4c3d2e1f0"

    def boom() -> None:
        db.session.execute(text("SELECT x FROM no_such_table WHERE x = :v"), {"v": secret})

    app.add_url_rule("/boom", "boom", boom)
    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert "unhandled error" in caplog.text
    assert "no_such_table" in caplog.text
    assert secret not in caplog.text


def test_pool_exhaustion_is_a_503() -> None:
    """No pooled connection within AUTHGATE_DB_POOL_TIMEOUT is an outage, not a bug."""
    assert errors.is_database_unavailable(sqlalchemy.exc.TimeoutError("QueuePool limit"))
    assert not errors.is_database_unavailable(ValueError("nope"))


@pytest.mark.postgresql
def test_statement_timeout_is_enforced_and_answers_503(app: Flask) -> None:
    """AUTHGATE_DB_STATEMENT_TIMEOUT_MS reaches PostgreSQL (next to the test's search_path),
    and a statement cut by it answers 503."""
    from authgate.extensions import db

    assert db.session.execute(text("SHOW statement_timeout")).scalar() == "300ms"
    assert db.session.execute(text("SELECT count(*) FROM users")).scalar() == 0
    with pytest.raises(sqlalchemy.exc.OperationalError) as caught:
        db.session.execute(text("SELECT pg_sleep(2)"))
    db.session.rollback()
    assert errors.is_database_unavailable(caught.value)
    assert raising(app, caught.value).get("/boom").status_code == 503


@pytest.mark.parametrize("command", [["db", "upgrade"], ["serve", "--port", "0"]])
def test_unreachable_database_at_start_is_one_line_and_exit_1(
    tmp_path: Path, command: list[str]
) -> None:
    """``authgate db upgrade`` and ``serve`` with the database down: one clear line, status 1."""
    import os
    import subprocess

    from tests.support import AUTHGATE, free_port

    env = {
        **os.environ,
        "AUTHGATE_INSTANCE_PATH": str(tmp_path),
        "AUTHGATE_DATABASE_URL": f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
        "AUTHGATE_DB_CONNECT_TIMEOUT": "2",
    }
    done = subprocess.run([AUTHGATE, *command], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("authgate: database unreachable:")
    assert "Traceback" not in done.stderr
