"""Service output must not drive the terminal: a service that prints escape
sequences (OSC 52 sets the clipboard, CSI 2K erases the line) and a carriage
return to forge vigil's `[  OK  ] Started sshd`, and whose HTTP health check
answers with escape sequences, reaches the console, `vigilctl logs`,
`events`, `status` and `why` only escaped, each of its lines behind its
instance's prefix."""

from __future__ import annotations

import os
import subprocess
import sys

import tomli_w

from hypothesis import given
from hypothesis import strategies as st

from tests.daemon import ROOT, wait_for
from vigil.runtime.output import Console, Line
from vigil.base.printable import printable, printable_lines

# what the service prints, in shell printf notation
FORGE = r"\033]52;c;cm0gLXJmIH4K\007\033[2K\r[  OK  ] Started sshd\n"
SERVER = r"""
import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen()
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b"HTTP/1.1 5\x1b]52;c;eA==\x0700 no\r\n\r\n")
    c.close()
"""
UNITS = {
    "chatty.toml": tomli_w.dumps({"service": {
        "exec": ["sh", "-c", f"printf '{FORGE}'; exec sleep 1000"], "stdout": "console"}}),
    "web.toml": tomli_w.dumps({"service": {
        "exec": ["python3", "-c", SERVER], "port": "auto", "restart-delay": 0.5,
        "health": {"http": "http://127.0.0.1:$PORT/", "interval": 0.2, "retries": 1}}}),
}
RAW = ("\x1b", "\x07", "\r")


def ctl(d, *args: str) -> str:
    """What vigilctl printed, carriage returns kept (text=True would make
    them newlines)."""
    done = subprocess.run([sys.executable, "-m", "vigilctl", "--socket", d.socket, *args],
                          capture_output=True, cwd=ROOT, timeout=60)
    return (done.stdout + done.stderr).decode("utf-8", "replace")


def console(d) -> str:
    """What the daemon wrote on its console, carriage returns and all."""
    return d.log.read_bytes().decode("utf-8", "replace")


def test_services_cannot_drive_the_console(daemon):
    d = daemon(UNITS)
    out = wait_for(lambda: (o := console(d)) and "Started sshd" in o and "HTTP 5" in o and o,
                   what="the forged line and the failed health check on the console")
    assert not [c for c in RAW if c in out], "raw control characters on the console"
    forged = [line for line in out.split("\n") if "Started sshd" in line]
    assert forged and all(" chatty | \\x1b]52;c;cm0gLXJmIH4K\\x07\\x1b[2K\\x0d[  OK  ]" in line
                          and not line.startswith("[") for line in forged), forged
    assert "(HTTP 5\\x1b]52;c;eA==\\x0700); restarting" in out


def test_services_cannot_drive_vigilctl(daemon):
    d = daemon(UNITS)
    logs = wait_for(lambda: (o := ctl(d, "logs", "chatty")) and "Started sshd" in o and o)
    assert logs.split(" ", 1)[1].startswith("chatty: \\x1b]52") and len(logs.split("\n")) == 2
    events = wait_for(lambda: (e := ctl(d, "events", "web")) and "HTTP 5" in e and e)
    assert "HTTP 5\\x1b]52;c;eA==\\x0700" in events
    for shown in (logs, events, ctl(d, "why", "web"), ctl(d, "status")):
        assert not [c for c in RAW if c in shown], shown


def test_the_console_keeps_a_service_line_to_one_line():
    read, write = os.pipe()
    Console(write, color=False).service_line(
        Line(0.0, "chatty", "chatty", "stdout", "a\rb\nc\x1b[2J\x9bd\u202ee\tf"))
    os.close(write)
    shown = os.read(read, 4096).decode()
    os.close(read)
    assert shown.endswith(" chatty | a\\x0db\\x0ac\\x1b[2J\\x9bd\\u202ee\tf\n")
    assert shown.count("\n") == 1


@given(st.text())
def test_printable_leaves_nothing_a_terminal_acts_on(text):
    shown = printable(text)
    assert not any(c != "\t" and (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) for c in shown)
    assert not set(shown) & set("\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067"
                                "\u2068\u2069")
    assert printable_lines(text).count("\n") == text.count("\n")
    if text.isprintable():
        assert shown == text
