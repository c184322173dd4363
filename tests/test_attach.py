"""attach through a real pseudo-terminal: type into a console = "pty" unit,
see its answer, detach with Ctrl-], and the unit runs on."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

from tests.daemon import ROOT, wait_for


def read_until(fd: int, needle: bytes, timeout: float = 20.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    assert needle in seen, f"{needle!r} not in {seen!r}"
    return seen


def test_attach_types_into_the_unit_and_detaches(daemon):
    d = daemon({"shell.toml": '[service]\nexec = "sh"\nconsole = "pty"\nstop-signal = "HUP"\n'
                              'env = { PS1 = "vigil-test$ " }\n'})
    pid = wait_for(lambda: d.inst("shell")["state"] == "running" and d.inst("shell")["pid"])
    master, slave = pty.openpty()
    client = subprocess.Popen([sys.executable, "-m", "vigilctl", "--socket", d.socket,
                               "attach", "shell"], stdin=slave, stdout=slave, stderr=slave,
                              cwd=ROOT, start_new_session=True)
    os.close(slave)
    try:
        read_until(master, b"attached to shell")
        os.write(master, b"echo $((6*7))\n")
        read_until(master, b"42")
        os.write(master, b"\x1d")  # Ctrl-]
        read_until(master, b"detached from shell")
        assert client.wait(timeout=20) == 0
    finally:
        if client.poll() is None:
            client.kill()
        os.close(master)
    assert d.inst("shell")["state"] == "running" and d.inst("shell")["pid"] == pid
    lines = [x["text"] for x in d.call("logs", units=["shell"])]
    assert "42" in lines, "what the unit printed on its terminal is in its log too"


def test_attach_refuses_a_unit_without_a_terminal(daemon):
    d = daemon({"plain.toml": '[service]\nexec = "sleep 1000"\n'})
    wait_for(lambda: d.status("plain")["state"] == "running")
    out = subprocess.run([sys.executable, "-m", "vigilctl", "--socket", d.socket, "attach",
                          "plain"], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.returncode == 1
    assert out.stderr.strip() == 'vigilctl: plain has no terminal: set console = "pty" in its ' \
                                 '[service]'
