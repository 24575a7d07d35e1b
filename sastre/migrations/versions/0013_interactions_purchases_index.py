"""A customer's orders found without reading their whole timeline (order status).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PURCHASES_ONLY = "kind = 'purchase'"


def upgrade() -> None:
    op.create_index(
        "ix_interactions_purchases",
        "interactions",
        ["customer_id", "kind", "occurred_at", "id"],
        unique=False,
        sqlite_where=sa.text(PURCHASES_ONLY),
        postgresql_where=sa.text(PURCHASES_ONLY),
    )


def downgrade() -> None:
    op.drop_index("ix_interactions_purchases", table_name="interactions")
