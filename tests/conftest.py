"""Shared test helpers: unit directories written from dicts of text."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def unit_dir(tmp_path: Path) -> Callable[..., Path]:
    """Writes {relative path: TOML text} under a fresh directory and returns it."""
    def write(files: dict[str, str], name: str = "units") -> Path:
        root = tmp_path / name
        root.mkdir(exist_ok=True)
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        return root
    return write
