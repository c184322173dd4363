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


MODES = ["subreaper", "pid1"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    from tests.daemon import can_unshare
    if request.param == "pid1" and not can_unshare():
        pytest.skip("needs root and unshare for a PID namespace")
    return str(request.param)


@pytest.fixture
def daemon(unit_dir, tmp_path, mode):
    """Starts a daemon on the units written by the test: daemon(files)."""
    from tests.daemon import Daemon
    started = []

    def start(files: dict[str, str], extra: list[str] | None = None) -> Daemon:
        d = Daemon(unit_dir(files), tmp_path, pid1=(mode == "pid1"), extra=extra)
        started.append(d)
        return d
    yield start
    for d in started:
        d.stop()
