"""`vigil run` beside the real tini (Debian's), on the same input: what a tini
user sees must be what a vigil user sees (docs/container.md lists where
vigil differs on purpose)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import ROOT, wait_for

PY = sys.executable
TINI = shutil.which("tini")
pytestmark = pytest.mark.skipif(TINI is None, reason="needs tini (apt-get install tini)")
KINDS = ["tini", "vigil"]


def entry(kind: str, args: list[str]) -> list[str]:
    return [TINI or "tini", *args] if kind == "tini" else [PY, "-m", "vigil.cli", "run", *args]


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """No VIGIL_SOCKET or TINI_*; a runtime directory of the test's own, shared
    by everything the test starts (as /tmp is shared on a host)."""
    env = {k: v for k, v in os.environ.items()
           if k != "VIGIL_SOCKET" and not k.startswith(("TINI_", "DUMB_INIT_"))}
    return {**env, "XDG_RUNTIME_DIR": str(tmp), **extra}


def run(kind: str, args: list[str], tmp: Path, env: dict[str, str] | None = None,
        **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(entry(kind, args), cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=env or clean_env(tmp), start_new_session=True, **kw)


# -- many at once ------------------------------------------------------------
def test_two_at_once_both_run_their_command(tmp_path, unit_dir):
    """No mount namespaces, one runtime directory: the first holds on until
    the second has run, and both run their command; with side services too."""
    units = unit_dir({"idle.toml": '[service]\nexec = ["sleep", "1000"]\n'})
    for extra in ([], ["--units", str(units)]):
        mark = tmp_path / f"second-ran-{len(extra)}"
        first = subprocess.Popen(
            entry("vigil", [*extra, "--", "sh", "-c", f"while [ ! -e {mark} ]; do sleep 0.05; "
                                                        "done"]),
            cwd=ROOT, env=clean_env(tmp_path), stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        second = run("vigil", [*extra, "--", "touch", str(mark)], tmp_path)
        assert second.returncode == 0, second.stderr
        assert first.wait(timeout=60) == 0, first.stderr.read() if first.stderr else ""
    assert not list((tmp_path / "vigil").glob("run-*")), "each removed its own directory"


def test_beside_a_per_user_daemon(tmp_path, unit_dir):
    units = unit_dir({"idle.toml": '[service]\nexec = ["sleep", "1000"]\n'})
    env = clean_env(tmp_path)
    daemon = subprocess.Popen([PY, "-m", "vigil.cli", "--units", str(unit_dir({}, "none"))],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for((tmp_path / "vigil" / "control.sock").exists, what="the per-user daemon")
        for extra in ([], ["--units", str(units)]):
            done = run("vigil", [*extra, "--", "true"], tmp_path, env=env)
            assert done.returncode == 0, done.stderr
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)


# -- signal state --------------------------------------------------------------
def _parent_state() -> None:
    """A parent that blocks TERM and USR2 and ignores TTOU, HUP and USR1."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR2})
    for sig in (signal.SIGTTOU, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)


def _signal_state(kind: str, extra: list[str], tmp: Path) -> list[str]:
    done = run(kind, ["-s", *extra, "--", "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"],
               tmp, preexec_fn=_parent_state)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_signal_mask_and_ignored_signals_pass_through(tmp_path, unit_dir):
    # The command must see what it would see started straight from the parent: the
    # parent's own state plus whatever the environment already ignored (a CI runner
    # may hand down an ignored signal 32, and then tini and vigil pass it on too).
    direct = subprocess.run(["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, env=clean_env(tmp_path),
                            start_new_session=True, preexec_fn=_parent_state)
    expected = direct.stdout.split()
    ours_blocked = (1 << 14) | (1 << 11)  # TERM 15, USR2 12
    ours_ignored = (1 << 21) | (1 << 0) | (1 << 9)  # TTOU 22, HUP 1, USR1 10
    assert int(expected[1], 16) & ours_blocked == ours_blocked, expected
    assert int(expected[3], 16) & ours_ignored == ours_ignored, expected
    assert _signal_state("tini", [], tmp_path) == expected
    assert _signal_state("vigil", [], tmp_path) == expected
    units = unit_dir({"idle.toml": '[service]\nexec = ["sleep", "1000"]\n'})
    assert _signal_state("vigil", ["--units", str(units)], tmp_path) == expected


# -- flags and variables ---------------------------------------------------------
GROUP = ("import signal, subprocess, sys\n"
         "child = subprocess.Popen(['sh', '-c', 'trap \"echo got > {out}; exit 0\" USR1; '\n"
         "                          'touch {ready}; while :; do sleep 0.05; done'])\n"
         "signal.signal(signal.SIGUSR1, lambda n, f: None)\n"
         "sys.exit(child.wait())\n")


def _group_reached(kind: str, args: list[str], env: dict[str, str], tmp: Path) -> bool:
    """Whether a signal to the entrypoint reaches CMD's child (its group)."""
    out, ready = tmp / f"got-{kind}", tmp / f"ready-{kind}"
    out.unlink(missing_ok=True)
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen(entry(kind, [*args, "--", PY, "-c", GROUP.format(out=out,
                                                                            ready=ready)]),
                            cwd=ROOT, env=env, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_for(ready.exists, what="CMD's child to set its trap")
    os.kill(proc.pid, signal.SIGUSR1)
    if not os.path.exists(out):
        try:
            proc.wait(timeout=1.5)  # the child got nothing: stop it
        except subprocess.TimeoutExpired:
            pass
    # CMD has a process group of its own: kill the whole session, or CMD's
    # shell loops on after the test
    subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], timeout=30, check=False)
    proc.wait(timeout=30)
    return out.exists()


