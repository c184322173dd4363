"""vigilctl's commands end to end: the printed output a person reads."""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from tests.daemon import ROOT, wait_for

SUBREAPER = pytest.mark.parametrize("mode", ["subreaper"], indirect=True)

UNITS = {
    "db.toml": '[unit]\ndescription = "the db"\n[service]\nexec = "sleep 1000"\n'
               '[service.ready]\nexec = ["sh", "-c", "sleep 0.3"]\n',
    "web.toml": '[unit]\nrequires = ["db"]\nafter = ["db"]\n[service]\nexec = "sleep 1000"\n',
    "web.d/override.toml": '[service]\nstop-timeout = 3\n',
    "app.toml": '[unit]\nwants = ["web", "cron"]\n',
    "cron.toml": '[service]\nexec = ["sh", "-c", "echo tick; exec sleep 1000"]\n',
}


def ctl(d, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vigilctl", "--socket", d.socket, *args],
                          capture_output=True, text=True, cwd=ROOT, input=stdin, timeout=60)


@SUBREAPER
def test_timeline_deps_and_cat(daemon):
    d = daemon(UNITS)
    wait_for(lambda: d.status("app")["state"] == "active")
    out = ctl(d, "timeline").stdout
    chain = out.split("critical chain")[1].split("\n")[1:]
    assert [line.split()[0] for line in chain if line.strip()] == ["db", "web", "app"]
    assert out.splitlines()[1].split()[-1] == "db", "slowest first: db waited for its probe"
    tree = ctl(d, "deps", "app").stdout.splitlines()
    assert tree == ["app (active)", "├─ cron (running) [wants]", "└─ web (running) [wants]",
                    "   └─ db (running)"]
    assert ctl(d, "deps", "--reverse", "db").stdout.splitlines() == [
        "db (running)", "└─ web (running)", "   └─ app (active)"]
    cat = ctl(d, "cat", "web").stdout
    assert cat.splitlines()[0].startswith("# web: ") and "override.toml" in cat.splitlines()[0]
    merged = tomllib.loads(cat)
    assert merged["service"] == {"exec": "sleep 1000", "stop-timeout": 3}


@SUBREAPER
def test_logs_since_and_events(daemon):
    d = daemon(UNITS)
    wait_for(lambda: "tick" in ctl(d, "logs", "cron").stdout)
    assert ctl(d, "logs", "--since", str(time.time() + 60), "cron").stdout == ""
    assert ctl(d, "logs", "--since", "1h", "cron").stdout.split(": ", 1)[1] == "tick\n"
    bad = ctl(d, "logs", "--since", "yesterday-ish")
    assert bad.returncode == 2 and "cannot read time 'yesterday-ish'" in bad.stderr
    events = wait_for(lambda: (e := ctl(d, "events", "db").stdout) and "Started db" in e and e)
    assert "unit.ready" in events
    assert "cron" not in events


@SUBREAPER
def test_the_shell_runs_commands_from_its_input(daemon):
    d = daemon(UNITS)
    wait_for(lambda: d.status("app")["state"] == "active")
    out = ctl(d, stdin="stop cron\nstatus cron\nwhy wbe\nhelp\nlist-units cron\nhelp tail\n")
    assert "cron: inactive" in out.stdout
    assert out.stdout.count("cron  inactive") == 2, out.stdout  # list-units is status
    assert "usage: vigilctl logs" in out.stdout  # help of an alias
    assert "no such unit 'wbe' (did you mean 'web'?)" in out.stdout
    assert "attach" in out.stdout  # help lists the commands
    assert d.status("cron")["state"] == "inactive"


NGINX = """[Unit]
Description=web server
After=network.target
Wants=network-online.target

[Service]
Type=forking
PIDFile=/run/nginx.pid
ExecStartPre=/usr/sbin/nginx -t
ExecStart=/usr/sbin/nginx -g 'daemon on;'
Restart=on-abnormal
RestartSec=1min 30s
TimeoutStopSec=5
LimitNOFILE=1024:4096
Environment="A=1" B=two
KillMode=mixed

[Install]
WantedBy=multi-user.target
"""


