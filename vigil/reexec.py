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

import os
import socket
import sys

from vigil.base import jsonc

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from vigil.daemon import Daemon

FORMAT = 1
def save(daemon: Daemon) -> str:
    """Writes the state, each owner's own snapshot, and clears close-on-exec
    on the fds that must survive."""
    state = {"format": FORMAT, **daemon.sup.snapshot(), **daemon.manager.snapshot(),
             "swaps": daemon.swaps, "scopes": daemon.scopes.snapshot(),
             "tail": daemon.tail.snapshot(),
             "timers": daemon.timers.snapshot() if daemon.timers is not None else None}
    # Connections waiting for an answer are handed over; streams (logs -f) end.
    connections = [{"fd": c.fd, "in": c.inbuf.decode("latin-1"),
                    "out": c.outbuf.decode("latin-1"),
                    "waits": daemon.commands.waits.get(c, [])}
                   for c in daemon.control.connections if not c.streaming]
    state["connections"] = connections
    path = _write(os.path.join(daemon.runtime_dir, "reexec.json"), state)
    # only once the state is safe: else the daemon goes on as it was
    for fd in [fd for r in state["instances"] for _, fd in r["fds"]] + [
            r["notify_fd"] for r in state["instances"] if r["notify_fd"] >= 0] + [
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
    return ["--adopt", jsonc.dumps(pids)] if pids else []


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
            f.write(jsonc.dumps(state))
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
            state = jsonc.loads(f.read())
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
    daemon.manager.restore(state)
    adopted = daemon.sup.restore(state, daemon.manager.units)
    daemon.swaps = state["swaps"]
    daemon.tail.restore(state["tail"])
    daemon.scopes.restore(state.get("scopes", []))
    if daemon.timers is not None:
        daemon.timers.restore(state.get("timers"))
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
