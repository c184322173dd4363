"""`vigil run [OPTIONS] -- CMD` (and vigil under the names tini and dumb-init):
the options, read as tini and dumb-init read theirs, and the choice of path.

People put the entrypoint in every container and CI wrapper, many at once,
so it must cost next to nothing: this module and the loop it runs without
side services (vigil.tini) import only modules built into the interpreter
and vigil's compiled spawn, never argparse, dataclasses, json, TOML or the
daemon. `--units` hands the same options to vigil.container, which loads
the daemon for the side services.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    import signal as _signal
    from collections.abc import Callable, Sequence
else:
    import _signal  # `signal` imports enum (~5 ms at every start); same functions

USAGE = """\
usage: {prog} [OPTIONS] [--] CMD [ARGS...]

Run CMD as a container's main process: reap zombies, forward signals, exit
with CMD's status. Options end at `--` or at CMD.

  --units DIR          side services to start (with readiness) before CMD
  -g, --group          forward signals to CMD's process group (tini -g)
  --all                forward signals to every descendant
  -c, --single-child   forward to CMD alone (dumb-init -c; the default
                       unless run as dumb-init)
  --kill-timeout SECS  after CMD exits: grace between SIGTERM and SIGKILL of
                       what is left (default 10)
  -e CODE              treat this exit code of CMD as 0 (tini -e; repeatable)
  --exit-map CODE:NEW  exit with NEW when CMD exits with CODE
  -r, --rewrite S:R    forward signal S as R; R=0 drops it (dumb-init)
  -p SIGNAL            signal vigil gets when its parent dies (tini -p)
  -s                   vigil is always a child subreaper: silences the notice
  -w                   warn on every zombie reaped (on stderr)
  -v, --verbose        more on stderr (repeat: -vv, -vvv)
  --socket PATH        control socket when there are side services (default:
                       a directory of its own under $XDG_RUNTIME_DIR/vigil,
                       /tmp/vigil-UID or /dev/shm/vigil-UID)
  -h, --help           this help;  -V, --version: vigil's version
Environment: TINI_SUBREAPER, TINI_KILL_PROCESS_GROUP (set, to any value),
TINI_VERBOSITY=N, DUMB_INIT_SETSID=0, DUMB_INIT_DEBUG=1 mean what they mean
to tini and dumb-init.
"""

# Options with a value; every other known one is a flag.
SHORT_VALUE = {"e", "p", "r"}
SHORT_FLAG = {"g", "c", "s", "w", "v", "h", "V", "l"}
LONG_VALUE = {"units", "kill-timeout", "exit-map", "rewrite", "socket"}
LONG_FLAG = {"group", "all", "single-child", "verbose", "help", "version"}


class RunOptions:
    """What `vigil run` was asked, parsed once for both paths. Verbosity is
    on tini's scale: 0 silent, 1 warnings (the default), 2 info, 3 debug."""

    def __init__(self) -> None:
        self.command: list[str] = []
        self.units: list[str] = []
        self.group = False
        self.single_child = False
        self.all_descendants = False
        self.kill_timeout = 10.0
        self.exit_map: dict[int, int] = {}
        self.rewrite: dict[int, int] = {}
        self.verbosity = 1
        self.warn_zombies = False
        self.parent_death_signal: int | None = None
        self.quiet_subreaper = False
        self.socket: str | None = None


