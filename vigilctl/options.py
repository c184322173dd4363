"""vigilctl's command line: the options of each command (the checks of their
values are vigilctl/values.py's).

Only the parser of the command given is built: a status query must stay fast.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence

from vigilctl.values import address, count, pid, port, positive, seconds, since, when

TYPE_CHECKING = False  # typing costs the client ~10 ms to import; annotations are strings
if TYPE_CHECKING:
    from typing import NoReturn

UNITS_HELP = "unit names (an instance: tp@x; `all`: every unit, as supervisorctl)"


def _units(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("units", nargs="+" if required else "*", metavar="UNIT",
                   help=UNITS_HELP if required else "unit names (default: every unit)")


def _change(p: argparse.ArgumentParser) -> None:
    _units(p, True)
    p.add_argument("--no-block", action="store_true",
                   help="return at once instead of waiting until the units are ready (or down)")


def _start(p: argparse.ArgumentParser) -> None:
    _change(p)
    p.add_argument("--scope", type=pid, metavar="PID",
                   help="stop these units when that process (a shell: $$) exits")


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _status(p: argparse.ArgumentParser) -> None:
    _units(p)
    _json(p)


def _stream(p: argparse.ArgumentParser) -> None:
    _units(p)
    p.add_argument("-u", "--unit", action="append", default=[], dest="more_units",
                   metavar="UNIT", help="this unit too (as journalctl -u); may repeat")
    p.add_argument("-n", "--lines", type=count, default=50,
                   help="how many recent lines (default 50; 0: none)")
    p.add_argument("-f", "--follow", action="store_true", help="then print new ones as they come")
    p.add_argument("--since", type=since, help="10m, 2h, 14:05, an ISO time or epoch seconds")
    _json(p)


def _logs(p: argparse.ArgumentParser) -> None:
    """logs reads the log store's files itself (vigilctl/logs.py, docs/logs.md).
    `--since -1h` and `-b -1` as journalctl takes them: argparse reads a
    word that looks like a negative number as a value, and this parser has
    no option that looks like one."""
    import re
    p._negative_number_matcher = re.compile(r"^-\d+(\.\d+)?[smhdw]?$")
    _units(p)
    p.add_argument("-u", "--unit", action="append", default=[], dest="more_units",
                   metavar="UNIT", help="this unit too, a glob (as journalctl -u); may repeat")
    p.add_argument("-n", "--lines", type=count, default=None,
                   help="how many recent lines (default 50, or all with --since/--until/-g)")
    p.add_argument("-f", "--follow", action="store_true", help="then print new ones as they come")
    p.add_argument("--since", type=when, help="10m or -10m (ago), 14:05, yesterday, today, "
                   "an ISO time or epoch seconds")
    p.add_argument("--until", type=when, help="the same forms as --since")
    _json(p)
    p.add_argument("-g", "--grep", metavar="REGEX", help="only lines this regex matches")
    p.add_argument("--stdout", action="store_true", help="only what the units wrote to stdout")
    p.add_argument("--stderr", action="store_true", help="only what the units wrote to stderr")
    p.add_argument("-o", "--output", choices=["short", "json", "cat"], default="short",
                   help="short (time, instance, text), json (every field) or cat (the text)")
    p.add_argument("--events", action="store_true", help="interleave vigil's events")
    p.add_argument("-b", "--boot", nargs="?", const="0", metavar="N|ID",
                   help="one boot only: this one (no value, or 0), -1 the one before, an id")
    p.add_argument("--list-boots", action="store_true", help="the boots the store holds")
    p.add_argument("-D", "--directory", metavar="DIR",
                   help="read this store (another machine's disk) instead of the daemon's")


def _one(p: argparse.ArgumentParser) -> None:
    p.add_argument("unit", metavar="UNIT", help="a unit name")


def _deps(p: argparse.ArgumentParser) -> None:
    _one(p)
    p.add_argument("--reverse", action="store_true", help="what depends on the unit")


def _attach(p: argparse.ArgumentParser) -> None:
    _one(p)
    p.add_argument("--escape", default="^]", help="detach key (default ^], Ctrl-])")


def _signal_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--all", action="store_true",
                   help="every process of the unit, not just the main one")


def _kill(p: argparse.ArgumentParser) -> None:
    _units(p, True)
    p.add_argument("-s", "--signal", default="TERM", help="name or number (default TERM)")
    _signal_opts(p)


def _signal(p: argparse.ArgumentParser) -> None:
    p.add_argument("signal", metavar="SIGNAL", help="name (HUP, SIGUSR1) or number")
    _units(p, True)
    _signal_opts(p)


def _is(p: argparse.ArgumentParser) -> None:
    _units(p, True)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing; the exit "
                   "status says it")


def _enable(p: argparse.ArgumentParser) -> None:
    _units(p, True)
    p.add_argument("--now", action="store_true", help="also start (enable) or stop (disable) "
                   "them now")


def _show(p: argparse.ArgumentParser) -> None:
    _one(p)
    p.add_argument("-p", "--property", action="append", default=[], metavar="KEY",
                   help="only this property (as printed: restart, service.exec...); may repeat")
    p.add_argument("--json", action="store_true", help="print JSON")


def _run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="the unit's name (default run-N)")
    p.add_argument("--restart", choices=["always", "on-failure", "never"], default="never",
                   help="when to start it again after it exits (default never)")
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
    p.add_argument("--health-interval", type=seconds, default=10.0, metavar="SECONDS",
                   help="seconds between health checks (default 10)")
    p.add_argument("--health-retries", type=positive, default=3, metavar="N",
                   help="failures in a row before a restart (default 3)")
    p.add_argument("--env", action="append", default=[], metavar="NAME",
                   help="pass this variable from here (PATH always is)")
    p.add_argument("--no-block", action="store_true", help="do not wait until it is ready")
    p.add_argument("--scope", type=pid, metavar="PID",
                   help="stop the unit when that process (a shell: $$) exits")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")


def _convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a systemd .service/.target, a supervisord config or a Procfile")
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
               lambda p: p.add_argument("--dry-run", action="store_true",
                                        help="say what would change; change nothing")),
    "reload-unit": ("run running services' exec-reload or reload-signal, without a restart "
                    "(systemctl reload)", lambda p: _units(p, True)),
    "logs": ("show service output, from the log store (works with the daemon down)", _logs),
    "events": ("show the event stream", _stream),
    "why": ("why a unit is in its state", _one),
    "kill": ("send a signal to units' processes (the restart policy decides what next)",
             _kill),
    "signal": ("supervisorctl's signal SIG UNIT...: kill -s SIG", _signal),
    "cat": ("print the effective unit as TOML", lambda p: _units(p, True)),
    "show": ("the effective settings and runtime properties (KEY=VALUE or --json)", _show),
    "enable": ("start units at the daemon's start (a drop-in); --now starts them", _enable),
    "disable": ("do not start units at the daemon's start (a drop-in); --now stops them",
                _enable),
    "is-active": ("print active/inactive/failed...; exit 0 if one is active, 3 if none", _is),
    "is-enabled": ("print enabled/disabled; exit 0 if one is enabled, else 1", _is),
    "is-failed": ("print the state; exit 0 if one is failed, else 1", _is),
    "edit": ("open $EDITOR on the unit's drop-in; check it, save it, reload", _one),
    "reset-failed": ("forget failures: failed units become inactive", _units),
    "list-unit-files": ("each unit and whether it is enabled", _units),
    "pid": ("the main pid of each running instance", lambda p: _units(p, True)),
    "deps": ("draw the dependency tree", _deps),
    "timeline": ("when each unit started and became ready", _none),
    "timers": ("units with a [timer]: next and last run (like systemctl list-timers)",
               lambda p: p.add_argument("--json", action="store_true", help="the timers as JSON")),
    "attach": ("connect the terminal to a console = \"pty\" unit", _attach),
    "convert": ("turn a systemd unit or timer, a crontab, a supervisord config or a Procfile "
                "into TOML", _convert),
    "run": ("run a command as a unit without writing a file (like systemd-run)", _run),
    "up": ("run a Procfile's processes, showing their output; Ctrl-C stops them", _up),
    "reboot": ("reboot the machine (system mode)", _none),
    "halt": ("halt the machine (system mode)", _none),
    "poweroff": ("power the machine off (system mode)", _none),
    "shutdown": ("stop everything and exit the daemon; returns once it has exited", _none),
    "daemon-reexec": ("execute the daemon afresh; services keep running, same pids", _none),
    "ping": ("check the daemon answers", _none),
    "completion": ("print a shell's completion script (or the unit names, for it)",
                   lambda p: p.add_argument("shell", choices=["bash", "zsh", "fish", "units"],
                                            help="bash, zsh or fish; units: the unit names")),
    "check": ("validate unit directories offline",
              lambda p: p.add_argument("dirs", nargs="*", metavar="DIR",
                                       help="unit directories (default: the system's)")),
}
# Other names for commands, as systemctl, journalctl and supervisorctl users type them.
ALIASES = {"list-units": "status", "tail": "logs"}


class Formatter(argparse.HelpFormatter):
    """argparse's own asks shutil for the terminal width, and importing shutil
    (with bz2 and lzma) costs every `vigilctl status` ~2.5 ms."""

    def __init__(self, prog: str) -> None:
        try:
            width = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(1).columns
        except (ValueError, OSError):
            width = 80
        super().__init__(prog, width=max(width - 2, 40))


class Parser(argparse.ArgumentParser):
    """Errors in one line, with a did-you-mean, not the usage page."""

    def error(self, message: str) -> NoReturn:
        import re
        import sys
        wrong = re.search(r"invalid choice: '([^']*)'", message)
        if wrong and "COMMAND" in message:
            message = f"unknown command '{wrong.group(1)}'" + _hint(
                wrong.group(1), [*SUBCOMMANDS, *ALIASES]) + "; vigilctl --help lists them"
        unknown = re.match(r"unrecognized arguments: (\S+)", message)
        if unknown:
            option = unknown.group(1)
            message = f"unknown {'option' if option.startswith('-') else 'argument'} " \
                f"'{option}'" + _hint(option.split("=")[0], self._known_options()) + \
                f"; {self._chosen()} --help lists them"
        sys.stderr.write(f"{self.prog}: {message}\n")
        raise SystemExit(2)

    def _known_options(self) -> list[str]:
        """The options of this parser and of the command chosen."""
        known = [o for a in self._actions for o in a.option_strings]
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    known += [o for a in sub._actions for o in a.option_strings]
        return known


    def _chosen(self) -> str:
        """The prog of the one command whose parser was built, else ours."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and len(action.choices) == 1:
                return str(next(iter(action.choices.values())).prog)
        return self.prog


