"""The unit file format: every key, its type, range and default, in tables.

`build_unit` turns one merged TOML document into a `Unit`, collecting every
problem (with the key and the line) instead of stopping at the first, so
`vigil check` can show them all at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from vigil import signames
from vigil.errors import Problem, UnitError
from vigil.numbers import parse_number
from vigil.unit import (Health, Limit, Output, OutputKind, Overlap, Probe, ProbeKind, Ready,
                        RestartPolicy, Service, ServiceType, Timer, Unit)

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any


class Invalid(Exception):
    """A value does not fit its key; the message says why."""


Check = Callable[["Any"], "Any"]

RLIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue",
           "nice", "nofile", "nproc", "rss", "rtprio", "sigpending", "stack")
CAPABILITIES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
    "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
    "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
    "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
    "audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
    "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore")
INFINITY = -1  # RLIM_INFINITY, as a value the spawner understands


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {_type_name(value)}")
    if "\0" in value:
        raise Invalid("a NUL character is not allowed")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {_type_name(value)}")
    return value


def number(low: float = 0.0, high: float = 1e9) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"expected a number of seconds, got {_type_name(value)}")
        if not low <= value <= high:
            raise Invalid(f"{value} is out of range ({low:g} to {high:g})")
        return float(value)
    return check


def integer(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected an integer, got {_type_name(value)}")
        if not low <= value <= high:
            raise Invalid(f"{value} is out of range ({low} to {high})")
        return value
    return check


def choice(enum_type: type[Any]) -> Check:
    allowed = [m.value for m in enum_type]

    def check(value: Any) -> Any:
        if value not in allowed:
            raise Invalid(f"{value!r} is not one of {', '.join(allowed)}")
        return enum_type(value)
    return check


def string_list(value: Any) -> tuple[str, ...]:
    """A list of strings; a lone string is taken as a list of one."""
    if isinstance(value, str):
        return (string(value),)
    if not isinstance(value, list):
        raise Invalid(f"expected a list of strings, got {_type_name(value)}")
    return tuple(string(v) for v in value)


def argv(value: Any) -> tuple[str, ...]:
    """A command: a list, or a string split as a shell would (no shell runs)."""
    if isinstance(value, str):
        import shlex
        try:
            words = tuple(shlex.split(string(value)))
        except ValueError as err:
            raise Invalid(f"cannot split the command: {err}") from None
    else:
        words = string_list(value)
    if not words or not words[0]:
        raise Invalid("the command is empty")
    return words


def commands(value: Any) -> tuple[tuple[str, ...], ...]:
    """Lifecycle commands: one command, or a list of them, each a string
    (split as a shell would) or a list of words; run in order. A first word
    starting with "-" (as systemd's ExecStartPre=-cmd) means its failure
    is ignored."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        words = argv(item)
        if words[0] == "-":
            raise Invalid("a lone \"-\" is not a command (write \"-cmd\")")
        out.append(words)
    return tuple(out)


def unit_names(value: Any) -> tuple[str, ...]:
    names = string_list(value)
    for name in names:
        if not valid_name(name) or name.endswith("@"):
            raise Invalid(f"{name!r} is not a valid unit name")
    return names


def valid_name(name: str) -> bool:
    """Letters, digits and `_.-`, with at most one `@` for a template."""
    base, _, instance = name.partition("@")
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
    return (bool(base) and set(base) <= allowed and not base.startswith(".")
            and set(instance) <= allowed | {"@"} and len(name) <= 200)


def signal_number(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        value = string(value)
    try:
        return signames.number(value)
    except ValueError as err:
        raise Invalid(str(err)) from None


def umask(value: Any) -> int:
    if isinstance(value, str):
        number = parse_number(value, 0, 0o777, base=8)
        if number is None:
            raise Invalid(f"{value!r} is not an octal umask such as \"022\"")
        return number
    return int(integer(0, 0o777)(value))


def env_table(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise Invalid(f"expected a table of NAME = \"value\", got {_type_name(value)}")
    pairs = []
    for name, val in value.items():
        if not name or "=" in name or "\0" in name:
            raise Invalid(f"{name!r} is not a valid variable name")
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            raise Invalid(f"{name}: expected a string, got {_type_name(val)}")
        pairs.append((name, string(str(val))))
    return tuple(pairs)


def output(value: Any) -> Output:
    text = string(value)
    if text in ("log", "null", "console", "inherit"):
        return Output(OutputKind(text))
    if not text.startswith("/"):
        raise Invalid(f"{text!r} is not log, null, console, inherit or an absolute path")
    return Output(OutputKind.FILE, text)


def absolute_path(value: Any) -> str:
    text = string(value)
    if not text.startswith("/"):
        raise Invalid(f"{text!r} is not an absolute path")
    return text


def port(value: Any) -> int | str:
    """A fixed TCP port, or "auto": a free one, chosen at each start."""
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise Invalid(f"{value!r} is not a port (1-65535) or \"auto\"")
    return value


def console(value: Any) -> str | None:
    """pty, none, tty (/dev/console) or the path of a terminal device."""
    text = string(value)
    if text == "tty":
        return "/dev/console"
    if text in ("pty", "none") or text.startswith("/dev/"):
        return None if text == "none" else text
    raise Invalid(f"{text!r} is not pty, tty, none or a /dev path")


SPAN_UNITS = {"us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "s": 1, "sec": 1,
              "second": 1, "seconds": 1, "m": 60, "min": 60, "minute": 60, "minutes": 60,
              "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400,
              "days": 86400, "w": 604800, "week": 604800, "weeks": 604800,
              "M": 2629800, "month": 2629800, "months": 2629800,  # 30.44 days, as systemd
              "y": 31557600, "year": 31557600, "years": 31557600}  # 365.25 days


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def duration(value: Any) -> float:
    """Seconds, or a span such as "15m", "0.5s", "1h 30m" (systemd's units)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        seconds, text = 0.0, string(value).replace(" ", "")
        if not text:
            raise Invalid("empty time span")
        while text:
            digits = len(text) - len(text.lstrip("0123456789."))
            letters = len(text[digits:]) - len(text[digits:].lstrip(_LETTERS))
            number, unit = text[:digits], text[digits:digits + letters] or "s"
            if not number or unit not in SPAN_UNITS or number.count(".") > 1 \
                    or number == ".":
                raise Invalid(f"{value!r} is not a time span (such as 30, \"15m\", "
                              "\"1h 30m\", \"0.5s\")")
            seconds += float(number) * SPAN_UNITS[unit]
            text = text[digits + letters:]
    if not 0.001 <= seconds <= 86400 * 3660:
        raise Invalid(f"{value!r} is out of range (1ms to 10 years)")
    return seconds


def calendars(value: Any) -> tuple[str, ...]:
    """One or more calendar expressions, checked by vigil.calendar (loaded
    only here: a unit without a calendar never imports it)."""
    from vigil.calendar import parse
    texts = string_list(value)
    for text in texts:
        try:
            parse(text)
        except ValueError as err:
            raise Invalid(f"{text!r}: {err}") from None
    return texts


def regex(value: Any) -> str:
    """A regular expression searched in each line of a service's output."""
    import re
    text = string(value)
    if not text:
        raise Invalid("an empty pattern matches every line")
    try:
        re.compile(text)
    except re.error as err:
        raise Invalid(f"{text!r} is not a regular expression: {err}") from None
    return text


def table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"expected a table, got {_type_name(value)}")
    return value


# The spawner carries ids as a C int, and 4294967295 is (uid_t)-1, "no change"
MAX_ID = 2**31 - 1
_DIGITS = frozenset("0123456789")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ._-") | _DIGITS


def user_or_group(value: Any) -> str:
    """A number 0 to MAX_ID (as text: ASCII digits only) or a portable name.

    Only ASCII is taken: the launcher treats an all-digit string as an id, and
    "٠" or "²" are digits to Python but no user's name."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = string(value)
    if not text:
        raise Invalid("empty name")
    if text[0] == "-" or set(text) <= _DIGITS:  # an id, or an attempt at -1
        number = parse_number(text, 0, MAX_ID)
        if number is None:
            raise Invalid(f"{text!r} is not an id from 0 to {MAX_ID}")
        return str(number)
    name = text.removesuffix("$")  # a machine account's trailing $
    if not name or not set(name) <= _NAME_CHARS or len(text) > 256:
        raise Invalid(f"{text!r} is not a user or group name (ASCII letters, digits, "
                      "'.', '_' and '-') or an id")
    return text


def capabilities(value: Any) -> tuple[str, ...]:
    names = []
    for cap in string_list(value):
        short = cap.lower().removeprefix("cap_")
        if short not in CAPABILITIES:
            raise Invalid(f"{cap!r} is not a capability name (such as CAP_NET_BIND_SERVICE)")
        names.append(short)
    return tuple(names)


def rlimit_value(value: Any) -> tuple[int, int]:
    def one(v: Any) -> int:
        if v == "infinity":
            return INFINITY
        return integer(0, 2**63 - 1)(v)
    if isinstance(value, list):
        if len(value) != 2:
            raise Invalid("expected [soft, hard]")
        soft, hard = one(value[0]), one(value[1])
        if hard != INFINITY and (soft == INFINITY or soft > hard):
            raise Invalid("the soft limit is above the hard limit")
        return soft, hard
    both = one(value)
    return both, both


def scope_pid(value: Any) -> int:
    text = string(value)
    pid = parse_number(text.removeprefix("pid:"), 2, 2**31 - 1) if text.startswith("pid:") else None
    if pid is None:
        raise Invalid(f"expected \"pid:N\" (a process to be bound to), got {text!r}")
    return pid


def _http_url_problem(url: str) -> str | None:
    """What is wrong with an http probe's URL, found now rather than at each probe."""
    if not url.startswith("http://"):
        return "expected a URL starting with http://"
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parses the port, raising on a bad one
    except ValueError as err:
        return f"{url!r}: {err}"
    return None if parts.hostname else f"{url!r} names no host"


def _close(word: str, choices: Any, n: int = 1) -> list[str]:
    """A "did you mean" hint; difflib is loaded only when a key is wrong."""
    import difflib
    return difflib.get_close_matches(word, choices, n=n)


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
    "pass-env": string_list, "stdout": output, "stderr": output,
    "no-new-privileges": boolean, "capability-bounding-set": capabilities,
    "log-max-size": integer(4096, 1 << 40), "log-keep": integer(0, 1000),
    "ready": table, "health": table, "limits": table,
    "exec-pre": commands, "exec-post": commands, "exec-stop": commands,
    "exec-reload": commands, "reload-signal": signal_number,
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
            self.problem(where, f"expected a table, got {_type_name(table)}")
            return {}
        good: dict[str, Any] = {}
        for key, value in table.items():
            dotted = f"{where}.{key}"
            if key not in spec:
                hint = _close(key, spec, n=1)
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
            why = _http_url_problem(value.replace("$PORT", "1"))  # $PORT: the service's
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
            hint = _close(top, ("unit", "service", "timer"), n=1)
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
    from vigil.expand import check_unit
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
    for table, check in (("ready", ready), ("health", health)):
        if check and "port" not in fields and (
                (check.probe.kind is ProbeKind.TCP and check.probe.port == 0)
                or "$PORT" in check.probe.url):
            b.problem(f"service.{table}", "tcp = \"port\" and $PORT in a URL need a "
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
