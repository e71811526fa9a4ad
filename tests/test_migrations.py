"""Schema upgrades of a database that already holds data."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select, text

from authgate import accounts, create_app, database, sessions
from authgate.extensions import db
from authgate.models import RefreshToken, TokenFamily, User
from tests.conftest import PASSWORD, make_settings

BEFORE_IDS = "introspect"  # the revision before user and consent ids were never reused


def counts() -> dict[str, int]:
    """How many users, token families and refresh tokens the database holds."""
    return {
        model.__tablename__: db.session.scalar(select(func.count()).select_from(model)) or 0
        for model in (User, TokenFamily, RefreshToken)
    }


def test_upgrade_keeps_every_row_and_never_reuses_a_user_id(
    database_url: str, tmp_path: Path
) -> None:
    """Rebuilding ``users`` on SQLite copies it whole (nothing cascades into the tables that
    reference it), foreign keys are enforced again afterwards, and the next user's id is
    above every id the database remembers, a deleted user's in the audit log included."""
    app = create_app(make_settings(database_url, tmp_path))
    with app.app_context():
        database.upgrade(BEFORE_IDS)
        alice = accounts.register("alice", PASSWORD)
        bob = accounts.register("bob", PASSWORD)
        sessions.start(bob)
        db.session.commit()
        dave = accounts.register("dave", PASSWORD)
        gone = dave.id  # the highest id, deleted: only the audit log still has it
        accounts.delete(dave, PASSWORD)
        before = counts()

        database.upgrade()

        assert counts() == before
        assert database.current_revision() == database.head_revision()
        carol = accounts.register("carol", PASSWORD)
        assert carol.id > gone > bob.id > alice.id
        if db.engine.dialect.name == "sqlite":
            with db.engine.connect() as connection:
                assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
                schema = connection.execute(
                    text("SELECT sql FROM sqlite_master WHERE name = 'users'")
                ).scalar()
            assert "AUTOINCREMENT" in schema
        db.session.remove()
        db.engine.dispose()
