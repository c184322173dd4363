"""Turns a Service into a SpawnSpec: environment, user, limits, capabilities.

Everything that can fail predictably (an unknown user, a missing env-file)
fails here, in the daemon, as a LaunchError with a message that names the
key, before anything is forked. env-files are read with the unit's
credentials (vigil/kernel/asuser.py), never with root's.
"""

from __future__ import annotations

import grp
import os
import pwd
import resource

from vigil.base import envfile
from vigil.kernel.asuser import Creds, read_regular
from vigil.kernel.syscalls import SpawnSpec
from vigil.model.unit import Service

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class LaunchError(Exception):
    """A service cannot be started as configured; the message says why."""


def read_env_file(path: str, creds: Creds | None = None) -> dict[str, str]:
    """KEY=VALUE lines; `#` comments; quotes around a value are removed.
    A path starting with `-` may be missing, as in systemd (only missing:
    a file the unit's user may not read is an error)."""
    optional = path.startswith("-")
    path = path.removeprefix("-")
    try:
        text = read_regular(creds, path, 1 << 20).decode("utf-8", errors="replace")
    except OSError as err:
        if optional and isinstance(err, (FileNotFoundError, NotADirectoryError)):
            return {}
        raise LaunchError(f"env-file {path}: {err.strerror}") from None
    return envfile.parse(text)


def build_env(svc: Service, daemon_env: dict[str, str], extra: dict[str, str],
              base: dict[str, str] | None = None, creds: Creds | None = None) -> dict[str, str]:
    """Cleared, then the system's (TZ, LANG), pass-env from the daemon,
    env-files (read as `creds`), env, and vigil's own."""
    env = {"PATH": DEFAULT_PATH, **(base or {})}
    for name in svc.pass_env:
        if name in daemon_env:
            env[name] = daemon_env[name]
    for path in svc.env_file:
        env.update(read_env_file(path, creds))
    env.update(svc.env)
    env.update(extra)
    if svc.watchdog is not None:  # sd_watchdog_enabled(3)
        env["WATCHDOG_USEC"] = str(int(svc.watchdog * 1_000_000))
        env["WATCHDOG_PID"] = " " * 10  # the spawned child writes its own pid here (C)
    return env


def _gid(name: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise LaunchError(f"group: no such group '{name}'") from None


def apply_identity(spec: SpawnSpec, svc: Service) -> None:
    """Resolves user, group and supplementary groups; sets HOME/USER/LOGNAME."""
    if svc.user is not None:
        try:
            entry = pwd.getpwuid(int(svc.user)) if svc.user.isdigit() else pwd.getpwnam(svc.user)
        except KeyError:
            if not svc.user.isdigit():
                raise LaunchError(f"user: no such user '{svc.user}'") from None
            entry = None
        spec.uid = int(svc.user) if entry is None else entry.pw_uid
        spec.gid = entry.pw_gid if entry is not None else spec.uid
        if entry is not None:
            spec.env.setdefault("HOME", entry.pw_dir)
            spec.env.setdefault("USER", entry.pw_name)
            spec.env.setdefault("LOGNAME", entry.pw_name)
            spec.groups = list(os.getgrouplist(entry.pw_name, spec.gid))
        else:
            spec.groups = []
    if svc.group is not None:
        spec.gid = _gid(svc.group)
        if spec.groups is None:
            spec.groups = []
    if svc.supplementary_groups:
        spec.groups = [_gid(g) for g in svc.supplementary_groups]


def unit_creds(svc: Service) -> Creds:
    """Whose permissions the paths the unit names are opened with."""
    spec = SpawnSpec(argv=[], env={})
    apply_identity(spec, svc)
    return Creds.of(spec)


def make_spec(svc: Service, daemon_env: dict[str, str], extra_env: dict[str, str],
              base: dict[str, str] | None = None,
              argv: tuple[str, ...] | None = None) -> SpawnSpec:
    """`argv`: another command run as the unit (a lifecycle command)."""
    spec = SpawnSpec(argv=list(svc.exec if argv is None else argv), env={}, cwd=svc.cwd,
                     umask=-1 if svc.umask is None else svc.umask)
    apply_identity(spec, svc)  # first: the env-files are read as the unit's user
    spec.env = {**spec.env, **build_env(svc, daemon_env, extra_env, base, Creds.of(spec))}
    spec.search_path = spec.env.get("PATH", DEFAULT_PATH)
    if any("$" in w for w in spec.argv) or (spec.cwd and "$" in spec.cwd):
        from vigil.base.expand import expand, expand_argv  # only for a unit that uses them
        spec.argv = expand_argv(spec.argv, spec.env)
        spec.cwd = expand(spec.cwd, spec.env) if spec.cwd else spec.cwd
    spec.limits = [(getattr(resource, "RLIMIT_" + lim.resource.upper()), lim.soft, lim.hard)
                   for lim in svc.limits]
    spec.no_new_privs = svc.no_new_privileges
    if svc.capability_bounding_set is not None:
        from vigil.model.checks import CAPABILITIES  # only for units that set it
        spec.caps_keep = [CAPABILITIES.index(c) for c in svc.capability_bounding_set]
    return spec
