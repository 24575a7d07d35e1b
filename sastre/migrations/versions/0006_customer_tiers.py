"""Tier reasons move to a narrow `customer_tiers` table.

Recomputing tiers rewrites every reason that changed; in `customers` that meant a new version of
the whole wide row (and, on PostgreSQL, a new primary-key entry) for nearly every customer. Now
only the narrow reason row is written, and the customer row only when the tier itself moves.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOT_COMPUTED = "not computed yet"


def upgrade() -> None:
    op.create_table(
        "customer_tiers",
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_tiers_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_tiers")),
    )
    op.execute(
        "INSERT INTO customer_tiers (customer_id, reason, updated_at) "
        "SELECT id, tier_reason, coalesce(tier_updated_at, updated_at) FROM customers "
        f"WHERE tier_reason <> '{NOT_COMPUTED}'"
    )
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), not batch mode: rebuilding `customers`
    # on SQLite would drop the table, and with foreign keys on that deletes what refers to it.
    op.drop_column("customers", "tier_updated_at")
    op.drop_column("customers", "tier_reason")
    if op.get_bind().dialect.name == "postgresql":
        # Room on every page for a new version of some rows: when a recompute moves a tier,
        # the new version then stays on its page without a new primary-key entry (a HOT
        # update). Pages written from now on; SQLite rewrites rows in place anyway.
        op.execute("ALTER TABLE customers SET (fillfactor = 85)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE customers RESET (fillfactor)")
    op.add_column(
        "customers",
        sa.Column("tier_reason", sa.Text(), nullable=False, server_default=NOT_COMPUTED),
    )
    op.add_column("customers", sa.Column("tier_updated_at", sa.DateTime(timezone=True)))
    op.execute(
        "UPDATE customers SET tier_reason = (SELECT reason FROM customer_tiers "
        "WHERE customer_id = customers.id), tier_updated_at = (SELECT updated_at "
        "FROM customer_tiers WHERE customer_id = customers.id) "
        "WHERE id IN (SELECT customer_id FROM customer_tiers)"
    )
    if op.get_bind().dialect.name == "postgresql":  # SQLite cannot drop a default in place
        op.alter_column("customers", "tier_reason", server_default=None)
    op.drop_table("customer_tiers")
