"""The outbox: outbound messages waiting for a worker, their delivery states and attempts.

Also lets the timeline hold delivery entries (`interactions.kind = 'delivery'`).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types at this revision (the models may change later).
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
PENDING = "state IN ('queued', 'sending')"
KINDS_BEFORE = "'message_in', 'message_out', 'callback', 'note', 'purchase', 'complaint'"
KINDS_AFTER = KINDS_BEFORE + ", 'delivery'"


def _interaction_kinds(kinds: str) -> None:
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_interactions_kind"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_interactions_kind"), sa.text(f"kind IN ({kinds})")
        )


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("message_id", ID, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("provider_id", sa.String(length=200), nullable=True),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("options", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'undelivered')",
            name=op.f("ck_outbox_state"),
        ),
        sa.CheckConstraint(
            "purpose IN ('service', 'marketing', 'compliance')", name=op.f("ck_outbox_purpose")
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_outbox_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_outbox")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_due",
            ["due_at"],
            unique=False,
            sqlite_where=sa.text(PENDING),
            postgresql_where=sa.text(PENDING),
        )
        batch_op.create_index("ix_outbox_provider", ["channel", "provider_id"], unique=False)
        batch_op.create_index("ix_outbox_state", ["state", "updated_at"], unique=False)

    op.create_table(
        "delivery_attempts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("provider_id", sa.String(length=200), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_delivery_attempts_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
    )
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_attempts_message", ["message_id", "id"], unique=False)
    _interaction_kinds(KINDS_AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM interactions WHERE kind = 'delivery'")
    _interaction_kinds(KINDS_BEFORE)
    op.drop_table("delivery_attempts")
    op.drop_table("outbox")
