"""Re-executing the daemon without losing its services.

`vigilctl daemon-reexec` (and PID 1's last resort) writes the state to a
file, keeps the output pipes, the control socket and the connections
waiting for an answer open across exec, and executes vigil again with
`--restore FILE --control-fd FD`. The new daemon loads the units, then
takes every running process back with its pid, restart counters and
output; exits that happened during the exec are reaped then, because the
children stay ours. Timers and probes are started afresh from each
instance's state. Without a usable state the new daemon takes back what
runs as after a kill (adopt.py).
"""

from __future__ import annotations

import json
import os
import socket
import sys

from vigil.states import ExitInfo, Instance, State

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from vigil.daemon import Daemon

FORMAT = 1
KEPT = ("state", "want_up", "pid", "started_at", "start_failures", "failures", "restarts",
        "reason", "pending_failure")


def save(daemon: Daemon) -> str:
    """Writes the state and clears close-on-exec on the fds that must survive."""
    sup, m = daemon.sup, daemon.manager
    instances = []
    for inst in sup.instances.values():
        record: dict[str, Any] = {k: getattr(inst, k) for k in KEPT}
        record.update(name=inst.name, unit=inst.unit, state=inst.state.value,
                      last_exit=None if inst.last_exit is None else inst.last_exit.__dict__)
        proc = sup.procs.get(inst.pid) if inst.pid else None
        record["started_wall"] = proc.started_wall if proc else 0.0
        record["fds"] = [(stream, fd) for fd, (name, stream) in sup.streams.captures.items()
                         if name == inst.name]
        instances.append(record)
    state = {"format": FORMAT, "instances": instances, "goal": sorted(m.goal),
             "waiting": sorted(m.waiting), "targets_up": sorted(m.targets_up),
             "skipped": m.skipped, "failed_why": m.failed_why, "times": m.times,
             "status_text": sup.status_text, "hook_env": sup.hook_env,
             "hook_queue": sup.hook_queue, "swaps": daemon.swaps,
             "scopes": daemon.scopes.snapshot(),
             "transient": {name: m.units[name].raw for name in m.transient if name in m.units},
             "runs": {name: [r.__dict__ | {"exit": r.exit.__dict__} for r in runs]
                      for name, runs in sup.runs.items()},
             "tail": {unit: [line.__dict__ for line in lines]
                      for unit, lines in daemon.tail.lines.items()}}
    # Connections waiting for an answer are handed over; streams (logs -f) end.
    connections = [{"fd": c.fd, "in": c.inbuf.decode("latin-1"),
                    "out": c.outbuf.decode("latin-1"),
                    "waits": daemon.commands.waits.get(c, [])}
                   for c in daemon.control.connections if not c.streaming]
    state["connections"] = connections
    path = _write(os.path.join(daemon.runtime_dir, "reexec.json"), state)
    # only once the state is safe: else the daemon goes on as it was
    for fd in [fd for r in instances for _, fd in r["fds"]] + [
            c["fd"] for c in connections]:
        os.set_inheritable(fd, True)
    return path


def execute(argv: list[str], extra: list[str]) -> NoReturn:
    """Executes vigil afresh: the same arguments, less the last exec's own."""
    args = [a for a in argv if a != "--reexecuted"]
    for flag in ("--restore", "--control-fd", "--adopt"):
        while flag in args:
            del args[args.index(flag):args.index(flag) + 2]
    os.execv(sys.executable, [sys.executable, "-m", "vigil.cli", *args, *extra])


def rescue(daemon: Daemon | None) -> list[str]:
    """PID 1's arguments for its exec after a failure: the saved state if
    it can be written, else what needs no file; each part on its own, as
    the failure may have left any of them broken."""
    if daemon is None:
        return []
    args: list[str] = []
    try:
        args += ["--restore", save(daemon)]
    except Exception as err:
        print(f"vigil: state not saved ({err!r}); the new daemon takes back what runs",
              file=sys.stderr)
    for keep in ((keep_pipes,) if not args else ()) + (hand_over_socket,):
        try:
            args += keep(daemon)
        except Exception:  # the new daemon opens the pipes again, or a new socket
            pass
    return args


