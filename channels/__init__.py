"""How messages get in and out: one module per medium, a tiny Channel port, a fake for tests.

The channel adapters arrive with the SMS, e-mail, Telegram and web chat issues.
"""

__all__: list[str] = []
