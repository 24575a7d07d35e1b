"""rasa-sdk custom actions: the self-service business logic, run in-process by the embedded
dialog and served to a real Rasa server by `sastre actions`. Built by the dialog issue."""

__all__: list[str] = []
