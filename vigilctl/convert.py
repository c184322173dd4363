"""`vigilctl convert FILE`: a systemd .service/.target/.timer, a crontab,
a supervisord config or a Procfile becomes vigil units (TOML written with
tomli-w). Whatever cannot be carried over is listed, in the output as
comments and on stderr, rather than dropped silently.

The input is not trusted to be well-formed: a name becomes a unit (and a
file name) only if it is a valid unit name, every comment is escaped so that
nothing in it can end it, the TOML itself comes from tomli-w only, files are
created only inside -o (never through a symlink), and bad input is a
one-line error."""

from __future__ import annotations

import math
import os
import re
import shlex
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from vigil.base import signames
from vigil.base.printable import printable
from vigil.model.checks import valid_name

NAME_RULE = "letters, digits and _.-, not first a dot, at most one @"


@dataclass
class Converted:
    name: str
    doc: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    refused: str = ""  # why no file is written for it (its name is not a unit name)

    def set(self, table: str, key: str, value: Any) -> None:
        self.doc.setdefault(table, {})[key] = value


def named(name: str, doc: dict[str, Any], where: str) -> Converted:
    """The one way a name from the input becomes a unit: by the unit-name
    rule (so it is one file name inside -o), else refused, saying where."""
    unit = Converted(name, doc)
    if not valid_name(name):
        unit.refused = f"{where}: {name!r} is not a valid unit name ({NAME_RULE}); not converted"
    return unit


def dependency(name: str, notes: list[str]) -> list[str]:
    """A unit a unit names: kept only if it is a unit name."""
    if valid_name(name) and not name.endswith("@"):
        return [name]
    notes.append(f"{name!r} is not a valid unit name ({NAME_RULE}); dropped")
    return []


def signal_name(value: str) -> str:
    """KillSignal=TERM or SIGTERM, stopsignal=term: the name vigil takes
    (vigil/base/signames.py is the one parser; a number is refused here)."""
    if value.strip().isdigit():
        raise ValueError(f"{value!r} is not a signal name")
    return signal.Signals(signames.number(value)).name.removeprefix("SIG")


