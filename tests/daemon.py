"""Runs a real vigil daemon for tests: as a subreaper, or as PID 1 of a
fresh PID namespace (unshare). Tests poll for conditions; none sleeps to
assert."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vigilctl.client import Client, ClientError

ROOT = Path(__file__).resolve().parent.parent


def can_unshare() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (ClientError, OSError, KeyError, IndexError):
            last = None
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Daemon:
    def __init__(self, units: Path, tmp: Path, pid1: bool = False, extra: list[str] | None = None,
                 cgroup: bool = False, namespaces: tuple[str, ...] = (),
                 prelude: str = "", wrap: list[str] | None = None, python_code: str = ""):
        """prelude: shell run first in the daemon's namespace (pid1 only);
        wrap: a command the daemon runs under (prlimit ...); python_code: run
        before vigil's main in the daemon's interpreter (fault injection)."""
        self.units, self.tmp, self.pid1 = units, tmp, pid1 or cgroup
        self.cgroup_mount = tmp / "cgroup2"
        self.cgroup_name = f"vigil-test-{os.getpid()}-{id(self)}"
        self.socket = str(tmp / "run" / "control.sock")
        self.log = tmp / "daemon.out"
        args = ["--units", str(units), "--socket", self.socket, *(extra or [])]
        cmd = [sys.executable, "-m", "vigil.cli", *args]
        if python_code:
            cmd = [sys.executable, "-c", python_code + "\nimport sys\nfrom vigil.cli import main\n"
                   "sys.exit(main(sys.argv[1:], prog='vigil'))", *args]
        cmd = [*(wrap or []), *cmd]
        if prelude:
            cmd = ["sh", "-c", prelude + ' && exec "$@"', "prelude", *cmd]
        if cgroup:
            # cgroup2 mounted in the daemon's own mount namespace; the units'
            # cgroups go in a directory of our own, removed by `stop`.
            self.cgroup_mount.mkdir(exist_ok=True)
            cmd = ["sh", "-c", 'mount -t cgroup2 none "$0" && exec "$@"', str(self.cgroup_mount),
                   *cmd, "--cgroup", str(self.cgroup_mount / self.cgroup_name)]
        if self.pid1:
            cmd = ["unshare", "--pid", "--fork", "--mount-proc", *namespaces, *cmd]
        self.cgroup = cgroup
        self.out = open(self.log, "wb")  # noqa: SIM115 - lives as long as the daemon
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT,
                                     cwd=ROOT, start_new_session=True)
        wait_for(lambda: self.call("ping") == "pong", what="the daemon to answer")

    def call(self, cmd: str, **args: Any) -> Any:
        client = Client(self.socket, timeout=60)
        try:
            return client.call(cmd, **args)
        finally:
            client.close()

    def status(self, unit: str) -> dict[str, Any]:
        return self.call("status", units=[unit])[0]

    def inst(self, unit: str, index: int = 0) -> dict[str, Any]:
        return self.status(unit)["instances"][index]

    def daemon_pid(self) -> int:
        """The daemon's pid as the host sees it."""
        if not self.pid1:
            return self.proc.pid
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return int(children[0])

    def host_pid(self, ns_pid: int) -> int:
        """Translates a pid reported by the daemon to the host's view."""
        if not self.pid1:
            return ns_pid
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                        if line.startswith("NSpid:"):
                            ids = line.split()[1:]
                            if len(ids) > 1 and int(ids[-1]) == ns_pid and \
                                    self._in_ns(int(entry)):
                                return int(entry)
                except OSError:
                    continue
        raise KeyError(ns_pid)

    def _in_ns(self, pid: int) -> bool:
        try:
            return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(
                f"/proc/{self.daemon_pid()}/ns/pid")
        except OSError:
            return False

    def zombies(self) -> list[int]:
        """Zombie children of the daemon, which is where every orphan ends."""
        me = str(self.daemon_pid())
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and fields[1] == me:
                found.append(int(entry))
        return found

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            try:
                self.call("shutdown")
            except ClientError:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.out.close()
        if self.cgroup:  # what the daemon could not remove (it was killed)
            subprocess.run(["unshare", "--mount", "sh", "-c",
                            'mount -t cgroup2 none "$0" && cd "$0" && '
                            'for d in "$1"/*/ "$1"; do [ -d "$d" ] && rmdir "$d"; done; true',
                            str(self.cgroup_mount), self.cgroup_name], check=False, timeout=30)
        return self.proc.returncode

    def cgroup_exists(self) -> bool:
        out = subprocess.run(["unshare", "--mount", "sh", "-c",
                              'mount -t cgroup2 none "$0" && test -d "$0/$1"',
                              str(self.cgroup_mount), self.cgroup_name], timeout=30)
        return out.returncode == 0
