"""Whether, where and when we may contact a customer: the consent ledger, preferences, the
contact policy, keywords and the signed links customers act through.

The rules, in words: docs/permission-marketing.md."""

__all__: list[str] = []
