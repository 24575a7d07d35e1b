"""Acts that span packages, one named function each (`do_*`), called alike by the API, the CLI
and the console: each runs in one transaction with its audit entry, and tells listeners after
the commit (a purge, one per batch). `owned` lists every table that holds rows about a customer,
for merges, exports and purges."""

from sastre.operations.consent import (
    Confirmation,
    Recorded,
    do_confirm_consent,
    do_record_consent,
    do_unsubscribe,
    do_update_preferences,
    do_withdraw_consents,
)
from sastre.operations.customers import (
    do_add_interaction,
    do_merge_customers,
    do_upsert_customer,
)
from sastre.operations.email import (
    BounceOutcome,
    do_file_unattributed,
    do_lift_bounce_marks,
    do_record_email_bounces,
)
from sastre.operations.export import do_export_customer
from sastre.operations.messages import do_retry_message, do_send_message
from sastre.operations.purge import do_purge_idle_leads
from sastre.operations.sms import SmsStatusOutcome, do_record_sms_status
from sastre.operations.unit import Event, listening

__all__ = [
    "BounceOutcome",
    "Confirmation",
    "Event",
    "Recorded",
    "SmsStatusOutcome",
    "do_add_interaction",
    "do_confirm_consent",
    "do_export_customer",
    "do_file_unattributed",
    "do_lift_bounce_marks",
    "do_merge_customers",
    "do_purge_idle_leads",
    "do_record_consent",
    "do_record_email_bounces",
    "do_record_sms_status",
    "do_retry_message",
    "do_send_message",
    "do_unsubscribe",
    "do_update_preferences",
    "do_upsert_customer",
    "do_withdraw_consents",
    "listening",
]
