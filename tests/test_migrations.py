"""Schema upgrades of a database that already holds data."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import func, inspect, select, text

from authgate import accounts, clock, consents, create_app, database, sessions
from authgate.extensions import db
from authgate.models import AuthorizationCode, Consent, RefreshToken, TokenFamily, User
from tests.conftest import PASSWORD, make_settings
from tests.oauth_support import CALLBACK, register

BEFORE_IDS = "introspect"  # the revision before user and consent ids were never reused


def counts() -> dict[str, int]:
    """How many rows each table that references users or consents holds."""
    return {
        model.__tablename__: db.session.scalar(select(func.count()).select_from(model)) or 0
        for model in (User, TokenFamily, RefreshToken, Consent, AuthorizationCode)
    }


def code_of(consent: Consent) -> AuthorizationCode:
    """An authorization code row that names ``consent`` (codes outlive their consent)."""
    return AuthorizationCode(
        code_digest=secrets.token_hex(32),
        client_id=consent.client_id,
        user_id=consent.user_id,
        redirect_uri=CALLBACK,
        auth_time=0,
        code_challenge="c" * 43,
        code_challenge_method="S256",
        consent_id=consent.id,
        expires_at=clock.now(),
    )


def test_upgrade_keeps_every_row_and_never_reuses_a_user_id(
    database_url: str, tmp_path: Path
) -> None:
    """Rebuilding ``users`` on SQLite copies it whole (nothing cascades into the tables that
    reference it), foreign keys are enforced again afterwards, and the next user's or
    consent's id is above every id the database remembers: a deleted user's in the audit
    log, a withdrawn consent's in an authorization code."""
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
        client_id = register().client.client_id
        kept = consents.remember(bob.id, client_id, "openid")
        withdrawn = consents.remember(bob.id, client_id, "openid profile")
        db.session.add_all([code_of(kept), code_of(withdrawn)])
        db.session.commit()
        consents.withdraw(bob.id, withdrawn.id)  # its id now lives on in a code only
        before = counts()

        database.upgrade()

        assert counts() == before
        assert database.current_revision() == database.head_revision()
        carol = accounts.register("carol", PASSWORD)
        assert carol.id > gone > bob.id > alice.id
        assert consents.remember(carol.id, client_id, "openid").id > withdrawn.id > kept.id
        if db.engine.dialect.name == "sqlite":
            with db.engine.connect() as connection:
                assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
                schema = connection.execute(
                    text("SELECT sql FROM sqlite_master WHERE name = 'users'")
                ).scalar()
            assert "AUTOINCREMENT" in schema
        db.session.remove()
        db.engine.dispose()


def test_a_failed_upgrade_leaves_the_database_as_it_was(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every statement of an upgrade is in one transaction, SQLite's table copies included
    (Python's sqlite3 would commit DDL on its own): a failure at the very end leaves no
    half-built table behind, the old revision in place, and a retry succeeds."""
    app = create_app(make_settings(database_url, tmp_path))
    with app.app_context():
        database.upgrade(BEFORE_IDS)
        accounts.register("alice", PASSWORD)
        db.session.commit()
        before = counts()
        migrate = command.upgrade

        def fail_at_the_end(*args: object) -> None:
            migrate(*args)  # type: ignore[arg-type]
            raise RuntimeError("the last step failed")

        monkeypatch.setattr(command, "upgrade", fail_at_the_end)
        with pytest.raises(RuntimeError, match="the last step failed"):
            database.upgrade()
        monkeypatch.undo()

        assert database.current_revision() == BEFORE_IDS
        assert counts() == before
        with db.engine.connect() as connection:
            tables = inspect(connection).get_table_names()
        assert not [name for name in tables if name.startswith("_alembic_tmp")]
        database.upgrade()
        assert database.current_revision() == database.head_revision()
        assert counts() == before
        db.session.remove()
        db.engine.dispose()
