"""The seam holding every system call the standard library lacks.

Everything here goes through the compiled cffi module vigil._sysc, so no C
declarations are parsed at run time. Errors come back as OSError with the
errno and the path involved.
"""

from __future__ import annotations

import os
from vigil.base.records import dataclass, field

from vigil.base import execreport
from vigil._sysc import ffi, lib

# The child's setup steps, in the order it runs them (see _sys_build.py).
STEPS = {1: "resetting signals", 2: "creating a session", 3: "setting up file descriptors",
         4: "taking the terminal", 5: "setting resource limits", 6: "setting the umask",
         7: "dropping capabilities", 8: "setting supplementary groups",
         9: "setting the group", 10: "setting the user", 11: "setting no_new_privs",
         12: "changing directory", 13: "executing",
         14: "joining the cgroup", 15: "taking the process group"}


@dataclass
class SpawnSpec:
    """Everything the child does between fork and exec, as plain values."""

    argv: list[str]
    env: dict[str, str]
    search_path: str | None = None
    cwd: str | None = None
    umask: int = -1
    uid: int = -1
    gid: int = -1
    groups: list[int] | None = None
    limits: list[tuple[int, int, int]] = field(default_factory=list)
    no_new_privs: bool = False
    caps_keep: list[int] | None = None
    fd_in: int = -1
    fd_out: int = -1
    fd_err: int = -1
    extra_fd: int = -1
    extra_target: int = -1
    new_session: bool = True
    controlling_tty: bool = False
    cgroup_fd: int = -1
    new_pgroup: bool = False
    fg_tty: int = -1


@dataclass(frozen=True)
class ExecFailure:
    step: str
    errno: int

    def __str__(self) -> str:
        return f"{self.step} failed: {os.strerror(self.errno)}"


def _strings(values: list[str]) -> tuple[object, list[object]]:
    keep = [ffi.new("char[]", v.encode()) for v in values]
    return ffi.new("char *[]", [*keep, ffi.NULL]), keep


def spawn(spec: SpawnSpec) -> tuple[int, int]:
    """Forks and execs; returns (pid, report fd).

    The report fd is the read end of a close-on-exec pipe: EOF means the exec
    succeeded, eight bytes mean a setup step failed (see `read_report`)."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    keep: list[object] = []
    try:
        argv, k1 = _strings(spec.argv)
        envp, k2 = _strings([f"{k}={v}" for k, v in spec.env.items()])
        keep += [argv, envp, *k1, *k2]
        s = ffi.new("struct vigil_spawn *")
        path = ffi.new("char[]", spec.argv[0].encode())
        search = ffi.new("char[]", spec.search_path.encode()) if spec.search_path else ffi.NULL
        cwd = ffi.new("char[]", spec.cwd.encode()) if spec.cwd else ffi.NULL
        groups = ffi.new("unsigned int[]", spec.groups or [0])
        res = ffi.new("int[]", [r for r, _, _ in spec.limits] or [0])
        soft = ffi.new("unsigned long long[]", [_rlim(x) for _, x, _ in spec.limits] or [0])
        hard = ffi.new("unsigned long long[]", [_rlim(x) for _, _, x in spec.limits] or [0])
        caps = ffi.new("int[]", spec.caps_keep or [0])
        keep += [path, search, cwd, groups, res, soft, hard, caps]
        s.path, s.search, s.argv, s.envp, s.cwd = path, search, argv, envp, cwd
        s.umask, s.uid, s.gid = spec.umask, spec.uid, spec.gid
        s.ngroups = -1 if spec.groups is None else len(spec.groups)
        s.groups = groups
        s.nlimits, s.limit_resource, s.limit_soft, s.limit_hard = len(spec.limits), res, soft, hard
        s.no_new_privs = int(spec.no_new_privs)
        s.ncaps = -1 if spec.caps_keep is None else len(spec.caps_keep)
        s.caps_keep = caps
        s.fd_in, s.fd_out, s.fd_err = spec.fd_in, spec.fd_out, spec.fd_err
        s.extra_fd, s.extra_target = spec.extra_fd, spec.extra_target
        s.new_session, s.controlling_tty = int(spec.new_session), int(spec.controlling_tty)
        s.report_fd = write_end
        s.cgroup_fd, s.new_pgroup, s.fg_tty = spec.cgroup_fd, int(spec.new_pgroup), spec.fg_tty
        pid = lib.vigil_spawn(s)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    if pid < 0:
        os.close(read_end)
        raise OSError(-pid, f"fork: {os.strerror(-pid)}")
    return pid, read_end


def _rlim(value: int) -> int:
    return 0xFFFFFFFFFFFFFFFF if value < 0 else value  # RLIM_INFINITY


def read_report(fd: int) -> ExecFailure | None:
    """Reads a spawn report (vigil/base/execreport.py); None means exec succeeded."""
    failure = execreport.read(fd, STEPS)
    return None if failure is None else ExecFailure(*failure)


def set_fs_ids(uid: int, gid: int, groups: list[int] | None) -> None:
    """This thread's filesystem identity: the ids (and groups, unless None)
    that paths are checked against; nothing else of the process changes."""
    keep = ffi.new("unsigned int[]", groups or [0])
    result = lib.vigil_fs_ids(uid, gid, -1 if groups is None else len(groups), keep)
    if result < 0:
        raise OSError(-result, os.strerror(-result), f"taking the ids {uid}:{gid}")


def _check(result: int, what: str) -> None:
    if result < 0:
        err = ffi.errno
        raise OSError(err, os.strerror(err), what)


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    _check(lib.mount(source.encode(), target.encode(), fstype.encode(), flags,
                     data.encode() if data else ffi.NULL), target)


def umount(target: str, flags: int = 0) -> None:
    _check(lib.umount2(target.encode(), flags), target)


def reboot(command: int) -> None:
    """`command` as linux/reboot.h writes it (unsigned magic, 0xCDEF0123 for
    halt); the C prototype takes an int, so it goes as its 32-bit two's
    complement (cffi refused halt's value with OverflowError)."""
    signed = command - (1 << 32) if command >= 1 << 31 else command
    _check(lib.reboot(signed), "reboot")


def swapon(path: str, flags: int = 0) -> None:
    _check(lib.swapon(path.encode(), flags), path)


def swapoff(path: str) -> None:
    _check(lib.swapoff(path.encode()), path)


def finit_module(fd: int, params: str = "", flags: int = 0, name: str = "module") -> None:
    _check(lib.vigil_finit_module(fd, params.encode(), flags), name)


def timerfd_realtime() -> int:
    """A non-blocking timerfd on CLOCK_REALTIME (os.timerfd_create is 3.13+)."""
    fd = int(lib.vigil_timerfd_realtime())
    _check(fd, "timerfd")
    return fd


def timerfd_at(fd: int, when: float) -> None:
    """Arms it for the wall time `when` (epoch seconds), cancelled by a step
    of the clock; a time already past fires at once. 0 disarms it."""
    seconds = int(when)
    _check(lib.vigil_timerfd_at(fd, seconds, int((when - seconds) * 1e9)), "timerfd")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(lib.sethostname(raw, len(raw)), "hostname")
