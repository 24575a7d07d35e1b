"""Building each medium's sender from the settings: one module per medium, each with
`build_sender(settings)`, None when that medium is not configured. `channels/` adapters take plain
arguments; only here do the settings meet them."""

__all__: list[str] = []
