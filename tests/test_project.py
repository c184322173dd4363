"""The per-user, per-project supervisor: one daemon per socket, first use,
transient units, ports, Procfiles."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.daemon import ROOT, Daemon, wait_for

SLEEPER = '[service]\nexec = "sleep 1000"\n'


def test_a_second_daemon_is_refused_and_a_stale_socket_replaced(unit_dir, tmp_path):
    units = unit_dir({"a.toml": SLEEPER})
    first = Daemon(units, tmp_path)
    try:
        second = subprocess.run([sys.executable, "-m", "vigil.cli", "--units", str(units),
                                 "--socket", first.socket], capture_output=True, text=True,
                                cwd=ROOT, timeout=60)
        assert second.returncode == 1
        assert f"another vigil (pid {first.daemon_pid()}) is running on {first.socket}" \
            in second.stderr
        assert first.call("ping") == "pong"
        orphan = first.inst("a")["pid"]
        os.kill(first.daemon_pid(), signal.SIGKILL)  # leaves its socket behind
        first.proc.wait(timeout=30)
        os.kill(orphan, signal.SIGKILL)
    finally:
        first.stop()
    assert os.path.exists(first.socket)
    again = Daemon(units, tmp_path)  # the same socket: stale, replaced
    try:
        assert again.call("ping") == "pong"
    finally:
        again.stop()


def test_run_a_transient_unit_with_a_free_port(unit_dir, tmp_path):
    d = Daemon(unit_dir({"a.toml": SLEEPER}), tmp_path)
    try:
        env = {**os.environ, "PATH": f"/opt/nowhere:{os.environ['PATH']}", "SECRET": "s3",
               "GREETING": "hi"}
        out = subprocess.run(
            [sys.executable, "-m", "vigilctl", "--socket", d.socket, "run", "--name", "web",
             "--port", "auto", "--wait-port", "port", "--env", "GREETING", "--",
             sys.executable, "-c", "import os, http.server as h; print(os.environ['PATH'], "
             "os.environ.get('GREETING'), os.environ.get('SECRET'), flush=True); "
             "h.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), "
             "h.SimpleHTTPRequestHandler).serve_forever()"],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
        assert out.returncode == 0 and out.stdout.strip() == "web: running", out.stderr
        inst = d.inst("web")
        assert inst["port"] and inst["port"] != 0
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{inst['port']}/", timeout=30) as r:
            assert r.status == 200
        line = wait_for(lambda: d.call("logs", units=["web"]))[0]["text"]
        assert line == f"/opt/nowhere:{os.environ['PATH']} hi None", \
            "PATH and the named variables come from the client; nothing else"
        second = subprocess.run([sys.executable, "-m", "vigilctl", "--socket", d.socket,
                                 "run", "--name", "web", "--", "true"],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "a unit 'web' already exists and is running" \
            in second.stderr
        d.call("reload")
        assert d.inst("web")["pid"] == inst["pid"], "a reload keeps a transient unit"
    finally:
        d.stop()


def test_procfile_conversion(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text("# the app\nweb: python3 -m http.server $PORT\n"
                        "worker: python3 worker.py --queue default\nnot a line\n")
    out_dir = tmp_path / "units"
    out_dir.mkdir()
    done = subprocess.run([sys.executable, "-m", "vigilctl", "convert", str(procfile), "-o",
                           str(out_dir)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "line 4: not NAME: COMMAND" in done.stderr
    import tomllib
    web = tomllib.loads((out_dir / "web.toml").read_text())
    assert web["service"] == {"exec": ["sh", "-c", "python3 -m http.server $PORT"],
                              "port": "auto", "restart": "on-failure"}
    assert sorted(p.name for p in out_dir.iterdir()) == ["web.toml", "worker.toml"]
    check = subprocess.run([sys.executable, "-m", "vigil.cli", "check", str(out_dir)],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "2 unit(s) ok" in check.stdout


def test_first_use_starts_the_project_daemon_once(tmp_path):
    project = tmp_path / "myapp"
    (project / "units").mkdir(parents=True)
    (project / "units" / "api.toml").write_text(SLEEPER)
    (project / "src").mkdir()
    import shutil
    import tempfile
    xdg = Path(tempfile.mkdtemp(prefix="x", dir="/tmp"))  # socket paths are short
    env = {**os.environ, "XDG_RUNTIME_DIR": str(xdg)}
    env.pop("VIGIL_SOCKET", None)

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vigilctl", *args], capture_output=True,
                              text=True, cwd=project / "src", env=env, timeout=60)
    first = ctl("start", "api")
    try:
        assert first.returncode == 0, first.stderr
        assert f"started vigil for {project}/units" in first.stderr
        assert first.stdout.strip() == "api: running"
        second = ctl("status", "api")
        assert "started vigil" not in second.stderr, "the running daemon is used"
        assert "running" in second.stdout
        sockets = list((xdg / "vigil" / "p").glob("myapp-*/control.sock"))
        assert len(sockets) == 1
    finally:
        assert ctl("shutdown").returncode == 0
        shutil.rmtree(xdg, ignore_errors=True)


def test_run_with_readiness_and_health_flags(unit_dir, tmp_path):
    d = Daemon(unit_dir({"a.toml": SLEEPER}), tmp_path)
    try:
        def ctl(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "vigilctl", "--socket", d.socket, *args],
                                  capture_output=True, text=True, cwd=tmp_path, timeout=90)
        bad = ctl("run", "--name", "web", "--wait-http", "http://127.0.0.1:http/", "--", "true")
        assert bad.returncode == 1 and "service.ready.http" in bad.stderr, bad.stderr
        two = ctl("run", "--name", "web", "--wait-port", "80", "--wait-cmd", "true", "--", "true")
        assert two.returncode == 1 and "needs exactly one of" in two.stderr, two.stderr
        served = ctl("run", "--name", "web", "--port", "auto", "--wait-http",
                     "http://127.0.0.1:$PORT/", "--health-http", "http://127.0.0.1:$PORT/",
                     "--", "sh", "-c",
                     f"sleep 0.5; exec {sys.executable} -m http.server --bind 127.0.0.1 $PORT")
        assert served.returncode == 0 and served.stdout.strip() == "web: running", \
            served.stderr
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{d.inst('web')['port']}/",
                                    timeout=30) as r:
            assert r.status == 200, "ready means the URL with the unit's $PORT answered"
        ready = ctl("run", "--name", "web2", "--port", "8", "--wait-cmd", "test -e go",
                    "--health-cmd", "test -e go", "--health-interval", "0.1",
                    "--health-retries", "1", "--no-block", "--", "sleep", "1000")
        assert ready.returncode == 0, ready.stderr
        assert d.status("web2")["state"] == "starting", "not ready until `test -e go` passes"
        (tmp_path / "go").touch()
        wait_for(lambda: d.status("web2")["state"] == "running")
        pid = d.inst("web2")["pid"]
        (tmp_path / "go").unlink()
        wait_for(lambda: d.inst("web2")["restarts"] >= 1, what="a restart by the health check")
        assert d.inst("web2")["pid"] != pid
        assert "health" in " ".join(e["message"] for e in d.call("events", units=["web2"]))
    finally:
        d.stop()


def test_a_project_keeps_its_logs_in_the_state_directory(tmp_path):
    """A project daemon's store is under $XDG_STATE_HOME, not the runtime
    place (tmpfs, gone at reboot): with the daemon down and the runtime
    directory wiped, `vigilctl logs` in the project still reads its lines."""
    project = tmp_path / "logapp"
    (project / "units").mkdir(parents=True)
    (project / "units" / "talk.toml").write_text(
        '[service]\nexec = ["sh", "-c", "echo said-before-reboot; exec sleep 1000"]\n')
    import shutil
    import tempfile
    xdg = Path(tempfile.mkdtemp(prefix="x", dir="/tmp"))  # socket paths are short
    state = tmp_path / "state"
    env = {**os.environ, "XDG_RUNTIME_DIR": str(xdg), "XDG_STATE_HOME": str(state)}
    env.pop("VIGIL_SOCKET", None)

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vigilctl", *args], capture_output=True,
                              text=True, cwd=project, env=env, timeout=60)
    try:
        assert ctl("start", "talk").returncode == 0
        wait_for(lambda: "said-before-reboot" in ctl("logs", "-u", "talk").stdout,
                 what="the line in the store")
    finally:
        assert ctl("shutdown").returncode == 0
        shutil.rmtree(xdg, ignore_errors=True)  # the runtime place, as a reboot empties it
    # breaks: vigilctl/project.py:start (no --log-dir: the store stays in the runtime place)
    assert list(state.glob("vigil/p/logapp-*/logs/talk.log"))
    out = ctl("logs", "-u", "talk")
    assert "said-before-reboot" in out.stdout, out.stdout + out.stderr
