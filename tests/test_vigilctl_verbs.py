"""The verbs systemctl and supervisorctl users type, and the conventions of
a command line: one-line errors with a did-you-mean, --version, help for
every argument."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from tests.daemon import ROOT, wait_for
from tests.test_vigilctl import ctl
from vigilctl.options import SUBCOMMANDS, build_parser

SUBREAPER = pytest.mark.parametrize("mode", ["subreaper"], indirect=True)

SLEEPER = '[service]\nexec = "sleep 1000"\nstart-seconds = 0.2\n'
UNITS = {
    "web.toml": '[unit]\ndescription = "the web"\n' + SLEEPER,
    "cron.toml": '[service]\nexec = ["sh", "-c", "echo tick; exec sleep 1000"]\n'
                 'start-seconds = 0.2\n',
    "extra.toml": '[unit]\nenabled = false\n' + SLEEPER,
    "crash.toml": '[unit]\nenabled = false\n[service]\nexec = ["sh", "-c", "exit 4"]\n'
                  'restart = "never"\n',
}


def vigilctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vigilctl", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def test_an_unknown_command_or_option_is_one_line_with_a_did_you_mean():
    wrong = vigilctl("stat")
    assert wrong.returncode == 2
    assert wrong.stderr == ("vigilctl: unknown command 'stat' (did you mean 'status'?); "
                            "vigilctl --help lists them\n")
    option = vigilctl("status", "--jsn")
    assert option.returncode == 2
    assert option.stderr == ("vigilctl: unknown option '--jsn' (did you mean '--json'?); "
                             "vigilctl status --help lists them\n")
    missing = vigilctl("start")
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1
    assert "usage:" not in missing.stderr


def test_version_and_help_for_every_argument():
    from vigil import __version__
    version = vigilctl("--version")
    assert (version.returncode, version.stdout) == (0, f"vigilctl {__version__}\n")
    top = vigilctl("--help").stdout
    assert "list-units (= status)" in top and "tail (= logs)" in top
    for name in SUBCOMMANDS:
        parser = build_parser([name])
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for action in sub.choices[name]._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"vigilctl {name}: {action.dest} has no help"


def test_vigil_has_a_version_and_its_help_names_run_and_check():
    from vigil import __version__
    vigil = [sys.executable, "-m", "vigil.cli"]
    version = subprocess.run([*vigil, "--version"], capture_output=True, text=True, cwd=ROOT,
                             timeout=60)
    assert (version.returncode, version.stdout) == (0, f"vigil {__version__}\n")
    help_text = subprocess.run([*vigil, "--help"], capture_output=True, text=True, cwd=ROOT,
                               timeout=60).stdout
    assert "`vigil run [OPTIONS] -- CMD [ARGS...]`" in help_text
    assert "`vigil check [DIR...]`" in help_text


def test_vigil_run_with_units_that_are_not_there_is_an_error(tmp_path):
    """A typo in --units must not run CMD without the services it expects."""
    marker = tmp_path / "ran"
    out = subprocess.run([sys.executable, "-m", "vigil.cli", "run", "--units",
                          str(tmp_path / "missing"), "--", "touch", str(marker)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 1
    assert out.stderr == f"vigil run: --units {tmp_path / 'missing'}: no such directory\n"
    assert not marker.exists()


@SUBREAPER
def test_enable_and_disable_persist_as_a_dropin_without_a_restart(daemon, unit_dir):
    d = daemon(UNITS)
    pid = wait_for(lambda: d.inst("web")["pid"])
    off = ctl(d, "is-enabled", "extra")
    assert (off.returncode, off.stdout) == (1, "disabled\n")
    on = ctl(d, "enable", "extra")
    assert on.returncode == 0, on
    dropin = d.units / "extra.d" / "zz-vigilctl-enable.toml"
    assert on.stdout == f"extra: enabled ({dropin})\n"
    assert "enabled = true" in dropin.read_text()
    assert (ctl(d, "is-enabled", "extra").returncode, d.status("extra")["state"]) == \
        (0, "inactive")
    assert ctl(d, "disable", "--now", "web").stdout.splitlines() == [
        f"web: disabled ({d.units / 'web.d' / 'zz-vigilctl-enable.toml'})", "web: inactive"]
    assert ctl(d, "is-enabled", "web").stdout == "disabled\n"
    now = ctl(d, "enable", "--now", "web")
    assert now.stdout.splitlines()[-1] == "web: running", now
    assert d.inst("web")["pid"] != pid
    # a reload with only [unit] keys changed restarts nothing
    pid = d.inst("web")["pid"]
    (d.units / "web.toml").write_text('[unit]\ndescription = "renamed"\n' + SLEEPER)
    plan = ctl(d, "reload").stdout
    assert "update    web: changed: unit.description" in plan
    assert d.inst("web")["pid"] == pid


@SUBREAPER
def test_is_active_is_failed_reset_failed_with_systemctl_exit_codes(daemon):
    d = daemon(UNITS)
    wait_for(lambda: d.status("web")["state"] == "running")
    active = ctl(d, "is-active", "web")
    assert (active.returncode, active.stdout) == (0, "active\n")
    assert (ctl(d, "is-active", "extra").returncode, ctl(d, "is-active", "-q", "extra").stdout) \
        == (3, "")
    assert ctl(d, "is-active", "nope").returncode == 4
    assert ctl(d, "start", "crash").returncode == 1
    failed = ctl(d, "is-failed", "crash")
    assert (failed.returncode, failed.stdout) == (0, "failed\n")
    assert ctl(d, "reset-failed").stdout == "crash: reset\n"
    assert ctl(d, "is-failed", "crash").returncode == 1
    assert d.status("crash")["state"] == "inactive"


@SUBREAPER
def test_show_list_units_pid_signal_and_all(daemon):
    d = daemon(UNITS)
    pid = wait_for(lambda: d.inst("web")["pid"])
    shown = ctl(d, "show", "web").stdout.splitlines()
    assert "service.exec=sleep 1000" in shown and "state=running" in shown
    assert "description=the web" in shown and f"instance.web.pid={pid}" in shown
    assert ctl(d, "show", "-p", "service.restart", "web").stdout == \
        "service.restart=on-failure\n"
    settings = json.loads(ctl(d, "show", "--json", "web").stdout)["settings"]
    assert settings["service"]["stop-timeout"] == 10.0
    assert ctl(d, "list-units").stdout == ctl(d, "status").stdout
    assert "extra  disabled" in ctl(d, "list-unit-files").stdout
    assert ctl(d, "pid", "web").stdout == f"{pid}\n"
    assert ctl(d, "signal", "HUP", "cron").stdout.startswith("cron: signalled ")
    wait_for(lambda: "tick" in ctl(d, "logs", "-u", "cron").stdout)
    assert "tick" in ctl(d, "tail", "-n", "5", "cron").stdout
    restarted = ctl(d, "restart", "all")
    assert restarted.stdout == "cron: running\nweb: running\n", restarted
    assert d.inst("web")["pid"] != pid
    stopped = ctl(d, "stop", "all")
    assert stopped.returncode == 0, stopped
    assert d.status("web")["state"] == d.status("cron")["state"] == "inactive"


@SUBREAPER
def test_edit_checks_the_dropin_before_saving_then_reloads(daemon, tmp_path):
    d = daemon(UNITS)
    wait_for(lambda: d.status("web")["state"] == "running")
    override = d.units / "web.d" / "override.toml"

    def edit(text: str) -> subprocess.CompletedProcess[str]:
        editor = tmp_path / "editor.sh"
        editor.write_text(f"#!/bin/sh\ncat > \"$1\" <<'END'\n{text}END\n")
        editor.chmod(0o755)
        return subprocess.run([sys.executable, "-m", "vigilctl", "--socket", d.socket, "edit",
                               "web"], capture_output=True, text=True, cwd=ROOT, timeout=60,
                              env={**os.environ, "EDITOR": str(editor)}, stdin=subprocess.DEVNULL)
    bad = edit("[service]\nstop-timeut = 3\n")
    assert bad.returncode == 1
    assert "not saved: web.d/override.toml:2: service.stop-timeut: unknown key" in bad.stderr
    assert not override.exists()
    good = edit("[service]\nstop-timeout = 3\n")
    assert good.returncode == 0, good
    assert good.stdout.splitlines() == [f"web: saved {override}",
                                        "restart   web: changed: service.stop-timeout"]
    assert json.loads(ctl(d, "show", "--json", "web").stdout)["settings"]["service"][
        "stop-timeout"] == 3


LISTENER = ('[service]\nexec = ["python3", "-c", "import os, socket, time; s = socket.socket(); '
            's.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); '
            's.bind((\'127.0.0.1\', int(os.environ[\'PORT\']))); s.listen(); time.sleep(1000)"]\n'
            'port = "auto"\nrestart = "always"\nstart-seconds = 0.2\n'
            '[service.ready]\ntcp = "port"\n')


@SUBREAPER
def test_an_auto_port_survives_the_units_restarts_while_it_is_free(daemon):
    import socket
    d = daemon({"app.toml": LISTENER})
    first = wait_for(lambda: d.status("app")["state"] == "running" and d.inst("app")["port"])
    assert ctl(d, "restart", "app").returncode == 0
    assert d.inst("app")["port"] == first
    pid = d.inst("app")["pid"]
    os.kill(pid, 9)  # a crash: restarted by its policy, on the same port
    wait_for(lambda: d.inst("app")["pid"] not in (None, pid) and
             d.status("app")["state"] == "running")
    assert d.inst("app")["port"] == first
    ctl(d, "stop", "app")
    with socket.socket() as taken:  # someone else took it meanwhile: another one
        taken.bind(("127.0.0.1", first))
        taken.listen()
        assert ctl(d, "start", "app").returncode == 0
        assert d.inst("app")["port"] not in (None, first)


@SUBREAPER
def test_enable_never_writes_through_a_planted_symlink(daemon, tmp_path):
    d = daemon(UNITS)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (d.units / "extra.d").symlink_to(elsewhere)  # the drop-in directory
    refused = ctl(d, "enable", "extra")
    assert refused.returncode == 1 and "extra: cannot write its drop-in" in refused.stderr
    assert list(elsewhere.iterdir()) == []
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (d.units / "web.d").mkdir()
    (d.units / "web.d" / "zz-vigilctl-enable.toml").symlink_to(victim)  # the file itself
    assert ctl(d, "disable", "web").returncode == 0
    assert victim.read_text() == "precious\n"
    assert not (d.units / "web.d" / "zz-vigilctl-enable.toml").is_symlink()
