"""How each supervisor is set up for a workload of N services, and how it is
asked for status and told to stop. Every one runs as PID 1 of a fresh PID
namespace, started by bench/measure.py.

The workload is the same for all: service i runs `sleep 3601`; the stubborn
one (stop50) ignores SIGTERM (`trap '' TERM; exec sleep 3601`), with a 1 s
stop timeout where the peer has one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
WORK = "exec sleep 3601"
STUBBORN = "trap '' TERM; exec sleep 3601"


@dataclass
class Peer:
    name: str
    cmd: list[str]                        # PID 1 of the namespace
    status: list[str] = field(default_factory=list)  # one status query of every service
    stop: str = "signal"                  # how stop50 asks it to stop everything and exit
    stop_signal: int = signal.SIGTERM
    pre_stop: list[str] = field(default_factory=list)
    restart_delay: str = ""
    env: dict[str, str] = field(default_factory=dict)


def _script(body: str) -> str:
    return "#!/bin/sh\n" + body + "\n"


def vigil(work: Path, n: int, stubborn: bool = False) -> Peer:
    units = work / "units"
    units.mkdir()
    for i in range(n):
        body = STUBBORN if stubborn and i == 0 else WORK
        (units / f"s{i}.toml").write_text(
            f'[service]\nexec = ["sh", "-c", "{body}"]\nrestart = "always"\n'
            'restart-delay = 0\nstart-seconds = 0\nstop-timeout = 1\nstdout = "null"\n'
            'stderr = "null"\n')
    sock = str(work / "run" / "control.sock")
    return Peer("vigil", [str(VENV_BIN / "vigil"), "--units", str(units), "--socket", sock,
                          "--quiet", "--cgroup", "off"],
                status=[str(VENV_BIN / "vigilctl"), "--socket", sock, "status"],
                restart_delay="0 (restart-delay = 0)")


def vigil_chain(work: Path, n: int) -> Peer:
    """chain50: s(i) requires and is ordered after s(i-1), each ready at exec."""
    units = work / "units"
    units.mkdir()
    for i in range(n):
        deps = f'[unit]\nrequires = ["s{i - 1}"]\nafter = ["s{i - 1}"]\n' if i else ""
        (units / f"s{i}.toml").write_text(
            deps + f'[service]\nexec = ["sh", "-c", "{WORK}"]\nstdout = "null"\n')
    sock = str(work / "run" / "control.sock")
    return Peer("vigil", [str(VENV_BIN / "vigil"), "--units", str(units), "--socket", sock,
                          "--quiet", "--cgroup", "off"])


def supervisord(work: Path, n: int, stubborn: bool = False) -> Peer:
    conf = work / "supervisord.conf"
    sock = work / "supervisor.sock"
    lines = ["[supervisord]", "nodaemon=true", f"logfile={work}/supervisord.log",
             f"pidfile={work}/supervisord.pid", "", "[unix_http_server]", f"file={sock}", "",
             "[rpcinterface:supervisor]",
             "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
             "", "[supervisorctl]", f"serverurl=unix://{sock}", ""]
    for i in range(n):
        body = STUBBORN if stubborn and i == 0 else WORK
        lines += [f"[program:s{i}]", f'command=sh -c "{body}"', "autorestart=true",
                  "startsecs=0", "stopwaitsecs=1", "stdout_logfile=NONE",
                  "stderr_logfile=NONE", ""]
    conf.write_text("\n".join(lines))
    return Peer("supervisord", ["supervisord", "-c", str(conf)],
                status=["supervisorctl", "-c", str(conf), "status"],
                restart_delay="none configurable; its loop wakes about once a second")


def runit(work: Path, n: int, stubborn: bool = False) -> Peer:
    svdir = work / "service"
    for i in range(n):
        d = svdir / f"s{i}"
        d.mkdir(parents=True)
        run = d / "run"
        run.write_text(_script(STUBBORN if stubborn and i == 0 else WORK))
        run.chmod(0o755)
    dirs = [str(svdir / f"s{i}") for i in range(n)]
    return Peer("runit", ["runsvdir", "-P", str(svdir)],
                status=["sv", "status", *dirs],
                stop="sv", stop_signal=signal.SIGHUP,
                pre_stop=["sv", "-w", "1", "force-stop", *dirs],
                restart_delay="runsv waits 1 s only after a run shorter than 1 s")


def s6(work: Path, n: int, stubborn: bool = False) -> Peer:
    scandir = work / "scan"
    for i in range(n):
        d = scandir / f"s{i}"
        d.mkdir(parents=True)
        run = d / "run"
        run.write_text(_script(STUBBORN if stubborn and i == 0 else WORK))
        run.chmod(0o755)
        (d / "timeout-kill").write_text("1000\n")
    dirs = " ".join(str(scandir / f"s{i}") for i in range(n))
    return Peer("s6", ["s6-svscan", str(scandir)],
                status=["sh", "-c", f"for d in {dirs}; do s6-svstat $d; done"],
                restart_delay="s6-supervise leaves at least 1 s between two launches")


SUPERVISORS = {"vigil": vigil, "supervisord": supervisord, "runit": runit, "s6": s6}


def reaper_cmds(generator: list[str], work: Path) -> dict[str, list[str]]:
    """reap5000: the inits that run one command, and vigil's container mode."""
    return {
        "vigil": [str(VENV_BIN / "vigil"), "run", "-s", "--", *generator],
        "tini": ["tini", "-s", "--", *generator],
        "dumb-init": ["dumb-init", *generator],
        "catatonit": ["catatonit", "--", *generator],
    }


def entry_cmds(cmd: list[str]) -> dict[str, list[str]]:
    """The entrypoints started as a user would, and the bare interpreter
    vigil runs on (`python`: the same one, isolated, doing nothing)."""
    return {
        "vigil": [str(VENV_BIN / "vigil"), "run", "-s", "--", *cmd],
        "python": [sys.executable, "-I", "-c", "pass"],
        "tini": ["tini", "-s", "--", *cmd],
        "dumb-init": ["dumb-init", *cmd],
        "catatonit": ["catatonit", "--", *cmd],
    }


def available(name: str) -> bool:
    binary = {"vigil": str(VENV_BIN / "vigil"), "python": sys.executable,
              "supervisord": "supervisord",
              "runit": "runsvdir", "s6": "s6-svscan", "tini": "tini", "dumb-init": "dumb-init",
              "catatonit": "catatonit", "busybox-init": "qemu-system-x86_64",
              "systemd": "/lib/systemd/systemd", "vigil-demo": "qemu-system-x86_64"}[name]
    from shutil import which
    return which(binary) is not None or os.path.exists(binary)


def version(name: str) -> str:
    if name == "python":
        import platform
        return platform.python_version()
    pkg = {"vigil": "", "supervisord": "supervisor", "runit": "runit", "s6": "s6",
           "tini": "tini", "dumb-init": "dumb-init", "catatonit": "catatonit",
           "busybox-init": "busybox-static", "systemd": "systemd", "vigil-demo": ""}[name]
    if not pkg:
        from vigil import __version__
        return __version__
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True,
                         text=True, check=False)
    return out.stdout.strip() or "?"
