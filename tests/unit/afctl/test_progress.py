"""The upload bar `afctl templates publish` shows for a large module (afctl/__main__.py upload_progress)."""

from __future__ import annotations

import pytest
from rich.console import Console

import afctl.__main__ as cli


def test_the_bar_counts_every_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(force_terminal=True, record=True, width=100)
    monkeypatch.setattr(cli, "err", console)
    with cli.upload_progress(3 * 1024 * 1024) as advance:
        for _ in range(3):
            advance(1024 * 1024)
    seen = console.export_text()
    assert "uploading module" in seen and "3.1/3.1 MB" in seen, seen
