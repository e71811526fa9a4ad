"""``authgate import-users``: bring a REST-auth database over, old hashes and all."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from passlib.hash import bcrypt, sha256_crypt, sha512_crypt
from sqlalchemy import create_engine, text
from werkzeug.security import generate_password_hash

from authgate import create_app, database
from authgate.cli import main
from authgate.extensions import db
from authgate.models import User
from tests.support import TEST_SECRET

ORIGINAL_USERS = [
    (1, "miguel", sha512_crypt.using(rounds=656000).hash("python")),
    (2, "susan", sha256_crypt.hash("cat")),
    (3, "ada", generate_password_hash("lovelace", method="pbkdf2:sha256")),
    (4, "alan", generate_password_hash("turing", method="scrypt")),
    (5, "grace", bcrypt.hash("hopper")),
]
PASSWORDS = {
    "miguel": "python",
    "susan": "cat",
    "ada": "lovelace",
    "alan": "turing",
    "grace": "hopper",
}


def make_source(path: Path, rows: list[tuple[int, str, str]]) -> str:
    """A SQLite file with the tutorial's exact schema, filled with ``rows``."""
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE TABLE users (id INTEGER PRIMARY KEY, username VARCHAR(32),"
                " password_hash VARCHAR(128))"
            )
        )
        for row in rows:
            connection.execute(
                text("INSERT INTO users VALUES (:i, :u, :h)"), dict(zip("iuh", row, strict=True))
            )
    engine.dispose()
    return url


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment that points the CLI at this test's database."""
    return {
        "AUTHGATE_ENV": "testing",
        "AUTHGATE_SECRET_KEY": TEST_SECRET,
        "AUTHGATE_DATABASE_URL": database_url,
        "AUTHGATE_INSTANCE_PATH": str(tmp_path),
        "AUTHGATE_PASSWORD_HASH_PROFILE": "cheapest",
    }


def users_in(cli_env: dict[str, str]) -> dict[int, User]:
    """The users now in the target database, by id."""
    app = create_app(
        database_url=cli_env["AUTHGATE_DATABASE_URL"],
        secret_key=TEST_SECRET,
        env="testing",
        instance_path=Path(cli_env["AUTHGATE_INSTANCE_PATH"]),
    )
    with app.app_context():
        database.upgrade()
        found = {u.id: u for u in db.session.scalars(db.select(User))}
        db.session.expunge_all()
        db.session.remove()
        db.engine.dispose()
    return found


def test_dry_run_reports_and_writes_nothing(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """--dry-run counts what would be imported and leaves the database empty."""
    source = make_source(tmp_path / "db.sqlite", ORIGINAL_USERS)
    result = CliRunner().invoke(main, ["import-users", source, "--dry-run"], env=cli_env)
    assert result.exit_code == 0, result.output
    assert "would import 5 users, 0 conflicts" in result.output
    assert users_in(cli_env) == {}


def test_import_keeps_ids_and_hashes_and_reports_conflicts(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """Ids and hashes are kept; clashing names, bad names and unknown hash formats are reported."""
    rows = [
        *ORIGINAL_USERS,
        (6, "Miguel", sha256_crypt.hash("other")),
        (7, "bad name", sha256_crypt.hash("x")),
        (8, "md5user", "5f4dcc3b5aa765d61d8327deb882cf99"),
    ]
    source = make_source(tmp_path / "db.sqlite", rows)
    result = CliRunner().invoke(main, ["import-users", source], env=cli_env)
    assert result.exit_code == 0, result.output
    assert "imported 5 users, 3 conflicts" in result.output
    assert "id 6 ('Miguel'): username already exists" in result.output
    assert "id 7 ('bad name')" in result.output
    assert "id 8 ('md5user'): unsupported password hash format" in result.output
    imported = users_in(cli_env)
    assert sorted(imported) == [1, 2, 3, 4, 5]
    assert imported[1].password_hash == ORIGINAL_USERS[0][2]
    second = CliRunner().invoke(main, ["import-users", source], env=cli_env)
    assert "imported 0 users, 8 conflicts" in second.output


def test_imported_users_log_in_and_get_argon2id(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """Every original hash format logs in with its old password and is upgraded."""
    source = make_source(tmp_path / "db.sqlite", ORIGINAL_USERS)
    CliRunner().invoke(main, ["import-users", source], env=cli_env)
    app = create_app(
        database_url=cli_env["AUTHGATE_DATABASE_URL"],
        secret_key=TEST_SECRET,
        env="testing",
        instance_path=tmp_path,
        password_min_length=3,
        password_hash_profile="cheapest",
    )
    client = app.test_client()
    with app.app_context():
        for name, password in PASSWORDS.items():
            response = client.get("/api/resource", auth=(name, password))
            assert response.get_json() == {"data": f"Hello, {name}!"}
        hashes = [u.password_hash for u in db.session.scalars(db.select(User))]
        assert all(h.startswith("$argon2id$") for h in hashes)
        new = client.post("/api/users", json={"username": "newbie", "password": "x" * 20})
        assert new.get_json()["id"] == 6
        db.session.remove()
        db.engine.dispose()


def test_import_never_hands_out_a_deleted_accounts_id(app: object) -> None:
    """Neither an imported row nor the next registration gets the id of a deleted account,
    however the ids were spent (on PostgreSQL the id sequence only ever moves forward)."""
    from authgate import accounts, importer

    hashed = sha256_crypt.hash("cat")
    importer.import_users([(1, "first", hashed), (10, "tenth", hashed)])
    spent = accounts.register("eleventh", "correct horse battery staple")
    accounts.delete(spent, "correct horse battery staple")
    report = importer.import_users([(5, "fifth", hashed), (spent.id, "again", hashed)])
    assert report.imported == [5]
    assert report.conflicts == [f"id {spent.id} ('again'): id already exists"]
    assert accounts.register("next", "correct horse battery staple").id > spent.id
