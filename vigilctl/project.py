"""The per-project daemon: found from the working directory, started on
first use, one per project and user.

A project is a directory holding `vigil.toml` (which may say
`units = "path"`; default `units`) or a `units/` directory of unit files,
found in the working directory or a parent; `vigilctl --units DIR` names one
directly. It is used only when it is the caller's (vigilctl/trust.py): its
daemon runs the unit files as the caller, root included. Its daemon's
socket is in the user's first private runtime place, named after the
project, so several projects run side by side; only start, restart and run
start one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from vigil.wire.protocol import private_base, user_dirs
from vigilctl import trust
from vigilctl.client import Client, ClientError, NotRunning, RequestFailed


def find(units: str | None, start: Path | None = None) -> Path | None:
    """The project's unit directory, or None when this is not a project.
    A project found (or named) is used only when it is the caller's: see
    _trusted; else a one-line refusal naming the path and why."""
    if units:
        named = Path(units).resolve()
        _trusted(named.parent, named)
        return named
    from vigil.model import projectdir
    try:
        return projectdir.find(start or Path.cwd(), _trusted)
    except projectdir.ProjectError as err:
        raise ClientError(str(err)) from None


def find_procfile(start: Path | None = None) -> Path | None:
    """The nearest Procfile of the working directory or a parent: later
    commands there reach the daemon `vigilctl up` runs for it. Nothing of
    it is read: its daemon's socket is in the caller's private place, made
    by the caller's own `up` (which checked the Procfile), and the client
    checks that socket as any other."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Procfile").is_file():
            return folder / "Procfile"
    return None


def connect_procfile(procfile: Path, timeout: float) -> Client:
    """A client of the daemon `vigilctl up` runs for this Procfile; only
    `up` starts one."""
    try:
        return Client(socket_for(procfile), timeout=timeout)
    except NotRunning:
        raise ClientError(f"vigil is not running for {procfile} (`vigilctl up` starts "
                          "it)") from None


def _trusted(folder: Path, units: Path | None = None, marker: Path | None = None) -> None:
    """Refuses, in one line, a project whose directory, vigil.toml or unit
    files (trust.check_units) are not the caller's to run."""
    try:
        trust.check(folder)
        if marker:
            trust.check(marker)
        if units:
            trust.check_units(str(units))
    except trust.Untrusted as err:
        raise trust.refuse(f"the project in {folder}", err) from None


def socket_for(units: Path) -> str:
    """The socket of the daemon for these units, in the user's first private
    place (a /tmp/vigil-UID someone else made is passed over, and said so)."""
    from vigilctl.main import say
    base = private_base(say)
    if base is None:
        raise ClientError("no private place for a daemon's socket: " + ", ".join(user_dirs()) +
                          " all belong to someone else")
    digest = hashlib.sha256(str(units).encode()).hexdigest()[:10]
    return os.path.join(base, "p", f"{units.parent.name[:16] or 'root'}-{digest}",
                        "control.sock")


