"""rasa-sdk custom actions: the self-service business logic, run in-process by the embedded
dialog and served to a real Rasa server by `sastre actions`. Built by the dialog issue."""

from actions.deps import ActionDeps, configure, current_session, unit_of_work
from actions.runner import ACTIONS, ActionOutcome, EmbeddedActions, outcome_of, serve

__all__ = [
    "ACTIONS",
    "ActionDeps",
    "ActionOutcome",
    "EmbeddedActions",
    "configure",
    "current_session",
    "outcome_of",
    "serve",
    "unit_of_work",
]
