"""The unit file format: every key, its type, range and default, in tables.

`build_unit` turns one merged TOML document into a `Unit`, collecting every
problem (with the key and the line) instead of stopping at the first, so
`vigil check` can show them all at once.
"""

from __future__ import annotations

from collections.abc import Mapping

from vigil.model.checks import (Check, Invalid, RLIMITS, absolute_path, argv, boolean, calendars,
                          capabilities, choice, close_matches, command_list, console, duration,
                          env_table, http_url_problem, integer, number, output_target, port, regex,
                          rlimit_value, scope_pid, signal_number, string, string_list, table,
                          type_name, umask, unit_names, user_or_group)
from vigil.base.errors import Problem, UnitError
from vigil.base.numbers import parse_number
from vigil.model.unit import (Health, Limit, Output, OutputKind, Overlap, Probe, ProbeKind, Ready,
                        RestartPolicy, Service, ServiceType, Timer, Unit)

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any


UNIT_KEYS: dict[str, Check] = {
    "description": string, "requires": unit_names, "wants": unit_names,
    "after": unit_names, "before": unit_names, "conflicts": unit_names,
    "on-failure": unit_names, "on-success": unit_names, "enabled": boolean,
    "hosts": string_list, "critical": boolean, "scope": scope_pid,
    "if-exists": lambda v: tuple(absolute_path(x) for x in string_list(v)),
    "unless-exists": lambda v: tuple(absolute_path(x) for x in string_list(v)),
}
SERVICE_KEYS: dict[str, Check] = {
    "exec": argv, "type": choice(ServiceType), "pid-file": absolute_path,
    "start-timeout": number(0.001, 86400), "console": console, "port": port,
    "instances": integer(1, 1000), "restart": choice(RestartPolicy),
    "success-exit-codes": lambda v: frozenset(integer(0, 255)(c) for c in
                                              (v if isinstance(v, list) else [v])),
    "start-seconds": number(0, 86400), "start-retries": integer(0, 1000000),
    "restart-delay": number(0, 86400), "restart-delay-max": number(0, 86400),
    "stable-seconds": number(0, 86400 * 7), "retry-after-fatal": number(0, 86400 * 7),
    "stop-signal": signal_number, "stop-timeout": number(0.001, 86400),
    "user": user_or_group, "group": user_or_group,
    "supplementary-groups": lambda v: tuple(user_or_group(g) for g in
                                            (v if isinstance(v, list) else [v])),
    "umask": umask, "cwd": string, "env": env_table, "env-file": string_list,
    "pass-env": string_list, "stdout": output_target, "stderr": output_target,
    "no-new-privileges": boolean, "capability-bounding-set": capabilities,
    "log-max-size": integer(4096, 1 << 40), "log-keep": integer(0, 1000),
    "ready": table, "health": table, "limits": table,
    "exec-pre": command_list, "exec-post": command_list, "exec-stop": command_list,
    "exec-reload": command_list, "reload-signal": signal_number,
    "exec-timeout": number(0.001, 86400), "watchdog": duration,
}
PROBE_KEYS: dict[str, Check] = {
    "tcp": lambda v: v, "http": string, "exec": argv, "notify": boolean,
    "fd": integer(3, 1023), "log": regex,
}
READY_KEYS: dict[str, Check] = {**PROBE_KEYS, "timeout": number(0.001, 86400),
                                "interval": number(0.001, 3600)}
TIMER_KEYS: dict[str, Check] = {
    "calendar": calendars, "every": duration, "after-boot": duration,
    "randomize": lambda v: 0.0 if v in (0, "0") else duration(v), "persistent": boolean,
    "overlap": choice(Overlap),
}
HEALTH_KEYS: dict[str, Check] = {
    "tcp": PROBE_KEYS["tcp"], "http": string, "exec": argv,
    "interval": number(0.01, 86400), "timeout": number(0.001, 3600),
    "retries": integer(1, 1000), "log-fails": regex, "silence": duration,
}


