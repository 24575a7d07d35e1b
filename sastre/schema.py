"""Every table Sastre owns, gathered for Alembic and for tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consent import models as _consent_models  # noqa: F401  (registers the consent tables)
from crm_core.models import SQLITE_ONLY, Base
from dialog import faq_store as _faq_store  # noqa: F401  (faq_entries)
from dialog import models as _dialog_models  # noqa: F401  (conversations, messages)
from dialog.outbox import models as _outbox_models  # noqa: F401  (outbox, delivery_attempts)
from sastre import auth as _auth  # noqa: F401  (registers staff_tokens on the metadata)

__all__ = ["metadata", "objects_on"]

metadata = Base.metadata


def objects_on(dialect: str) -> Callable[..., bool]:
    """Alembic's `include_object` for comparing the models with a database of `dialect`: an
    index built on SQLite alone is not expected anywhere else."""

    def include(obj: Any, _name: str | None, type_: str, _reflected: bool, _other: Any) -> bool:
        return type_ != "index" or dialect == "sqlite" or not obj.info.get(SQLITE_ONLY, False)

    return include
