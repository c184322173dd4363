"""PID 1 imports only what it runs (issue 17): every module the daemon
loads before it answers must be on the list below, so a heavy import
(dataclasses, inspect, typing, argparse, tomllib, asyncio, ssl...) cannot
creep back onto the start path unnoticed. Run the daemon with
PYTHONPROFILEIMPORTTIME=1 and read its stderr."""

from __future__ import annotations

import pytest

from tests.daemon import Daemon, can_unshare

# What Python itself loads before any of ours (site, encodings, the venv's
# .pth hooks), the interpreter's own builtins, and what vigil needs.
INTERPRETER = {
    "_io", "marshal", "posix", "_frozen_importlib_external", "time", "zipimport", "_codecs",
    "codecs", "encodings.aliases", "encodings", "encodings.utf_8", "_signal", "_abc", "abc",
    "io", "_stat", "stat", "_collections_abc", "genericpath", "posixpath", "os",
    "_sitebuiltins", "_distutils_hack", "sitecustomize", "site", "warnings", "importlib",
    "importlib.machinery", "importlib._abc", "itertools", "keyword", "_operator", "operator",
    "reprlib", "_collections", "collections", "types", "_functools", "functools",
    "contextlib", "importlib.util", "encodings.latin_1",
}
STDLIB = {
    "__future__", "enum", "signal", "_socket", "collections.abc", "math", "select",
    "selectors", "errno", "array", "socket", "_struct", "struct", "resource", "_heapq",
    "heapq", "fcntl", "grp", "pwd", "_cffi_backend", "_prctl", "prctl",
    "_json",  # the protocol's JSON, by its C encoder and scanner (vigil/base/jsonc.py)
}
VIGIL = {
    "vigil", "vigil.base", "vigil.kernel", "vigil.model", "vigil.wire", "vigil.runtime",
    "vigil.engine", "vigil.control", "vigil.base.records", "vigil.base.exitstatus", "vigil.base.errors", "vigil.model.unit",
    "vigil.engine.states", "vigil.adopt", "vigil.kernel.mountinfo", "vigil.engine.cgroups", "vigil.kernel.namespaces",
    "vigil.reexec", "vigil.base.limits", "vigil.runtime.loop", "vigil.wire.protocol", "vigil.control.connection",
    "vigil.base.printable", "vigil.runtime.output", "vigil.runtime.events", "vigil.base.rundir", "vigil.control.control",
    "vigil.model.graph", "vigil._sysc", "vigil.kernel.syscalls", "vigil.kernel.asuser",
    "vigil.engine.pidfile", "vigil.base.envfile", "vigil.engine.launch", "vigil.kernel.proc", "vigil.engine.reaper",
    "vigil.engine.forking", "vigil.engine.notify", "vigil.engine.probes", "vigil.engine.streams", "vigil.engine.spawner",
    "vigil.engine.logwatch", "vigil.engine.readiness", "vigil.engine.supervisor", "vigil.engine.manager", "vigil.engine.scopes",
    "vigil.waiting", "vigil.commands", "vigil.queries", "vigil.wire.flags", "vigil.daemon", "vigil.serve", "vigil.cli",
    "vigil.pid1", "vigil.model.compiled", "vigil.unitdb", "vigil.model.unitfiles", "vigil.base.execreport",
    "vigil.runtime.logstore", "vigil.model.unitchanges", "vigil.engine.lifecycle", "vigil.engine.lifecycle_states",
    "vigil.engine.notices", "vigil.base.jsonc",
}
ALLOWED = INTERPRETER | STDLIB | VIGIL
# named here so that the reason a test fails is plain
NEVER = {"dataclasses", "inspect", "argparse", "asyncio", "ssl", "subprocess", "vigil.control.remote",
         "vigil.engine.hooks", "vigil.model.check", "vigil.system.boot", "vigil.system.sysinit", "vigil.engine.timers",
         "vigil.model.calendar", "fnmatch", "gettext", "locale", "shutil", "typing",
         # json.decoder compiles regular expressions at import: the protocol's JSON
         # is vigil/base/jsonc.py; re only for a unit with a log rule
         "json", "re", "glob",
         # the unit compiler runs in a child process (vigil/unitdb.py)
         "tomllib", "vigil.model.loader", "vigil.model.schema", "vigil.base.tomlpos", "vigil.base.numbers"}

