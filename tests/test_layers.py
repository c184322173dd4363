"""The layers of docs/DESIGN.md, checked: each module belongs to one layer,
and imports only from the layers its own may use.

Membership is a table of module names (the file's name, not its package),
so the rule holds whether a module is `vigil/engine/states.py` or
`vigil/engine/states.py`. A new module must be put in the table.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LAYERS: dict[str, tuple[str, ...]] = {
    # pure helpers: import nothing of vigil
    # (records: the lean stand-in for dataclasses every layer's records use)
    "base": ("errors", "numbers", "printable", "tomlpos", "rundir", "limits", "envfile",
             "signames", "exitstatus", "execreport", "unitstates",
             "sdnotify", "records", "expand", "jsonc"),
    # the syscall seam: every system call and cffi binding the others use
    "sys": ("_sys_build", "_spawn", "syscalls", "proc", "asuser", "namespaces", "mountinfo"),
    # units as data: files, schema, loader, graph, the offline check; no processes
    # (compiled: the compiled unit database, written by the loader, read by PID 1)
    "model": ("unit", "unitfiles", "schema", "checks", "loader", "graph", "check", "calendar",
              "dropins", "projectdir", "unitchanges", "compiled"),
    # the contracts with the outside: the wire format (daemon and client) and
    # the daemon's command line (read by vigilctl's man page generator)
    "protocol": ("protocol", "flags"),
    # the loop and the log the engine, control and system layers all use (logstore:
    # the stamped files; syslog: forwarding them)
    "runtime": ("loop", "output", "events", "logstore", "syslog"),
    # instances and units: state table, supervisor, reaper, manager and helpers
    "engine": ("states", "supervisor", "spawner", "readiness", "forking", "reaper", "manager",
               "probes", "streams", "notify", "pidfile", "launch", "scopes", "cgroups", "timers",
               "logwatch", "hooks", "lifecycle", "lifecycle_states",
               "notices"),
    # the control socket's transport (bytes in, requests out); the verbs are the daemon's
    "control": ("connection", "control", "remote"),
    # the machine: early boot, mounts, shutdown; loaded only in system mode
    "system": ("boot", "sysinit", "mounts", "fstab", "switchroot", "shutdown", "net", "dhcp",
               "devlog", "hwwatchdog"),
    # the daemon and what wires or drives the whole
    "daemon": ("daemon", "serve", "pid1", "commands", "queries", "waiting", "admin", "reexec", "adopt",
               "container", "cli", "entry", "tini",
               # the daemon's units: the database, or the compiler in a child process
               "unitdb"),
}

ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "sys": {"base"},
    "model": {"base"},
    "protocol": {"base"},
    "runtime": {"base"},
    "engine": {"base", "sys", "model", "runtime"},
    "control": {"base", "protocol", "runtime"},
    "system": {"base", "sys", "runtime"},
    "daemon": {"base", "sys", "model", "protocol", "runtime", "engine", "control", "system"},
    # vigilctl: the protocol and the model, never the daemon's side
    "client": {"base", "model", "protocol"},
}

LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}


def _layer(path: Path) -> str:
    if path.relative_to(ROOT).parts[0] == "vigilctl":
        return "client"
    assert path.stem in LAYER_OF, f"{path}: put this module in a layer of tests/test_layers.py"
    return LAYER_OF[path.stem]


def _sources() -> list[Path]:
    return [p for pkg in ("vigil", "vigilctl") for p in sorted((ROOT / pkg).rglob("*.py"))
            if p.name != "__init__.py"]


def _imported(path: Path) -> set[str]:
    """The vigil modules a file imports, at its top or in a function ("vigil"
    and "vigilctl" packages themselves count as nothing)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
            found |= {n.split(".")[-1] for n in names if n.split(".")[0] == "vigil"}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").split(".")[0] != "vigil":
                continue
            module = (node.module or "").split(".")[-1]
            for alias in node.names:
                found.add(alias.name if alias.name in LAYER_OF else module)
    return found - {"vigil", "", "_sysc"}


def test_every_module_has_a_layer() -> None:
    for path in _sources():
        _layer(path)


def test_layers_import_only_what_they_may() -> None:
    wrong = []
    for path in _sources():
        layer = _layer(path)
        for module in sorted(_imported(path)):
            other = LAYER_OF.get(module)
            if other is None:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}, which is in no layer")
            elif other != layer and other not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT)} ({layer}) imports {module} ({other})")
    assert not wrong, "\n".join(wrong)


def test_the_rule_catches_a_wrong_import(tmp_path: Path) -> None:
    """The scan sees function-level imports and `from vigil import x`."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from vigil import supervisor\n    import vigil.system.mounts\n")
    assert _imported(source) == {"supervisor", "mounts"}


def _loaded(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join("
                          "m.split('.')[-1] for m in sys.modules if m.startswith('vigil')))"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return set(out.stdout.split())


def test_system_layer_is_loaded_only_in_system_mode() -> None:
    """A service supervisor never loads early boot, mounts or shutdown."""
    loaded = _loaded("import vigil.daemon, vigil.cli")
    assert "daemon" in loaded
    assert not loaded & set(LAYERS["system"]), loaded & set(LAYERS["system"])


def test_client_never_loads_the_engine() -> None:
    loaded = _loaded("import vigilctl.main")
    assert not loaded & set(LAYERS["engine"] + LAYERS["daemon"] + LAYERS["control"]), loaded


def test_early_boot_survives_a_locale_file_it_cannot_read(tmp_path: Path) -> None:
    """Early boot reads /etc/locale.conf itself (no launcher, whose reader
    raised LaunchError past PID 1's OSError handling): a FIFO is not read
    (it would block PID 1), and the other file still counts."""
    from vigil.system.sysinit import unit_environment
    (tmp_path / "etc" / "default").mkdir(parents=True)
    os.mkfifo(tmp_path / "etc" / "locale.conf")
    (tmp_path / "etc" / "default" / "locale").write_text('LANG="C.UTF-8"\nPATH=/evil\n')
    assert unit_environment(str(tmp_path)) == {"LANG": "C.UTF-8"}


def test_every_event_code_emitted_is_in_the_catalogue() -> None:
    """events.py promises stable codes: each one the daemon emits is listed."""
    from vigil.runtime.events import CODES, TAGS
    from vigil.engine.supervisor import _ANNOUNCED
    emitted = {code for code, _severity, _text in _ANNOUNCED.values()}
    for path in (ROOT / "vigil").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "emit" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                emitted.add(node.args[0].value)
    assert "unit.ready" in emitted and "daemon.started" in emitted
    assert emitted - set(CODES) == set(), "add these to vigil/runtime/events.py CODES"
    assert set(TAGS) <= set(CODES)


def _returned_strings(path: Path, function: str) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for inner in ast.walk(node):
                if isinstance(inner, ast.Return) and inner.value is not None:
                    found |= {c.value for c in ast.walk(inner.value)
                              if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    return found


def test_every_state_the_daemon_reports_has_its_one_home() -> None:
    """vigil/base/unitstates.py is what vigilctl colours and judges by: every
    instance state and every unit-only state the manager or the broken-unit
    row can report must be there (a new one would print uncoloured and make
    `status` exit 0 or 3 by accident)."""
    from vigil.engine import manager
    from vigil.engine.states import State
    from vigil.base.unitstates import UNIT_STATES
    unit_only = _returned_strings(Path(manager.__file__), "state")
    assert unit_only >= {"unknown", "skipped", "waiting"}, unit_only
    reported = {s.value for s in State} | unit_only | {"broken"}
    assert reported <= set(UNIT_STATES), reported - set(UNIT_STATES)
