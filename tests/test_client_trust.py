"""Whom vigilctl trusts: which daemon it talks to (--socket, VIGIL_SOCKET,
the project, the default), which project it starts one for, and which
addresses may hear its token. The attacks by another user run as real
unprivileged uids (65534 and 1) on a copy of vigil, with the system python3."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import ROOT, can_unshare, wait_for
from tests.test_user import _alive, copy_vigil
from tests.test_user import _pids_of as user_pids

PY = sys.executable
SLEEPER = '[service]\nexec = "sleep 1000"\n'


@pytest.fixture
def runtime() -> Iterator[Path]:
    """A fresh XDG_RUNTIME_DIR, short enough for socket paths."""
    path = Path(tempfile.mkdtemp(prefix="x", dir="/tmp"))
    yield path
    for sock in path.glob("vigil/p/*/control.sock"):  # a daemon the old code started
        subprocess.run([PY, "-m", "vigilctl", "--socket", str(sock), "shutdown"],
                       capture_output=True, cwd=ROOT, timeout=60)
    shutil.rmtree(path, ignore_errors=True)


def project(top: Path) -> Path:
    """top/app with units/web.toml, and top/app/src to work in."""
    (top / "app" / "units").mkdir(parents=True)
    (top / "app" / "units" / "web.toml").write_text(SLEEPER)
    (top / "app" / "src").mkdir()
    return top / "app"


def clean_env(runtime: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "VIGIL_SOCKET"}
    return {**env, "XDG_RUNTIME_DIR": str(runtime), "PYTHONPATH": str(ROOT)}


def test_a_look_never_starts_a_project_daemon(tmp_path, runtime):
    app = project(tmp_path)
    for cmd in (["status"], ["logs", "web"], ["cat", "web"], ["why", "web"], ["stop", "web"]):
        done = subprocess.run([PY, "-m", "vigilctl", *cmd], cwd=app / "src",
                              env=clean_env(runtime), capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, (cmd, done.stderr)
        assert f"vigil is not running for {app}/units (`vigilctl start` starts it)" \
            in done.stderr, (cmd, done.stderr)
        assert not list(runtime.glob("vigil/p/*/control.sock")), f"{cmd} started a daemon"


def test_vigil_socket_wins_over_the_project_inside_a_container(tmp_path, runtime):
    """A container's service runs vigilctl in a project directory: it talks to
    the container's daemon (VIGIL_SOCKET), it does not start a second one."""
    app = project(tmp_path)
    sock = tmp_path / "run" / "c.sock"
    script = f"echo SOCKET=$VIGIL_SOCKET; {PY} -m vigilctl status web"
    done = subprocess.run([PY, "-m", "vigil.cli", "run", "--socket", str(sock), "--units",
                           str(app / "units"), "--", "sh", "-c", script], cwd=app / "src",
                          env=clean_env(runtime), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"SOCKET={sock}" in done.stdout
    assert "started vigil" not in done.stderr, "a second daemon for the same units"
    assert "web" in done.stdout and "running" in done.stdout, done.stdout
    assert not list(runtime.glob("vigil/p/*")), "the project's own socket was used"


# Runs in a network namespace of its own, where 10.9.9.1 is an address of
# this machine that is not loopback: a listener there hears whatever vigilctl
# sends. Prints vigilctl's exit status, its stderr and what was heard.
EAVESDROP = """
import json, socket, subprocess, sys, threading
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["ip", "addr", "add", "10.9.9.1/32", "dev", "lo"], check=True)
server = socket.create_server(("10.9.9.1", 0))
server.settimeout(60)
heard = []
def listen():
    try:
        conn, _ = server.accept()
    except OSError:
        return
    conn.settimeout(30)
    data = b""
    while b"\\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    heard.append(data.decode(errors="replace"))
    conn.close()
thread = threading.Thread(target=listen, daemon=True)
thread.start()
done = subprocess.run([sys.executable, "-m", "vigilctl", "--remote",
                       f"10.9.9.1:{server.getsockname()[1]}", "--token-file", sys.argv[1],
                       "status"], capture_output=True, text=True, timeout=60)
server.close()
thread.join(30)
print(json.dumps({"code": done.returncode, "stderr": done.stderr, "heard": "".join(heard)}))
"""


def test_the_token_never_goes_in_clear_off_loopback(tmp_path):
    if not can_unshare():
        pytest.skip("needs root for a network namespace")
    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789\n")
    token.chmod(0o600)
    done = subprocess.run(["unshare", "--net", PY, "-c", EAVESDROP, str(token)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert "s3cret" not in seen["heard"], "the token went over the network in clear"
    assert seen["code"] == 1
    assert "is 10.9.9.1, not this machine: the token would cross the network in clear; " \
        "use --tls" in seen["stderr"], seen


@pytest.mark.parametrize("args, option", [
    (["--timeout", "nan", "status"], "--timeout"),
    (["--timeout", "inf", "status"], "--timeout"),
    (["--timeout", "-1", "status"], "--timeout"),
    (["--timeout", "0", "status"], "--timeout"),
    (["logs", "--since", "NaN"], "--since"),
    (["logs", "--since", "9" * 400], "--since"),
    (["logs", "--since", "99:99"], "--since"),
    (["logs", "-n", "-1"], "-n/--lines"),
    (["events", "--lines", "1e3"], "-n/--lines"),
    (["run", "--health-interval", "nan", "--", "true"], "--health-interval"),
    (["run", "--health-interval", "-5", "--", "true"], "--health-interval"),
    (["run", "--health-retries", "0", "--", "true"], "--health-retries"),
    (["run", "--port", "70000", "--", "true"], "--port"),
    (["run", "--port", "x", "--", "true"], "--port"),
    (["run", "--scope", "-3", "--", "true"], "--scope"),
    (["start", "--scope", "0", "web"], "--scope"),
    (["--remote", "127.0.0.1:99999", "status"], "--remote"),
    (["--remote", "127.0.0.1:-1", "status"], "--remote"),
])
def test_numbers_that_mean_nothing_are_refused_naming_the_option(tmp_path, args, option):
    """NaN, inf, negative or out-of-range values: a usage error before anything
    is sent (the socket here does not exist, so nothing could answer)."""
    done = subprocess.run([PY, "-m", "vigilctl", "--socket", str(tmp_path / "none.sock"),
                           *args], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2, (args, done.stderr)
    assert f"argument {option}: " in done.stderr, done.stderr
    assert "not running" not in done.stderr


# Two uids of their own, found in no passwd file: no other test or process
# uses them, nor their /tmp/vigil-UID.
ATTACKER, VICTIM = 64990, 64991
SYSTEM_PY = "/usr/bin/python3"


class Uid:
    """Runs commands as one uid, with a home of its own under `top`."""

    def __init__(self, uid: int, top: Path) -> None:
        self.uid = uid
        self.home = top / f"home-{uid}"
        self.home.mkdir(mode=0o700)
        os.chown(self.home, uid, uid)
        self.children: list[subprocess.Popen[str]] = []
        self.env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.home),
                    "PYTHONPATH": str(top / "lib"), "PYTHONDONTWRITEBYTECODE": "1",
                    "LANG": "C.UTF-8"}

    def _kw(self, cwd: Path | None, env: dict[str, str] | None) -> dict[str, Any]:
        return {"cwd": cwd or self.home, "env": {**self.env, **(env or {})}, "text": True,
                "user": self.uid, "group": self.uid, "extra_groups": [], "umask": 0o022}

    def sh(self, script: str) -> None:
        done = subprocess.run(["sh", "-ec", script], capture_output=True, timeout=60,
                              **self._kw(None, None))
        assert done.returncode == 0, done.stderr

    def popen(self, argv: list[str], cwd: Path | None = None,
              env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(argv, start_new_session=True, **self._kw(cwd, env), **kw)
        self.children.append(proc)
        return proc

    def ctl(self, *args: str, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SYSTEM_PY, "-m", "vigilctl", *args], capture_output=True,
                              timeout=90, **self._kw(cwd, env))


def _pids_of(uid: int) -> list[int]:
    """The live (not zombie) processes of uid."""
    return [pid for pid in user_pids(uid) if _alive(pid)]


@pytest.fixture
def people() -> Iterator[tuple[Uid, Uid, Path]]:
    """(attacker, victim, shared): `shared` is sticky and open to all, as /tmp."""
    if os.geteuid() != 0 or not os.path.exists(SYSTEM_PY):
        pytest.skip(f"needs root to act as other uids, and {SYSTEM_PY}")
    top = Path(tempfile.mkdtemp(prefix="vigil-ctl-trust-", dir="/tmp"))
    os.chmod(top, 0o755)
    copy_vigil(top / "lib")
    subprocess.run(["chmod", "-R", "a+rX", str(top / "lib")], check=True, timeout=60)
    shared = top / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    both = (Uid(ATTACKER, top), Uid(VICTIM, top))
    yield both[0], both[1], shared
    for pid in _pids_of(ATTACKER) + _pids_of(VICTIM):  # only this test runs as these uids
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for proc in both[0].children + both[1].children:
        proc.wait(timeout=30)
    wait_for(lambda: not _pids_of(ATTACKER) + _pids_of(VICTIM), 30, "their processes to go")
    for uid in (ATTACKER, VICTIM):
        for place in (f"/tmp/vigil-{uid}", f"/dev/shm/vigil-{uid}"):
            shutil.rmtree(place, ignore_errors=True)
    shutil.rmtree(top, ignore_errors=True)


# The attacker's daemon: answers status, run and ping, and keeps every
# request it is sent.
FAKE = """
import json, os, socket, sys
path, record = sys.argv[1], sys.argv[2]
os.makedirs(os.path.dirname(path), exist_ok=True)
server = socket.socket(socket.AF_UNIX)
server.bind(path)
os.chmod(path, 0o777)
server.listen()
print("ready", flush=True)
answers = {"status": [{"unit": "web", "state": "running", "instances": [], "why": "",
                       "description": "FAKE"}], "run": {"run-1": "running"}, "ping": "pong"}
while True:
    conn, _ = server.accept()
    f = conn.makefile("rwb")
    for line in f:
        with open(record, "ab") as out:
            out.write(line)
        req = json.loads(line)
        reply = {"id": req["id"], "ok": True, "result": answers.get(req["cmd"])}
        f.write(json.dumps(reply).encode() + b"\\n")
        f.flush()
    conn.close()
"""


def test_a_socket_another_user_made_is_never_used(people):
    """The attacker makes the victim's runtime place first and serves a socket
    there: the victim's vigilctl passes it over (and says so), named or not,
    sends it nothing, and the victim's own daemon falls back to the next
    place, where vigilctl finds it."""
    attacker, victim, shared = people
    place = shared / "vigil"
    record = attacker.home / "heard"
    fake = attacker.popen([SYSTEM_PY, "-c", FAKE, str(place / "control.sock"), str(record)],
                          stdout=subprocess.PIPE)
    assert fake.stdout is not None and fake.stdout.readline().strip() == "ready"
    env = {"XDG_RUNTIME_DIR": str(shared), "DB_PASSWORD": "hunter2"}
    look = victim.ctl("status", "--json", env=env)
    sent = victim.ctl("run", "--env", "DB_PASSWORD", "--", "true", env=env)
    named = victim.ctl("--socket", str(place / "control.sock"), "run", "--env", "DB_PASSWORD",
                       "--", "true", env=env)
    heard = record.read_text() if record.exists() else ""
    assert "hunter2" not in heard, "the victim's secret went to the attacker's daemon"
    assert heard == "" and "FAKE" not in look.stdout, "the victim read the attacker's answers"
    said = f"not using {place}: it belongs to uid {ATTACKER}; trying the next place"
    assert f"vigilctl: {said}" in look.stderr and f"vigilctl: {said}" in sent.stderr
    assert look.returncode == 1 and f"no socket at /tmp/vigil-{VICTIM}/control.sock" \
        in look.stderr, look.stderr
    assert named.returncode == 1 and f"not using {place}/control.sock: its directory " \
        f"belongs to uid {ATTACKER}, not to you or root" in named.stderr, named.stderr

    victim.sh("mkdir -p svc/units && printf '[service]\\nexec = \"sleep 1000\"\\n' "
              "> svc/units/idle.toml")
    log = victim.home / "vigil.out"
    with open(log, "w") as out:
        victim.popen([SYSTEM_PY, "-m", "vigil.cli", "--units", "svc/units"], env=env,
                     stdout=out, stderr=subprocess.STDOUT)
    up = wait_for(lambda: (d := victim.ctl("status", "--json", "idle", env=env)).returncode == 0
                  and d, 60, "the victim's daemon in the next place")
    assert json.loads(up.stdout)[0]["state"] == "running"
    assert f"vigil: {said}" in log.read_text(), "the daemon says so too"
    assert os.stat(f"/tmp/vigil-{VICTIM}").st_uid == VICTIM
    assert not record.exists(), "nothing ever reached the attacker's socket"


def test_a_daemon_log_symlink_another_user_planted_is_not_followed(people):
    """The attacker makes the directory the victim's project daemon would use
    and plants daemon.log there as a symlink to the victim's .bashrc."""
    attacker, victim, shared = people
    victim.sh("mkdir -p app/units app/src && printf '[service]\\nexec = \"sleep 1000\"\\n' "
              "> app/units/web.toml && echo '# mine' > .bashrc")
    units = victim.home / "app" / "units"
    name = f"app-{hashlib.sha256(str(units).encode()).hexdigest()[:10]}"
    attacker.sh(f"mkdir -p {shared}/vigil/p/{name} && "
                f"ln -s {victim.home}/.bashrc {shared}/vigil/p/{name}/daemon.log")
    env = {"XDG_RUNTIME_DIR": str(shared)}
    started = victim.ctl("start", "web", cwd=victim.home / "app" / "src", env=env)
    assert (victim.home / ".bashrc").read_text() == "# mine\n", \
        "the victim's vigilctl wrote through the attacker's symlink"
    assert started.returncode == 0 and started.stdout.strip() == "web: running", started.stderr
    assert f"vigilctl: not using {shared}/vigil: it belongs to uid {ATTACKER}" in started.stderr
    assert (Path(f"/tmp/vigil-{VICTIM}") / "p" / name / "daemon.log").is_file()


def _layout(case: str, attacker: Uid, shared: Path, marker: Path) -> tuple[Path, Path, str, str]:
    """Builds one way another user could get their unit file run by root:
    (project directory, where to run vigilctl, the unit, the path refused)."""
    pwn = f'[service]\ntype = "oneshot"\nexec = ["touch", "{marker}"]\n'
    x = shared / "x"
    if case == "above":  # root's project, in a directory the attacker owns
        attacker.sh(f"mkdir {shared}/a")
        x = shared / "a" / "x"
    if case not in ("project", "vigil.toml"):
        (x / "units").mkdir(parents=True)
        (x / "anything").mkdir()
    if case == "project":
        attacker.sh(f"mkdir -p {x}/units {x}/anything && printf '{pwn}' > {x}/units/pwn.toml")
        return x, x / "anything", "pwn", str(x)
    if case == "unit file":
        (x / "units" / "pwn.toml").write_text(pwn)
        os.chown(x / "units" / "pwn.toml", ATTACKER, ATTACKER)
        return x, x / "anything", "pwn", f"{x}/units/pwn.toml"
    if case == "drop-in":
        (x / "units" / "web.toml").write_text(SLEEPER)
        (x / "units" / "web.d").mkdir(mode=0o777)
        os.chmod(x / "units" / "web.d", 0o777)
        attacker.sh(f"printf '[service]\\nexec = [\"touch\", \"{marker}\"]\\n' "
                    f"> {x}/units/web.d/pwn.toml")
        return x, x / "anything", "web", f"{x}/units/web.d"
    if case == "above":
        (x / "units" / "pwn.toml").write_text(pwn)
        return x, x / "anything", "pwn", f"{shared}/a"
    assert case == "vigil.toml"  # root's vigil.toml names the attacker's units
    (x / "anything").mkdir(parents=True)
    (x / "vigil.toml").write_text(f'units = "{shared}/evil"\n')
    attacker.sh(f"mkdir {shared}/evil && printf '{pwn}' > {shared}/evil/pwn.toml")
    return x, x / "anything", "pwn", f"{shared}/evil"


WHY = {"project": "it belongs to uid 64990, not to you (uid 0) or root",
       "unit file": "it belongs to uid 64990, not to you (uid 0) or root",
       "drop-in": "others may write to it",
       "above": "it belongs to uid 64990, not to you (uid 0) or root",
       "vigil.toml": "it belongs to uid 64990, not to you (uid 0) or root"}


@pytest.mark.parametrize("case", list(WHY))
def test_root_never_runs_another_users_unit_files(people, runtime, case):
    """Root works in a directory below a project someone else could write:
    vigilctl refuses it in one line naming the path, and runs nothing."""
    attacker, _, shared = people
    marker = shared / "pwned"
    folder, cwd, unit, refused = _layout(case, attacker, shared, marker)
    for args in (["status"], ["start", unit]):
        done = subprocess.run([PY, "-m", "vigilctl", *args], cwd=cwd, env=clean_env(runtime),
                              capture_output=True, text=True, timeout=60)
        assert not marker.exists(), f"`vigilctl {args[0]}` ran another user's unit as root"
        assert done.returncode == 1, done
        assert done.stderr == f"vigilctl: not using the project in {folder}: {refused}: " \
            f"{WHY[case]}\n", done.stderr
    assert not list(runtime.glob("vigil/p/*")), "no daemon was started"


def test_a_project_of_roots_in_a_sticky_directory_is_used(people, runtime):
    """/tmp-like (sticky, open to all) above the project is fine: no one else
    may rename what root put there."""
    _, _, shared = people
    (shared / "mine" / "units").mkdir(parents=True)
    (shared / "mine" / "units" / "web.toml").write_text(SLEEPER)
    done = subprocess.run([PY, "-m", "vigilctl", "start", "web"], cwd=shared / "mine",
                          env=clean_env(runtime), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "web: running", done.stderr


def test_root_never_runs_another_users_procfile(people, runtime):
    attacker, _, shared = people
    marker = shared / "pwned"
    attacker.sh(f"mkdir {shared}/x && echo 'pwn: touch {marker}; sleep 1000' > {shared}/x/Procfile")
    done = subprocess.run([PY, "-m", "vigilctl", "up", "-d"], cwd=shared / "x",
                          env=clean_env(runtime), capture_output=True, text=True, timeout=60)
    assert not marker.exists(), "root ran another user's Procfile"
    assert done.returncode == 1 and done.stderr == (
        f"vigilctl: not using {shared}/x/Procfile: {shared}/x: it belongs to uid 64990, "
        "not to you (uid 0) or root\n"), done.stderr


def test_the_servers_uid_is_checked_on_the_connection(people):
    """Even where the directory and the socket file look right (root's), a
    server another uid listens on is not talked to: SO_PEERCRED says who
    listens, whatever the file says. (The socket is moved there by root
    here; the point is the last check, which nothing on disk can fool.)"""
    attacker, _, shared = people
    record = shared / "heard"
    bound = attacker.home / "fake.sock"
    fake = attacker.popen([SYSTEM_PY, "-c", FAKE, str(bound), str(record)],
                          stdout=subprocess.PIPE)
    assert fake.stdout is not None and fake.stdout.readline().strip() == "ready"
    place = shared / "d"
    place.mkdir(mode=0o755)
    os.rename(bound, place / "control.sock")
    os.chown(place / "control.sock", 0, 0)
    done = subprocess.run([PY, "-m", "vigilctl", "--socket", str(place / "control.sock"), "run",
                           "--env", "DB_PASSWORD", "--", "true"], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "DB_PASSWORD": "hunter2"},
                          timeout=60)
    assert not record.exists(), "root's secret went to another uid's daemon"
    assert done.returncode == 1 and f"not using {place}/control.sock: the daemon there (pid " \
        f"{fake.pid}) runs as uid {ATTACKER}, not as you or root" in done.stderr, done.stderr


def test_a_missing_project_is_one_line(tmp_path):
    done = subprocess.run([PY, "-m", "vigilctl", "--units", str(tmp_path / "no" / "units"),
                           "status"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 1
    assert done.stderr == f"vigilctl: not using the project in {tmp_path}/no: " \
        f"{tmp_path}/no: No such file or directory\n"
