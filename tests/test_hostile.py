"""Hostile clients on the control socket: every resource a client can make
the daemon hold is bounded, and the daemon keeps serving (and, as PID 1,
keeps each service once) under the attack."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.daemon import ROOT, Daemon, can_unshare, wait_for

SLEEPER = '[service]\nexec = ["sleep", "7777"]\n'
NOFILE = 128  # the daemon's fd limit under attack: the attack stays cheap

# Run as another uid: opens connections (each answers a ping) until one is
# refused, says how it went, and holds them until its stdin closes.
FLOOD = r"""
import json, socket, sys
held, verdict = [], "never refused"
for n in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    try:
        s.connect(sys.argv[1])
        try:
            s.sendall(b'{"v":1,"id":1,"cmd":"ping"}\n')
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused at accept and closed: its reason waits to be read
        line = s.makefile("rb").readline()
    except OSError as err:
        verdict = f"failed: {err}"
        break
    if not line:
        verdict = "hung up on without a reason"
        break
    reply = json.loads(line)
    if not reply["ok"]:
        verdict = "refused: " + reply["error"]["code"] + ": " + reply["error"]["message"]
        break
    held.append(s)
print(len(held), verdict, flush=True)
sys.stdin.read()
"""


def fd_count(d: Daemon) -> int:
    return len(os.listdir(f"/proc/{d.daemon_pid()}/fd"))


def copies_of_the_service(d: Daemon) -> int:
    """Processes running the service's command line, in the daemon's PID namespace."""
    found = 0
    for entry in os.listdir("/proc"):
        try:
            if (entry.isdigit() and Path(f"/proc/{entry}/cmdline").read_bytes() == b"sleep\x007777\x00"
                    and (not d.pid1 or d._in_ns(int(entry)))):
                found += 1
        except OSError:
            continue
    return found


@pytest.mark.parametrize("pid1", [False, True], ids=["subreaper", "pid1"])
def test_a_read_group_member_cannot_exhaust_the_fds(unit_dir, pid1):
    """Issue 14.2: as a --read-group member, open connections until refused;
    status still answers within 1 s, the daemon's fds stay bounded, and as
    PID 1 no service runs twice."""
    if os.geteuid() != 0 or not shutil.which("prlimit"):
        pytest.skip("needs root (another uid) and prlimit")
    if pid1 and not can_unshare():
        pytest.skip("needs unshare for a PID namespace")
    top = Path(tempfile.mkdtemp(prefix="vigil-hostile-"))
    os.chmod(top, 0o755)
    d = Daemon(unit_dir({"a.toml": SLEEPER}), top, pid1=pid1, extra=["--read-group", "nogroup"],
               wrap=["prlimit", f"--nofile={NOFILE}:{NOFILE}"])
    attacker = None
    try:
        pid = wait_for(lambda: d.inst("a")["pid"])
        daemon_pid, before = d.daemon_pid(), fd_count(d)
        attacker = subprocess.Popen(["/usr/bin/python3", "-c", FLOOD, d.socket, str(2 * NOFILE)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                    user=65534, group=65534, extra_groups=[], cwd="/")
        assert attacker.stdout is not None
        held, verdict = attacker.stdout.readline().strip().split(" ", 1)
        assert verdict.startswith("refused: too-many-connections: too many control connections"), \
            f"after {held} connections: {verdict}"
        began = time.monotonic()
        assert d.status("a")["state"] == "running"
        assert time.monotonic() - began < 1.0, "status answers at once under the attack"
        assert fd_count(d) <= before + NOFILE // 4, "at most a quarter of the fds for clients"
        assert d.daemon_pid() == daemon_pid and d.inst("a")["pid"] == pid
        assert copies_of_the_service(d) == 1
        assert "error in" not in d.output()
    finally:
        if attacker is not None:
            attacker.kill()
            attacker.wait(timeout=30)
        d.stop()
        shutil.rmtree(top, ignore_errors=True)


def _request(sock: socket.socket, cmd: str, rid: int, **args: object) -> None:
    sock.sendall(json.dumps({"v": 1, "id": rid, "cmd": cmd, "args": args}).encode() + b"\n")


def _replies(reader, rid: int) -> dict:
    """The next reply to request rid (streamed lines skipped)."""
    while True:
        reply = json.loads(reader.readline())
        if reply["id"] == rid and not reply.get("stream"):
            return reply


@pytest.mark.parametrize("mode", ["subreaper"], indirect=True)
def test_streams_on_one_connection_are_bounded(daemon):
    """Each `events -f` on a connection is one more follower every event is
    sent to: one connection may not pile them up."""
    d = daemon({"a.toml": SLEEPER})  # the default: 4 streams
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(d.socket)
    reader = s.makefile("rb")
    for rid in range(1, 6):
        _request(s, "events", rid, follow=True, lines=0)
    assert all(_replies(reader, rid)["ok"] for rid in range(1, 6)), "the events so far"
    fifth = _replies(reader, 5)
    assert not fifth["ok"] and fifth["error"]["code"] == "too-many-streams"
    s.close()
    assert d.call("ping") == "pong"


@pytest.mark.parametrize("mode", ["subreaper"], indirect=True)
def test_waits_on_one_connection_are_bounded(daemon):
    d = daemon({"slow.toml": '[unit]\nenabled = false\n[service]\nexec = "sleep 1000"\n'
                'ready = { exec = ["false"], interval = 0.5 }\n'})  # the default: 32 waits
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(d.socket)
    for rid in range(1, 34):
        _request(s, "start", rid, units=["slow"], timeout=60)
    last = _replies(s.makefile("rb"), 33)
    assert not last["ok"] and last["error"]["code"] == "too-many-waits"
    s.close()


LOUD = ('[unit]\nenabled = false\n[service]\nexec = ["sh", "-c", '
        '"yes 0123456789012345678901234567890123456789 | head -n 30000; exec sleep 1000"]\n')


@pytest.mark.parametrize("mode", ["subreaper"], indirect=True)
def test_a_follower_that_does_not_read_is_hung_up_on(daemon):
    """`logs -f` and never read: the replies queued for it are bounded
    (`output`), while one long reply to a client that reads is never cut."""
    d = daemon({"loud.toml": LOUD}, ["--limit", "output=65536"])
    s = socket.socket(socket.AF_UNIX)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(30)
    s.connect(d.socket)
    _request(s, "logs", 1, units=["loud"], follow=True, lines=0)
    d.call("start", units=["loud"])
    wait_for(lambda: len(d.call("logs", units=["loud"], lines=3000)) == 2000,
             what="the tail full of the unit's output")
    received = 0
    while chunk := s.recv(65536):  # what was queued, then the hang-up
        received += len(chunk)
    assert received < 1 << 20, "30,000 lines (4 MB) were not all queued for a client that reads none"
    assert len(d.call("logs", units=["loud"], lines=2000)) == 2000, "a 250 KB reply arrives whole"


def test_a_bad_limit_is_refused_by_name(unit_dir, tmp_path):
    out = subprocess.run([sys.executable, "-m", "vigil.cli", "--units", str(unit_dir({})),
                          "--socket", str(tmp_path / "run" / "c.sock"), "--limit", "clients=0"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 1
    assert "--limit 'clients=0': clients must be more than 0" in out.stderr


# Swaps the socket's directory for a symlink to VICTIM right after the
# daemon has checked it (stat by path or by fd): the race of issue 14.10, won.
SWAP = r"""
import os
directory, moved, victim = os.environ["T_DIR"], os.environ["T_MOVED"], os.environ["T_VICTIM"]
swapped = []