@pytest.mark.parametrize("value", ["", "0", "1"])
def test_tini_kill_process_group_acts_when_set_to_anything(tmp_path, value):
    env = clean_env(tmp_path, TINI_KILL_PROCESS_GROUP=value, TINI_SUBREAPER="")
    assert _group_reached("tini", [], env, tmp_path)
    assert _group_reached("vigil", [], env, tmp_path)


def test_g_sends_to_the_group_and_the_default_to_cmd_alone(tmp_path):
    env = clean_env(tmp_path, TINI_SUBREAPER="")
    for kind in KINDS:
        assert _group_reached(kind, ["-g"], env, tmp_path)
        assert not _group_reached(kind, [], env, tmp_path)


ORPHANS = "for i in 1 2 3; do (sleep 0 &); done; sleep 0.5; echo out"


@pytest.mark.parametrize("kind", KINDS)
def test_w_warns_on_stderr_never_stdout(tmp_path, kind):
    done = run(kind, ["-s", "-w", "--", "sh", "-c", ORPHANS], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "out\n"
    assert "reaped zombie process with pid=" in done.stderr.lower()


@pytest.mark.parametrize("verbosity", [["-v"], ["-vv"], ["-vvv"], ["-v", "-v", "-v"]])
def test_verbose_output_goes_to_stderr(tmp_path, verbosity):
    """tini writes its info and debug lines to stdout; vigil keeps CMD's stdout CMD's."""
    done = run("vigil", ["-s", "-w", *verbosity, "--", "sh", "-c", ORPHANS], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "out\n"
    assert "exited with status 0" in done.stderr


def test_with_side_services_vigils_lines_go_to_stderr(tmp_path, unit_dir):
    units = unit_dir({"idle.toml": '[service]\nexec = ["sleep", "1000"]\n'})
    done = run("vigil", ["-s", "-w", "-vv", "--units", str(units), "--", "sh", "-c", ORPHANS],
               tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "out\n"
    assert "reaped orphan" in done.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_tini_verbosity_0_silences_warnings(tmp_path, kind):
    env = clean_env(tmp_path, TINI_VERBOSITY="0")
    done = run(kind, ["-w", "-v", "--", "sh", "-c", ORPHANS], tmp_path, env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "out\n", "")


@pytest.mark.parametrize("kind", KINDS)
def test_tini_subreaper_set_to_anything_is_quiet(tmp_path, kind):
    done = run(kind, ["--", "true"], tmp_path, env=clean_env(tmp_path, TINI_SUBREAPER=""))
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("args", [[], ["-e"], ["-e", "256", "--", "true"], ["-x", "--", "true"],
                                  ["-p", "NOSUCH", "--", "true"]])
def test_usage_errors_exit_1(tmp_path, args):
    for kind in KINDS:
        done = run(kind, args, tmp_path)
        assert done.returncode == 1, (kind, done.stderr)
        assert done.stderr and done.stdout == ""


def test_help_goes_to_stdout_and_exits_0(tmp_path):
    for kind in KINDS:
        done = run(kind, ["-h"], tmp_path)
        assert done.returncode == 0
        assert "-g" in done.stdout and "-e" in done.stdout


# -- what CMD gets and what comes back -----------------------------------------------
def test_inherited_fds_pass_through(tmp_path):
    """A socket-activated fd (or any the parent passes) reaches CMD, as with tini."""
    r, w = os.pipe()
    try:
        for kind in KINDS:
            write = f"import os; os.write({w}, b'{kind}\\n')"
            done = run(kind, ["-s", "--", PY, "-c", write], tmp_path, pass_fds=(w,))
            assert done.returncode == 0, done.stderr
            assert os.read(r, 100) == f"{kind}\n".encode()
    finally:
        os.close(r)
        os.close(w)


def test_a_script_without_interpreter_line_runs_with_sh(tmp_path):
    script = tmp_path / "job"
    script.write_text("exit 7\n")
    script.chmod(0o755)
    for kind in KINDS:
        assert run(kind, ["-s", "--", str(script)], tmp_path).returncode == 7


@pytest.mark.parametrize("kind", KINDS)
def test_exit_statuses_as_tini(tmp_path, kind):
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    plain.chmod(0o644)
    cases = {("--", "sh", "-c", "exit 300"): 44, ("--", "sh", "-c", "kill -TERM $$"): 143,
             ("-e", "143", "--", "sh", "-c", "kill -TERM $$"): 0,
             ("--", "/no/such/program"): 127, ("--", str(plain)): 126}
    for args, status in cases.items():
        assert run(kind, ["-s", *args], tmp_path).returncode == status, args


RT = ("import signal, sys\n"
      "n = signal.SIGRTMIN + 2\n"
      "signal.signal(n, lambda s, f: sys.exit(s - signal.SIGRTMIN))\n"
      "open(sys.argv[1], 'w').close()\n"
      "signal.pause()\n")


@pytest.mark.parametrize("kind", KINDS)
def test_a_real_time_signal_is_forwarded(tmp_path, kind):
    ready = tmp_path / f"ready-{kind}"
    proc = subprocess.Popen(entry(kind, ["-s", "--", PY, "-c", RT, str(ready)]), cwd=ROOT,
                            env=clean_env(tmp_path), start_new_session=True)
    wait_for(ready.exists, what="the command's handler")
    os.kill(proc.pid, signal.SIGRTMIN + 2)
    assert proc.wait(timeout=30) == 2


def test_the_fast_path_imports_only_what_it_runs():
    """No argparse, dataclasses, json, TOML, enum, sockets or daemon modules
    without side services: they cost tens of ms at every start."""
    code = "import sys\nfrom vigil.cli import main\nsys.exit(main(['run', '-s', '--', 'true']))"
    done = subprocess.run([PY, "-X", "importtime", "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = {line.split("|")[-1].strip() for line in done.stderr.splitlines()
              if line.startswith("import time:")}
    heavy = {"argparse", "dataclasses", "json", "tomllib", "enum", "signal", "socket",
             "vigil.daemon", "vigil.control.control", "vigil.container", "vigil.wire.protocol",
             "vigil.kernel.syscalls", "typing", "subprocess", "_cffi_backend"}
    assert not loaded & heavy, sorted(loaded & heavy)


def test_options_are_read_as_getopt_reads_them():
    from vigil.entry import parse
    o = parse(["-sgvw", "-e3", "--units=d", "--rewrite", "15:10", "-p", "SIGKILL", "--",
               "cmd", "-v"], env={})
    assert (o.command, o.group, o.verbosity, o.warn_zombies, o.quiet_subreaper) == \
        (["cmd", "-v"], True, 2, True, True)
    assert (o.exit_map, o.units, o.rewrite, o.parent_death_signal) == \
        ({3: 0}, ["d"], {15: 10}, signal.SIGKILL)
    after = parse(["cmd", "-g"], env={})  # options end at CMD
    assert (after.command, after.group) == (["cmd", "-g"], False)
    assert parse(["cmd"], env={"TINI_VERBOSITY": "2x"}).verbosity == 2  # atoi
    assert parse(["-vv", "cmd"], env={"TINI_VERBOSITY": ""}).verbosity == 0
    assert parse(["cmd"], "dumb-init", env={}).group
    assert not parse(["cmd"], "dumb-init", env={"DUMB_INIT_SETSID": "0"}).group
    assert not parse(["-c", "cmd"], "dumb-init", env={}).group
    assert parse(["cmd"], "dumb-init", env={"DUMB_INIT_DEBUG": "1"}).verbosity == 3