UNITS = {
    "web.toml": '[service]\nexec = ["sleep", "600"]\nrestart = "always"\n',
    "db.toml": '[unit]\nrequires = ["web"]\nafter = ["web"]\n[service]\n'
               'exec = ["sleep", "600"]\n',
}


def loaded_at_start(d: Daemon) -> set[str]:
    return {line.split("|")[-1].strip() for line in d.output().splitlines()
            if line.startswith("import time:") and "self [us]" not in line}


@pytest.mark.parametrize("units", [{}, UNITS], ids=["empty", "units"])
@pytest.mark.parametrize("mode", ["subreaper", "pid1"])
def test_the_daemon_imports_only_what_it_runs(unit_dir, tmp_path, mode, units):
    if mode == "pid1" and not can_unshare():
        pytest.skip("needs root and unshare for a PID namespace")
    d = Daemon(unit_dir(units), tmp_path, pid1=(mode == "pid1"),
               extra=["--quiet", "--cgroup", "off"], wrap=["env", "PYTHONPROFILEIMPORTTIME=1"],
               python_code="pass")
    try:
        loaded = loaded_at_start(d)
    finally:
        d.stop()
    assert "vigil.daemon" in loaded  # the profile was read
    assert not loaded & NEVER, sorted(loaded & NEVER)
    assert loaded <= ALLOWED, sorted(loaded - ALLOWED)


# -- the client ---------------------------------------------------------------
CLIENT_NEVER = {"argparse", "gettext", "vigilctl.options", "vigilctl.verbs", "vigilctl.project",
                "vigilctl.progress", "typing", "dataclasses", "vigil.model.loader", "tomllib", "ssl",
                "json", "re", "socket", "enum"}


def test_vigilctl_status_imports_the_protocol_and_the_table_printer(unit_dir, tmp_path):
    import os
    import subprocess
    import sys

    from tests.daemon import ROOT
    d = Daemon(unit_dir(UNITS), tmp_path, extra=["--quiet", "--cgroup", "off"])
    try:
        done = subprocess.run([sys.executable, "-X", "importtime", "-c",
                               "import sys; from vigilctl.main import main; sys.exit(main())",
                               "--socket", d.socket, "status"], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "COLUMNS": "100"})
    finally:
        d.stop()
    assert "web" in done.stdout, done.stderr
    loaded = {line.split("|")[-1].strip() for line in done.stderr.splitlines()
              if line.startswith("import time:")}
    assert {"vigilctl.show", "vigilctl.client", "vigil.wire.protocol"} <= loaded
    assert not loaded & CLIENT_NEVER, sorted(loaded & CLIENT_NEVER)


@pytest.mark.parametrize("argv", [
    ["status"], ["status", "--json", "web", "db"], ["--socket", "/s", "status", "web"],
    ["--system", "--timeout", "2.5", "start", "web", "--no-block"], ["stop", "a", "b"],
    ["--units", "proj", "restart", "x"], ["reload", "--dry-run"], ["reload"], ["ping"],
    ["shutdown"], ["timeline"], ["daemon-reexec"], ["--timeout", "7", "status"],
])
def test_the_quick_command_line_reads_as_argparse_does(argv):
    from vigilctl import quick
    from vigilctl.options import build_parser
    assert vars(quick.parse(argv)) == vars(build_parser(argv).parse_args(argv))


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["status", "-h"], ["start"], ["reload", "x"], ["list-units"],
    ["--timeout", "nan", "status"], ["--timeout", "-1", "ping"], ["status", "--jso"],
    ["--sock", "/s", "status"], ["logs", "web"], ["--socket"], ["--socket", "--system", "ping"],
])
def test_what_the_quick_reader_does_not_know_is_argparse_s(argv):
    from vigilctl import quick
    assert quick.parse(argv) is None
