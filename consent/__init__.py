"""Whether, where and when we may contact a customer: the consent ledger, preferences, the
contact policy, keywords and unsubscribe tokens. Built by the permission-marketing issue."""

__all__: list[str] = []
