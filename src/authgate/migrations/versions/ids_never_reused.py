"""user and consent ids are never reused on SQLite (AUTOINCREMENT)

Without ``AUTOINCREMENT`` SQLite hands the id of the last deleted row to the next one,
so a new account could take a deleted one's id: its ``sub``, its audit history and its
revocation entries. PostgreSQL's sequences never reuse ids: nothing to do there.

SQLite can only add ``AUTOINCREMENT`` by copying the table into a new one, which the
migration does with foreign keys off (``database.upgrade`` turns them off before the
transaction; it refuses to run with them on, since dropping the old table would then
cascade into every table that references it). The counter starts above every id the
database still mentions (audit rows keep deleted users' ids; codes keep consent ids).

Revision ID: ids
Revises: introspect
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ids"
down_revision = "introspect"
branch_labels = None
depends_on = None

#: Each table, and the columns elsewhere that remember its ids.
TABLES = {
    "users": (("audit_events", "user_id"),),
    "oauth_consents": (("oauth_authorization_codes", "consent_id"),),
}


def _rebuild(autoincrement: bool) -> None:
    connection = op.get_bind()
    if connection.dialect.name != "sqlite":
        return
    if connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("rebuilding tables on SQLite needs PRAGMA foreign_keys=OFF")
    dangling = _dangling_references()
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass
    if _dangling_references() != dangling:  # the copy lost a referenced row: roll back
        raise RuntimeError("rebuilding the tables left rows pointing nowhere")
    if autoincrement:
        for table, mentions in TABLES.items():
            _start_counter_above(table, mentions)


def _dangling_references() -> list[tuple[object, ...]]:
    """Every row whose foreign key points nowhere (``PRAGMA foreign_key_check``)."""
    rows = op.get_bind().exec_driver_sql("PRAGMA foreign_key_check").all()
    return sorted(tuple(row) for row in rows)


def _start_counter_above(table: str, mentions: tuple[tuple[str, str], ...]) -> None:
    """Set ``table``'s AUTOINCREMENT counter to the highest id it or ``mentions`` hold."""
    connection = op.get_bind()
    highest = [
        connection.scalar(sa.select(sa.func.max(sa.column(column))).select_from(sa.table(name)))
        for name, column in ((table, "id"), *mentions)
    ]
    seq = max((value for value in highest if value is not None), default=0)
    sequence = sa.table("sqlite_sequence", sa.column("name"), sa.column("seq"))
    connection.execute(sa.delete(sequence).where(sequence.c.name == table))
    connection.execute(sa.insert(sequence).values(name=table, seq=seq))


def upgrade() -> None:
    """Apply this revision."""
    _rebuild(autoincrement=True)


def downgrade() -> None:
    """Revert this revision."""
    _rebuild(autoincrement=False)
