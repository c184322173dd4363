"""systemd .service and .target files read for `vigilctl convert`: each
key carried over to vigil's TOML, or noted."""

from __future__ import annotations

import math
import os
import re
import shlex
from typing import Any

from vigilctl.convert import Converted, dependency, named, signal_name


def parse_systemd(text: str, notes: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Sections of (key, value) pairs in order; continuation lines joined.
    A line that is no setting is noted; one before the first section is an
    error (ValueError naming the line)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for number, raw in enumerate(text.split("\n"), 1):
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif current is None:
            raise ValueError(f"line {number}: {line!r} comes before the first [section]")
        elif "=" in line:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
        else:
            notes.append(f"line {number}: {line!r} is not KEY=VALUE; skipped")
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
    if not found or not math.isfinite(total):
        raise ValueError(repr(text))
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
    out = named(unit_name(base, []), {}, base)
    notes = out.notes
    sections = parse_systemd(text, notes)
    for key, value in sections.get("Unit", []):
        if key == "Description":
            out.set("unit", "description", value)
        elif key in LISTS:
            names = out.doc.setdefault("unit", {}).setdefault(LISTS[key], [])
            for word in value.split():
                names.extend(dependency(unit_name(word, notes), notes))
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
            notes.append("ExecStart uses $VARIABLES: vigil expands $VAR and ${VAR} in place "
                         "(a $VAR is not split into words as systemd does)")
        svc["exec"] = argv
    elif key in COMMANDS:
        _command(out, key, value)
    elif key == "WatchdogSec":
        if value not in ("0", "infinity"):
            svc["watchdog"] = timespan(value)
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
        svc["stop-signal"] = signal_name(value)
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
        svc["success-exit-codes"] = [0, *(int(c) for c in value.split()
                                          if re.fullmatch("[0-9]{1,3}", c))]
    elif key == "StartLimitBurst":
        svc["start-retries"] = int(value)
    else:
        notes.append(f"[Service] {key}={value} has no vigil equivalent")


# systemd's commands around the main process -> vigil's lifecycle keys
COMMANDS = {"ExecStartPre": "exec-pre", "ExecStartPost": "exec-post", "ExecStop": "exec-stop",
            "ExecReload": "exec-reload"}


def _command(out: Converted, key: str, value: str) -> None:
    """One more command of a list; "-" (failure ignored) kept, others noted."""
    prefix = re.match(r"[-@:+!]*", value).group(0)  # type: ignore[union-attr]
    if set(prefix) - {"-"}:
        out.notes.append(f"{key} prefix {prefix!r}: only '-' is kept")
    text = value[len(prefix):].strip()
    if not text:
        return  # an empty assignment resets the list in systemd; nothing to add
    shlex.split(text)  # a ValueError here is the caller's "cannot read" note
    out.doc["service"].setdefault(COMMANDS[key], []).append(("-" if "-" in prefix else "")
                                                            + text)
    note = "ExecStop: vigil sends the stop signal at stop-timeout, not as soon as it ends"
    if key == "ExecStop" and note not in out.notes:
        out.notes.append(note)


def _limit(value: str) -> Any:
    soft, _, hard = value.partition(":")
    one = [v if v == "infinity" else int(v) for v in (soft, hard or soft)]
    return one[0] if one[0] == one[1] else one


# -- .timer ----------------------------------------------------------------------

TIMER_SPANS = {"OnBootSec": "after-boot", "OnStartupSec": "after-boot",
               "OnUnitActiveSec": "every", "OnUnitInactiveSec": "every",
               "RandomizedDelaySec": "randomize"}


def from_timer(path: str, text: str) -> list[Converted]:
    """A .timer becomes the [timer] of the unit it starts (Unit=, else the
    .service of the same name); that .service, if it sits beside the timer,
    is converted with it, so the result is one whole unit."""
    notes: list[str] = []
    sections = parse_systemd(text, notes)
    base = os.path.basename(path)
    target = base.removesuffix(".timer") + ".service"
    for key, value in sections.get("Timer", []):
        if key == "Unit":
            target = value
    service_path = os.path.join(os.path.dirname(path), target)
    if os.path.basename(service_path) == target and os.path.isfile(service_path):
        with open(service_path, encoding="utf-8") as f:
            out = from_systemd(service_path, f.read())[0]
    else:
        out = named(unit_name(target, notes), {}, base)
        notes.append(f"{target} is not beside the timer: merge this [timer] into its unit")
    out.notes.extend(notes)
    timer: dict[str, Any] = {}
    for key, value in sections.get("Timer", []):
        try:
            _timer_key(out, timer, key, value)
        except ValueError as err:
            out.notes.append(f"[Timer] {key}={value}: cannot read {err}")
    for key, value in sections.get("Unit", []):
        if key == "Description" and "description" not in out.doc.get("unit", {}):
            out.set("unit", "description", value)
    if not {"calendar", "every", "after-boot"} & set(timer):
        out.notes.append("no OnCalendar, OnBootSec or OnUnitActiveSec: the [timer] needs one")
    out.doc["timer"] = timer
    return [out]


def _timer_key(out: Converted, timer: dict[str, Any], key: str, value: str) -> None:
    if key == "OnCalendar":
        from vigil.model.calendar import parse
        try:
            parse(value)
        except ValueError as err:
            out.notes.append(f"OnCalendar={value}: {err}; dropped")
            return
        timer.setdefault("calendar", []).append(value)
    elif key in TIMER_SPANS:
        timer[TIMER_SPANS[key]] = timespan(value)
        if key == "OnUnitInactiveSec":
            out.notes.append("OnUnitInactiveSec approximated by every (from each start, "
                             "not from each end)")
        if key == "OnStartupSec":
            out.notes.append("OnStartupSec approximated by after-boot")
    elif key == "Persistent":
        timer["persistent"] = value in ("yes", "true", "1", "on")
    elif key == "AccuracySec":
        out.notes.append(f"AccuracySec={value}: vigil's timers are exact; dropped")
    elif key != "Unit":
        out.notes.append(f"[Timer] {key}={value} has no vigil equivalent")