class Builder:
    """Validates one merged document; collects problems instead of raising."""

    def __init__(self, name: str, path: str, where: Mapping[str, tuple[str, int]]) -> None:
        self.name, self.path, self.where = name, path, where
        self.problems: list[Problem] = []
        self.rejected: set[str] = set()  # keys present but invalid

    def problem(self, key: str | None, message: str) -> None:
        """Records a problem at the file and line where `key` (or its table) stands."""
        parts = key.split(".") if key else []
        while parts and ".".join(parts) not in self.where:
            parts.pop()  # fall back to the nearest enclosing table
        path, line = self.where.get(".".join(parts), (self.path, None))
        self.problems.append(Problem(path, message, key, line))

    def section(self, where: str, table: Any, spec: Mapping[str, Check]) -> dict[str, Any]:
        """Checks every key of `table` against `spec`; returns the good values."""
        if not isinstance(table, dict):
            self.problem(where, f"expected a table, got {type_name(table)}")
            return {}
        good: dict[str, Any] = {}
        for key, value in table.items():
            dotted = f"{where}.{key}"
            if key not in spec:
                hint = close_matches(key, spec, n=1)
                mean = f" (did you mean '{hint[0]}'?)" if hint else ""
                self.problem(dotted, f"unknown key '{key}'{mean}")
                continue
            try:
                good[key] = spec[key](value)
                continue
            except Invalid as err:
                self.problem(dotted, str(err))
            except (TypeError, ValueError) as err:  # a check meeting a shape it did not expect
                self.problem(dotted, f"invalid value: {err}")
            self.rejected.add(key)
        return good

    def probe(self, where: str, values: dict[str, Any], kinds: tuple[str, ...]) -> Probe | None:
        present = [k for k in kinds if k in values]
        if len(present) != 1:
            self.problem(where, f"needs exactly one of {', '.join(kinds)}"
                         + (f", got {', '.join(present)}" if present else ""))
            return None
        kind = present[0]
        value = values[kind]
        if kind == "tcp":
            return self.tcp_probe(f"{where}.tcp", value)
        if kind == "http":
            why = http_url_problem(value.replace("$PORT", "1"))  # $PORT: the service's
            if why:
                self.problem(f"{where}.http", why)
                return None
            return Probe(ProbeKind.HTTP, url=value)
        if kind == "exec":
            return Probe(ProbeKind.EXEC, argv=value)
        if kind == "notify":
            if not value:
                self.problem(f"{where}.notify", "notify = false means nothing; remove it")
                return None
            return Probe(ProbeKind.NOTIFY)
        if kind == "log":
            return Probe(ProbeKind.LOG, pattern=value)
        return Probe(ProbeKind.FD, fd=value)

    def tcp_probe(self, key: str, value: Any) -> Probe | None:
        host, port = "127.0.0.1", value
        if value == "port":  # the port the service was given ([service] port)
            return Probe(ProbeKind.TCP, host=host, port=0)
        if isinstance(value, str):
            host, _, text = value.rpartition(":")
            host = host.strip("[]") or "127.0.0.1"
            port = parse_number(text, 1, 65535) or -1
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            self.problem(key, f"{value!r} is not a port (1-65535), \"host:port\" or \"port\"")
            return None
        return Probe(ProbeKind.TCP, host=host, port=port)


def build_unit(name: str, doc: dict[str, Any], path: str,
               where: Mapping[str, tuple[str, int]]) -> Unit:
    """Builds a Unit from a merged TOML document or raises UnitError.

    `where` maps dotted keys to the (file, line) that set them."""
    b = Builder(name, path, where)
    for top in doc:
        if top not in ("unit", "service", "timer"):
            hint = close_matches(top, ("unit", "service", "timer"), n=1)
            b.problem(top, f"unknown table '{top}'"
                      + (f" (did you mean '{hint[0]}'?)" if hint else ""))
    unit_values = b.section("unit", doc.get("unit", {}), UNIT_KEYS)
    service = None
    if isinstance(doc.get("service"), dict):
        service = _build_service(b, b.section("service", doc["service"], SERVICE_KEYS))
    elif "service" in doc:
        b.problem("service", "expected a table")
    timer = _build_timer(b, doc["timer"], service is not None) if "timer" in doc else None
    if b.problems:
        raise UnitError(b.problems)
    fields = {k.replace("-", "_"): v for k, v in unit_values.items()}
    return Unit(name=name, service=service, timer=timer, path=path, raw=doc,
                where=dict(where), **fields)


def _build_timer(b: Builder, table: Any, has_service: bool) -> Timer | None:
    """[timer]: at least one of calendar, every, after-boot, on a service."""
    values = b.section("timer", table, TIMER_KEYS)
    if not isinstance(table, dict):
        return None
    if not has_service and "service" not in b.rejected:
        b.problem("timer", "a [timer] runs the unit's [service]; this unit has none")
    if not {"calendar", "every", "after-boot"} & (set(values) | set(table)):
        b.problem("timer", "a [timer] needs calendar, every or after-boot")
        return None
    fields = {k.replace("-", "_"): v for k, v in values.items()}
    return Timer(**fields)


