"""Starting an instance's process, or a check command as the unit runs:
the launch spec (vigil/engine/launch.py), its fds (vigil/engine/streams.py), the
NOTIFY_SOCKET, the cgroup, the ready fd, and the fork and exec through the
syscall seam. Everything it opens is closed again if a step fails; the
caller turns the failure into the state table's EXEC_FAILED.
"""

from __future__ import annotations

import os
from vigil.base.records import dataclass, field, replace

from vigil.kernel.asuser import Creds
from vigil.engine.launch import make_spec
from vigil.engine.notify import NotifySockets
from vigil.kernel.proc import ProcessCalls
from vigil.engine.states import Instance
from vigil.engine.streams import Streams
from vigil.model.unit import Output, OutputKind, Probe, ProbeKind, Service

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from vigil.engine.cgroups import Cgroups


@dataclass
class Settings:
    log_dir: str
    daemon_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    notify_dir: str = ""  # where the instances' NOTIFY_SOCKETs go (vigil/engine/notify.py)
    cgroups: Cgroups | None = None
    slow_report: float = 5.0  # seconds between "still waiting for X" lines; 0: never
    unit_env: dict[str, str] = field(default_factory=dict)  # system mode: TZ, LANG, LC_*


@dataclass
class Launched:
    """A process that was forked: its report pipe and the fds we read."""

    pid: int
    report_fd: int
    reads: list[tuple[str, int]]  # (stream, our read end of its output)
    ready_fd: int = -1  # our read end of the `ready = { fd = N }` pipe


class Spawner:
    def __init__(self, calls: ProcessCalls, settings: Settings, streams: Streams,
                 notify: NotifySockets) -> None:
        self.calls, self.settings, self.streams, self.notify = calls, settings, streams, notify

    def spawn(self, inst: Instance, extra_env: dict[str, str]) -> Launched:
        """Forks and execs the instance's process; raises LaunchError or
        OSError with nothing left open."""
        svc = inst.service
        kept, inst.port = inst.port, None  # "auto" keeps its port across its restarts
        child_fds: list[int] = []  # ends the child gets; closed here after the fork
        reads: list[tuple[str, int]] = []  # our read ends of its output
        ready_fd = -1
        try:
            if svc.port is not None:
                inst.port = free_port(kept) if svc.port == "auto" else int(svc.port)
            spec = make_spec(svc, self.settings.daemon_env, {**extra_env, **instance_env(inst)},
                             self.settings.unit_env)
            if notifies(svc) and self.settings.notify_dir:
                spec.env["NOTIFY_SOCKET"] = self.notify.open(inst.name, Creds.of(spec))
            self.streams.stdio(inst, spec, child_fds, reads)
            if self.settings.cgroups is not None:
                spec.cgroup_fd = self.settings.cgroups.join_fd(inst.name)
                child_fds.append(spec.cgroup_fd)
            if svc.ready and svc.ready.probe.kind is ProbeKind.FD:
                ready_fd, write_end = os.pipe2(os.O_CLOEXEC)
                child_fds.append(write_end)
                spec.extra_fd, spec.extra_target = write_end, svc.ready.probe.fd
            pid, report = self.calls.spawn(spec)
        except BaseException:
            for fd in [fd for _, fd in reads] + ([ready_fd] if ready_fd >= 0 else []):
                os.close(fd)
            raise
        finally:
            for fd in child_fds:
                if fd > 2:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        return Launched(pid, report, reads, ready_fd)

    def check(self, inst: Instance, argv: tuple[str, ...]) -> int:
        """Forks a check command as the unit runs (user, cwd, environment and
        limits; not as root when the unit is not), output discarded; its pid."""
        check = replace(inst.service, exec=argv, stdout=_NULL, stderr=_NULL)
        spec = make_spec(check, self.settings.daemon_env, instance_env(inst),
                         self.settings.unit_env)
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        spec.fd_in = spec.fd_out = spec.fd_err = null
        try:
            pid, report = self.calls.spawn(spec)
        finally:
            os.close(null)
        os.close(report)
        return pid


_NULL = Output(OutputKind.NULL)


def notifies(svc: Service) -> bool:
    return svc.ready is not None and svc.ready.probe.kind is ProbeKind.NOTIFY


def for_instance(probe: Probe, inst: Instance) -> Probe:
    """The instance's own port in `tcp = "port"` and in `$PORT` of an http URL."""
    if probe.kind is ProbeKind.TCP and probe.port == 0:
        return replace(probe, port=inst.port or 0)
    if probe.kind is ProbeKind.HTTP and "$PORT" in probe.url:
        return replace(probe, url=probe.url.replace("$PORT", str(inst.port or 0)))
    return probe


def instance_env(inst: Instance) -> dict[str, str]:
    """What a unit's processes (and its checks) are told about themselves."""
    env = {"VIGIL_UNIT": inst.unit, "VIGIL_INSTANCE": inst.name.partition(":")[2] or "0"}
    if inst.port is not None:
        env["PORT"] = str(inst.port)
    return env


def free_port(kept: int | None = None) -> int:
    """A TCP port nobody listens on now, for port = "auto": the one the
    instance had, while it is free (a browser tab survives a restart), else
    the kernel's choice."""
    import socket
    for port in ((kept,) if kept else ()) + (0,):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port")
