"""Whom vigilctl trusts: which daemon it talks to (--socket, VIGIL_SOCKET,
the project, the default), which project it starts one for, and which
addresses may hear its token. The attacks by another user run as real
unprivileged uids (65534 and 1) on a copy of vigil, with the system python3."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import ROOT, can_unshare

PY = sys.executable
SLEEPER = '[service]\nexec = "sleep 1000"\n'


@pytest.fixture
def runtime() -> Iterator[Path]:
    """A fresh XDG_RUNTIME_DIR, short enough for socket paths."""
    path = Path(tempfile.mkdtemp(prefix="x", dir="/tmp"))
    yield path
    for sock in path.glob("vigil/p/*/control.sock"):  # a daemon the old code started
        subprocess.run([PY, "-m", "vigilctl", "--socket", str(sock), "shutdown"],
                       capture_output=True, cwd=ROOT, timeout=60)
    shutil.rmtree(path, ignore_errors=True)


def project(top: Path) -> Path:
    """top/app with units/web.toml, and top/app/src to work in."""
    (top / "app" / "units").mkdir(parents=True)
    (top / "app" / "units" / "web.toml").write_text(SLEEPER)
    (top / "app" / "src").mkdir()
    return top / "app"


def clean_env(runtime: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "VIGIL_SOCKET"}
    return {**env, "XDG_RUNTIME_DIR": str(runtime), "PYTHONPATH": str(ROOT)}


def test_a_look_never_starts_a_project_daemon(tmp_path, runtime):
    app = project(tmp_path)
    for cmd in (["status"], ["logs", "web"], ["cat", "web"], ["why", "web"], ["stop", "web"]):
        done = subprocess.run([PY, "-m", "vigilctl", *cmd], cwd=app / "src",
                              env=clean_env(runtime), capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, (cmd, done.stderr)
        assert f"vigil is not running for {app}/units (`vigilctl start` starts it)" \
            in done.stderr, (cmd, done.stderr)
        assert not list(runtime.glob("vigil/p/*/control.sock")), f"{cmd} started a daemon"


def test_vigil_socket_wins_over_the_project_inside_a_container(tmp_path, runtime):
    """A container's service runs vigilctl in a project directory: it talks to
    the container's daemon (VIGIL_SOCKET), it does not start a second one."""
    app = project(tmp_path)
    sock = tmp_path / "run" / "c.sock"
    script = f"echo SOCKET=$VIGIL_SOCKET; {PY} -m vigilctl status web"
    done = subprocess.run([PY, "-m", "vigil.cli", "run", "--socket", str(sock), "--units",
                           str(app / "units"), "--", "sh", "-c", script], cwd=app / "src",
                          env=clean_env(runtime), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"SOCKET={sock}" in done.stdout
    assert "started vigil" not in done.stderr, "a second daemon for the same units"
    assert "web" in done.stdout and "running" in done.stdout, done.stdout
    assert not list(runtime.glob("vigil/p/*")), "the project's own socket was used"