def seconds(value: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


# -- supervisord -----------------------------------------------------------------

def from_supervisord(text: str) -> list[Converted]:
    import configparser
    cfg = configparser.RawConfigParser(strict=False, inline_comment_prefixes=(";",),
                                       interpolation=None)
    try:
        cfg.read_string(text)
    except configparser.MissingSectionHeaderError as err:
        raise ValueError(f"line {err.lineno}: {err.line.strip()!r} comes before the first "
                         "[section]") from None
    except configparser.ParsingError as err:  # every bad line (as repr); the first will do
        number, line = err.errors[0]
        raise ValueError(f"line {number}: {line} is not KEY=VALUE") from None
    except configparser.Error as err:
        raise ValueError(err.message) from None
    out = []
    for section in cfg.sections():
        kind, _, name = section.partition(":")
        if kind == "program" and name:
            out.append(_program(name, dict(cfg.items(section)), f"[{section}]"))
        elif kind == "group" and name:
            group = named(name, {}, f"[{section}]")
            members: list[str] = []
            for member in cfg.get(section, "programs", fallback="").split(","):
                if member.strip():
                    members.extend(dependency(member.strip(), group.notes))
            group.doc["unit"] = {"description": f"supervisord group {name}", "wants": members}
            out.append(group)
        elif kind not in ("supervisord", "supervisorctl", "unix_http_server",
                          "inet_http_server", "rpcinterface", "include"):
            out.append(Converted(section, {}, [f"[{section}] not carried over"]))
    return [c for c in out if c.doc or c.notes]


def _program(name: str, opts: dict[str, str], where: str) -> Converted:
    out = named(name, {}, where)
    svc = out.doc.setdefault("service", {})
    for key, value in opts.items():
        try:
            _program_key(out, svc, key, value.strip())
        except ValueError as err:
            out.notes.append(f"{key}={value}: cannot read {err}")
    if "exec" not in svc:
        out.notes.append("no command: the unit will not load until exec is set")
    return out


def _program_key(out: Converted, svc: dict[str, Any], key: str, value: str) -> None:
    if key == "command":
        argv = shlex.split(value)
        if any("%(" in a for a in argv):
            out.notes.append("command uses %(...)s expansions: fill them in by hand")
        svc["exec"] = argv
    elif key == "directory":
        svc["cwd"] = value
    elif key == "user":
        svc["user"] = value
    elif key == "umask":
        svc["umask"] = value
    elif key == "autostart":
        out.set("unit", "enabled", value.lower() == "true")
    elif key == "autorestart":
        svc["restart"] = {"true": "always", "false": "never"}.get(value.lower(), "on-failure")
    elif key == "startsecs":
        svc["start-seconds"] = seconds(value)
    elif key == "startretries":
        svc["start-retries"] = int(value)
    elif key == "exitcodes":
        svc["success-exit-codes"] = [int(c) for c in value.split(",")]
    elif key == "stopsignal":
        svc["stop-signal"] = signal_name(value)
    elif key == "stopwaitsecs":
        svc["stop-timeout"] = seconds(value)
    elif key == "numprocs":
        svc["instances"] = int(value)
    elif key == "environment":
        for part in re.findall(r'(\w+)=("[^"]*"|[^,]*)', value):
            svc.setdefault("env", {})[part[0]] = part[1].strip('"')
    elif key in ("stdout_logfile", "stderr_logfile"):
        target = "stdout" if key.startswith("stdout") else "stderr"
        if value.upper() == "NONE":
            svc[target] = "null"
        elif value.upper() != "AUTO":
            svc[target] = value
    elif key == "redirect_stderr":
        if value.lower() == "true":
            out.notes.append("redirect_stderr: vigil keeps both streams in one log already")
    elif key == "priority":
        out.notes.append(f"priority={value}: use after = [...] to order units")
    else:
        out.notes.append(f"{key}={value} has no vigil equivalent")


# -- Procfile ----------------------------------------------------------------

def from_procfile(text: str) -> list[Converted]:
    """`name: command` per line (foreman, honcho): each a unit with a free $PORT."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name.strip()) or not valid_name(
                name.strip()):
            out.append(Converted(f"line-{number}", {}, [
                f"line {number}: not NAME: COMMAND (NAME: letters, digits and _.-, not first "
                "a dot)"]))
            continue
        out.append(Converted(name.strip(), {
            "unit": {"description": f"Procfile: {name.strip()}"},
            "service": {"exec": ["sh", "-c", command.strip()], "port": "auto",
                        "restart": "on-failure"}}))
    return [c for c in out if c.doc or c.notes]


# -- output ----------------------------------------------------------------------

def comment(text: str) -> str:
    """A TOML comment line that nothing in text can end or break."""
    return "# " + printable(text)


def render(unit: Converted, source: str) -> str:
    """The unit as TOML: comments made by `comment`, the rest by tomli-w."""
    import tomli_w
    head = [comment(f"Converted from {source} by vigilctl convert.")]
    head += [comment(f"NOTE: {n}") for n in unit.notes]
    return "\n".join(head) + "\n" + tomli_w.dumps(unit.doc)


def convert(path: str, text: str) -> list[Converted]:
    base = os.path.basename(path)
    if base.endswith((".service", ".target")):
        from vigilctl.systemd import from_systemd
        return from_systemd(path, text)
    if base.endswith(".timer"):
        from vigilctl.systemd import from_timer
        return from_timer(path, text)
    from vigilctl.cron import is_crontab
    if is_crontab(path):
        from vigilctl.cron import from_crontab
        return from_crontab(path, text)
    if base == "Procfile" or base.startswith("Procfile."):
        return from_procfile(text)
    if re.search(r"^\[program:", text, re.M) or base.endswith((".conf", ".ini")):
        return from_supervisord(text)
    raise ValueError("not a systemd .service/.target/.timer, a crontab, a supervisord config "
                     "or a Procfile")


def main(path: str, out_dir: str | None) -> int:
    """Prints the units, or writes NAME.toml files in out_dir; 1 if a unit
    was refused. Bad input raises ValueError, a one-line message."""
    directory = _directory(out_dir) if out_dir else -1
    try:
        return _main(path, out_dir, directory)
    finally:
        if directory >= 0:
            os.close(directory)


def _main(path: str, out_dir: str | None, directory: int) -> int:
    shown = printable(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        units = convert(path, text)
    except OSError as err:
        raise ValueError(f"{shown}: {err.strerror}") from None
    except ValueError as err:  # UnicodeDecodeError included
        raise ValueError(f"{shown}: {printable(str(err))}") from None
    if not units:
        raise ValueError(f"{shown}: nothing to convert")
    status = 0
    for n, unit in enumerate(units):
        for note in unit.notes:
            print(printable(f"{unit.name}: {note}"), file=sys.stderr)
        if unit.refused:
            print(f"vigilctl: {printable(unit.refused)}", file=sys.stderr)
            status = 1
        elif not unit.doc:
            continue
        elif out_dir:
            write(out_dir, directory, f"{unit.name}.toml", render(unit, path))
        else:
            print(("\n" if n else "") + render(unit, path), end="")
    return status


def write(out_dir: str, directory: int, name: str, text: str) -> None:
    """Creates out_dir/name, never anywhere else: name is one component (a
    unit name), and an existing file or symlink there is refused, not
    followed or overwritten."""
    if "/" in name or name.startswith("."):
        raise ValueError(f"{printable(name)!r}: not a file name")  # the unit-name rule
    target = printable(os.path.join(out_dir, name))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, 0o644, dir_fd=directory)
    except OSError as err:
        raise ValueError(f"{target}: {err.strerror}") from None
    with open(fd, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {target}")


def _directory(path: str) -> int:
    """-o opened once, so every file lands in that same directory."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise ValueError(f"{printable(path)}: {err.strerror}") from None
