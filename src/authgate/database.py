"""The database: engine options (pool, timeouts) and schema management (Alembic upgrades,
run by ``authgate db upgrade`` and ``serve``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url

from authgate.extensions import db

if TYPE_CHECKING:
    from authgate.config import Settings

#: SQLite's own wait for a write lock, in seconds (several workers share one file).
SQLITE_BUSY_TIMEOUT = 30

MIGRATIONS = Path(__file__).parent / "migrations"


def engine_options(settings: Settings) -> dict[str, Any]:
    """``create_engine`` options for ``settings.database_url``: a bounded pool per worker,
    pre-ping, and on PostgreSQL connect and statement timeouts (``AUTHGATE_DB_*``).

    ``hide_parameters``: a statement error's text (logged with every unexpected 500)
    never carries the statement's bound values (code digests, nonces, usernames).
    """
    options: dict[str, Any] = {
        "hide_parameters": True,
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        "pool_pre_ping": settings.db_pool_pre_ping,
    }
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT}
    elif url.get_backend_name() == "postgresql":
        options["connect_args"] = _postgresql_connect_args(url.query, settings)
    return options


def _postgresql_connect_args(query: Any, settings: Settings) -> dict[str, Any]:
    """libpq's ``connect_timeout`` and ``statement_timeout``, keeping ``options`` of the URL
    (``connect_args`` replace URL parameters of the same name, so both are merged here)."""
    args: dict[str, Any] = {"connect_timeout": settings.db_connect_timeout}
    given = query.get("options", "")
    parts = [given] if isinstance(given, str) else list(given)
    if settings.db_statement_timeout_ms:
        parts.append(f"-c statement_timeout={settings.db_statement_timeout_ms}")
    if any(parts):
        args["options"] = " ".join(part for part in parts if part)
    return args


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(revision: str = "head") -> None:
    """Bring the current app's database to ``revision`` (inside an app context), in one
    transaction: a failed upgrade leaves the database as it was."""
    config = _alembic_config()
    with db.engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it and dropping the old one; with foreign
            # keys on, the drop would cascade into the tables that reference it. The
            # pragma is ignored inside a transaction, so it goes first.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                if sqlite and not _in_transaction(connection):
                    # Python's sqlite3 opens no transaction before DDL by itself.
                    connection.exec_driver_sql("BEGIN")
                if connection.dialect.name == "postgresql":
                    # Migrations may rewrite big tables: the statement timeout is for requests.
                    connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
        finally:
            if sqlite:  # never back to the pool with foreign keys off
                connection.invalidate()


def _in_transaction(connection: Connection) -> bool:
    """True when the sqlite3 connection under ``connection`` has a transaction open."""
    return bool(getattr(connection.connection.dbapi_connection, "in_transaction", False))


def current_revision() -> str | None:
    """The revision the current app's database is at, or None if never migrated."""
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with this version of AuthGate."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()
