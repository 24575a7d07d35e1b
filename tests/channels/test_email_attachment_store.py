"""Attachments' bytes on disk: one file per content, written whole, whoever writes it at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from channels.email.inbound import AttachmentStore

LOGO = b"\x89PNG the shop's logo, in every signature"


def test_the_same_content_is_one_file(tmp_path: Path) -> None:
    store = AttachmentStore(tmp_path)
    first, second = store.put(LOGO), store.put(LOGO)
    assert first == second
    assert (tmp_path / first).read_bytes() == LOGO
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [Path(first).name]


def test_two_writers_of_one_content_at_once_both_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two messages carrying the same logo: the second writer finishes while the first is
    about to rename its file into place. Each writes a file of its own, so neither finds its
    file taken away (a shared `.part` name did: FileNotFoundError, a 500 or an SMTP 451)."""
    store = AttachmentStore(tmp_path)
    real_replace = os.replace
    interleaved = False

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        nonlocal interleaved
        if not interleaved:
            interleaved = True
            store.put(LOGO)  # the other writer, from start to finish
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    stored = store.put(LOGO)
    assert interleaved
    assert (tmp_path / stored).read_bytes() == LOGO
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [Path(stored).name]
