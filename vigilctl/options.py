"""vigilctl's command line: the options of each command, and the checks of
their values (a number that is not finite or out of range is refused here,
naming the option, before anything is sent).

Only the parser of the command given is built: a status query must stay fast.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Sequence

def seconds(text: str) -> float:
    """A length of time: finite and above zero (float() takes nan and inf)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def _whole(text: str, least: int, what: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < least:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return int(text)


def count(text: str) -> int:
    return _whole(text, 0, "a count (0 or more)")


def positive(text: str) -> int:
    return _whole(text, 1, "a whole number above 0")


def pid(text: str) -> int:
    return _whole(text, 1, "a process id")


def port(text: str) -> int | str:
    if text == "auto":
        return text
    value = _whole(text, 1, "a port (1-65535) or auto")
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535) or auto")
    return value


def address(text: str) -> str:
    """HOST:PORT ([V6]:PORT); getaddrinfo would take port 99999 as 34463."""
    host, sep, number = text.rpartition(":")
    if not sep or not host or not number.isascii() or not number.isdigit() \
            or not 0 < int(number) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (port 1-65535)")
    return text


def since(text: str) -> float:
    """A moment (epoch seconds) from 10m, 2h, 14:05, an ISO time or epoch seconds."""
    from vigilctl.show import parse_since
    try:
        value = parse_since(text)
    except (ValueError, OverflowError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time since 1970")
    return value


def _units(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("units", nargs="+" if required else "*")


def _change(p: argparse.ArgumentParser) -> None:
    _units(p, True)
    p.add_argument("--no-block", action="store_true", help="do not wait")


def _start(p: argparse.ArgumentParser) -> None:
    _change(p)
    p.add_argument("--scope", type=pid, metavar="PID",
                   help="stop these units when that process (a shell: $$) exits")


def _status(p: argparse.ArgumentParser) -> None:
    _units(p)
    p.add_argument("--json", action="store_true")


def _stream(p: argparse.ArgumentParser) -> None:
    _units(p)
    p.add_argument("-n", "--lines", type=count, default=50)
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--since", type=since, help="10m, 2h, 14:05, an ISO time or epoch seconds")
    p.add_argument("--json", action="store_true")


def _one(p: argparse.ArgumentParser) -> None:
    p.add_argument("unit")


def _deps(p: argparse.ArgumentParser) -> None:
    _one(p)
    p.add_argument("--reverse", action="store_true", help="what depends on the unit")


def _attach(p: argparse.ArgumentParser) -> None:
    _one(p)
    p.add_argument("--escape", default="^]", help="detach key (default ^], Ctrl-])")


def _kill(p: argparse.ArgumentParser) -> None:
    _units(p, True)
    p.add_argument("-s", "--signal", default="TERM", help="name or number (default TERM)")
    p.add_argument("--all", action="store_true",
                   help="every process of the unit, not just the main one")


def _run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="the unit's name (default run-N)")
    p.add_argument("--restart", choices=["always", "on-failure", "never"], default="never")
    p.add_argument("--port", type=port, help="a port for $PORT, or auto for a free one")
    p.add_argument("--wait-port", metavar="PORT",
                   help="ready when this port (or `port`: its $PORT) accepts a connection")
    p.add_argument("--wait-http", metavar="URL", help="ready when a GET of URL answers 2xx")
    p.add_argument("--wait-cmd", metavar="CMD", help="ready when CMD (split as a shell "
                   "would, not run by one) exits 0")
    p.add_argument("--health-port", metavar="PORT", help="then keep checking this port "
                   "(or `port`)")
    p.add_argument("--health-http", metavar="URL", help="then keep checking URL")
    p.add_argument("--health-cmd", metavar="CMD", help="then keep running CMD")
    p.add_argument("--health-interval", type=seconds, default=10.0, metavar="SECONDS")
    p.add_argument("--health-retries", type=positive, default=3, metavar="N",
                   help="failures in a row before a restart (default 3)")
    p.add_argument("--env", action="append", default=[], metavar="NAME",
                   help="pass this variable from here (PATH always is)")
    p.add_argument("--no-block", action="store_true", help="do not wait until it is ready")
    p.add_argument("--scope", type=pid, metavar="PID",
                   help="stop the unit when that process (a shell: $$) exits")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")


def _convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("file")
    p.add_argument("-o", "--output-dir", help="write NAME.toml files here instead of printing")


def _up(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--procfile", default="Procfile", help="default ./Procfile")
    p.add_argument("-d", "--detach", action="store_true",
                   help="return at once; the services live as long as this shell")


def _none(p: argparse.ArgumentParser) -> None:
    pass


# name -> (help, how to set up its arguments). Only the parser of the command
# given is built: argparse costs ~0.8 ms per subparser, and status must be fast.
SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], object]]] = {
    "status": ("show units", _status),
    "start": ("start units and wait until they are ready", _start),
    "stop": ("stop units and wait until they are down", _change),
    "restart": ("restart units and wait until they are ready", _change),
    "reload": ("re-read unit files; restart only what changed",
               lambda p: p.add_argument("--dry-run", action="store_true")),
    "logs": ("show service output", _stream),
    "events": ("show the event stream", _stream),
    "why": ("why a unit is not running", _one),
    "kill": ("send a signal to units' processes (the restart policy decides what next)",
             _kill),
    "cat": ("print the effective unit as TOML", lambda p: _units(p, True)),
    "deps": ("draw the dependency tree", _deps),
    "timeline": ("when each unit started and became ready", _none),
    "timers": ("units with a [timer]: next and last run (like systemctl list-timers)",
               lambda p: p.add_argument("--json", action="store_true")),
    "attach": ("connect the terminal to a console = \"pty\" unit", _attach),
    "convert": ("turn a systemd unit or timer, a crontab, a supervisord config or a Procfile "
                "into TOML", _convert),
    "run": ("run a command as a unit without writing a file (like systemd-run)", _run),
    "up": ("run a Procfile's processes, showing their output; Ctrl-C stops them", _up),
    "reboot": ("reboot the machine (system mode)", _none),
    "halt": ("halt the machine (system mode)", _none),
    "poweroff": ("power the machine off (system mode)", _none),
    "shutdown": ("stop everything and exit the daemon", _none),
    "daemon-reexec": ("execute the daemon afresh; services keep running, same pids", _none),
    "ping": ("check the daemon answers", _none),
    "check": ("validate unit directories offline",
              lambda p: p.add_argument("dirs", nargs="*")),
}


