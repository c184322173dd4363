"""Whom vigilctl trusts: which daemon it talks to (--socket, VIGIL_SOCKET,
the project, the default), which project it starts one for, and which
addresses may hear its token. The attacks by another user run as real
unprivileged uids (65534 and 1) on a copy of vigil, with the system python3."""

from __future__ import annotations

import json
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


# Runs in a network namespace of its own, where 10.9.9.1 is an address of
# this machine that is not loopback: a listener there hears whatever vigilctl
# sends. Prints vigilctl's exit status, its stderr and what was heard.
EAVESDROP = """
import json, socket, subprocess, sys, threading
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["ip", "addr", "add", "10.9.9.1/32", "dev", "lo"], check=True)
server = socket.create_server(("10.9.9.1", 0))
server.settimeout(60)
heard = []
def listen():
    try:
        conn, _ = server.accept()
    except OSError:
        return
    conn.settimeout(30)
    data = b""
    while b"\\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    heard.append(data.decode(errors="replace"))
    conn.close()
thread = threading.Thread(target=listen, daemon=True)
thread.start()
done = subprocess.run([sys.executable, "-m", "vigilctl", "--remote",
                       f"10.9.9.1:{server.getsockname()[1]}", "--token-file", sys.argv[1],
                       "status"], capture_output=True, text=True, timeout=60)
server.close()
thread.join(30)
print(json.dumps({"code": done.returncode, "stderr": done.stderr, "heard": "".join(heard)}))
"""


def test_the_token_never_goes_in_clear_off_loopback(tmp_path):
    if not can_unshare():
        pytest.skip("needs root for a network namespace")
    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789\n")
    token.chmod(0o600)
    done = subprocess.run(["unshare", "--net", PY, "-c", EAVESDROP, str(token)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert "s3cret" not in seen["heard"], "the token went over the network in clear"
    assert seen["code"] == 1
    assert "is 10.9.9.1, not this machine: the token would cross the network in clear; " \
        "use --tls" in seen["stderr"], seen


@pytest.mark.parametrize("args, option", [
    (["--timeout", "nan", "status"], "--timeout"),
    (["--timeout", "inf", "status"], "--timeout"),
    (["--timeout", "-1", "status"], "--timeout"),
    (["--timeout", "0", "status"], "--timeout"),
    (["logs", "--since", "NaN"], "--since"),
    (["logs", "--since", "9" * 400], "--since"),
    (["logs", "--since", "99:99"], "--since"),
    (["logs", "-n", "-1"], "-n/--lines"),
    (["events", "--lines", "1e3"], "-n/--lines"),
    (["run", "--health-interval", "nan", "--", "true"], "--health-interval"),
    (["run", "--health-interval", "-5", "--", "true"], "--health-interval"),
    (["run", "--health-retries", "0", "--", "true"], "--health-retries"),
    (["run", "--port", "70000", "--", "true"], "--port"),
    (["run", "--port", "x", "--", "true"], "--port"),
    (["run", "--scope", "-3", "--", "true"], "--scope"),
    (["start", "--scope", "0", "web"], "--scope"),
])
def test_numbers_that_mean_nothing_are_refused_naming_the_option(tmp_path, args, option):
    """NaN, inf, negative or out-of-range values: a usage error before anything
    is sent (the socket here does not exist, so nothing could answer)."""
    done = subprocess.run([PY, "-m", "vigilctl", "--socket", str(tmp_path / "none.sock"),
                           *args], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2, (args, done.stderr)
    assert f"argument {option}: " in done.stderr, done.stderr
    assert "not running" not in done.stderr
