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