class Formatter(argparse.HelpFormatter):
    """argparse's own asks shutil for the terminal width, and importing shutil
    (with bz2 and lzma) costs every `vigilctl status` ~2.5 ms."""

    def __init__(self, prog: str) -> None:
        try:
            width = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(1).columns
        except (ValueError, OSError):
            width = 80
        super().__init__(prog, width=max(width - 2, 40))


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vigilctl", formatter_class=Formatter,
                                description="Control a running vigil. "
                                "Without a command: an interactive shell.")
    p.add_argument("--socket", help="control socket (default: VIGIL_SOCKET or the usual place)")
    p.add_argument("--system", action="store_true", help="talk to the system instance")
    p.add_argument("--timeout", type=seconds, default=130.0, help="seconds to wait for answers")
    p.add_argument("--units", metavar="DIR", dest="project",
                   help="a project's units: its own daemon, started on first use")
    p.add_argument("--remote", type=address, metavar="HOST:PORT",
                   help="a daemon's TCP endpoint (vigil --listen)")
    p.add_argument("--token-file", help="the remote token (or VIGIL_TOKEN)")
    p.add_argument("--tls", action="store_true", help="use TLS with --remote")
    p.add_argument("--ca", help="CA file to verify the remote certificate")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    chosen = _command_word(argv)
    for name, (what, setup) in SUBCOMMANDS.items():
        if chosen is None or chosen == name:
            setup(sub.add_parser(name, help=what, formatter_class=Formatter))
    return p


def _command_word(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv, if it is a known one before any -h."""
    args = iter(argv)
    for arg in args:
        if arg in ("--socket", "--timeout", "--remote", "--token-file", "--ca", "--units"):
            next(args, None)
        elif not arg.startswith("-"):
            return arg if arg in SUBCOMMANDS else None
        elif arg in ("-h", "--help"):
            return None
    return None
