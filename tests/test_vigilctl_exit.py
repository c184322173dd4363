"""vigilctl's documented promises that no test held: the exit statuses,
`logs -f` and `events -f` following, `kill --all`, `attach --escape`,
`start --scope`, a project found through `vigil.toml`, and `up -f`."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.daemon import ROOT, wait_for

SUBREAPER = pytest.mark.parametrize("mode", ["subreaper"], indirect=True)
SLEEPER = '[service]\nexec = "sleep 1000"\n'


def ctl(d, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vigilctl", "--socket", d.socket, *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def follow(d, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "vigilctl", "--socket", d.socket, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT)


def read_until(stream, needle: str, timeout: float = 20.0) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    fd = stream.fileno()
    while needle not in seen and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            chunk = os.read(fd, 4096).decode(errors="replace")
            if not chunk:
                break
            seen += chunk
    assert needle in seen, f"{needle!r} not in {seen!r}"
    return seen


@SUBREAPER
def test_exit_statuses(daemon):
    # breaks: vigilctl/main.py:_status: `return 0` whatever the states (3 expected).
    d = daemon({"ok.toml": SLEEPER,
                "bad.toml": '[service]\nexec = "false"\nrestart = "never"\n'})
    wait_for(lambda: d.status("bad")["state"] == "failed" and
             d.status("ok")["state"] == "running", what="ok running, bad failed")
    assert ctl(d, "status", "ok").returncode == 0
    failed = ctl(d, "status", "bad")
    assert failed.returncode == 3, failed
    assert ctl(d, "status").returncode == 3  # any failed unit
    missing = ctl(d, "status", "nope")
    assert missing.returncode == 1 and "no such unit 'nope'" in missing.stderr
    usage = ctl(d, "status", "--no-such-flag")
    assert usage.returncode == 2
    assert "Traceback" not in missing.stderr + usage.stderr


@SUBREAPER
def test_logs_and_events_follow(daemon, tmp_path):
    # breaks: vigilctl/main.py:cmd_stream: `if opts.follow:` -> `if False:` (the client
    # prints what is there and exits; the line written after it started never shows).
    go = tmp_path / "go"
    d = daemon({"talker.toml": f'[service]\nexec = ["sh", "-c", "echo first; while [ ! -e {go} ]; '
                               'do sleep 0.05; done; echo second; exec sleep 1000"]\n',
                "later.toml": '[unit]\nenabled = false\n' + SLEEPER})
    wait_for(lambda: "first" in ctl(d, "logs", "talker").stdout, what="the first line")
    logs = follow(d, "logs", "-f", "talker")
    events = follow(d, "events", "-f")
    try:
        read_until(logs.stdout, "first")
        go.touch()
        read_until(logs.stdout, "second")
        read_until(events.stdout, "Started talker")  # the recent lines: it follows from here
        d.call("start", units=["later"])
        read_until(events.stdout, "Started later")
        assert logs.poll() is None and events.poll() is None, "both still following"
    finally:
        logs.kill()
        events.kill()
        logs.wait()
        events.wait()


def test_kill_all_reaches_every_process(daemon, tmp_path):
    # breaks: vigil/commands.py:Commands.kill: `if args.get("all"):` -> `if False:`
    # (main process only).
    child, got = tmp_path / "child", tmp_path / "got"
    d = daemon({"fam.toml": f'[service]\nexec = ["sh", "-c", "trap \'echo main >> {got}\' USR1; '
                            f'sleep 1000 & echo $! > {child}; while :; do sleep 0.1; done"]\n'
                            'restart = "never"\n'})
    pid = d.host_pid(int(wait_for(lambda: child.exists() and child.read_text().strip(),
                                  what="the child")))
    assert ctl(d, "kill", "-s", "USR1", "fam").returncode == 0
    wait_for(lambda: got.exists() and "main" in got.read_text(), what="the main process's trap")
    assert Path(f"/proc/{pid}").exists(), "a plain kill reached the child"
    assert ctl(d, "kill", "--all", "-s", "USR1", "fam").returncode == 0
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="the child killed by USR1")
    assert d.status("fam")["state"] == "running"


@SUBREAPER
def test_attach_with_another_escape_key(daemon):
    # breaks: vigilctl/attach.py:attach: `escape_byte("^]")` whatever --escape says.
    d = daemon({"shell.toml": '[service]\nexec = "sh"\nconsole = "pty"\nstop-signal = "HUP"\n'})
    wait_for(lambda: d.inst("shell")["state"] == "running")
    master, slave = pty.openpty()
    client = subprocess.Popen([sys.executable, "-m", "vigilctl", "--socket", d.socket,
                               "attach", "--escape", "^A", "shell"], stdin=slave, stdout=slave,
                              stderr=slave, cwd=ROOT, start_new_session=True)
    os.close(slave)
    try:
        with os.fdopen(os.dup(master), "rb", buffering=0) as reader:
            read_until(reader, "^A detaches")
            os.write(master, b"\x01")  # Ctrl-A
            read_until(reader, "detached from shell")
        assert client.wait(timeout=20) == 0
    finally:
        if client.poll() is None:
            client.kill()
        os.close(master)
    assert d.inst("shell")["state"] == "running"


@SUBREAPER
def test_start_with_a_scope(daemon):
    # breaks: vigilctl/main.py:cmd_change: `args = {}` (--scope not sent; the unit runs on).
    d = daemon({"keeper.toml": SLEEPER, "bound.toml": '[unit]\nenabled = false\n' + SLEEPER})
    holder = subprocess.Popen(["sleep", "1000"])
    try:
        assert ctl(d, "start", "--scope", str(holder.pid), "bound").returncode == 0
        assert d.status("bound")["scope"] == holder.pid
    finally:
        holder.kill()
        holder.wait()
    wait_for(lambda: d.status("bound")["state"] == "inactive", what="bound stopped with its scope")
    assert d.status("keeper")["state"] == "running"
    # breaks: vigil/engine/scopes.py:_stop_next: `m.stop([name])` (no reason kept for `why`)
    assert f"its scope (pid {holder.pid}) exited" in d.status("bound")["why"]


def _project_env() -> tuple[dict[str, str], Path]:
    xdg = Path(tempfile.mkdtemp(prefix="x", dir="/tmp"))  # socket paths are short
    env = {**os.environ, "XDG_RUNTIME_DIR": str(xdg)}
    env.pop("VIGIL_SOCKET", None)
    return env, xdg


def test_a_project_is_found_through_vigil_toml(tmp_path):
    # breaks: vigilctl/project.py: `units = "path"` of vigil.toml ignored, PROJECT/units
    # used (which does not exist).
    project = tmp_path / "proj"
    (project / "services").mkdir(parents=True)
    (project / "deep" / "er").mkdir(parents=True)
    (project / "vigil.toml").write_text('units = "services"\n')
    (project / "services" / "api.toml").write_text(SLEEPER)
    env, xdg = _project_env()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vigilctl", *args], capture_output=True,
                              text=True, cwd=project / "deep" / "er", env=env, timeout=60)
    try:
        first = run("start", "api")
        assert first.returncode == 0, first.stderr
        assert f"started vigil for {project}/services" in first.stderr
        assert first.stdout.strip() == "api: running"
    finally:
        run("shutdown")
        shutil.rmtree(xdg, ignore_errors=True)


def test_up_runs_the_procfile_named_with_f(tmp_path):
    # breaks: vigilctl/main.py: up("Procfile", ...) whatever -f says (not there).
    app = tmp_path / "app"
    app.mkdir()
    (app / "Procfile.dev").write_text("web: sleep 1000\nworker: sleep 1000\n")
    env, xdg = _project_env()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vigilctl", *args], capture_output=True,
                              text=True, cwd=tmp_path, env=env, timeout=60)
    out = run("up", "-f", str(app / "Procfile.dev"), "-d")
    try:
        assert out.returncode == 0, out.stderr
        assert "web: running" in out.stderr and "worker: running" in out.stderr
    finally:
        sockets = list((xdg / "vigil" / "p").glob("*/control.sock"))
        for sock in sockets:
            subprocess.run([sys.executable, "-m", "vigilctl", "--socket", str(sock), "shutdown"],
                           capture_output=True, timeout=60, env=env)
        shutil.rmtree(xdg, ignore_errors=True)
    assert len(sockets) == 1
