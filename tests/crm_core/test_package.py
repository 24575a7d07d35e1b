"""crm_core's names load from their modules on first use, so one module does not load them all."""

from __future__ import annotations

import subprocess
import sys

import pytest

import crm_core


@pytest.mark.parametrize("name", crm_core.__all__)
def test_every_listed_name_is_there(name: str) -> None:
    assert getattr(crm_core, name) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        crm_core.nothing  # noqa: B018


def test_the_models_alone_load_no_resolution() -> None:
    probe = "import sys, crm_core.models; print('crm_core.customers' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"
