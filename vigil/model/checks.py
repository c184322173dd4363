"""The value checks of unit file keys: each takes what TOML gave and returns
the typed value, or raises Invalid saying why (vigil/model/schema.py's tables
name which check each key gets)."""

from __future__ import annotations

from collections.abc import Callable

from vigil.base import signames
from vigil.base.numbers import parse_number
from vigil.model.unit import Output, OutputKind

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


def type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {type_name(value)}")
    if "\0" in value:
        raise Invalid("a NUL character is not allowed")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {type_name(value)}")
    return value


def number(low: float = 0.0, high: float = 1e9) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"expected a number of seconds, got {type_name(value)}")
        if not low <= value <= high:
            raise Invalid(f"{value} is out of range ({low:g} to {high:g})")
        return float(value)
    return check


def integer(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected an integer, got {type_name(value)}")
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
        raise Invalid(f"expected a list of strings, got {type_name(value)}")
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


def command_list(value: Any) -> tuple[tuple[str, ...], ...]:
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
        raise Invalid(f"expected a table of NAME = \"value\", got {type_name(value)}")
    pairs = []
    for name, val in value.items():
        if not name or "=" in name or "\0" in name:
            raise Invalid(f"{name!r} is not a valid variable name")
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            raise Invalid(f"{name}: expected a string, got {type_name(val)}")
        pairs.append((name, string(str(val))))
    return tuple(pairs)


def output_target(value: Any) -> Output:
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
    """One or more calendar expressions, checked by vigil.model.calendar (loaded
    only here: a unit without a calendar never imports it)."""
    from vigil.model.calendar import parse
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
        raise Invalid(f"expected a table, got {type_name(value)}")
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


def http_url_problem(url: str) -> str | None:
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


def close_matches(word: str, choices: Any, n: int = 1) -> list[str]:
    """A "did you mean" hint; difflib is loaded only when a key is wrong."""
    import difflib
    return difflib.get_close_matches(word, choices, n=n)