def log_dir_for(socket: str) -> str:
    """A project daemon's log store: under $XDG_STATE_HOME, which outlives a
    reboot (its socket's directory is in the runtime place, which does not),
    named as that directory is."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(state, "vigil", "p", os.path.basename(os.path.dirname(socket)), "logs")


def holder() -> int | None:
    """The process a project daemon is bound to: the shell (or script, or test
    runner) this vigilctl runs from; none when that is already init."""
    parent = os.getppid()
    return parent if parent > 1 else None


def hold(client: Client, pid: int | None) -> None:
    """Makes `pid` one more holder of a daemon started on first use (a daemon
    started on its own says it is not bound, and that is fine)."""
    if pid is None:
        return
    try:
        client.call("scope", pid=pid)
    except RequestFailed:  # not allowed to (a read-only user): the command may still be
        pass


def connect(units: Path, timeout: float, may_start: bool, hold_it: bool) -> Client:
    """A client of the project's daemon, started first when none runs and
    the command may (a read-only one never starts one)."""
    path = socket_for(units)
    try:
        client = Client(path, timeout=timeout)
    except NotRunning:
        if not may_start:
            raise ClientError(f"vigil is not running for {units} (`vigilctl start` starts "
                              "it)") from None
        start(units, path, holder())
        return Client(path, timeout=timeout)
    if hold_it:
        hold(client, holder())
    return client


def start(units: Path, socket: str, scope: int | None, timeout: float = 15.0) -> None:
    """Starts the project's daemon in a session of its own and waits until it
    answers. Bound to `scope`, it stops everything and exits once that
    process and every other holder have exited."""
    directory = os.path.dirname(socket)
    bind = ["--scope", str(scope)] if scope is not None else []
    folder = trust.private_dir(directory)
    try:  # O_NOFOLLOW under the checked directory: a planted symlink is not followed
        log = os.open("daemon.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW |
                      os.O_CLOEXEC, 0o600, dir_fd=folder)
    except OSError as err:
        raise ClientError(f"{directory}/daemon.log: {err.strerror}") from None
    finally:
        os.close(folder)
    try:
        daemon = subprocess.Popen([sys.executable, "-m", "vigil.cli", "--units", str(units),
                                   "--socket", socket, "--log-dir", log_dir_for(socket), *bind],
                                  stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=log, start_new_session=True,
                                  cwd=str(units.parent))
    finally:
        os.close(log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            first = Client(socket, timeout=2)
            print(f"vigilctl: started vigil for {units} (pid {daemon.pid})", file=sys.stderr)
            _say_problems(first)
            return
        except ClientError:
            if daemon.poll() is not None:  # lost a race to another vigilctl: use that one
                try:
                    Client(socket, timeout=2).close()
                    return
                except ClientError:
                    raise ClientError(f"vigil for {units} did not start; see "
                                      f"{directory}/daemon.log") from None
            time.sleep(0.05)
    raise ClientError(f"vigil for {units} did not answer within {timeout:g}s")


def _say_problems(client: Client) -> None:
    """First use: the load errors the new daemon found, one line each."""
    from vigil.base.printable import printable_lines
    try:
        for problem in client.call("problems"):
            print(f"vigilctl: problem: {printable_lines(problem)}", file=sys.stderr)
    except ClientError:
        pass
    finally:
        client.close()


def up(procfile: str, detach: bool, timeout: float) -> int:
    """foreman/honcho's `start`: the Procfile's processes as units of a daemon
    bound to this vigilctl (or, detached, to its shell); their output here
    until Ctrl-C, which stops them."""
    path = Path(procfile).resolve()
    dotenv = path.parent / ".env"
    try:  # its lines run as the caller: the caller's, as a project's unit files
        for mine in [path.parent, path] + ([dotenv] if dotenv.exists() else []):
            trust.check(mine)
    except trust.Untrusted as err:
        raise trust.refuse(str(path), err) from None
    socket = socket_for(path)
    unit_dir = Path(os.path.dirname(socket)) / "units"
    names = _write_units(path, unit_dir)
    scope = holder() if detach else os.getpid()
    try:
        client = Client(socket, timeout=timeout)
    except NotRunning:
        start(unit_dir, socket, scope)
        client = Client(socket, timeout=timeout)
    else:
        client.call("reload")
        hold(client, scope)
    import signal
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        from vigilctl.progress import Progress
        progress = Progress(names, "starting")
        try:
            states = client.call_reporting("start", progress.report, progress.draw,
                                           units=names, progress=True)
        finally:
            progress.done()
        for name in names:
            print(f"{name}: {states[name]}", file=sys.stderr)
        if detach:
            print(f"vigilctl: {path.parent} is served by vigil on {socket}; vigilctl in that "
                  "directory (or with --socket) reaches it", file=sys.stderr)
            return 0 if all(states[n] == "running" for n in names) else 3
        client.call("logs", units=names, lines=0, follow=True)
        from vigilctl.main import color
        from vigilctl.show import log_line
        width, colored = max(map(len, names)) + 2, color(sys.stdout)
        for line in client.stream():
            print(log_line(line, colored, width, "|"), flush=True)
        print("vigilctl: the daemon has gone away", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vigilctl: stopping " + ", ".join(names), file=sys.stderr)
        again = Client(socket, timeout=timeout)
        try:
            for name, state in again.call("stop", units=names).items():
                print(f"{name}: {state}", file=sys.stderr)
        finally:
            again.close()
        return 0
    finally:
        client.close()


def _write_units(procfile: Path, unit_dir: Path) -> list[str]:
    """One unit file per Procfile line, run in the Procfile's directory with
    this shell's PATH and the project's .env; units of lines gone are removed."""
    from vigilctl.convert import from_procfile
    try:
        text = procfile.read_text(encoding="utf-8")
    except OSError as err:
        raise ClientError(f"{procfile}: {err.strerror}") from None
    units = from_procfile(text)
    problems = [f"{procfile}: {note}" for unit in units for note in unit.notes]
    if problems or not units:
        raise ClientError("; ".join(problems) or f"{procfile}: no processes")
    import tomli_w
    dotenv = procfile.parent / ".env"
    names = [u.name for u in units]
    folder = trust.private_dir(str(unit_dir))
    try:
        for unit in units:
            service = unit.doc["service"]
            service["cwd"] = str(procfile.parent)
            service["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            if dotenv.is_file():
                service["env-file"] = [str(dotenv)]
            text = f"# From {procfile} by vigilctl up; rewritten on each up.\n"
            trust.write(folder, f"{unit.name}.toml", text + tomli_w.dumps(unit.doc))
        for old in trust.entries(folder):
            if old.endswith(".toml") and old[:-5] not in names:
                os.unlink(old, dir_fd=folder)
    finally:
        os.close(folder)
    return names
