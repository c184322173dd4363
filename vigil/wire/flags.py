"""The daemon's command line (`vigil daemon ...`, and PID 1's).

One table says what the flags are. PID 1 reads its argv with a small
parser over that table; argparse (~8 ms and the `re` module, for ever in
PID 1) is imported only for what the small parser leaves to it: --help,
--version, abbreviations, `--` and every error, so help and errors read as
they always did.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    import argparse
    from argparse import Namespace as Options
    from collections.abc import Callable, Sequence
else:
    from types import SimpleNamespace as Options

# flag, kind (str, int, float, bool, append, append-int), default, metavar,
# choices, help (None: not shown), dest (when not the flag's own name)
FLAGS: tuple[tuple[str, str, object, str | None, tuple[str, ...], str | None, str], ...] = (
    ("--units", "append", None, "DIR", (),
     "unit directory (repeatable; replaces the search path)", ""),
    ("--socket", "str", None, None, (), "control socket path (also VIGIL_SOCKET)", ""),
    ("--runtime-dir", "str", None, None, (), "where sockets go (default: beside the socket)",
     ""),
    ("--log-dir", "str", None, None, (), "where unit logs go (default: RUNTIME/logs)", ""),
    ("--log-max-total", "size", 0, "BYTES", (), "the log store's bound in bytes (K, M, G "
     "suffixes; 0: none): the oldest rotated files go first (docs/logs.md)", ""),
    ("--log-max-age", "age", 0.0, "AGE", (), "rotated log files older than this go (s, m, h, "
     "d suffixes; 0: kept)", ""),
    ("--syslog", "str", None, "TARGET", (), "also send the units' lines to syslog (RFC 5424): "
     "local (/dev/log), unix:PATH, udp:HOST:PORT or tcp:HOST:PORT; never waits for it", ""),
    ("--syslog-unit", "append", [], "GLOB", (), "only these units' lines go to --syslog "
     "(repeatable; default all)", ""),
    ("--event-log", "str", None, None, (),
     "file of JSON event lines (default: LOG_DIR/events.jsonl)", ""),
    ("--state-dir", "str", None, None, (), "what outlives a reboot: timers' last runs "
     "(default: /var/lib/vigil in system mode, else the runtime dir)", ""),
    ("--compiled", "str", None, "FILE", (), "the compiled unit database (`vigil compile`), "
     "read when fresh (default: UNITS.compiled beside the first unit directory)", ""),
    ("--system", "bool", False, None, (),
     "system mode (the default as PID 1 of a machine): early boot, reboot/poweroff; "
     "refused unless PID 1 or --i-know-this-is-not-a-vm", ""),
    ("--config-root", "str", "/", "DIR", (),
     "system mode reads etc/hostname, etc/fstab, etc/sysctl.d... here", ""),
    ("--sigterm", "str", "reboot", None, ("reboot", "poweroff", "halt"),
     "system mode: what SIGTERM to PID 1 does (SIGINT, Ctrl-Alt-Del, reboots; SIGPWR "
     "powers off)", ""),
    ("--kill-grace", "float", 5.0, "SECONDS", (), "system mode: after the units stop, "
     "SIGTERM to what is left, then SIGKILL after this", ""),
    ("--i-know-this-is-not-a-vm", "bool", False, None, (), None, "force_system"),
    ("--reexecuted", "bool", False, None, (), None, ""),
    ("--restore", "str", None, "FILE", (), None, ""),  # daemon-reexec
    ("--control-fd", "int", None, None, (), None, ""),  # and its socket
    ("--adopt", "str", None, "JSON", (), None, ""),  # PID 1: instance -> pid
    ("--scope", "append-int", [], "PID", (), "bind the daemon to this process (repeatable): "
     "when every such process has exited, stop everything and exit", ""),
    ("--no-autostart", "bool", False, None, (), "start nothing until asked", ""),
    ("--shutdown-timeout", "float", 90.0, None, (),
     "seconds for all units to stop before everything is killed", ""),
    ("--idle-timeout", "float", 60.0, None, (), "seconds a silent control connection stays "
     "open", ""),
    ("--cgroup", "str", "auto", "auto|off|DIR", (), "a cgroup v2 directory for the units' "
     "cgroups (auto: in system mode or in a cgroup delegated to this user)", ""),
    ("--slow-report", "float", 5.0, "SECONDS", (),
     "report a unit still starting every SECONDS (0: never)", ""),
    ("--limit", "append", [], "NAME=VALUE", (), "a bound on what clients may hold (clients, "
     "clients-per-uid, output, streams, waits, remote-clients, preauth, ...; docs/protocol.md)",
     ""),
    ("--read-group", "str", None, "GROUP", (),
     "members may use read-only commands (status, logs, events, cat, ...)", ""),
    ("--listen", "str", None, "HOST:PORT", (), "also accept remote control over TCP (needs "
     "--token-file; TLS off loopback)", ""),
    ("--token-file", "str", None, None, (), "file holding the remote token (mode 0600)", ""),
    ("--tls-cert", "str", None, None, (), "TLS certificate chain for --listen", ""),
    ("--tls-key", "str", None, None, (), "TLS private key for --listen", ""),
    ("--console-fd", "int", 1, "FD", (),
     "where console lines go (vigil run: 2, so CMD's stdout stays CMD's)", ""),
    ("--quiet", "bool", False, None, (), "no event lines on the console", ""),
    ("--console-level", "str", "info", None, ("debug", "info", "warning", "error"),
     "the least severe event shown on the console", ""),
)
_BY_FLAG = {spec[0]: spec for spec in FLAGS}


def _size(text: str) -> int:
    """--log-max-total: 500M, 2G, 4096."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    scale = units.get(text[-1:].upper(), 1)
    number = text[:-1] if scale > 1 else text
    if not number.isdigit():
        raise ValueError(f"'{text}' is not a size (4096, 500M, 2G)")
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
        raise ValueError(f"'{text}' is not an age (3600, 90m, 12h, 30d)")
    return value


