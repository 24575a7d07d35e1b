"""A delivery attempt's id is never given again on SQLite (AUTOINCREMENT), as on PostgreSQL.

`/metrics` counts the attempts after the last id it has settled (`dialog.outbox.tally`). Without
AUTOINCREMENT SQLite gives a new row the id of the latest one deleted (an erasure deletes a
customer's attempts), an id the count had already passed: that attempt was never counted.
SQLite cannot add AUTOINCREMENT to a table, so this one is built again and its rows copied with
their ids; no other table refers to it. PostgreSQL's sequence never gives an id twice.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types at this revision (the models may change later).
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WITH_PROVIDER_ID = "provider_id IS NOT NULL"
COLUMNS = "id, message_id, worker, outcome, code, reason, provider_id, at"


def _rebuild(*, autoincrement: bool) -> None:
    op.create_table(
        "delivery_attempts_rebuilt",
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
            name="fk_delivery_attempts_message_id_messages",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_attempts"),
        sqlite_autoincrement=autoincrement,
    )
    # Copied with their ids: AUTOINCREMENT's counter starts past the highest of them.
    op.execute(
        f"INSERT INTO delivery_attempts_rebuilt ({COLUMNS}) SELECT {COLUMNS} FROM delivery_attempts"
    )
    op.drop_table("delivery_attempts")  # and its indexes
    op.rename_table("delivery_attempts_rebuilt", "delivery_attempts")
    op.create_index(
        "ix_delivery_attempts_message", "delivery_attempts", ["message_id", "id"], unique=False
    )
    op.create_index(
        "ix_delivery_attempts_provider",
        "delivery_attempts",
        ["provider_id"],
        unique=False,
        sqlite_where=sa.text(WITH_PROVIDER_ID),
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(autoincrement=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(autoincrement=False)
