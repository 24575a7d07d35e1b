"""SQLite only: indexes that rank customers by profit and by potential value.

A tier recompute ranks every customer twice. Read in index order, neither ranking needs a sort
of the whole table: on SQLite those sorts were most of a recompute's time. PostgreSQL sorts in
memory quickly and gets none (`crm_core.models.customer_rank_indexes` says why).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_index(
        "ix_customers_profit_rank",
        "customers",
        [sa.text("profit_cents DESC"), "id", "status"],
    )
    op.create_index(
        "ix_customers_potential_rank",
        "customers",
        [sa.text("potential_value_cents DESC"), "status"],
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.drop_index("ix_customers_potential_rank", table_name="customers")
    op.drop_index("ix_customers_profit_rank", table_name="customers")