_CONVERT: dict[str, Callable[[str], object]] = {"int": int, "float": float, "append-int": int,
                                            "size": _size, "age": _age}


def _dest(spec: tuple[str, str, object, str | None, tuple[str, ...], str | None, str]) -> str:
    return spec[6] or spec[0][2:].replace("-", "_")


def parse_args(argv: Sequence[str]) -> Options:
    """The flags as argparse would read them; what this loop does not
    handle (help, abbreviations, bad values...) is argparse's to say."""
    opts: dict[str, object] = {_dest(s): list(s[2]) if isinstance(s[2], list) else s[2]
                               for s in FLAGS}
    i = 0
    while i < len(argv):
        name, eq, value = argv[i].partition("=")
        spec = _BY_FLAG.get(name)
        if spec is None or (spec[1] == "bool" and eq):
            return _argparse(argv)
        i += 1
        if spec[1] == "bool":
            opts[_dest(spec)] = True
            continue
        if not eq:
            if i == len(argv) or argv[i].startswith("-"):
                return _argparse(argv)
            value, i = argv[i], i + 1
        if spec[4] and value not in spec[4]:
            return _argparse(argv)
        try:
            converted: object = _CONVERT.get(spec[1], str)(value)
        except ValueError:
            return _argparse(argv)
        if spec[1].startswith("append"):
            held = opts[_dest(spec)]
            opts[_dest(spec)] = [*held, converted] if isinstance(held, list) else [converted]
        else:
            opts[_dest(spec)] = converted
    return Options(**opts)


def _said(convert: Callable[[str], object]) -> Callable[[str], object]:
    """argparse shows a converter's own words only for ArgumentTypeError."""
    import argparse

    def typed(text: str) -> object:
        try:
            return convert(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return typed


def _argparse(argv: Sequence[str]) -> Options:
    return Options(**vars(parser().parse_args(argv)))


def parser() -> argparse.ArgumentParser:
    """Also read by vigilctl's man page generator (vigil(8))."""
    import argparse

    from vigil import __version__
    p = argparse.ArgumentParser(
        prog="vigil", description="Run the vigil daemon.",
        epilog="other commands: `vigil run [OPTIONS] -- CMD [ARGS...]` runs CMD as a "
               "container's entrypoint, a drop-in for tini and dumb-init (`vigil run --help`); "
               "`vigil check [DIR...]` validates unit files offline (`vigil check --help`); "
               "`vigil compile [DIR...]` writes the compiled unit database the daemon reads "
               "at start (`vigil compile --help`). vigilctl drives a running daemon.")
    p.add_argument("--version", action="version", version=f"vigil {__version__}")
    for spec in FLAGS:
        flag, kind, default, metavar, choices, text, _ = spec
        extra: dict[str, object] = {"dest": _dest(spec)}
        if metavar:
            extra["metavar"] = metavar
        if choices:
            extra["choices"] = list(choices)
        if kind in ("int", "float", "append-int"):
            extra["type"] = _CONVERT[kind]
        elif kind in ("size", "age"):
            extra["type"] = _said(_CONVERT[kind])
        if default is not None and kind != "bool":
            extra["default"] = default
        if kind == "bool":
            extra["action"] = "store_true"
        elif kind.startswith("append"):
            extra["action"] = "append"
        p.add_argument(flag, help=argparse.SUPPRESS if text is None else text,
                       **extra)  # type: ignore[arg-type]
    return p


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
