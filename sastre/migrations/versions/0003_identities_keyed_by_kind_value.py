"""Identities keyed by (kind, value): the surrogate id goes, one index fewer on bulk imports.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Batch mode: SQLite cannot change a primary key in place, so the table is rebuilt.
    with op.batch_alter_table("identities", recreate="always") as batch_op:
        batch_op.drop_constraint("uq_identities_kind_value", type_="unique")
        batch_op.drop_constraint("pk_identities", type_="primary")
        batch_op.drop_column("id")
        batch_op.create_primary_key("pk_identities", ["kind", "value"])


def downgrade() -> None:
    with op.batch_alter_table("identities", recreate="always") as batch_op:
        batch_op.drop_constraint("pk_identities", type_="primary")
        batch_op.add_column(sa.Column("id", ID, autoincrement=True, nullable=True))
        batch_op.create_unique_constraint("uq_identities_kind_value", ["kind", "value"])
