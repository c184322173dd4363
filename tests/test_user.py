"""The per-user daemon as a real unprivileged user (uid 65534), not root:
first use, the lock, a stale socket, the client's PATH, scopes, $PORT,
run records and `vigilctl up`.

The user runs the system's python3 on a copy of vigil and its compiled
dependencies, so nothing of root's (a pyenv under /root) has to be readable.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import ROOT, wait_for

UID = 65534
PYTHON = "/usr/bin/python3"


class User:
    """Runs commands as UID in a home of its own."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.project = home / "app"
        self.env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
                    "PYTHONPATH": str(home / "lib"), "XDG_RUNTIME_DIR": str(home / "rt"),
                    "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
        self.children: list[subprocess.Popen[str]] = []

    def popen(self, argv: list[str], env: dict[str, str] | None = None,
              **kw: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(argv, cwd=self.project, env={**self.env, **(env or {})},
                                text=True, start_new_session=True, **_as_user(), **kw)
        self.children.append(proc)
        return proc

    def ctl(self, *args: str, env: dict[str, str] | None = None,
            ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([PYTHON, "-m", "vigilctl", *args], cwd=self.project,
                              env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=90, **_as_user())
        assert not ok or done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def shell(self, script: str) -> subprocess.Popen[str]:
        """A stand-in for an interactive shell: runs `script`, then waits to be killed."""
        return self.popen(["sh", "-c", f"{script}\nexec sleep 1000"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def daemon_pids(self) -> list[int]:
        return [pid for pid in _pids_of(UID) if "vigil.cli" in _cmdline(pid)]

    def status(self, *units: str, socket_path: str | None = None) -> list[dict[str, Any]]:
        where = ["--socket", socket_path] if socket_path else []
        done = self.ctl(*where, "status", "--json", *units, ok=False)
        return json.loads(done.stdout) if done.stdout.strip() else []

    def inst(self, unit: str, socket_path: str | None = None) -> dict[str, Any]:
        return self.status(unit, socket_path=socket_path)[0]["instances"][0]


def _as_user() -> dict[str, Any]:
    """The uid, and the umask a user usually has (not the test runner's)."""
    ids = {"user": UID, "group": UID, "extra_groups": []} if os.geteuid() == 0 else {}
    return {**ids, "umask": 0o022}


def _pids_of(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def copy_vigil(lib: Path) -> None:
    """vigil, vigilctl and their compiled dependencies, for the system python3."""
    for package in ("vigil", "vigilctl"):
        shutil.copytree(ROOT / package, lib / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    import _cffi_backend
    import _prctl
    import prctl
    import tomli_w
    shutil.copytree(Path(tomli_w.__file__).parent, lib / "tomli_w")
    for module in (prctl, _prctl, _cffi_backend):
        shutil.copy(str(module.__file__), lib)


@pytest.fixture
def user() -> Iterator[User]:
    if not os.path.exists(PYTHON):
        pytest.skip(f"{PYTHON} is missing (make setup installs it)")
    home = Path(tempfile.mkdtemp(prefix="vigil-user-", dir="/tmp"))
    os.chmod(home, 0o755)
    copy_vigil(home / "lib")
    (home / "rt").mkdir(mode=0o700)
    (home / "app" / "units").mkdir(parents=True)
    if os.geteuid() == 0:
        for folder, dirs, files in os.walk(home):
            for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
                os.chown(name, UID, UID)
    u = User(home)
    yield u
    for proc in u.children:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    for pid in u.daemon_pids():  # only daemons run from this home
        if str(home) in _cmdline(pid) or str(home) in os.readlink(f"/proc/{pid}/cwd"):
            os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not any(str(home) in _cmdline(p) for p in u.daemon_pids()), 60,
             "the user's daemons to exit")
    shutil.rmtree(home, ignore_errors=True)


WEB = """[service]
exec = ["python3", "-c", "import http.server as h, os; h.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), h.SimpleHTTPRequestHandler).serve_forever()"]
port = "auto"
ready = {{ tcp = "port", timeout = 60 }}
{extra}
"""


def _write(user: User, name: str, text: str) -> None:
    path = user.project / "units" / name
    path.write_text(text)
    if os.geteuid() == 0:
        os.chown(path, UID, UID)


def test_first_use_ports_lock_stale_socket_and_the_holding_shell(user):
    _write(user, "db.toml", WEB.format(extra=""))
    _write(user, "web.toml", WEB.format(extra="[unit]\nrequires = [\"db\"]\nafter = [\"db\"]"))
    _write(user, "burn.toml", '[unit]\nenabled = false\n[service]\ntype = "oneshot"\n'
           'exec = ["python3", "-c", "b = bytearray(40 << 20); sum(range(3 * 10**6))"]\n')
    shell = user.shell(f"{PYTHON} -m vigilctl start web")
    assert shell.stdout is not None
    first = shell.stdout.readline() + shell.stdout.readline()
    assert "started vigil for" in first and "web: running" in first, first
    [daemon] = wait_for(user.daemon_pids, 30, "the daemon")
    with open(f"/proc/{daemon}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert set(uids) == {str(UID)}, "the daemon runs as the user"
    sock = next((user.home / "rt" / "vigil" / "p").glob("app-*/control.sock"))
    assert sock.stat().st_uid == UID and sock.stat().st_mode & 0o777 == 0o600
    # (By --socket from here: vigilctl run in the project from the test would
    # bind the daemon to the test too.)
    at = str(sock)

    # $PORT: two units, two free ports, both answering, shown in status.
    ports = {name: user.inst(name, at)["port"] for name in ("db", "web")}
    assert ports["db"] != ports["web"] and all(ports.values()), ports
    for port in ports.values():
        socket.create_connection(("127.0.0.1", port), timeout=30).close()

    # A second daemon on the same socket is refused; the first goes on.
    again = subprocess.run([PYTHON, "-m", "vigil.cli", "--units", "units", "--socket",
                            str(sock)], cwd=user.project, env=user.env, capture_output=True,
                           text=True, timeout=60, **_as_user())
    assert again.returncode == 1
    assert f"another vigil (pid {daemon}) is running on {sock}" in again.stderr

    # Run records: a finished run keeps its CPU time and peak memory.
    user.ctl("--socket", at, "start", "burn")
    run = user.status("burn", socket_path=at)[0]["instances"][0]["runs"][-1]
    assert run["code"] == 0 and run["user_cpu"] + run["system_cpu"] > 0
    assert run["max_rss_kb"] > 40 * 1024, run
    assert "LAST RUNS" in user.ctl("--socket", at, "status", "burn").stdout

    # The shell that started it exits: everything stops, db last, and the daemon exits.
    web_pid, db_pid = user.inst("web", at)["pid"], user.inst("db", at)["pid"]
    os.killpg(shell.pid, signal.SIGKILL)
    shell.wait(timeout=30)
    wait_for(lambda: not _alive(daemon), 60, "the daemon to exit with its shell")
    assert not _alive(web_pid) and not _alive(db_pid)
    log = (sock.parent / "daemon.log").read_text()
    assert log.index("Stopped web") < log.index("Stopped db"), log
    assert "every scope is gone" in log

    # A stale socket (a daemon killed with SIGKILL) is replaced on first use.
    shell = user.shell(f"{PYTHON} -m vigilctl start db")
    [daemon] = wait_for(user.daemon_pids, 30, "the daemon")
    db_pid = wait_for(lambda: user.inst("db", at)["pid"], 30, "db")
    os.kill(daemon, signal.SIGKILL)
    os.kill(db_pid, signal.SIGKILL)
    wait_for(lambda: not _alive(daemon), 30, "the daemon to die")
    assert sock.exists()
    look = user.ctl("status", "db", ok=False)
    assert look.returncode == 1 and "vigil is not running for" in look.stderr, \
        "a look never starts a daemon"
    later = user.ctl("start", "db", ok=False)
    assert "started vigil for" in later.stderr, later
    assert wait_for(lambda: user.inst("db", at)["pid"], 30, "db again") != db_pid


def test_transient_units_and_scopes_as_the_user(user):
    _write(user, "idle.toml", '[unit]\nenabled = false\n[service]\nexec = ["sleep", "1000"]\n')
    sock = str(user.home / "rt" / "own.sock")
    daemon = user.popen([PYTHON, "-m", "vigil.cli", "--units", "units", "--socket", sock],
                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_for(lambda: user.ctl("--socket", sock, "ping", ok=False).returncode == 0, 30,
             "the daemon")
    shell = user.shell("true")
    path = f"/opt/nowhere:{user.env['PATH']}"
    for name in ("first", "second"):
        user.ctl("--socket", sock, "run", "--name", name, "--scope", str(shell.pid),
                 "--env", "GREETING", "--", "sh", "-c", 'echo "$PATH $GREETING $SECRET"; '
                 "exec sleep 1000", env={"PATH": path, "GREETING": "hi", "SECRET": "s3"})
    assert f"[scope pid {shell.pid}]" in user.ctl("--socket", sock, "status").stdout
    logs = wait_for(lambda: user.ctl("--socket", sock, "logs", "first").stdout, 30, "output")
    assert f": {path} hi \n" in logs, "PATH and named variables come from the client only"
    gone = user.ctl("--socket", sock, "run", "--scope", "999999999", "--", "true", ok=False)
    assert gone.returncode == 1 and "scope pid 999999999: no such process" in gone.stderr

    # The scope's process exits: its units stop, last started first, and the
    # daemon, with nothing else running, exits.
    os.killpg(shell.pid, signal.SIGKILL)
    shell.wait(timeout=30)
    assert daemon.wait(timeout=60) == 0
    log = Path(user.home / "rt" / "logs" / "events.jsonl").read_text()
    stops = [json.loads(x)["unit"] for x in log.splitlines() if '"unit.stopped"' in x]
    assert stops[:2] == ["second", "first"], stops
    assert "every scope is gone" in log


def test_up_runs_a_procfile_until_its_shell_exits(user):
    (user.project / "Procfile").write_text(
        "# the app\nweb: exec python3 -m http.server $PORT --bind 127.0.0.1\n"
        "worker: echo working on $QUEUE; exec sleep 1000\n")
    (user.project / ".env").write_text("QUEUE=default\n")
    for name in ("Procfile", ".env"):
        if os.geteuid() == 0:
            os.chown(user.project / name, UID, UID)
    shell = user.shell(f"{PYTHON} -m vigilctl up -d")
    assert shell.stdout is not None
    said = "".join(shell.stdout.readline() for _ in range(3))
    assert "web: running" in said and "worker: running" in said, said
    sock = str(next((user.home / "rt" / "vigil" / "p").glob("app-*/control.sock")))
    assert os.stat(os.path.dirname(sock)).st_mode & 0o777 == 0o700
    port = user.inst("web", sock)["port"]
    # running means started: a Procfile line has no readiness check
    wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=5).close() or True,
             30, "web to listen on $PORT")
    logs = wait_for(lambda: user.ctl("--socket", sock, "logs", "worker").stdout, 30, "output")
    assert "working on default" in logs
    [daemon] = user.daemon_pids()
    os.killpg(shell.pid, signal.SIGKILL)
    shell.wait(timeout=30)
    wait_for(lambda: not _alive(daemon), 60, "the daemon to exit with its shell")


def test_up_in_the_foreground_stops_on_ctrl_c(user):
    (user.project / "Procfile").write_text("tick: while true; do echo tick; sleep 0.2; done\n")
    if os.geteuid() == 0:
        os.chown(user.project / "Procfile", UID, UID)
    up = user.popen([PYTHON, "-m", "vigilctl", "up"], stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT)
    assert up.stdout is not None
    lines = iter(up.stdout.readline, "")
    wait_for(lambda: "| tick" in next(lines), 30, "the process's output")
    [daemon] = user.daemon_pids()
    up.send_signal(signal.SIGINT)
    rest = up.communicate(timeout=60)[0]
    assert up.returncode == 0 and "tick: inactive" in rest, rest
    wait_for(lambda: not _alive(daemon), 60, "the daemon to exit after up")
