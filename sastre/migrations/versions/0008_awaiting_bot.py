"""Inbound messages awaiting a bot that answers from outside the database.

With a Rasa server, a batch of messages is stored in one transaction, put to Rasa with no
transaction open, and answered in a second one. Each message awaits its answer in a row here.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "awaiting_bot",
        sa.Column("message_id", ID, nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_awaiting_bot_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_awaiting_bot")),
    )


def downgrade() -> None:
    op.drop_table("awaiting_bot")
