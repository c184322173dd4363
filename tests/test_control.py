"""The control socket and vigilctl against a real daemon."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.daemon import ROOT, Daemon, wait_for

SLEEPER = '[service]\nexec = "sleep 1000"\n'


def raw(d, payload: bytes) -> list[dict]:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(d.socket)
    s.sendall(payload)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return [json.loads(x) for x in data.splitlines()]


@pytest.mark.parametrize("mode", ["subreaper"], indirect=True)
def test_malformed_input_gets_an_error_and_a_hangup(daemon):
    d = daemon({"a.toml": SLEEPER})
    # first, while the daemon has never imported json: CPython 3.11's scanner
    # finds its error class only in an imported json.decoder (vigil/base/jsonc.py)
    assert raw(d, b'{"a" 1}\n')[0]["error"]["code"] == "bad-json"
    assert raw(d, b"not json\n")[0]["error"]["code"] == "bad-json"
    assert raw(d, b'{"v": 2, "cmd": "status"}\n')[0]["error"]["code"] == "bad-version"
    assert raw(d, b"[1,2]\n")[0]["error"]["code"] == "bad-request"
    assert raw(d, b"x" * 70000)[0]["error"]["code"] == "too-large"
    assert raw(d, b"[" * 60000 + b"\n")[0]["error"]["code"] == "bad-json"
    assert d.call("ping") == "pong"  # and it still serves


FAULTY_PARSER = """
import vigil.control.connection as connection
real = connection.parse_request
def parse_request(line):
    if b"boom" in line:
        raise RuntimeError("injected: a fault in reading a request")
    return real(line)
connection.parse_request = parse_request
"""


def test_a_request_that_cannot_be_read_is_answered_and_not_kept(unit_dir, tmp_path):
    """Any fault in reading a request (a bug, a missing module) gets the client
    an error and a hangup (an independent attack, on 3.11's json scanner:
    the daemon said nothing and kept the connection)."""
    d = Daemon(unit_dir({"a.toml": SLEEPER}), tmp_path, python_code=FAULTY_PARSER)
    try:
        d.call("ping")
        replies = raw(d, b'{"boom": 1}\n' + b" " * 4000)  # and the start of another line
        assert [r["error"]["code"] for r in replies] == ["bad-json"]
        assert "injected: a fault in reading a request" in d.output()
        assert d.output().count("injected:") == 1, "read once, not at every recv"
        assert d.call("ping") == "pong"
    finally:
        d.stop()


FAULT_PAST_THE_PARSER = """
import vigil.control.connection as connection
real = connection.Connection._parse
def _parse(self, line):
    if b"boom" in line:
        raise RuntimeError("injected: a fault past the parser")
    return real(self, line)
