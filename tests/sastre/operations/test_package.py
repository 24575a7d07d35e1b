"""`sastre.operations` names every act: the API, the CLI and the console import them from it."""

from __future__ import annotations

import importlib
import pkgutil

import sastre.operations


def test_every_act_of_every_operations_module_is_listed_in_the_package() -> None:
    acts = {
        name
        for module in pkgutil.iter_modules(sastre.operations.__path__)
        for name in importlib.import_module(f"sastre.operations.{module.name}").__all__
        if name.startswith("do_")
    }
    assert acts <= set(sastre.operations.__all__), sorted(acts - set(sastre.operations.__all__))
    assert all(getattr(sastre.operations, name) is not None for name in acts)
