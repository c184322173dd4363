"""While a start or stop waits, vigilctl shows what the daemon reports: one
line per report off a terminal, a live line per unit on one (a pty here)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

from tests.daemon import ROOT, wait_for
from tests.test_vigilctl import ctl

SUBREAPER = pytest.mark.parametrize("mode", ["subreaper"], indirect=True)

# ready 1.2 s after it starts: a file it makes then
SLOW = ('[unit]\nenabled = false\n[service]\nexec = ["sh", "-c", "rm -f {f}; sleep 1.2; '
        'touch {f}; exec sleep 1000"]\n[service.ready]\nexec = ["test", "-e", "{f}"]\n')
UNITS = {
    "stubborn.toml": '[service]\nexec = ["sh", "-c", "trap \'\' TERM; while :; do sleep 0.1; '
                     'done"]\nstop-timeout = 1.2\n',
}
FAST_REPORTS = ["--no-autostart", "--slow-report", "0.4"]


def units(tmp_path) -> dict[str, str]:
    return {**UNITS, "slow.toml": SLOW.format(f=tmp_path / "slow-ready")}


def on_pty(args: list[str]) -> tuple[int, bytes]:
    """Runs vigilctl on a pseudo-terminal: its exit status and all it wrote."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "vigilctl", *args], stdin=slave,
                            stdout=slave, stderr=slave, cwd=ROOT, start_new_session=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child is gone and the pty hung up
                    break
                if not chunk:
                    break
                seen += chunk
        return proc.wait(timeout=30), seen
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


@SUBREAPER
def test_off_a_terminal_each_report_is_a_line(daemon, tmp_path):
    d = daemon(units(tmp_path), extra=FAST_REPORTS)
    started = ctl(d, "start", "slow")
    assert (started.returncode, started.stdout) == (0, "slow: running\n"), started
    assert "vigilctl: still waiting for slow (" in started.stderr
    assert "Started slow" not in started.stderr  # off a terminal, only what is slow or wrong
    ctl(d, "start", "stubborn")
    stopped = ctl(d, "stop", "stubborn")
    assert stopped.returncode == 0, stopped
    assert "vigilctl: still waiting for stubborn to stop (" in stopped.stderr
    assert "vigilctl: stubborn did not stop within 1.2s; sending SIGKILL" in stopped.stderr
    assert "\x1b" not in stopped.stderr  # no live lines off a terminal


@SUBREAPER
def test_on_a_terminal_a_live_line_per_unit_then_the_answer(daemon, tmp_path):
    d = daemon(units(tmp_path), extra=FAST_REPORTS)
    status, out = on_pty(["--socket", d.socket, "start", "slow"])
    assert status == 0, out
    text = out.decode()
    assert any(spin in text for spin in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"), text
    assert "\x1b[K" in text and "still waiting for slow" in text
    assert text.rstrip().endswith("\x1b[Jslow: running"), text  # live lines erased first


@SUBREAPER
def test_ctrl_c_while_waiting_says_the_operation_goes_on(daemon, tmp_path):
    d = daemon(units(tmp_path), extra=FAST_REPORTS)
    proc = subprocess.Popen([sys.executable, "-m", "vigilctl", "--socket", d.socket, "start",
                             "slow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    wait_for(lambda: d.status("slow")["state"] == "starting")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "stopped waiting; vigil goes on with the start of slow" in err
    wait_for(lambda: d.status("slow")["state"] == "running")  # it did go on


@SUBREAPER
def test_shutdown_returns_once_the_daemon_has_exited(daemon, tmp_path):
    d = daemon(units(tmp_path), extra=FAST_REPORTS)
    ctl(d, "start", "stubborn")
    done = ctl(d, "shutdown")
    assert done.returncode == 0, done
    # stubborn takes 1.2 s to stop: an answer before that would leave the daemon alive
    assert d.proc.wait(timeout=0.5) is not None


NOISY = {"noisy.toml": '[service]\nexec = ["sh", "-c", "echo out; echo oops >&2; '
                       'exec sleep 1000"]\n'}


@SUBREAPER
def test_logs_colour_each_unit_and_mark_stderr_on_a_terminal_only(daemon):
    from vigilctl.show import unit_color
    d = daemon(NOISY)
    wait_for(lambda: "oops" in ctl(d, "logs", "noisy").stdout)
    plain = ctl(d, "logs", "noisy").stdout
    assert "noisy: oops" in plain and "\x1b" not in plain
    status, out = on_pty(["--socket", d.socket, "logs", "noisy"])
    text = out.decode()
    assert status == 0
    assert f"\x1b[{unit_color('noisy')}mnoisy\x1b[0m: \x1b[31m!\x1b[0m oops" in text
    assert f"\x1b[{unit_color('noisy')}mnoisy\x1b[0m: out" in text


def test_timeline_spans_read_at_a_glance():
    from vigilctl.show import span
    assert [span(0.25), span(12.34, "+"), span(303.0, "+"), span(7500)] == \
        ["250ms", "+12.3s", "+5m03s", "2h05m"]


@SUBREAPER
def test_progress_lines_cannot_drive_the_terminal(daemon):
    d = daemon({"evil.toml": '[unit]\nenabled = false\n[service]\n'
                             'exec = ["/nonexistent/\\u001b]52;c;ZXZpbA==\\u0007\\u001b[2J"]\n'
                             'restart = "never"\n'}, extra=FAST_REPORTS)
    out = ctl(d, "start", "evil")
    assert out.returncode == 1
    assert "\x1b" not in out.stderr and "\x07" not in out.stderr
    assert "\\x1b]52;c;" in out.stderr  # shown, escaped


def test_timeline_counts_from_the_first_start(capsys):
    from vigilctl.show import timeline
    timeline({"units": [{"unit": "web", "began": 300.5, "ready": 301.7, "took": 1.2},
                        {"unit": "db", "began": 300.0, "ready": 300.4, "took": 0.4}],
              "chain": [{"unit": "db", "began": 300.0, "ready": 300.4, "took": 0.4},
                        {"unit": "web", "began": 300.5, "ready": 301.7, "took": 1.2}]})
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("(times since the first start (5m00s after the daemon started))")
    assert out[1].split() == ["1.2s", "+500ms", "+1.7s", "web"]
    assert out[2].split() == ["400ms", "+0ms", "+400ms", "db"]
    assert out[-1].split() == ["web", "@500ms", "+1.2s"]