def _hint(word: str, choices: list[str]) -> str:
    """The choice meant: one it begins (the shortest), else the closest."""
    import difflib
    longer = sorted((c for c in choices if c.startswith(word)), key=len)
    close = longer[:1] or difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    from vigil import __version__
    p = Parser(prog="vigilctl", formatter_class=Formatter,
               description="Control a running vigil. Without a command: an interactive shell.",
               epilog="Also: " + ", ".join(f"{a} (= {c})" for a, c in ALIASES.items()) +
               ". `vigilctl COMMAND --help` describes a command's arguments.")
    p.add_argument("--version", action="version", version=f"vigilctl {__version__}")
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


def resolve(argv: Sequence[str]) -> list[str]:
    """argv with an alias (list-units, tail) replaced by its command."""
    args = list(argv)
    at = _command_index(args)
    if at is not None and args[at] in ALIASES:
        args[at] = ALIASES[args[at]]
    return args


def _command_index(argv: Sequence[str]) -> int | None:
    """Where the subcommand word is in argv (before any -h), if anywhere."""
    skip = False
    for at, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg in ("--socket", "--timeout", "--remote", "--token-file", "--ca", "--units"):
            skip = True
        elif not arg.startswith("-"):
            return at
        elif arg in ("-h", "--help"):
            return None
    return None


def _command_word(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv, if it is a known one before any -h."""
    at = _command_index(argv)
    return argv[at] if at is not None and argv[at] in SUBCOMMANDS else None
