"""The top-level package names are ours: `channels` is not Django Channels, `dialog` not
pythondialog, and every package of the house layout is importable from this repository."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "package", ["sastre", "channels", "dialog", "consent", "crm_core", "actions"]
)
def test_package_imports_from_this_repository(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().is_relative_to(REPO)
    assert hasattr(module, "__all__")
