"""The common commands' command lines, read without argparse.

argparse (with `re` and gettext) and building its parsers cost a status
query ~10 ms. `vigilctl status`, start, stop, restart, reload and a few
others with plain arguments are read here, giving what argparse would;
anything else (help, an alias, an unknown or abbreviated option, a value
that is not right) returns None and argparse reads it, so its help and its
errors are unchanged.
"""

from __future__ import annotations

import math

TYPE_CHECKING = False  # typing costs the client ~10 ms to import; annotations are strings
if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Sequence
else:
    from types import SimpleNamespace as Namespace

# command -> (its store_true flags, unit names: "*" any, "+" at least one, "" none)
COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "status": (("--json",), "*"),
    "start": (("--no-block",), "+"),
    "stop": (("--no-block",), "+"),
    "restart": (("--no-block",), "+"),
    "reload": (("--dry-run",), ""),
    "ping": ((), ""),
    "shutdown": ((), ""),
    "timeline": ((), ""),
    "daemon-reexec": ((), ""),
}
# the global options argparse gives every command (vigilctl/options.py build_parser)
GLOBAL = {"socket": None, "system": False, "timeout": 130.0, "project": None, "remote": None,
          "token_file": None, "tls": False, "ca": None}
_VALUED = {"--socket": "socket", "--units": "project", "--timeout": "timeout"}


def parse(argv: Sequence[str]) -> Namespace | None:
    """What argparse would make of argv, or None: argparse's to read."""
    opts: dict[str, object] = dict(GLOBAL)
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] == "--system":
            opts["system"], i = True, i + 1
            continue
        if argv[i] not in _VALUED or i + 1 == len(argv) or argv[i + 1].startswith("-"):
            return None
        opts[_VALUED[argv[i]]], i = argv[i + 1], i + 2
    if not _seconds_ok(opts) or i == len(argv) or argv[i] not in COMMANDS:
        return None
    flags, takes = COMMANDS[argv[i]]
    opts["cmd"] = argv[i]
    opts.update({f[2:].replace("-", "_"): False for f in flags})
    names = []
    for arg in argv[i + 1:]:
        if arg in flags:
            opts[arg[2:].replace("-", "_")] = True
        elif arg.startswith("-") or not takes:
            return None
        else:
            names.append(arg)
    if takes == "+" and not names:
        return None
    if takes:
        opts["units"] = names
    if argv[i] == "start":
        opts["scope"] = None
    return Namespace(**opts)


def _seconds_ok(opts: dict[str, object]) -> bool:
    """--timeout as values.seconds takes it (else argparse says why)."""
    if isinstance(opts["timeout"], float):
        return True
    try:
        opts["timeout"] = value = float(str(opts["timeout"]))
    except ValueError:
        return False
    return math.isfinite(value) and value > 0
