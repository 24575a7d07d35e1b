"""consent ledger, preferences, contacts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Frozen copies of the column types at this revision (the models may change later).
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

# The ledger is append-only: the database itself refuses to change or remove an event, so no
# bug and no hurried hand with a SQL prompt can rewrite what a customer consented to.
POSTGRES_APPEND_ONLY = [
    """
    CREATE FUNCTION consent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'consent_events is append-only: % refused', TG_OP;
    END $$
    """,
    """
    CREATE TRIGGER consent_events_append_only BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_append_only()
    """,
    """
    CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION consent_events_append_only()
    """,
]
SQLITE_APPEND_ONLY = [
    """
    CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events
    BEGIN SELECT RAISE(ABORT, 'consent_events is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events
    BEGIN SELECT RAISE(ABORT, 'consent_events is append-only: DELETE refused'); END
    """,
]

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consent_events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("evidence", JSON, nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "action IN ('grant', 'revoke', 'confirm')", name=op.f("ck_consent_events_action")
        ),
        sa.CheckConstraint(
            "channel IN ('sms', 'email', 'telegram', 'webchat', 'voice')",
            name=op.f("ck_consent_events_channel"),
        ),
        sa.CheckConstraint(
            "purpose IN ('service', 'marketing')", name=op.f("ck_consent_events_purpose")
        ),
        sa.CheckConstraint(
            "source IN ('web_form', 'keyword', 'unsubscribe_link', 'preference_centre', 'agent', 'import', 'api', 'provider', 'merge')",
            name=op.f("ck_consent_events_source"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_consent_events_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_events")),
    )
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.create_index("ix_consent_events_customer", ["customer_id", "id"], unique=False)

    op.create_table(
        "contact_preferences",
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("channels", JSON, nullable=False),
        sa.Column("window_days", JSON, nullable=True),
        sa.Column("window_start", sa.String(length=5), nullable=True),
        sa.Column("window_end", sa.String(length=5), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("topics", JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_contact_preferences_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_contact_preferences")),
    )
    op.create_table(
        "contacts_made",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_contacts_made_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts_made")),
    )
    with op.batch_alter_table("contacts_made", schema=None) as batch_op:
        batch_op.create_index("ix_contacts_made_customer_at", ["customer_id", "at"], unique=False)

    op.create_table(
        "undeliverable_addresses",
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_undeliverable_addresses_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint(
            "customer_id", "channel", "address", name=op.f("pk_undeliverable_addresses")
        ),
    )
    op.create_table(
        "consent_state",
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'granted', 'revoked')", name=op.f("ck_consent_state_status")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_consent_state_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["consent_events.id"],
            name=op.f("fk_consent_state_event_id_consent_events"),
        ),
        sa.PrimaryKeyConstraint(
            "customer_id", "channel", "purpose", "topic", name=op.f("pk_consent_state")
        ),
    )
    with op.batch_alter_table("consent_state", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consent_state_audience", ["channel", "purpose", "topic", "status"], unique=False
        )

    triggers = (
        SQLITE_APPEND_ONLY if op.get_bind().dialect.name == "sqlite" else POSTGRES_APPEND_ONLY
    )
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER consent_events_append_only ON consent_events")
        op.execute("DROP TRIGGER consent_events_no_truncate ON consent_events")
        op.execute("DROP FUNCTION consent_events_append_only()")
    with op.batch_alter_table("consent_state", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_state_audience")

    op.drop_table("consent_state")
    op.drop_table("undeliverable_addresses")
    with op.batch_alter_table("contacts_made", schema=None) as batch_op:
        batch_op.drop_index("ix_contacts_made_customer_at")

    op.drop_table("contacts_made")
    op.drop_table("contact_preferences")
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_events_customer")

    op.drop_table("consent_events")