def after_check(real):
    def check(what, *args, **kwargs):
        result = real(what, *args, **kwargs)
        path = os.readlink(f"/proc/self/fd/{what}") if isinstance(what, int) else what
        if path == directory and not swapped and not kwargs.get("dir_fd"):
            swapped.append(True)
            os.rename(directory, moved)
            os.symlink(victim, directory)
        return result
    return check

os.lstat, os.fstat = after_check(os.lstat), after_check(os.fstat)
"""


def test_the_socket_directory_cannot_be_swapped_after_its_check(unit_dir, tmp_path):
    """Issue 14.10: the directory is changed through the fd that was
    checked, and the socket is bound in it, not where the path now leads."""
    directory, moved, victim = tmp_path / "sock", tmp_path / "moved", tmp_path / "victim"
    victim.mkdir()
    victim.chmod(0o755)
    env = {**os.environ, "T_DIR": str(directory), "T_MOVED": str(moved), "T_VICTIM": str(victim)}
    code = SWAP + "\nimport sys\nfrom vigil.cli import main\nsys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "--units", str(unit_dir({})),
                             "--socket", str(directory / "control.sock"),
                             "--runtime-dir", str(tmp_path / "rt")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (moved / "control.sock").exists() or (victim / "control.sock").exists(),
                 what="the socket")
        assert not (victim / "control.sock").exists(), "bound where the swapped path led"
        assert victim.stat().st_mode & 0o777 == 0o755, "chmod went through the symlink"
        assert (moved / "control.sock").is_socket()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# Fills every fd, then reports an error the way the loop does.
NO_FDS = r"""
import os, sys
from vigil.runtime.events import Events
events = Events(None)
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError as err:
    events.error("accepting a control connection", err)
print(events.recent[-1]["message"])
"""


def test_the_error_path_needs_no_fd():
    """Issue 14.2: with every fd taken, logging the error must not need
    one (an import, or reading source lines for a traceback, does)."""
    out = subprocess.run([sys.executable, "-c", NO_FDS], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("error in accepting a control connection: OSError: [Errno 24]")
