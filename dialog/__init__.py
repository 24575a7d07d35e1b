"""What we say and who says it: conversations, understanding, self-service, hand-off, routing
and company-initiated outreach. Built on crm_core and consent by the dialog issue."""

__all__: list[str] = []
