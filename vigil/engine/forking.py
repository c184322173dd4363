"""A forking unit's daemon: once its launcher exits 0, the process its
pid-file names is tracked as the instance's main process, if it is the
unit's own (vigil/engine/pidfile.py says which are); else the start fails.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from vigil.engine import pidfile
from vigil.runtime.events import Events
from vigil.engine.launch import LaunchError, unit_creds
from vigil.kernel.proc import ProcessCalls
from vigil.engine.reaper import Proc, Reaper
from vigil.base.exitstatus import ExitInfo
from vigil.engine.states import Event, Instance, State

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from vigil.engine.cgroups import Cgroups


class Forking:
    def __init__(self, calls: ProcessCalls, events: Events, cgroups: Cgroups | None,
                 reaper: Reaper, send: Callable[..., None]) -> None:
        self.calls, self.events, self.cgroups = calls, events, cgroups
        self.reaper, self.send = reaper, send

    def adopt(self, inst: Instance, launcher: Proc) -> None:
        """A forking unit's launcher exited 0: track the daemon its pid-file
        names, if that process is the unit's own (vigil/engine/pidfile.py)."""
        path = inst.service.pid_file
        assert path is not None
        cgroups = self.cgroups
        inst.pid = None
        try:
            pid, pidfd = pidfile.take(path, unit_creds(inst.service),
                                      lambda: cgroups.pids(inst.name) if cgroups else None,
                                      self.reaper.owner_of, self.calls.pidfd_open)
        except (pidfile.Refused, LaunchError) as err:
            if isinstance(err, pidfile.NotOurs):
                self.events.emit("unit.pid-file-refused", f"{inst.name}: pid-file {path} "
                                 f"names process {err.pid}, which {err.why}; not adopting it",
                                 "warning", unit=inst.unit, pid=err.pid)
            self.send(inst, Event.EXEC_FAILED, detail=f"pid-file {path}: {err}")
            return
        if inst.state is not State.STARTING:  # stopped meanwhile: do not keep it
            self.calls.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)
            self.send(inst, Event.EXIT, exit=ExitInfo(None, signal.SIGKILL, False, 0.0))
            return
        # ours to reap as a subreaper; else only its pidfd tells when it ends
        self.reaper.watch(Proc(pid, pidfd, launcher.started, launcher.started_wall, inst))
        inst.pid = pid
        self.events.emit("unit.forked", f"{inst.name}: daemon {pid} from {path}", "debug",
                         unit=inst.unit, pid=pid)
        self.send(inst, Event.FORKED)
