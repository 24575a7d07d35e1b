"""The registry of customer-owned tables is complete: every table with a customer in it is merged
and exported, and a new one cannot be forgotten."""

from __future__ import annotations

from sqlalchemy import Table

from sastre.operations.owned import OWNED_TABLES
from sastre.schema import metadata


def _customer_tables() -> set[str]:
    """Tables with a `customer_id`, a key to `customers`, or a key to such a table's rows (an
    awaiting row hangs off a message): everything a person's data can be found through."""
    found: set[str] = set()
    tables: list[Table] = list(metadata.tables.values())
    grew = True
    while grew:
        grew = False
        for table in tables:
            if table.name in found:
                continue
            points_at = {fk.column.table.name for fk in table.foreign_keys}
            if "customer_id" in table.c or points_at & ({"customers"} | found):
                found.add(table.name)
                grew = True
    return found


def test_every_table_about_a_customer_is_in_the_registry() -> None:
    registered = {owned.name for owned in OWNED_TABLES}
    missing = _customer_tables() - registered
    assert not missing, f"add these to sastre.operations.owned.OWNED_TABLES: {sorted(missing)}"


def test_the_registry_names_each_table_once_with_its_own_section() -> None:
    names = [owned.name for owned in OWNED_TABLES]
    keys = [owned.key for owned in OWNED_TABLES]
    assert len(set(names)) == len(names)
    assert len(set(keys)) == len(keys)


def test_the_customer_row_is_merged_first() -> None:
    # Every other step works on a plan whose tombstone is already in place.
    assert OWNED_TABLES[0].name == "customers"
