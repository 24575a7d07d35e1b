"""faq entries

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Frozen copies of the column types at this revision (the models may change later).
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "faq_entries",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("questions", JSON, nullable=False),
        sa.Column("answers", JSON, nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_faq_entries")),
    )


def downgrade() -> None:
    op.drop_table("faq_entries")
