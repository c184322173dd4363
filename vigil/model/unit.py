"""The unit model: typed, immutable records built by the loader.

Records compare by value, so reload can tell a changed unit from an
unchanged one with `==`, and `changed_keys` says which keys differ.
"""

from __future__ import annotations

import enum
from vigil.base.records import dataclass, field

from vigil.base.errors import Problem

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any


class ServiceType(enum.Enum):
    SIMPLE = "simple"
    ONESHOT = "oneshot"
    NOTIFY = "notify"
    FORKING = "forking"


class RestartPolicy(enum.Enum):
    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    NEVER = "never"


class OutputKind(enum.Enum):
    LOG = "log"
    NULL = "null"
    CONSOLE = "console"
    INHERIT = "inherit"
    FILE = "file"


class ProbeKind(enum.Enum):
    TCP = "tcp"
    HTTP = "http"
    EXEC = "exec"
    NOTIFY = "notify"
    FD = "fd"
    LOG = "log"  # a line of the service's output matches `pattern`


class Overlap(enum.Enum):
    """What a timer does when its unit is still running at the next elapse."""
    SKIP = "skip"
    QUEUE = "queue"  # one run waits for the current one to end
    RESTART = "restart"  # the running one is stopped and started afresh


@dataclass(frozen=True)
class Timer:
    """[timer]: when the unit runs. Calendars follow the wall clock (kept as
    text: vigil.model.calendar parses them, imported only for units that have one);
    `every` and `after_boot` are seconds on the monotonic and boot clocks."""

    calendar: tuple[str, ...] = ()
    every: float | None = None
    after_boot: float | None = None
    randomize: float = 0.0
    persistent: bool = False
    overlap: Overlap = Overlap.SKIP


@dataclass(frozen=True)
class Output:
    kind: OutputKind
    path: str | None = None


@dataclass(frozen=True)
class Probe:
    """A check of a service: a TCP port, an HTTP URL, a command, or a signal
    from the service itself (sd_notify READY=1, or a line on a readiness fd)."""

    kind: ProbeKind
    host: str = "127.0.0.1"
    port: int = 0
    url: str = ""
    argv: tuple[str, ...] = ()
    fd: int = 0
    pattern: str = ""  # a regular expression, for LOG


@dataclass(frozen=True)
class Ready:
    probe: Probe
    timeout: float
    interval: float


@dataclass(frozen=True)
class Health:
    probe: Probe
    interval: float
    timeout: float
    retries: int


@dataclass(frozen=True)
class Limit:
    resource: str
    soft: int
    hard: int


@dataclass(frozen=True)
class Service:
    exec: tuple[str, ...]
    type: ServiceType = ServiceType.SIMPLE
    pid_file: str | None = None
    start_timeout: float = 90.0  # forking: for the launcher to exit and write its pid-file
    pty: bool = False  # console = "pty": runs on a pseudo-terminal, for `vigilctl attach`
    tty: str | None = None  # console = "tty" or a /dev path: that terminal is 0, 1 and 2
    port: int | str | None = None  # in $PORT; "auto": a free one at each start
    instances: int = 1
    restart: RestartPolicy = RestartPolicy.ON_FAILURE
    success_exit_codes: frozenset[int] = frozenset({0})
    start_seconds: float = 1.0
    start_retries: int = 3
    restart_delay: float = 0.1
    restart_delay_max: float = 30.0
    stable_seconds: float = 60.0
    retry_after_fatal: float = 0.0
    stop_signal: int = 15
    stop_timeout: float = 10.0
    user: str | None = None
    group: str | None = None
    supplementary_groups: tuple[str, ...] = ()
    umask: int | None = None
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    env_file: tuple[str, ...] = ()
    pass_env: tuple[str, ...] = ()
    stdout: Output = Output(OutputKind.LOG)
    stderr: Output = Output(OutputKind.LOG)
    ready: Ready | None = None
    health: Health | None = None
    log_fails: str | None = None  # [service.health] log-fails: a line matching restarts it
    silence: float | None = None  # [service.health] silence: no line for so long restarts it
    limits: tuple[Limit, ...] = ()
    no_new_privileges: bool = False
    capability_bounding_set: tuple[str, ...] | None = None
    log_max_size: int = 1 << 20
    log_keep: int = 3
    # commands around its life (vigil/engine/lifecycle.py); a word "-" first: failure ignored
    exec_pre: tuple[tuple[str, ...], ...] = ()
    exec_post: tuple[tuple[str, ...], ...] = ()
    exec_stop: tuple[tuple[str, ...], ...] = ()
    exec_reload: tuple[tuple[str, ...], ...] = ()
    reload_signal: int | None = None
    exec_timeout: float = 90.0  # each lifecycle command is killed after so long
    watchdog: float | None = None  # sd_notify WATCHDOG=1 at least this often, or SIGABRT


@dataclass(frozen=True)
class Unit:
    """A loaded unit. `service` is None for a target (a named group).

    `where` maps dotted keys to the (file, line) that set them, for errors
    found after loading (the graph's)."""

    name: str
    description: str = ""
    requires: tuple[str, ...] = ()
    wants: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    before: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    on_failure: tuple[str, ...] = ()
    on_success: tuple[str, ...] = ()
    enabled: bool = True
    hosts: tuple[str, ...] = ()
    if_exists: tuple[str, ...] = ()
    unless_exists: tuple[str, ...] = ()
    critical: bool = False
    scope: int | None = None  # a pid: the unit stops when that process exits
    service: Service | None = None
    timer: Timer | None = None
    # Where it came from and the merged TOML, for `cat` and reload diffs;
    # not part of equality (a moved file with the same content is unchanged).
    path: str = field(default="", compare=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    where: dict[str, tuple[str, int | None]] = field(default_factory=dict, compare=False,
                                                     hash=False)

    @property
    def is_target(self) -> bool:
        return self.service is None

    def problem(self, key: str, message: str) -> Problem:
        path, line = self.where.get(key, (self.path, None))
        return Problem(path, message, key, line)

    def runs_on(self, hostname: str) -> bool:
        if not self.hosts:
            return True
        import fnmatch  # and `re`: only for units that name hosts
        return any(fnmatch.fnmatchcase(hostname, g) for g in self.hosts)

    def skip_reason(self, hostname: str) -> str | None:
        """Why this unit does not run here (hosts, if-exists, unless-exists), or None."""
        import os
        if not self.runs_on(hostname):
            return f"not for host {hostname!r}"
        missing = [p for p in self.if_exists if not os.path.exists(p)]
        if missing:
            return f"{missing[0]} does not exist"
        present = [p for p in self.unless_exists if os.path.exists(p)]
        if present:
            return f"{present[0]} exists"
        return None


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the keys whose values differ between two raw units."""
    changed = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed.extend(changed_keys(a, b, name + "."))
        elif a != b:
            changed.append(name)
    return changed