connection.Connection._parse = _parse
"""


def test_a_line_whose_handling_fails_leaves_the_buffer(unit_dir, tmp_path):
    """The whole lines leave a connection's buffer before any is acted on:
    a line whose handling raises (here past the parser's own catch) is not
    read again at the next recv, where it failed again before anything after
    it while the client grew the buffer without end."""
    d = Daemon(unit_dir({"a.toml": SLEEPER}), tmp_path, python_code=FAULT_PAST_THE_PARSER)
    s = socket.socket(socket.AF_UNIX)
    try:
        s.settimeout(10)
        s.connect(d.socket)
        s.sendall(b'{"boom": 1}\n')
        wait_for(lambda: "injected: a fault past the parser" in d.output(), what="the fault")
        s.sendall(b'  {"v": 1, "id": 2, "cmd": "ping", "args": {}}\n')
        reply = s.makefile("rb").readline()
        assert json.loads(reply) == {"id": 2, "ok": True, "result": "pong"}
        assert d.output().count("injected:") == 1, "read once, not at every recv"
    finally:
        s.close()
        d.stop()


@pytest.mark.parametrize("mode", ["subreaper"], indirect=True)
def test_unknown_unit_suggests_a_name(daemon):
    d = daemon({"web.toml": SLEEPER})
    out = subprocess.run([sys.executable, "-m", "vigilctl", "--socket", d.socket,
                          "stop", "wbe"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1
    assert out.stderr.strip() == "vigilctl: no such unit 'wbe' (did you mean 'web'?)"


def test_vigilctl_without_a_daemon_says_so(tmp_path):
    out = subprocess.run([sys.executable, "-m", "vigilctl", "--socket",
                          str(tmp_path / "none.sock"), "status"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1
    assert out.stderr.strip() == f"vigilctl: vigil is not running (no socket at {tmp_path}/none.sock)"


def test_changes_refused_from_another_uid(unit_dir):
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another uid")
    # pytest's own tmp dirs are 0700; the other uid must reach the socket to be refused.
    top = Path(tempfile.mkdtemp(prefix="vigil-peercred-"))
    os.chmod(top, 0o755)
    d = Daemon(unit_dir({"a.toml": SLEEPER}), top)
    try:
        _refused(d)
    finally:
        d.stop()
        shutil.rmtree(top, ignore_errors=True)


def _refused(d: Daemon) -> None:
    pid = wait_for(lambda: d.inst("a")["pid"])
    os.chmod(os.path.dirname(d.socket), 0o755)
    os.chmod(d.socket, 0o666)
    code = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.settimeout(10);"
            "s.connect(sys.argv[1]);"
            "s.sendall(b'{\"v\":1,\"id\":1,\"cmd\":\"stop\",\"args\":{\"units\":[\"a\"]}}\\n');"
            "print(s.recv(65536).decode())")
    out = subprocess.run(["/usr/bin/python3", "-c", code, d.socket], capture_output=True,
                         text=True, user=65534, group=65534, cwd="/")
    reply = json.loads(out.stdout)
    assert reply["ok"] is False and reply["error"]["code"] == "permission-denied"
    assert "permission denied: 'stop' needs root" in reply["error"]["message"]
    assert d.inst("a")["pid"] == pid and d.inst("a")["state"] == "running"


def test_reload_restarts_only_what_changed(daemon, tmp_path):
    d = daemon({"same.toml": SLEEPER, "changed.toml": SLEEPER, "gone.toml": SLEEPER,
                "broken.toml": SLEEPER})
    pids = {u: wait_for(lambda u=u: d.inst(u)["pid"]) for u in ("same", "changed", "broken")}
    units = tmp_path / "units"
    (units / "changed.toml").write_text('[service]\nexec = "sleep 1001"\n')
    (units / "gone.toml").unlink()
    (units / "broken.toml").write_text("[service\nthis is not toml")
    (units / "new.toml").write_text(SLEEPER)
    plan = d.call("reload", dry_run=True)
    assert {c["unit"]: c["action"] for c in plan["changes"]} == {
        "changed": "restart", "gone": "remove", "broken": "keep-old", "new": "add"}
    assert d.inst("changed")["pid"] == pids["changed"]  # a dry run changes nothing
    result = d.call("reload")
    why = {c["unit"]: c["why"] for c in result["changes"]}
    assert why["changed"] == "changed: service.exec"
    assert any("broken.toml" in p and "TOML syntax error" in p for p in result["problems"])
    wait_for(lambda: d.status("new")["state"] == "running")
    wait_for(lambda: d.inst("changed")["pid"] not in (None, pids["changed"]))
    assert d.inst("same")["pid"] == pids["same"]
    assert d.inst("broken")["pid"] == pids["broken"]  # keeps its running config
    wait_for(lambda: "gone" not in d.call("list"))


def test_read_group_may_look_but_not_change(unit_dir):
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another uid")
    top = Path(tempfile.mkdtemp(prefix="vigil-readgroup-"))
    os.chmod(top, 0o755)
    d = Daemon(unit_dir({"a.toml": SLEEPER}), top, extra=["--read-group", "nogroup"])
    try:
        pid = wait_for(lambda: d.inst("a")["pid"])
        assert os.stat(d.socket).st_mode & 0o777 == 0o660
        code = ("import json, socket, sys; s = socket.socket(socket.AF_UNIX); s.settimeout(10)\n"
                "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n"
                "    print('no-access'); sys.exit()\n"
                "for cmd in ('status', 'stop'):\n"
                "    s.sendall(json.dumps({'v': 1, 'id': 1, 'cmd': cmd, 'args': {'units': ['a']}})"
                ".encode() + b'\\n')\n"
                "    print(s.makefile().readline().strip())")

        def as_user(gid: int, extra: tuple[int, ...] = ()) -> list[str]:
            out = subprocess.run(["/usr/bin/python3", "-c", code, d.socket], capture_output=True,
                                 text=True, user=65534, group=gid, extra_groups=list(extra),
                                 cwd="/", timeout=30)
            return out.stdout.splitlines()
        for groups in ((65534, ()), (1, (65534,))):  # the group as primary, or supplementary
            status, stop = (json.loads(x) for x in as_user(*groups))
            assert status["ok"] and status["result"][0]["state"] == "running", groups
            assert stop["error"]["code"] == "permission-denied"
        assert as_user(1) == ["no-access"], "outside the group the socket cannot be opened"
        assert d.inst("a")["pid"] == pid
    finally:
        d.stop()
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("mode", ["pid1"], indirect=True)
def test_socket_fuzz_while_the_daemon_keeps_serving(daemon):
    import random
    import threading
    d = daemon({"a.toml": SLEEPER})
    pid = wait_for(lambda: d.inst("a")["pid"])
    rng = random.Random(1234)
    shapes = [
        lambda: rng.randbytes(rng.randint(1, 4096)),
        lambda: rng.randbytes(rng.randint(1, 200)) + b"\n",
        lambda: json.dumps({"v": 1, "id": rng.random(), "cmd": rng.choice(
            ["status", "stop", "start", "logs", "cat", "attach", "input", "resize", "reload",
             "nope", ""]), "args": rng.choice([{}, [], None, {"units": 7},
                                               {"units": ["a", 3]}, {"unit": []},
                                               {"lines": -1}, {"since": "x"},
                                               {"rows": 0, "cols": 1e9, "unit": "a"}])}).encode()
        + b"\n",
        lambda: b'{"v":1,"cmd":"status","args":{"units":["' + b"a" * rng.randint(1, 90000)
        + b'"]}}\n',
        lambda: b"\n" * rng.randint(1, 1000),
        lambda: b'{"v":1,"id":1,"cmd":"ping"}\n' * rng.randint(1, 500),
    ]
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        local = random.Random(seed)
        for _ in range(60):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(10)
            try:
                s.connect(d.socket)
                s.sendall(local.choice(shapes)())
                if local.random() < 0.5:
                    s.shutdown(socket.SHUT_WR)
                    while s.recv(65536):
                        pass
            except OSError:
                pass  # the daemon may hang up on us: that is its right
            except BaseException as err:
                errors.append(err)
            finally:
                s.close()
    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for _ in range(20):
        assert d.call("ping") == "pong"
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert d.inst("a")["pid"] == pid and d.inst("a")["state"] == "running"
    assert "daemon.bug" not in d.output()
    assert "Traceback" not in d.output()
    assert "error in command" not in d.output(), "a handler raised on bad input"


def test_a_start_waits_past_the_idle_timeout(daemon, tmp_path):
    """A unit slower to be ready than the connection idle timeout: the waiting
    request keeps its connection; only a silent client loses it."""
    d = daemon({"slow.toml": f'''[unit]
enabled = false
[service]
cwd = "{tmp_path}"
exec = ["sh", "-c", "sleep 2.5; touch ready; exec sleep 1000"]
ready = {{ exec = ["test", "-e", "ready"], interval = 0.1 }}
'''}, ["--idle-timeout", "1"])
    assert d.call("start", units=["slow"]) == {"slow": "running"}
    idle = socket.socket(socket.AF_UNIX)
    idle.connect(d.socket)
    idle.settimeout(30)
    assert idle.recv(1) == b"", "a silent connection is closed after the idle timeout"
