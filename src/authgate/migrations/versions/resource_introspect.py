"""oauth clients that may introspect every token (resource servers)

Revision ID: introspect
Revises: oauth
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "introspect"
down_revision = "oauth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("can_introspect", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.drop_column("can_introspect")
