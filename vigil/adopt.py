"""Taking back what an earlier daemon left running, before anything starts.

A daemon that starts without a saved state (the last one was killed, or
PID 1's last resort could not write its state) may find its units still
running. Starting them again would run each twice, so first:

- with cgroups, every non-empty instance cgroup under the base is adopted
  when its instance still exists (the pid-file's process, else the oldest,
  is the main one), and killed otherwise;
- without cgroups, our own children are looked at (after PID 1 executes
  itself afresh they are still ours): the one PID 1 named for an instance
  on the command line (--adopt: pids need no file) is adopted; else the
  oldest whose environment names the instance (VIGIL_UNIT and
  VIGIL_INSTANCE, given to every unit process) and that runs as its user
  (or root). Other children (orphans of the machine, a unit's escaped
  helpers, a process of another user naming a unit, one naming a unit that
  is gone) are left as they were.

A daemon without cgroups that is not the parent of the old processes (a
per-user daemon that was killed: they went to another reaper) cannot tell
them from another daemon's, and starts its units afresh.

An adopted process that is not our child cannot be waited for: its end is
seen through its pidfd and its exit status is lost (Supervisor.adopt).
"""

from __future__ import annotations

import os
import stat
import time

from vigil.engine.states import State
from vigil.base import jsonc
from vigil.model.unit import OutputKind, Unit

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from vigil.daemon import Daemon


def take_back(daemon: Daemon) -> list[str]:
    """Adopts or kills what runs; returns the units adopted."""
    known = _instances(daemon.manager.units)
    cgroups = daemon.settings.cgroups
    found = _in_cgroups(daemon, known) if cgroups is not None else _children(daemon, known)
    pipes = _inherited_pipes()
    units: list[str] = []
    for name, pids in sorted(found.items()):
        unit = known[name]
        try:
            adopted = _adopt(daemon, unit, name, _main_pid(unit, pids), pipes)
        except Exception as err:  # one odd process must not keep the daemon from starting
            daemon.events.error(f"adopting {name}", err)
            continue
        if adopted and unit.name not in units:
            units.append(unit.name)
    return units


def _instances(units: dict[str, Unit]) -> dict[str, Unit]:
    """Every instance name the loaded units have, with its unit."""
    found = {}
    for unit in units.values():
        if unit.service is None:
            continue
        count = unit.service.instances
        for name in [unit.name] if count == 1 else [f"{unit.name}:{i}" for i in range(count)]:
            found[name] = unit
    return found


def _in_cgroups(daemon: Daemon, known: dict[str, Unit]) -> dict[str, list[int]]:
    """Instance -> the pids in its cgroup; the cgroup of an instance that no
    longer exists is killed."""
    cgroups = daemon.settings.cgroups
    assert cgroups is not None
    by_dir = {os.path.basename(cgroups.path(name)): name for name in known}
    try:
        entries = sorted(e for e in os.listdir(cgroups.base)
                         if os.path.isdir(os.path.join(cgroups.base, e)))
    except OSError:
        return {}
    found = {}
    for entry in entries:
        pids = cgroups.pids(entry)  # an entry has no "/": its own path
        if not pids:
            continue
        if entry in by_dir:
            found[by_dir[entry]] = pids
            continue
        cgroups.kill(entry)
        daemon.events.emit("daemon.adopt", f"cgroup {entry}: its unit no longer exists; "
                           f"killed {len(pids)} process(es) left by an earlier daemon",
                           "warning", pid=pids[0])
    return found


def _children(daemon: Daemon, known: dict[str, Unit]) -> dict[str, list[int]]:
    """Instance -> our children that name it and run as its user (or root).

    Anyone can put VIGIL_UNIT in an environment, and as PID 1 every orphan
    of the machine is our child: a process of another uid is never taken for
    a unit's (it would keep the unit from starting), and one naming a unit
    that is gone is left alone (it may be a user's job started from a
    unit's shell), both said in the log."""
    found: dict[str, list[int]] = {}
    listed = _listed(daemon.opts.adopt)
    named = {}  # PID 1's last resort named them: ours for sure
    for pid in _our_children():
        if listed.get(pid) in known:
            named[listed[pid]] = [pid]
            continue
        env = _environ(pid)
        unit, index = env.get("VIGIL_UNIT"), env.get("VIGIL_INSTANCE", "0")
        if unit is None:
            continue
        name = next((n for n in (unit, f"{unit}:{index}") if known.get(n) is not None
                     and known[n].name == unit), None)
        uid = _uid(pid)
        if name is not None and uid in (0, _unit_uid(known[name])):
            found.setdefault(name, []).append(pid)
            continue
        why = "that instance no longer exists" if name is None else f"it runs as uid {uid}"
        daemon.events.emit("daemon.adopt", f"process {pid} names {unit}:{index} but {why}; "
                           "not adopted, left alone", "warning", pid=pid)
    return found | named


