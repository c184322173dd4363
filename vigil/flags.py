"""The daemon's command line (`vigil daemon ...`, and PID 1's)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    return parser().parse_args(argv)


def parser() -> argparse.ArgumentParser:
    """Also read by vigilctl's man page generator (vigil(8))."""
    from vigil import __version__
    p = argparse.ArgumentParser(
        prog="vigil", description="Run the vigil daemon.",
        epilog="other commands: `vigil run [OPTIONS] -- CMD [ARGS...]` runs CMD as a "
               "container's entrypoint, a drop-in for tini and dumb-init (`vigil run --help`); "
               "`vigil check [DIR...]` validates unit files offline (`vigil check --help`). "
               "vigilctl drives a running daemon.")
    p.add_argument("--version", action="version", version=f"vigil {__version__}")
    p.add_argument("--units", action="append", metavar="DIR",
                   help="unit directory (repeatable; replaces the search path)")
    p.add_argument("--socket", help="control socket path (also VIGIL_SOCKET)")
    p.add_argument("--runtime-dir", help="where sockets go (default: beside the socket)")
    p.add_argument("--log-dir", help="where unit logs go (default: RUNTIME/logs)")
    p.add_argument("--log-max-total", type=_size, default=0, metavar="BYTES",
                   help="the log store's bound in bytes (K, M, G suffixes; 0: none): the "
                        "oldest rotated files go first (docs/logs.md)")
    p.add_argument("--log-max-age", type=_age, default=0.0, metavar="AGE",
                   help="rotated log files older than this go (s, m, h, d suffixes; 0: kept)")
    p.add_argument("--syslog", metavar="TARGET",
                   help="also send the units' lines to syslog (RFC 5424): local (/dev/log), "
                        "unix:PATH, udp:HOST:PORT or tcp:HOST:PORT; never waits for it")
    p.add_argument("--syslog-unit", action="append", default=[], metavar="GLOB",
                   help="only these units' lines go to --syslog (repeatable; default all)")
    p.add_argument("--event-log", help="file of JSON event lines (default: LOG_DIR/events.jsonl)")
    p.add_argument("--state-dir", help="what outlives a reboot: timers' last runs (default: "
                   "/var/lib/vigil in system mode, else the runtime dir)")
    p.add_argument("--system", action="store_true",
                   help="system mode (the default as PID 1 of a machine): early boot, "
                        "reboot/poweroff; refused unless PID 1 or --i-know-this-is-not-a-vm")
    p.add_argument("--config-root", default="/", metavar="DIR",
                   help="system mode reads etc/hostname, etc/fstab, etc/sysctl.d... here")
    p.add_argument("--sigterm", choices=["reboot", "poweroff", "halt"], default="reboot",
                   help="system mode: what SIGTERM to PID 1 does (SIGINT, Ctrl-Alt-Del, "
                        "reboots; SIGPWR powers off)")
    p.add_argument("--kill-grace", type=float, default=5.0, metavar="SECONDS",
                   help="system mode: after the units stop, SIGTERM to what is left, then "
                        "SIGKILL after this")
    p.add_argument("--i-know-this-is-not-a-vm", dest="force_system", action="store_true",
                   help=argparse.SUPPRESS)
    p.add_argument("--reexecuted", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--restore", metavar="FILE", help=argparse.SUPPRESS)  # daemon-reexec
    p.add_argument("--control-fd", type=int, help=argparse.SUPPRESS)  # and its socket
    p.add_argument("--adopt", metavar="JSON", help=argparse.SUPPRESS)  # PID 1: instance -> pid
    p.add_argument("--scope", action="append", type=int, default=[], metavar="PID",
                   help="bind the daemon to this process (repeatable): when every such "
                        "process has exited, stop everything and exit")
    p.add_argument("--no-autostart", action="store_true", help="start nothing until asked")
    p.add_argument("--shutdown-timeout", type=float, default=90.0,
                   help="seconds for all units to stop before everything is killed")
    p.add_argument("--idle-timeout", type=float, default=60.0,
                   help="seconds a silent control connection stays open")
    p.add_argument("--cgroup", default="auto", metavar="auto|off|DIR",
                   help="a cgroup v2 directory for the units' cgroups (auto: in system mode "
                        "or in a cgroup delegated to this user)")
    p.add_argument("--slow-report", type=float, default=5.0, metavar="SECONDS",
                   help="report a unit still starting every SECONDS (0: never)")
    p.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                   help="a bound on what clients may hold (clients, clients-per-uid, output, "
                        "streams, waits, remote-clients, preauth, ...; docs/protocol.md)")
    p.add_argument("--read-group", metavar="GROUP",
                   help="members may use read-only commands (status, logs, events, cat, ...)")
    p.add_argument("--listen", metavar="HOST:PORT",
                   help="also accept remote control over TCP (needs --token-file; TLS off "
                        "loopback)")
    p.add_argument("--token-file", help="file holding the remote token (mode 0600)")
    p.add_argument("--tls-cert", help="TLS certificate chain for --listen")
    p.add_argument("--tls-key", help="TLS private key for --listen")
    p.add_argument("--console-fd", type=int, default=1, metavar="FD",
                   help="where console lines go (vigil run: 2, so CMD's stdout stays CMD's)")
    p.add_argument("--quiet", action="store_true", help="no event lines on the console")
    p.add_argument("--console-level", default="info",
                   choices=["debug", "info", "warning", "error"],
                   help="the least severe event shown on the console")
    return p


def _size(text: str) -> int:
    """--log-max-total: 500M, 2G, 4096."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    scale = units.get(text[-1:].upper(), 1)
    number = text[:-1] if scale > 1 else text
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"'{text}' is not a size (4096, 500M, 2G)")
    return int(number) * scale


def _age(text: str) -> float:
    """--log-max-age: 3600, 90m, 12h, 30d."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    scale = units.get(text[-1:], 0)
    number = text[:-1] if scale else text
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"'{text}' is not an age (3600, 90m, 12h, 30d)")
    return value


def group_id(name: str | None) -> int | None:
    """--read-group: a group name or number."""
    if name is None:
        return None
    if name.isdigit():
        return int(name)
    import grp
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise OSError(f"--read-group: no such group '{name}'") from None
