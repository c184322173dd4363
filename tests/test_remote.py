"""Remote control over TCP on 127.0.0.1: a token always, TLS when asked, a
wrong token answered late, and no plain TCP off loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.daemon import ROOT, Daemon, wait_for

TOKEN = "correct-horse-battery-staple"
SLEEPER = '[service]\nexec = "sleep 1000"\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token_file(tmp_path, text: str = TOKEN) -> str:
    path = tmp_path / "token"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vigilctl", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def test_token_is_required_and_a_wrong_one_is_slow(unit_dir, tmp_path):
    port = free_port()
    d = Daemon(unit_dir({"a.toml": SLEEPER}), tmp_path,
               extra=["--listen", f"127.0.0.1:{port}", "--token-file", token_file(tmp_path)])
    try:
        good = token_file(tmp_path)
        out = ctl("--remote", f"127.0.0.1:{port}", "--token-file", good, "status", "a")
        assert out.returncode == 0 and "running" in out.stdout, out.stderr
        # without auth, nothing but auth is accepted
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b'{"v":1,"id":1,"cmd":"stop","args":{"units":["a"]}}\n')
        reply = json.loads(s.makefile().readline())
        assert reply["error"]["code"] == "permission-denied"
        s.close()
        bad = tmp_path / "bad"
        bad.write_text("x" * 20)
        times = []
        for _ in range(3):
            began = time.monotonic()
            out = ctl("--remote", f"127.0.0.1:{port}", "--token-file", str(bad), "status")
            times.append(time.monotonic() - began)
            assert out.returncode == 1 and "permission denied: wrong token" in out.stderr
        assert times[2] >= 1.0 and times[2] > times[0], f"the delay doubles per failure: {times}"
        assert d.inst("a")["state"] == "running"
    finally:
        d.stop()


def test_tls_endpoint(unit_dir, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                           "-keyout", str(key), "-out", str(cert), "-days", "1",
                           "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                          capture_output=True, timeout=60)
    if made.returncode != 0:
        pytest.skip("openssl cannot make a test certificate here")
    port = free_port()
    d = Daemon(unit_dir({"a.toml": SLEEPER}), tmp_path,
               extra=["--listen", f"127.0.0.1:{port}", "--token-file", token_file(tmp_path),
                      "--tls-cert", str(cert), "--tls-key", str(key)])
    try:
        wait_for(lambda: d.inst("a")["state"] == "running")
        tls = ["--remote", f"127.0.0.1:{port}", "--token-file", token_file(tmp_path), "--tls",
               "--ca", str(cert)]
        out = ctl(*tls, "stop", "a")
        assert out.returncode == 0 and out.stdout.strip() == "a: inactive", out.stderr
        plain = ctl("--remote", f"127.0.0.1:{port}", "--token-file", token_file(tmp_path),
                    "--timeout", "5", "status")
        assert plain.returncode == 1
        unverified = ctl("--remote", f"127.0.0.1:{port}", "--token-file", token_file(tmp_path),
                         "--tls", "status")
        assert unverified.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in unverified.stderr
        assert ctl(*tls, "ping").returncode == 0, "the daemon serves on after all that"
    finally:
        d.stop()


def test_plain_tcp_off_loopback_is_refused(unit_dir, tmp_path):
    out = subprocess.run([sys.executable, "-m", "vigil.cli", "--units", str(unit_dir({})),
                          "--socket", str(tmp_path / "run" / "c.sock"), "--listen",
                          f"0.0.0.0:{free_port()}", "--token-file", token_file(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 1
    assert "off loopback, TLS is required" in out.stderr


def test_a_token_file_others_can_read_is_refused(unit_dir, tmp_path):
    path = token_file(tmp_path)
    os.chmod(path, 0o644)
    out = subprocess.run([sys.executable, "-m", "vigil.cli", "--units", str(unit_dir({})),
                          "--socket", str(tmp_path / "run" / "c.sock"), "--listen",
                          f"127.0.0.1:{free_port()}", "--token-file", path],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 1 and "readable by others (chmod 600 it)" in out.stderr


# -- hostile clients (issue 22) --------------------------------------------------

@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory):
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                           "-keyout", str(key), "-out", str(cert), "-days", "1",
                           "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                          capture_output=True, timeout=60)
    if made.returncode != 0:
        pytest.skip("openssl cannot make a test certificate here")
    return cert, key


class Endpoint:
    """A daemon listening on 127.0.0.1, plain or TLS, and raw clients of it."""

    def __init__(self, unit_dir, tmp_path, tls, cert_pair, wrap=None, extra=()):
        self.port = free_port()
        self.tls = tls
        args = ["--listen", f"127.0.0.1:{self.port}", "--token-file", token_file(tmp_path),
                *extra]
        self.context = None
        if tls:
            import ssl
            args += ["--tls-cert", str(cert_pair[0]), "--tls-key", str(cert_pair[1])]
            self.context = ssl.create_default_context(cafile=str(cert_pair[0]))
        self.d = Daemon(unit_dir({"a.toml": SLEEPER}), tmp_path, extra=args, wrap=wrap)

    def connect(self, source: str = "127.0.0.1", timeout: float = 10) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout,
                                     source_address=(source, 0))
        if self.context is not None:
            s = self.context.wrap_socket(s, server_hostname="127.0.0.1")
        return s


def auth_line(token: str, rid: int = 1) -> bytes:
    return json.dumps({"v": 1, "id": rid, "cmd": "auth", "args": {"token": token}}).encode() + b"\n"


def read_all(s: socket.socket) -> list[dict]:
    """Replies until the daemon hangs up (a reset or a TLS close without
    close_notify, when it hangs up on unread input, ends them too)."""
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except TimeoutError:
        raise  # the daemon did not hang up
    except OSError:
        pass
    return [json.loads(x) for x in data.splitlines()]


@pytest.fixture(params=[False, True], ids=["plain", "tls"])
def tls(request):
    return request.param


def test_guesses_sent_together_are_never_judged(unit_dir, tmp_path, tls, cert_pair):
    """Issue 22.1: 500 wrong guesses and the right token in one write must
    not authenticate: one auth per connection, nothing after it acted on."""
    e = Endpoint(unit_dir, tmp_path, tls, cert_pair)
    try:
        s = e.connect()
        try:
            s.sendall(b"".join(auth_line(f"guess-{n:016d}", n) for n in range(500))
                      + auth_line(TOKEN, 500)
                      + b'{"v":1,"id":501,"cmd":"stop","args":{"units":["a"]}}\n')
        except OSError:
            pass  # hung up on before it was all written: that is the point
        replies = read_all(s)  # an error, or a reset: the daemon hung up on unread input
        s.close()
        assert not any(r["ok"] for r in replies), replies
        one = e.connect()  # one wrong guess: answered, then hung up on
        one.sendall(auth_line("x" * 20))
        assert [r["error"]["message"] for r in read_all(one)] == ["permission denied: wrong token"]
        one.close()
        assert e.d.inst("a")["state"] == "running"
    finally:
        e.d.stop()


def test_a_long_run_of_failures_still_waits(unit_dir, tmp_path, cert_pair):
    """Issue 22.1: past 1,024 failures the delay overflowed and every guess
    was answered at once; it is capped instead."""
    from vigil.control.remote import wrong_delay
    assert wrong_delay(1, 30.0) == 0.25 and wrong_delay(3, 30.0) == 1.0
    assert wrong_delay(1025, 30.0) == wrong_delay(10 ** 9, 30.0) == 30.0
    e = Endpoint(unit_dir, tmp_path, False, cert_pair, extra=["--limit", "auth-delay-max=0.001"])
    try:
        for n in range(1030):
            s = e.connect()
            s.sendall(auth_line(f"guess-{n:016d}"))
            assert read_all(s)[0]["error"]["code"] == "permission-denied"
            s.close()
        out = ctl("--remote", f"127.0.0.1:{e.port}", "--token-file", token_file(tmp_path), "ping")
        assert out.returncode == 0, out.stderr
        assert "OverflowError" not in e.d.output()
    finally:
        e.d.stop()


def test_each_wrong_token_from_an_address_waits_twice_as_long(unit_dir, tmp_path, cert_pair):
    """Issue 23: the delay doubles per failure (0.25, 0.5, 1 s), measured answer
    by answer on the endpoint, so a constant delay cannot pass (only lower
    bounds: a loaded machine may answer later, never sooner)."""
    # breaks: vigil/control/remote.py:_judge: `delay = wrong_delay(1, ...)` (a constant 0.25 s)
    e = Endpoint(unit_dir, tmp_path, False, cert_pair)
    try:
        waited = []
        for n in range(3):
            s = e.connect()
            began = time.monotonic()
            s.sendall(auth_line(f"guess-{n:016d}"))
            assert read_all(s)[0]["error"]["code"] == "permission-denied"
            waited.append(time.monotonic() - began)
            s.close()
        for n, seconds in enumerate(waited):
            assert seconds >= 0.25 * 2 ** n * 0.95, waited
    finally:
        e.d.stop()


def test_failed_auths_do_not_flood_the_events(unit_dir, tmp_path, cert_pair):
    """Issue 22.2: each wrong token was an event; 100 from 100 addresses
    made 100 events. They are summed up, one event per interval."""
    e = Endpoint(unit_dir, tmp_path, False, cert_pair)
    try:
        wait_for(lambda: e.d.inst("a")["state"] == "running")
        for batch in range(10):
            guesses = [e.connect(f"127.0.0.{2 + batch * 10 + n}") for n in range(10)]
            for s in guesses:
                s.sendall(auth_line("x" * 20))
            for s in guesses:
                assert read_all(s)[0]["error"]["code"] == "permission-denied"
                s.close()
        events = e.d.call("events", lines=2000)
        about_tokens = [x for x in events if "token" in x["message"]]
        assert 1 <= len(about_tokens) <= 2, [x["message"] for x in about_tokens]
        assert any(x["unit"] == "a" for x in events), "the unit's events are all still there"
    finally:
        e.d.stop()


def test_a_trickling_client_is_closed_before_auth(unit_dir, tmp_path, tls, cert_pair):
    """Issue 22.4: a byte every few seconds kept a connection past the idle
    timeout; there is a deadline to authenticate (5 s by default)."""
    e = Endpoint(unit_dir, tmp_path, tls, cert_pair)
    try:
        began = time.monotonic()
        s = e.connect()
        s.settimeout(0.5)
        closed = False
        for byte in auth_line(TOKEN)[:-1]:  # never the newline
            s.sendall(bytes([byte]))
            try:
                if s.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
            if time.monotonic() - began > 15:
                break
        assert closed and time.monotonic() - began < 10, "closed at the auth deadline"
        silent = socket.create_connection(("127.0.0.1", e.port), timeout=15)  # not even TLS
        assert silent.recv(1) == b"" and time.monotonic() - began < 20
        silent.close()
    finally:
        e.d.stop()


def test_connections_before_auth_are_capped(unit_dir, tmp_path, cert_pair):
    """Issue 22.4: 129 plain connections against a 128-fd limit killed the
    daemon. Connections before auth are capped (per address and in all);
    the rest are closed at once, and the daemon serves on."""
    e = Endpoint(unit_dir, tmp_path, False, cert_pair, wrap=["prlimit", "--nofile=128:128"],
                 extra=["--limit", "auth-timeout=600"])  # the caps alone, not the deadline
    try:
        before = len(os.listdir(f"/proc/{e.d.daemon_pid()}/fd"))
        held = []
        for n in range(200):
            try:
                held.append(e.connect(f"127.0.0.{1 + n // 4}", timeout=2))
            except OSError:
                pass  # a full backlog: the daemon is not keeping up
        assert e.d.call("ping") == "pong"

        def still_open() -> list[socket.socket]:
            import select
            readable, _, _ = select.select(held, [], [], 0)
            return [s for s in held if s not in readable]
        wait_for(lambda: len(still_open()) <= 16, what="the connections over the cap closed")
        assert len(os.listdir(f"/proc/{e.d.daemon_pid()}/fd")) <= before + 128 // 4
        for s in held:
            s.close()
        out = ctl("--remote", f"127.0.0.1:{e.port}", "--token-file", token_file(tmp_path), "ping")
        assert out.returncode == 0, out.stderr
        assert "error in" not in e.d.output()
    finally:
        e.d.stop()


def test_an_ipv6_host_counts_as_one_address():
    """A host holds a whole /64: taking a fresh address per guess must not
    start its count afresh."""
    from vigil.control.remote import source
    assert source("2001:db8::1") == source("2001:db8::ffff:1234") != source("2001:db8:0:1::1")
    assert source("::ffff:192.0.2.7") == source("192.0.2.7") != source("192.0.2.8")
