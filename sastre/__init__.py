"""Sastre: the running service (configuration, app assembly, CLI, staff console, workers)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
