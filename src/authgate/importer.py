"""Import users from a REST-auth style ``users(id, username, password_hash)`` table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import MetaData, Table, create_engine, func, select, text

from authgate import accounts, audit, passwords
from authgate.errors import InvalidInput
from authgate.extensions import db
from authgate.models import AuditEvent, User


@dataclass
class ImportReport:
    """What an import did (or, with ``dry_run``, would do)."""

    imported: list[int] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    dry_run: bool = False

    def lines(self) -> list[str]:
        """Human-readable summary, one conflict per line."""
        verb = "would import" if self.dry_run else "imported"
        return [
            f"{verb} {len(self.imported)} users, {len(self.conflicts)} conflicts",
            *[f"conflict: {c}" for c in self.conflicts],
        ]


def read_source(source_url: str, table: str = "users") -> list[tuple[int, str, str]]:
    """Rows ``(id, username, password_hash)`` of ``table`` in the database at ``source_url``."""
    engine = create_engine(source_url)
    try:
        with engine.connect() as connection:
            users = Table(table, MetaData(), autoload_with=connection)
            query = select(users.c.id, users.c.username, users.c.password_hash).order_by(users.c.id)
            return [
                (int(r.id), str(r.username), str(r.password_hash or ""))
                for r in connection.execute(query)
            ]
    finally:
        engine.dispose()


def import_users(rows: Iterable[tuple[int, str, str]], dry_run: bool = False) -> ImportReport:
    """Insert ``rows`` keeping their ids; skip and report every conflict.

    A conflict is an id or (normalised) username already taken, an invalid username,
    or a hash format AuthGate cannot verify. An id is taken also when a deleted account
    had it (the audit log remembers it): ids are never given to a second account. All
    accepted rows commit together.
    """
    report = ImportReport(dry_run=dry_run)
    taken_ids = set(db.session.scalars(select(User.id))) | _deleted_user_ids()
    taken_names = set(db.session.scalars(select(User.username_key)))
    for user_id, username, password_hash in rows:
        problem = _conflict(user_id, username, password_hash, taken_ids, taken_names)
        if problem:
            report.conflicts.append(f"id {user_id} ({username!r}): {problem}")
            continue
        name = accounts.check_username(username)
        key = accounts.username_key(name)
        taken_ids.add(user_id)
        taken_names.add(key)
        report.imported.append(user_id)
        if not dry_run:
            db.session.add(
                User(id=user_id, username=name, username_key=key, password_hash=password_hash)
            )
    if dry_run:
        return report
    db.session.commit()
    _advance_id_sequence()
    if report.imported:
        audit.record("users.imported", count=len(report.imported))
    return report


def _conflict(
    user_id: int, username: str, password_hash: str, ids: set[int], names: set[str]
) -> str | None:
    try:
        name = accounts.check_username(username)
    except InvalidInput as exc:
        return exc.detail
    if user_id in ids:
        return "id already exists"
    if accounts.username_key(name) in names:
        return "username already exists"
    if not passwords.is_supported_hash(password_hash):
        return "unsupported password hash format"
    return None


def _deleted_user_ids() -> set[int]:
    """Ids of accounts the audit log mentions, deleted ones included."""
    query = select(AuditEvent.user_id).where(AuditEvent.user_id.is_not(None)).distinct()
    return set(db.session.scalars(query))


def _advance_id_sequence() -> None:
    """After explicit ids, move PostgreSQL's serial past them, never back (it may be past
    them already, after deleted accounts). SQLite's AUTOINCREMENT counter needs nothing."""
    if db.engine.dialect.name != "postgresql":
        return
    top = db.session.scalar(select(func.max(User.id))) or 0
    db.session.execute(
        text(
            "SELECT setval(s::regclass,"
            " GREATEST(:top, coalesce(pg_sequence_last_value(s::regclass), 0)), true)"
            " FROM pg_get_serial_sequence('users', 'id') AS s"
        ),
        {"top": max(top, 1)},
    )
    db.session.commit()
