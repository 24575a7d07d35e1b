"""Who the customer is: customers, identities and their resolution and merge, value tiers,
the interaction timeline, and imports."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Eager: the tables are what every user of crm_core needs, and `timeline` is also a submodule's
# name, which a lazy look-up would find as the module once anything imported it.
from crm_core.models import Customer, CustomerStatus, Identity, IdentityKind, Interaction, Tier
from crm_core.timeline import add_interaction, timeline

if TYPE_CHECKING:
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

# The resolution's names are loaded from their modules on first use (PEP 562), so that importing
# the tables (for the staff tokens', say) does not load the resolution with its e-mail and phone
# libraries, its tiers and records: `sastre token create` needs only the tables.
_HOME = {
    **dict.fromkeys(
        (
            "CustomerNotFound",
            "IdentityConflict",
            "MergeRefused",
            "customer_view",
            "find_customer",
            "get_customer",
            "resolve",
            "upsert_customer",
        ),
        "crm_core.customers",
    ),
    **dict.fromkeys(("InvalidIdentity", "normalise"), "crm_core.identities"),
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'crm_core' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
