"""Every table Sastre owns, gathered for Alembic and for tests."""

from __future__ import annotations

from consent import models as _consent_models  # noqa: F401  (registers the consent tables)
from crm_core.models import Base
from dialog import faq_store as _faq_store  # noqa: F401  (faq_entries)
from dialog import models as _dialog_models  # noqa: F401  (conversations, messages)
from sastre import auth as _auth  # noqa: F401  (registers staff_tokens on the metadata)

__all__ = ["metadata"]

metadata = Base.metadata
