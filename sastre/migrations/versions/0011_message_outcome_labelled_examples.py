"""What the bot did with each inbound message, and the examples customers' choices label.

`messages.outcome` holds the bot's plan for an inbound message (faq:<id>, choices:..., rephrase,
handoff:<reason>...): the KB's gaps are read from it. `labelled_examples` keeps a customer's
question with the option they chose when the bot offered a few.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types at this revision (the models may change later).
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outcome", sa.String(length=200), nullable=True))
    op.create_table(
        "labelled_examples",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("conversation_id", ID, nullable=True),
        sa.Column("message_id", ID, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_labelled_examples_conversation_id_conversations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_labelled_examples_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labelled_examples")),
    )
    with op.batch_alter_table("labelled_examples", schema=None) as batch_op:
        batch_op.create_index("ix_labelled_examples_label", ["label", "id"], unique=False)


def downgrade() -> None:
    op.drop_table("labelled_examples")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("outcome")