def keep_pipes(daemon: Daemon) -> list[str]:
    """PID 1 without a saved state: what needs no file goes on. The output
    pipes' read ends stay open across exec, so a service's write never meets
    a pipe without a reader (SIGPIPE; the new daemon finds them by inode),
    and the argument that names each instance's pid (adopt.py)."""
    for fd in daemon.sup.streams.captures:
        os.set_inheritable(fd, True)
    pids = {i.name: i.pid for i in daemon.sup.instances.values() if i.pid is not None}
    return ["--adopt", json.dumps(pids)] if pids else []


def hand_over_socket(daemon: Daemon) -> list[str]:
    """The listening socket stays open across exec (connects wait in its
    queue, none is refused): the arguments that pass it on."""
    fd = daemon.control.sock.fileno()
    if fd < 0:
        return []
    os.set_inheritable(fd, True)
    return ["--control-fd", str(fd)]


def _write(path: str, state: dict[str, Any]) -> str:
    """Writes a temporary and renames it into place: a failure half-way
    leaves no partial state for a new daemon to read."""
    temporary = path + ".new"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                 | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return path


def load(path: str) -> dict[str, Any]:
    """The saved state, read once; OSError or ValueError if it cannot be
    used, before anything was changed (the daemon then takes back what runs
    as after a kill: adopt.py)."""
    try:
        with open(path) as f:
            state = json.load(f)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a vigil state of format {FORMAT}")
    return state


def restore(daemon: Daemon, state: dict[str, Any]) -> int:
    """Takes the saved processes back; returns how many are running."""
    from collections import deque

    from vigil.reaper import Run
    sup, m = daemon.sup, daemon.manager
    from vigil.schema import build_unit
    # .get: a state written by a vigil from before scopes and transient units
    for name, doc in state.get("transient", {}).items():  # `vigilctl run` units have no file
        m.add_transient(build_unit(name, doc, f"<vigilctl run {name}>", {}))
    m.goal, m.waiting = set(state["goal"]) & set(m.units), set(state["waiting"]) & set(m.units)
    m.targets_up = set(state["targets_up"]) & set(m.units)
    m.skipped, m.failed_why = state["skipped"], state["failed_why"]
    m.times = state["times"]
    sup.status_text, sup.hook_env = state["status_text"], state["hook_env"]
    sup.hook_queue = state.get("hook_queue", {})
    daemon.swaps = state["swaps"]
    for name, runs in state["runs"].items():
        sup.runs[name] = deque((Run(**{**r, "exit": ExitInfo(**r["exit"])}) for r in runs),
                               maxlen=20)
    from vigil.output import Line
    for unit_name, lines in state["tail"].items():
        for line in lines:
            daemon.tail.lines.setdefault(unit_name, deque(maxlen=daemon.tail.size)).append(
                Line(**line))
    adopted = 0
    for record in state["instances"]:
        unit = m.units.get(record["unit"])
        if unit is None or unit.service is None:
            for _, fd in record["fds"]:
                os.close(fd)
            continue
        inst = Instance(record["name"], record["unit"], unit.service)
        for key in KEPT:
            setattr(inst, key, record[key])
        inst.state = State(record["state"])
        if record["last_exit"]:
            inst.last_exit = ExitInfo(**record["last_exit"])
        sup.instances[inst.name] = inst
        if inst.pid:
            sup.adopt(inst, inst.pid, record["started_wall"], record["fds"])
            adopted += 1
        sup.resume(inst)
    daemon.scopes.restore(state.get("scopes", []))
    for record in state.get("connections", []):
        try:
            sock = socket.socket(fileno=record["fd"])
        except OSError:  # not a socket (any more): nothing to answer
            continue
        os.set_inheritable(record["fd"], False)
        conn = daemon.control.take(sock, record["in"].encode("latin-1"),
                                   record["out"].encode("latin-1"))
        daemon.commands.resume(conn, record["waits"])
    daemon.events.emit("daemon.restored", f"re-executed: took back {adopted} process(es)")
    return adopted
