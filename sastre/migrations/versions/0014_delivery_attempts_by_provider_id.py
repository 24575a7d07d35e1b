"""Delivery attempts found by the provider's id: a late report about an earlier attempt.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WITH_PROVIDER_ID = "provider_id IS NOT NULL"


def upgrade() -> None:
    op.create_index(
        "ix_delivery_attempts_provider",
        "delivery_attempts",
        ["provider_id"],
        unique=False,
        sqlite_where=sa.text(WITH_PROVIDER_ID),
        postgresql_where=sa.text(WITH_PROVIDER_ID),
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_attempts_provider", table_name="delivery_attempts")
