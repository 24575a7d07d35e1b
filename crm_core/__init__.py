"""Who the customer is: customers, identities and their resolution and merge, value tiers,
the interaction timeline, and imports."""

from crm_core.customers import (
    CustomerNotFound,
    IdentityConflict,
    MergeRefused,
    customer_view,
    find_customer,
    get_customer,
    resolve,
    upsert_customer,
)
from crm_core.identities import InvalidIdentity, normalise
from crm_core.models import Customer, CustomerStatus, Identity, IdentityKind, Interaction, Tier
from crm_core.timeline import add_interaction, timeline

__all__ = [
    "Customer",
    "CustomerNotFound",
    "CustomerStatus",
    "Identity",
    "IdentityConflict",
    "IdentityKind",
    "Interaction",
    "InvalidIdentity",
    "MergeRefused",
    "Tier",
    "add_interaction",
    "customer_view",
    "find_customer",
    "get_customer",
    "normalise",
    "resolve",
    "timeline",
    "upsert_customer",
]
