"""vigilctl tells the truth: a start that does not hold is a failure with its
reason, a broken unit file is shown as broken (never as missing), and `why`
names the real reason for every state."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.daemon import ROOT, wait_for
from tests.test_vigilctl import ctl

SUBREAPER = pytest.mark.parametrize("mode", ["subreaper"], indirect=True)

SLEEPER = '[service]\nexec = "sleep 1000"\n'
UNITS = {
    # exits at once, three quick retries, then fatal
    "flaky.toml": '[service]\nexec = ["sh", "-c", "exit 3"]\nrestart-delay = 0.05\n',
    "db.toml": '[service]\nexec = ["sh", "-c", "sleep 0.3; exit 1"]\nrestart = "never"\n',
    "dependent.toml": '[unit]\nrequires = ["db"]\nenabled = false\n' + SLEEPER,
    "steady.toml": '[unit]\nenabled = false\n[service]\nexec = "sleep 1000"\n'
                   'start-seconds = 0.5\n',
    "quitter.toml": '[unit]\nenabled = false\n[service]\nexec = "true"\nrestart = "never"\n',
    "api.toml": '[unit]\ndescription = "api"\nrequire = ["db"]\n' + SLEEPER,
}


@SUBREAPER
def test_start_of_a_unit_that_dies_is_a_failure_with_its_reason(daemon):
    d = daemon(UNITS, extra=["--no-autostart"])
    out = ctl(d, "start", "flaky")
    assert out.returncode == 1, out
    assert "flaky failed: exit 3; gave up after 3 retries" in out.stderr
    assert out.stdout == ""
    quit = ctl(d, "start", "quitter")
    assert quit.returncode == 1
    assert "before its start-seconds (1 s)" in quit.stderr and "exit 0" in quit.stderr


@SUBREAPER
def test_start_waits_for_start_seconds_then_says_running(daemon):
    d = daemon(UNITS, extra=["--no-autostart"])
    out = ctl(d, "start", "steady")
    assert (out.returncode, out.stdout) == (0, "steady: running\n"), out
    assert d.inst("steady")["uptime"] >= 0.5


@SUBREAPER
def test_start_of_a_dependent_whose_requirement_fails_names_it(daemon):
    d = daemon(UNITS, extra=["--no-autostart"])
    out = ctl(d, "start", "dependent")
    assert out.returncode == 1, out
    assert "dependent: stopped because its requirement db failed (exit 1)" in out.stderr
    why = wait_for(lambda: (w := ctl(d, "why", "dependent").stdout) and "db" in w and w)
    assert "requirement db failed" in why and "not enabled" not in why
    ctl(d, "start", "--no-block", "steady")
    stopped = ctl(d, "stop", "steady")
    assert stopped.returncode == 0, stopped
    assert ctl(d, "why", "steady").stdout.strip() == "stopped by hand (vigilctl stop)"


@SUBREAPER
def test_a_broken_unit_is_shown_as_broken_not_missing(daemon):
    d = daemon(UNITS, extra=["--no-autostart"])
    problem = "api.toml:3: unit.require: unknown key 'require' (did you mean 'requires'?)"
    status = ctl(d, "status")
    row = next(line for line in status.stdout.splitlines() if line.startswith("api "))
    assert row.split()[1] == "broken"
    assert problem in status.stdout
    for args in (["start", "api"], ["cat", "api"], ["status", "api"], ["why", "api"]):
        out = ctl(d, *args)
        assert problem in out.stdout + out.stderr, (args, out)
        assert "no such unit" not in out.stdout + out.stderr
    assert ctl(d, "start", "api").returncode == 1


def project_ctl(project: Path, xdg: Path):
    env = {**os.environ, "XDG_RUNTIME_DIR": str(xdg)}
    env.pop("VIGIL_SOCKET", None)

    def ctl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vigilctl", *args], capture_output=True,
                              text=True, cwd=cwd or project, env=env, timeout=60)
    return ctl


def test_first_use_prints_the_load_errors_it_found(tmp_path):
    project = tmp_path / "shop"
    (project / "units").mkdir(parents=True)
    (project / "units" / "web.toml").write_text(SLEEPER)
    (project / "units" / "api.toml").write_text(UNITS["api.toml"])
    xdg = Path(tempfile.mkdtemp(prefix="x", dir="/tmp"))
    ctl = project_ctl(project, xdg)
    try:
        first = ctl("start", "web")
        assert first.returncode == 0, first.stderr
        assert "vigilctl: problem: " in first.stderr and "unit.require: unknown key" \
            in first.stderr
        again = ctl("start", "api")
        assert again.returncode == 1
        assert "api: api.toml:3: unit.require: unknown key 'require'" in again.stderr
    finally:
        ctl("shutdown")
        shutil.rmtree(xdg, ignore_errors=True)


def test_commands_in_a_directory_after_up_d_reach_its_daemon(tmp_path):
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / "Procfile").write_text("web: sleep 1000\n")
    xdg = Path(tempfile.mkdtemp(prefix="x", dir="/tmp"))
    ctl = project_ctl(app, xdg)
    try:
        up = ctl("up", "-d")
        assert up.returncode == 0, up.stderr
        assert "vigilctl in that directory (or with --socket) reaches it" in up.stderr
        status = ctl("status", cwd=app / "src")
        assert status.returncode == 0, status.stderr
        assert status.stdout.splitlines()[1].split()[:2] == ["web", "running"]
    finally:
        ctl("shutdown")
        shutil.rmtree(xdg, ignore_errors=True)


def test_vigil_check_with_no_directory_inside_a_project_checks_the_project(tmp_path):
    project = tmp_path / "shop"
    (project / "units").mkdir(parents=True)
    (project / "src").mkdir()
    (project / "units" / "web.toml").write_text(SLEEPER)
    (project / "units" / "api.toml").write_text(UNITS["api.toml"])
    done = subprocess.run([sys.executable, "-m", "vigil.cli", "check"], capture_output=True,
                          text=True, cwd=project / "src", timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 1
    assert f"checking the project's units in {project / 'units'}" in done.stdout
    assert "api.toml:3: unit.require: unknown key" in done.stdout
    assert done.stdout.splitlines()[-1] == "1 unit(s) ok, 1 broken, 0 refused"


@SUBREAPER
def test_why_names_the_conflict_that_stopped_a_unit(daemon):
    quick = '[service]\nexec = "sleep 1000"\nstart-seconds = 0.1\n'
    d = daemon({"x.toml": '[unit]\nconflicts = ["y"]\n' + quick, "y.toml": quick},
               extra=["--no-autostart"])
    assert ctl(d, "start", "y").returncode == 0
    assert ctl(d, "start", "x").returncode == 0
    wait_for(lambda: d.status("y")["state"] == "inactive")
    assert ctl(d, "why", "y").stdout.strip() == "stopped because x conflicts with it"