def _check_output_rules(b: Builder, fields: dict[str, Any], ready: Ready | None) -> None:
    """Rules on the output read the lines vigil captures: a pipe to the log or
    the console, or a pty; with both streams elsewhere they would never run."""
    rules = [key for key, on in (("service.ready", ready is not None and ready.probe.kind
                                  is ProbeKind.LOG), ("service.health", "log_fails" in fields
                                                      or "silence" in fields)) if on]
    piped = (OutputKind.LOG, OutputKind.CONSOLE)
    if rules and not fields.get("pty") and not any(
            fields.get(s, Output(OutputKind.LOG)).kind in piped for s in ("stdout", "stderr")):
        b.problem(rules[0], "rules on the output need stdout or stderr to be log or console "
                  "(vigil reads no other)")


def _check_lifecycle(b: Builder, fields: dict[str, Any], ready: Ready | None) -> None:
    """Keys that cannot work together, said at load rather than at a start."""
    if "exec_reload" in fields and "reload_signal" in fields:
        b.problem("service.reload-signal", "exec-reload and reload-signal exclude each other")
    if "watchdog" in fields and not (ready and ready.probe.kind is ProbeKind.NOTIFY):
        b.problem("service.watchdog", "watchdog needs sd_notify: type = \"notify\" or "
                  "[service.ready] notify = true")
    from vigil.base.expand import check_unit
    for key, message in check_unit(fields, ready is not None
                                   and ready.probe.kind is ProbeKind.NOTIFY):
        b.problem(key, message)


def _build_service(b: Builder, values: dict[str, Any]) -> Service | None:
    if "exec" not in values:
        if "exec" not in b.rejected:
            b.problem("service", "a [service] needs exec (the command to run)")
        return None
    ready = health = None
    if "ready" in values:
        r = b.section("service.ready", values.pop("ready"), READY_KEYS)
        probe = b.probe("service.ready", r, tuple(PROBE_KEYS))
        if probe:
            ready = Ready(probe, r.get("timeout", 90.0), r.get("interval", 0.1))
    if "health" in values:
        raw = values.pop("health")
        h = b.section("service.health", raw, HEALTH_KEYS)
        for rule in ("log-fails", "silence"):  # rules on the output, with or without a probe
            if rule in h:
                values[rule] = h.pop(rule)
        kinds = ("tcp", "http", "exec")
        if any(k in raw for k in kinds) or not {"log-fails", "silence"} & set(raw):
            probe = b.probe("service.health", h, kinds)
            if probe:
                health = Health(probe, h.get("interval", 10.0), h.get("timeout", 5.0),
                                h.get("retries", 3))
    limits = []
    for res, value in b.section("service.limits", values.pop("limits", {}),
                                {r: rlimit_value for r in RLIMITS}).items():
        limits.append(Limit(res, *value))
    fields = {k.replace("-", "_"): v for k, v in values.items()}
    if "console" in fields:
        terminal = fields.pop("console")
        fields["pty"] = terminal == "pty"
        fields["tty"] = None if terminal == "pty" else terminal
    kind = fields.get("type", ServiceType.SIMPLE)
    if kind is ServiceType.NOTIFY and ready is None:
        ready = Ready(Probe(ProbeKind.NOTIFY), 90.0, 0.1)
    for which, check in (("ready", ready), ("health", health)):
        if check and "port" not in fields and (
                (check.probe.kind is ProbeKind.TCP and check.probe.port == 0)
                or "$PORT" in check.probe.url):
            b.problem(f"service.{which}", "tcp = \"port\" and $PORT in a URL need a "
                      "[service] port")
    if kind is ServiceType.FORKING and "pid_file" not in fields:
        b.problem("service.type", "type = \"forking\" needs pid-file")
    if kind is ServiceType.FORKING and fields.get("instances", 1) > 1:
        b.problem("service.instances", "a forking service cannot have instances")
    if kind is ServiceType.ONESHOT and fields.get("restart") is RestartPolicy.ALWAYS:
        b.problem("service.restart", "restart = \"always\" makes no sense for a oneshot")
    if ready and ready.probe.kind in (ProbeKind.NOTIFY, ProbeKind.LOG) \
            and kind is ServiceType.ONESHOT:
        b.problem("service.ready", f"a oneshot is ready when it exits; "
                  f"{ready.probe.kind.value} does not apply")
    _check_output_rules(b, fields, ready)
    _check_lifecycle(b, fields, ready)
    try:
        return Service(ready=ready, health=health, limits=tuple(limits), **fields)
    except TypeError as err:  # only if the tables above and Service disagree: a bug
        b.problem("service", f"internal error: {err}")
        return None