class Exit(Exception):
    """Parsing ends the program: help, version, or a usage error (status 1,
    as tini and dumb-init give)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


def signal_number(text: str) -> int:
    """SIGKILL, KILL or 9 (tini -p takes the first only; vigil takes all three)."""
    if text.isdigit() and 0 <= int(text) < _signal.NSIG:
        return int(text)
    name = text.upper()
    number = getattr(_signal, name if name.startswith("SIG") else "SIG" + name, None)
    if not isinstance(number, int) or name.startswith("SIG_"):
        raise ValueError(f"{text!r} is not a signal")
    return number


def _code(text: str) -> int:
    if not (text.isdigit() and int(text) < 256):
        raise ValueError(f"{text!r}: expected an exit code, 0..255")
    return int(text)


def _pair(text: str, convert: Callable[[str], int]) -> tuple[int, int]:
    a, sep, b = text.partition(":")
    if not sep:
        raise ValueError(f"{text!r}: expected FROM:TO")
    return convert(a), convert(b)


def _apply(o: RunOptions, name: str, value: str, prog: str) -> None:
    """One option. Raises ValueError for a bad value, Exit for help and version."""
    if name in ("g", "group"):
        o.group = True
    elif name == "all":
        o.all_descendants = True
    elif name in ("c", "single-child"):
        o.single_child = True
    elif name == "kill-timeout":
        o.kill_timeout = float(value)
        if not 0 <= o.kill_timeout < float("inf"):  # NaN too
            raise ValueError(f"{value!r}: expected seconds")
    elif name == "e":
        o.exit_map[_code(value)] = 0
    elif name == "exit-map":
        code, new = _pair(value, _code)
        o.exit_map[code] = new
    elif name in ("r", "rewrite"):
        sig, new = _pair(value, signal_number)
        o.rewrite[sig] = new
    elif name == "p":
        o.parent_death_signal = signal_number(value)
    elif name == "s":
        o.quiet_subreaper = True
    elif name == "w":
        o.warn_zombies = True
    elif name in ("v", "verbose"):
        o.verbosity += 1
    elif name == "units":
        o.units.append(value)
    elif name == "socket":
        o.socket = value
    elif name in ("h", "help"):
        raise Exit(0, USAGE.format(prog=prog))
    elif name in ("V", "version"):
        from vigil import __version__
        raise Exit(0, f"vigil {__version__}\n")
    elif name == "l":
        raise Exit(0, "vigil is free software under the MIT license.\n")


def _options(argv: Sequence[str], o: RunOptions, prog: str) -> int:
    """Reads the options getopt's way (bundled `-vvv`, `-e3`, `--units=DIR`)
    and returns where CMD starts: at `--` or at the first non-option, as
    dumb-init does (tini's glibc getopt would also take options after CMD)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return i + 1
        if not arg.startswith("-") or arg == "-":
            return i
        i += 1
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if name not in LONG_VALUE | LONG_FLAG or (eq and name in LONG_FLAG):
                raise Exit(1, f"{prog}: unknown option {arg}\n")
            if name in LONG_VALUE and not eq:
                if i == len(argv):
                    raise Exit(1, f"{prog}: {arg} needs a value\n")
                value, i = argv[i], i + 1
            _checked(o, name, value, prog)
            continue
        for k, letter in enumerate(arg[1:], 1):
            if letter not in SHORT_VALUE | SHORT_FLAG:
                raise Exit(1, f"{prog}: unknown option -{letter}\n")
            if letter in SHORT_FLAG:
                _checked(o, letter, "", prog)
                continue
            value = arg[k + 1:]
            if not value:
                if i == len(argv):
                    raise Exit(1, f"{prog}: -{letter} needs a value\n")
                value, i = argv[i], i + 1
            _checked(o, letter, value, prog)
            break
    return i


def _checked(o: RunOptions, name: str, value: str, prog: str) -> None:
    try:
        _apply(o, name, value, prog)
    except ValueError as err:
        dash = "-" if len(name) == 1 else "--"
        raise Exit(1, f"{prog}: not a valid value for {dash}{name}: {err}\n") from None


def _atoi(text: str) -> int:
    """C's atoi, which tini applies to TINI_VERBOSITY: leading digits, else 0."""
    text = text.lstrip()
    sign = -1 if text[:1] == "-" else 1
    digits = ""
    for ch in text[1:] if text[:1] in "+-" and text else text:
        if not ch.isdigit():
            break
        digits += ch
    return sign * int(digits) if digits else 0


def parse(argv: Sequence[str], prog: str = "vigil run",
          env: dict[str, str] | None = None) -> RunOptions:
    """The options and environment as tini (or, under its name, dumb-init)
    reads them. Raises Exit for help, version and usage errors."""
    environ = dict(os.environ) if env is None else env
    o = RunOptions()
    start = _options(argv, o, prog)
    o.command = list(argv[start:])
    if not o.command:
        raise Exit(1, f"{prog}: name the command to run: {prog} [OPTIONS] -- CMD [ARGS...]\n")
    # tini: each acts when set, whatever its value; TINI_VERBOSITY replaces -v
    if "TINI_KILL_PROCESS_GROUP" in environ:
        o.group = True
    if "TINI_SUBREAPER" in environ:
        o.quiet_subreaper = True
    if "TINI_VERBOSITY" in environ:
        o.verbosity = _atoi(environ["TINI_VERBOSITY"])
    if os.path.basename(prog) == "dumb-init":
        o.group = environ.get("DUMB_INIT_SETSID") != "0"
        if environ.get("DUMB_INIT_DEBUG") == "1":
            o.verbosity = max(o.verbosity, 3)
    if o.single_child:
        o.group = False
    o.verbosity = max(o.verbosity, 0)
    return o


def main(argv: Sequence[str], prog: str = "vigil run") -> int:
    try:
        opts = parse(argv, prog)
    except Exit as done:
        (sys.stdout if done.status == 0 else sys.stderr).write(done.text)
        return done.status
    missing = [d for d in opts.units if not os.path.isdir(d)]
    if missing:  # a typo must not run CMD without the services it expects
        sys.stderr.write(f"{prog}: --units {missing[0]}: no such directory\n")
        return 1
    if opts.units:
        from vigil.container import main as with_side_services
        return with_side_services(opts)
    from vigil.tini import run
    status = run(opts)
    # Nothing to tear down on this path (no files, no threads, stdout
    # untouched): skipping the interpreter's own teardown saves ~2 ms a start.
    os._exit(status)
