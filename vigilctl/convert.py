"""`vigilctl convert FILE`: a systemd .service/.target or a supervisord
config becomes vigil units (TOML written with tomli-w). Whatever cannot be
carried over is listed, in the output as comments and on stderr, rather than
dropped silently."""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Converted:
    name: str
    doc: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def set(self, table: str, key: str, value: Any) -> None:
        self.doc.setdefault(table, {})[key] = value


# -- systemd ---------------------------------------------------------------------

def parse_systemd(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of (key, value) pairs in order; continuation lines joined."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif "=" in line and current is not None:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


SPAN = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60,
        "min": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hour": 3600,
        "hours": 3600, "d": 86400, "day": 86400, "days": 86400}


def timespan(text: str) -> float:
    """systemd time spans: `90`, `5s`, `1min 30s`, `100ms`."""
    if text.strip() == "infinity":
        return 86400.0
    total, found = 0.0, False
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        total += float(number) * SPAN.get(unit or "s", float("nan"))
        found = True
    if not found or total != total:
        raise ValueError(text)
    return total


def unit_name(name: str, notes: list[str]) -> str:
    stem, _, kind = name.rpartition(".")
    if kind in ("service", "target"):
        return stem
    notes.append(f"dependency {name!r} is not a service or target; kept as {name!r}")
    return name


STDOUT = {"journal": "log", "syslog": "log", "kmsg": "log", "journal+console": "console",
          "syslog+console": "console", "kmsg+console": "console", "tty": "console",
          "null": "null", "inherit": "inherit"}
RESTART = {"no": "never", "always": "always", "on-failure": "on-failure",
           "on-abnormal": "on-failure", "on-abort": "on-failure", "on-watchdog": "on-failure"}
LIMITS = {"LimitCPU": "cpu", "LimitFSIZE": "fsize", "LimitDATA": "data", "LimitSTACK": "stack",
          "LimitCORE": "core", "LimitRSS": "rss", "LimitNOFILE": "nofile", "LimitAS": "as",
          "LimitNPROC": "nproc", "LimitMEMLOCK": "memlock", "LimitLOCKS": "locks",
          "LimitSIGPENDING": "sigpending", "LimitMSGQUEUE": "msgqueue", "LimitNICE": "nice",
          "LimitRTPRIO": "rtprio"}
LISTS = {"Requires": "requires", "Wants": "wants", "After": "after", "Before": "before",
         "Conflicts": "conflicts", "OnFailure": "on-failure", "OnSuccess": "on-success",
         "BindsTo": "requires", "Requisite": "requires"}


def from_systemd(path: str, text: str) -> list[Converted]:
    base = os.path.basename(path)
    out = Converted(unit_name(base, []), {})
    notes = out.notes
    sections = parse_systemd(text)
    for key, value in sections.get("Unit", []):
        if key == "Description":
            out.set("unit", "description", value)
        elif key in LISTS:
            names = out.doc.setdefault("unit", {}).setdefault(LISTS[key], [])
            names.extend(unit_name(n, notes) for n in value.split())
            if key in ("BindsTo", "Requisite"):
                notes.append(f"[Unit] {key} approximated by requires")
        else:
            notes.append(f"[Unit] {key}={value} has no vigil equivalent")
    for key, value in sections.get("Service", []):
        try:
            _service_key(out, key, value)
        except ValueError as err:
            notes.append(f"[Service] {key}={value}: cannot read {err}")
    for key, value in sections.get("Install", []):
        if key in ("WantedBy", "RequiredBy"):
            targets = ", ".join(unit_name(n, notes) for n in value.split())
            notes.append(f"[Install] {key}: add {out.name!r} to the wants of {targets}")
        else:
            notes.append(f"[Install] {key}={value} has no vigil equivalent")
    for section in sections:
        if section not in ("Unit", "Service", "Install"):
            notes.append(f"[{section}] section has no vigil equivalent")
    if base.endswith(".service") and "exec" not in out.doc.get("service", {}):
        notes.append("no ExecStart: the unit will not load until exec is set")
    return [out]