def _listed(argument: str | None) -> dict[int, str]:
    """pid -> instance, from --adopt: what PID 1 knew when it could not save
    its state (a unit that changed its uid is found this way too)."""
    try:
        pids = jsonc.loads(argument or "{}")
        return {int(pid): str(name) for name, pid in pids.items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def _uid(pid: int) -> int | None:
    """The real uid of a process, which it cannot choose."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _unit_uid(unit: Unit) -> int | None:
    """The uid a unit's processes run as; None if its user is unknown."""
    assert unit.service is not None
    user = unit.service.user
    if user is None:
        return os.getuid()
    if user.isdigit():
        return int(user)
    import pwd
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def _our_children() -> list[int]:
    pids: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:  # no /proc: nothing can be found
        return pids
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            continue
    return pids


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in data.split(b"\0") if item.startswith(b"VIGIL_"))
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def _age(pid: int) -> float:
    """Seconds since the process started (0 if unknown)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - started / os.sysconf("SC_CLK_TCK"))


def _main_pid(unit: Unit, pids: list[int]) -> int:
    """The pid-file's process when it is among them, else the oldest."""
    assert unit.service is not None
    if unit.service.pid_file:
        try:
            with open(unit.service.pid_file) as f:
                named = int(f.read(32).split()[0])
            if named in pids:
                return named
        except (OSError, ValueError, IndexError):
            pass
    return max(pids, key=_age)


def _inherited_pipes() -> dict[int, int]:
    """Pipe inode -> fd, for the pipes we inherited: the read ends PID 1
    kept open across its exec, so no write met a pipe without a reader."""
    pipes: dict[int, int] = {}
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        return pipes
    for fd in fds:
        try:
            if fd > 2 and os.get_inheritable(fd) and stat.S_ISFIFO(os.fstat(fd).st_mode):
                pipes[os.fstat(fd).st_ino] = fd
        except OSError:
            continue
    return pipes


def _output(unit: Unit, pid: int, pipes: dict[int, int]) -> list[tuple[str, int]]:
    """The read ends of the output pipes the process still holds: inherited,
    else opened through /proc, so its output is read again."""
    svc = unit.service
    assert svc is not None
    fds: list[tuple[str, int]] = []
    if svc.pty or svc.tty:
        return fds
    for stream, number, out in (("stdout", 1, svc.stdout), ("stderr", 2, svc.stderr)):
        if out.kind in (OutputKind.INHERIT, OutputKind.NULL, OutputKind.FILE):
            continue
        path = f"/proc/{pid}/fd/{number}"
        try:
            info = os.stat(path)
            if not stat.S_ISFIFO(info.st_mode):
                continue
            kept = pipes.pop(info.st_ino, None)
            fds.append((stream, kept if kept is not None else
                        os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)))
        except OSError:
            continue
    return fds


def _adopt(daemon: Daemon, unit: Unit, name: str, pid: int, pipes: dict[int, int]) -> bool:
    """The instance takes `pid` as its main process, as after daemon-reexec:
    starting until its readiness is checked again, then running. False if
    the process is gone already."""
    sup = daemon.sup
    inst = next(i for i in sup.ensure_instances(unit) if i.name == name)
    age = _age(pid)
    inst.state, inst.want_up, inst.pid = State.STARTING, True, pid
    inst.started_at = sup.loop.clock() - age
    sup.adopt(inst, pid, time.time() - age, _output(unit, pid, pipes))
    if pid not in sup.procs:  # it ended meanwhile: the unit starts afresh
        inst.state, inst.want_up, inst.pid, inst.started_at = State.INACTIVE, False, None, None
        return False
    daemon.events.emit("daemon.adopt", f"adopted {name} ({pid}), left running by an earlier "
                       "daemon", unit=unit.name, pid=pid)
    sup.resume(inst)
    return True
