"""A service's user must get nothing through the daemon that it could not
get itself: paths it controls are opened with its credentials, a pid-file
names only a process of its own, its notify socket is its own.

Each test performs the attack as a real `user = "nobody"` service (or as
uid 65534 directly) in a directory that user may reach.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import wait_for

NOBODY = 65534


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory under /tmp that nobody can reach (pytest's tmp_path is root's, 0700)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run services as nobody")
    path = Path(tempfile.mkdtemp(prefix="vigil-trust-", dir="/tmp"))
    os.chmod(path, 0o755)
    own = path / "nobody"
    own.mkdir()
    os.chown(own, NOBODY, NOBODY)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_nobody(script: str) -> None:
    """What the service's user can do by itself, done as that user."""
    subprocess.run(["sh", "-c", script], check=True, timeout=30, user=NOBODY, group=NOBODY,
                   extra_groups=[])


def test_an_env_file_swapped_for_a_symlink_to_a_secret_is_not_read(daemon, shared, tmp_path):
    secret = tmp_path / "secret.env"
    secret.write_text("API_KEY=root-only-secret\n")
    os.chmod(secret, 0o600)
    env = shared / "nobody" / "app.env"
    as_nobody(f"echo COLOUR=blue > {env} && ln -sf {secret} {env}.new && mv -f {env}.new {env}")
    d = daemon({"app.toml": f'[service]\nuser = "nobody"\nenv-file = "{env}"\nrestart = "never"\n'
                            'exec = ["sh", "-c", "echo key=$API_KEY"]\n'})
    reason = wait_for(lambda: d.inst("app")["reason"], what="the start to fail")
    assert reason == f"env-file {env}: Permission denied"
    assert "root-only-secret" not in str(d.call("logs", units=["app"]))


def test_an_env_file_the_user_may_read_still_works(daemon, shared):
    env = shared / "nobody" / "app.env"
    as_nobody(f"echo COLOUR=blue > {env}")
    d = daemon({"app.toml": f'[service]\nuser = "nobody"\nenv-file = "{env}"\n'
                            'exec = ["sh", "-c", "echo colour=$COLOUR; exec sleep 1000"]\n'})
    wait_for(lambda: [x["text"] for x in d.call("logs", units=["app"])] == ["colour=blue"])


def test_a_stdout_directory_swapped_for_a_symlink_creates_nothing_as_root(daemon, shared,
                                                                          tmp_path):
    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    logs = shared / "nobody" / "logs"
    as_nobody(f"mkdir {logs} && mv {logs} {logs}.old && ln -s {private} {logs}")
    d = daemon({"app.toml": f'[service]\nuser = "nobody"\nstdout = "{logs}/out.log"\n'
                            'restart = "never"\nexec = ["sh", "-c", "echo hello"]\n'})
    reason = wait_for(lambda: d.inst("app")["reason"], what="the start to fail")
    assert reason == f"stdout {logs}/out.log: Permission denied"
    assert list(private.iterdir()) == []


def test_a_stdout_file_is_created_as_the_units_user(daemon, shared):
    out = shared / "nobody" / "out.log"
    d = daemon({"app.toml": f'[service]\nuser = "nobody"\nstdout = "{out}"\n'
                            'exec = ["sh", "-c", "echo hello; exec sleep 1000"]\n'})
    wait_for(lambda: out.exists() and out.read_text() == "hello\n")
    assert (out.stat().st_uid, out.stat().st_gid) == (NOBODY, NOBODY)
    assert d.status("app")["state"] == "running"