def _service_key(out: Converted, key: str, value: str) -> None:
    svc = out.doc.setdefault("service", {})
    notes = out.notes
    if key == "ExecStart":
        prefix = re.match(r"[-@:+!]*", value).group(0)  # type: ignore[union-attr]
        if prefix:
            notes.append(f"ExecStart prefix {prefix!r} dropped")
        argv = shlex.split(value[len(prefix):])
        if any("$" in a for a in argv):
            notes.append("ExecStart uses $VARIABLES: vigil does not expand them; "
                         "use [\"sh\", \"-c\", \"...\"]")
        svc["exec"] = argv
    elif key == "Type":
        kinds = {"simple": "simple", "exec": "simple", "oneshot": "oneshot", "notify": "notify",
                 "forking": "forking", "idle": "simple", "dbus": "simple"}
        svc["type"] = kinds.get(value, "simple")
        if value in ("idle", "dbus"):
            notes.append(f"Type={value} run as simple")
    elif key == "PIDFile":
        svc["pid-file"] = value
    elif key == "Restart":
        if value not in RESTART:
            notes.append(f"Restart={value} has no equivalent; using on-failure")
        svc["restart"] = RESTART.get(value, "on-failure")
    elif key == "RestartSec":
        svc["restart-delay"] = timespan(value)
    elif key == "TimeoutStopSec":
        svc["stop-timeout"] = timespan(value)
    elif key == "TimeoutStartSec":
        svc["start-timeout"] = timespan(value)
    elif key == "TimeoutSec":
        svc["stop-timeout"] = svc["start-timeout"] = timespan(value)
    elif key == "KillSignal":
        svc["stop-signal"] = value.upper().removeprefix("SIG")
        signal.Signals["SIG" + svc["stop-signal"]]
    elif key in ("User", "Group", "UMask"):
        svc[key.lower()] = value
    elif key == "SupplementaryGroups":
        svc.setdefault("supplementary-groups", []).extend(value.split())
    elif key == "WorkingDirectory":
        svc["cwd"] = value.lstrip("-")
    elif key == "Environment":
        for word in shlex.split(value):
            name, _, val = word.partition("=")
            svc.setdefault("env", {})[name] = val
    elif key == "EnvironmentFile":
        svc.setdefault("env-file", []).append(value)
    elif key == "PassEnvironment":
        svc.setdefault("pass-env", []).extend(value.split())
    elif key in ("StandardOutput", "StandardError"):
        target = "stdout" if key == "StandardOutput" else "stderr"
        kind, _, where = value.partition(":")
        if kind in ("file", "append", "truncate") and where:
            svc[target] = where
        elif value in STDOUT:
            svc[target] = STDOUT[value]
        else:
            notes.append(f"{key}={value} has no vigil equivalent")
    elif key in LIMITS:
        svc.setdefault("limits", {})[LIMITS[key]] = _limit(value)
    elif key == "NoNewPrivileges":
        svc["no-new-privileges"] = value in ("yes", "true", "1", "on")
    elif key == "CapabilityBoundingSet":
        if value.startswith("~"):
            notes.append("CapabilityBoundingSet=~... (a drop list) has no vigil equivalent")
        else:
            svc["capability-bounding-set"] = value.split()
    elif key == "SuccessExitStatus":
        svc["success-exit-codes"] = [0, *(int(c) for c in value.split() if c.isdigit())]
    elif key == "StartLimitBurst":
        svc["start-retries"] = int(value)
    else:
        notes.append(f"[Service] {key}={value} has no vigil equivalent")


def _limit(value: str) -> Any:
    soft, _, hard = value.partition(":")
    one = [v if v == "infinity" else int(v) for v in (soft, hard or soft)]
    return one[0] if one[0] == one[1] else one