def test_convert_systemd_reports_what_it_drops(tmp_path):
    src = tmp_path / "nginx.service"
    src.write_text(NGINX)
    out = subprocess.run([sys.executable, "-m", "vigilctl", "convert", str(src), "-o",
                          str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    unit = tomllib.loads((tmp_path / "nginx.toml").read_text())
    assert unit == {
        "unit": {"description": "web server", "after": ["network"], "wants": ["network-online"]},
        "service": {"type": "forking", "pid-file": "/run/nginx.pid",
                    "exec-pre": ["/usr/sbin/nginx -t"],  # issue 20: mapped, no longer dropped
                    "exec": ["/usr/sbin/nginx", "-g", "daemon on;"], "restart": "on-failure",
                    "restart-delay": 90.0, "stop-timeout": 5.0,
                    "limits": {"nofile": [1024, 4096]}, "env": {"A": "1", "B": "two"}}}
    assert "ExecStartPre" not in out.stderr
    assert "KillMode=mixed has no vigil equivalent" in out.stderr
    assert "add 'nginx' to the wants of multi-user" in out.stderr
    check = subprocess.run([sys.executable, "-m", "vigil.cli", "check", str(tmp_path)],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "1 unit(s) ok" in check.stdout


def test_convert_supervisord_programs_and_groups(tmp_path):
    src = tmp_path / "supervisord.conf"
    src.write_text("[supervisord]\nnodaemon=true\n\n[program:web]\ncommand=python3 -m http.server"
                   "\nautorestart=unexpected\nnumprocs=2\nenvironment=A=\"1\",B=\"x y\"\n"
                   "stdout_logfile=NONE\nstartsecs=3\n\n[group:all]\nprograms=web\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = subprocess.run([sys.executable, "-m", "vigilctl", "convert", str(src), "-o",
                          str(out_dir)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    web = tomllib.loads((out_dir / "web.toml").read_text())
    assert web["service"] == {"exec": ["python3", "-m", "http.server"], "restart": "on-failure",
                              "instances": 2, "env": {"A": "1", "B": "x y"}, "stdout": "null",
                              "start-seconds": 3.0}
    assert tomllib.loads((out_dir / "all.toml").read_text())["unit"]["wants"] == ["web"]
    assert Path(out_dir / "web.toml").read_text().startswith("# Converted from")


@SUBREAPER
def test_kill_sends_a_signal_and_the_policy_restarts(daemon):
    d = daemon({"svc.toml": '[service]\nexec = "sleep 1000"\nrestart = "always"\n'
                            'restart-delay = 0\nstart-seconds = 0\n'})
    first = wait_for(lambda: d.inst("svc")["state"] == "running" and d.inst("svc")["pid"])
    out = ctl(d, "kill", "-s", "KILL", "svc")
    assert out.stdout.strip() == f"svc: signalled {first}"
    wait_for(lambda: d.inst("svc")["pid"] not in (None, first) and
             d.inst("svc")["state"] == "running")
    assert d.inst("svc")["last_exit"] == "killed by SIGKILL"
    bad = ctl(d, "kill", "-s", "NOPE", "svc")
    assert bad.returncode == 1 and "'NOPE' is not a signal" in bad.stderr


@SUBREAPER
def test_the_shell_completes_and_keeps_history_on_a_terminal(daemon, tmp_path):
    import os
    import pty
    import select
    d = daemon(UNITS)
    wait_for(lambda: d.status("app")["state"] == "active")
    master, slave = pty.openpty()
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "TERM": "dumb"}
    shell = subprocess.Popen([sys.executable, "-m", "vigilctl", "--socket", d.socket],
                             stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env,
                             start_new_session=True)
    os.close(slave)
    seen = b""

    def until(needle: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 30
        while needle not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                seen += os.read(master, 4096)
        assert needle in seen, seen
    try:
        until(b"vigil> ")
        os.write(master, b"timel\t\n")  # completes the command
        until(b"critical chain")
        os.write(master, b"why cr\t\n")  # completes a unit name
        until(b"cron is running")
        os.write(master, b"quit\n")
        assert shell.wait(timeout=30) == 0
    finally:
        if shell.poll() is None:
            shell.kill()
        os.close(master)
    history = (tmp_path / "state" / "vigil" / "vigilctl_history").read_text().splitlines()
    assert history[-3:] == ["timeline ", "why cron ", "quit"]
