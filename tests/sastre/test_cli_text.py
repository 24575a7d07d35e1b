"""A command-line argument that is not UTF-8 is refused by name before anything is stored.

Python hands such bytes over as lone surrogates (surrogateescape); stored, they would be text
that no client can encode. Each text argument is refused with one click error naming it.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sastre.cli import TEXT
from tests.sastre.test_cli import sastre


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["customer", "show", "\udcff"], "'QUERY'"),
        (["customer", "export", "email:ana\udce9@example.com"], "'QUERY'"),
        (["token", "create", "--role", "agent", "--name", "Mar\udce9a"], "'--name'"),
        (["actions", "--host", "local\udcffhost"], "'--host'"),
    ],
)
def test_an_argument_that_is_not_utf8_is_refused_by_name_and_nothing_is_opened(
    tmp_path: Path, args: list[str], named: str
) -> None:
    result = sastre(tmp_path, *args)  # "\udcff" reaches the process as the byte 0xff
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert f"Invalid value for {named}: " in errors[0]
    assert "is not UTF-8 text" in errors[0]
    assert "\\x" in errors[0]  # the bytes as given, escaped
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "cli.db").exists()


def test_a_customer_id_past_64_bits_is_refused_by_name(tmp_path: Path) -> None:
    result = sastre(tmp_path, "customer", "show", "99999999999999999999")
    assert result.returncode == 2
    assert "Invalid value for 'QUERY': 99999999999999999999 is not a customer id" in result.stderr
    assert "Traceback" not in result.stderr


# Hypothesis's text leaves surrogates out; these mix them in.
texts = st.lists(st.characters() | st.integers(0xD800, 0xDFFF).map(chr)).map("".join)


@given(texts)
def test_text_is_accepted_exactly_when_it_can_be_written_as_utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(click.BadParameter, match="is not UTF-8 text"):
            TEXT.convert(text, None, None)
    else:
        assert TEXT.convert(text, None, None) == text


def test_a_lone_surrogate_that_is_no_escaped_byte_is_refused_too() -> None:
    with pytest.raises(click.BadParameter, match=r"b'a\\\\ud800' is not UTF-8 text"):
        TEXT.convert("a\ud800", None, None)