# -- supervisord -----------------------------------------------------------------

def from_supervisord(text: str) -> list[Converted]:
    import configparser
    cfg = configparser.RawConfigParser(strict=False, inline_comment_prefixes=(";",))
    cfg.read_string(text)
    out = []
    for section in cfg.sections():
        kind, _, name = section.partition(":")
        if kind == "program" and name:
            out.append(_program(name, dict(cfg.items(section))))
        elif kind == "group" and name:
            members = [p.strip() for p in cfg.get(section, "programs", fallback="").split(",")]
            out.append(Converted(name, {"unit": {"description": f"supervisord group {name}",
                                                 "wants": [m for m in members if m]}}))
        elif kind not in ("supervisord", "supervisorctl", "unix_http_server",
                          "inet_http_server", "rpcinterface", "include"):
            out.append(Converted(section, {}, [f"[{section}] not carried over"]))
    return [c for c in out if c.doc or c.notes]


def _program(name: str, opts: dict[str, str]) -> Converted:
    out = Converted(name, {})
    svc = out.doc.setdefault("service", {})
    for key, value in opts.items():
        value = value.strip()
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
            svc["start-seconds"] = float(value)
        elif key == "startretries":
            svc["start-retries"] = int(value)
        elif key == "exitcodes":
            svc["success-exit-codes"] = [int(c) for c in value.split(",")]
        elif key == "stopsignal":
            svc["stop-signal"] = value.upper()
        elif key == "stopwaitsecs":
            svc["stop-timeout"] = float(value)
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
    if "exec" not in svc:
        out.notes.append("no command: the unit will not load until exec is set")
    return out


# -- Procfile ----------------------------------------------------------------

def from_procfile(text: str) -> list[Converted]:
    """`name: command` per line (foreman, honcho): each a unit with a free $PORT."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name.strip()):
            out.append(Converted(f"line-{number}", {}, [f"line {number}: not NAME: COMMAND"]))
            continue
        out.append(Converted(name.strip(), {
            "unit": {"description": f"Procfile: {name.strip()}"},
            "service": {"exec": ["sh", "-c", command.strip()], "port": "auto",
                        "restart": "on-failure"}}))
    return [c for c in out if c.doc or c.notes]


# -- output ----------------------------------------------------------------------

def render(unit: Converted, source: str) -> str:
    import tomli_w
    head = [f"# Converted from {source} by vigilctl convert."]
    head += [f"# NOTE: {n}" for n in unit.notes]
    return "\n".join(head) + "\n" + tomli_w.dumps(unit.doc)


def convert(path: str, text: str) -> list[Converted]:
    base = os.path.basename(path)
    if base.endswith((".service", ".target")):
        return from_systemd(path, text)
    if base == "Procfile" or base.startswith("Procfile."):
        return from_procfile(text)
    if re.search(r"^\[program:", text, re.M) or base.endswith((".conf", ".ini")):
        return from_supervisord(text)
    raise ValueError(f"{path}: not a systemd .service/.target, a supervisord config or a "
                     "Procfile")


def main(path: str, out_dir: str | None) -> int:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise ValueError(f"{path}: {err.strerror}") from None
    units = convert(path, text)
    if not units:
        raise ValueError(f"{path}: nothing to convert")
    for n, unit in enumerate(units):
        for note in unit.notes:
            print(f"{unit.name}: {note}", file=sys.stderr)
        if not unit.doc:
            continue
        rendered = render(unit, path)
        if out_dir:
            target = os.path.join(out_dir, f"{unit.name}.toml")
            try:
                with open(target, "x", encoding="utf-8") as f:
                    f.write(rendered)
            except OSError as err:
                raise ValueError(f"{target}: {err.strerror}") from None
            print(f"wrote {target}")
        else:
            print(("\n" if n else "") + rendered, end="")
    return 0
