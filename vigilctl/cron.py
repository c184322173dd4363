"""Crontab lines read for `vigilctl convert`: each job becomes a oneshot
unit with a [timer] calendar (or, for @reboot, a unit started at boot).

`m h dom mon dow command` (a user's crontab), or with a user field after
dow in /etc/crontab and /etc/cron.d files; @hourly, @daily (@midnight),
@weekly, @monthly, @yearly (@annually) and @reboot; NAME=value lines set the
environment of the jobs after them. When both day-of-month and day-of-week
are restricted, cron runs the job when either matches: that becomes two
calendars (a systemd calendar needs both)."""

from __future__ import annotations

import os
import re

from vigilctl.convert import Converted

SPECIAL = {"@hourly": "hourly", "@daily": "daily", "@midnight": "daily", "@weekly": "weekly",
           "@monthly": "monthly", "@yearly": "yearly", "@annually": "yearly"}
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
DAY_NAMES = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


def is_crontab(path: str) -> bool:
    base = os.path.basename(path)
    return base == "crontab" or base.endswith((".crontab", ".cron")) or "/cron.d/" in path


def from_crontab(path: str, text: str) -> list[Converted]:
    with_user = os.path.abspath(path) == "/etc/crontab" or "/cron.d/" in path
    env: dict[str, str] = {}
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assignment = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
        if assignment:
            name, value = assignment.group(1), assignment.group(2).strip().strip("\"'")
            if name == "MAILTO":
                out.append(Converted(f"line-{number}", {}, [
                    f"line {number}: MAILTO has no vigil equivalent (output goes to the log)"]))
            else:
                env[name] = value
            continue
        out.append(_job(number, line, dict(env), with_user))
    return out


def _job(number: int, line: str, env: dict[str, str], with_user: bool) -> Converted:
    fields = line.split(None, 1 if line.startswith("@") else 5)
    when = fields[:1] if line.startswith("@") else fields[:5]
    rest = fields[-1] if len(fields) > len(when) else ""
    user = None
    if with_user and rest:
        user, _, rest = rest.partition(" ")
        rest = rest.strip()
    if not rest or (not line.startswith("@") and len(when) < 5):
        return Converted(f"line-{number}", {}, [
            f"line {number}: not MINUTE HOUR DAY MONTH WEEKDAY COMMAND (or @daily COMMAND)"])
    stem = re.sub(r"[^A-Za-z0-9_.-]", "", os.path.basename(rest.split()[0]))[:40]
    unit = Converted(f"cron-{number}" + (f"-{stem}" if stem.strip(".") else ""), {})
    service: dict[str, object] = {"type": "oneshot", "exec": ["sh", "-c", rest]}
    if env:
        service["env"] = env
    if user:
        service["user"] = user
    if "%" in rest:
        unit.notes.append("the command has %: cron turns it into a newline and stdin; "
                          "vigil passes it as it is")
    unit.doc = {"unit": {"description": f"crontab line {number}"}, "service": service}
    try:
        calendars = _calendars(when)
    except ValueError as err:  # no unit: without its schedule it would run at boot
        return Converted(f"line-{number}", {}, [f"line {number}: {err}; not converted"])
    if calendars is None:  # @reboot: started at boot like any enabled unit
        unit.notes.append("@reboot: runs once when vigil starts")
    else:
        unit.doc["timer"] = {"calendar": calendars}
    return unit


def _calendars(when: list[str]) -> list[str] | None:
    """systemd calendar expressions for a cron schedule (None for @reboot)."""
    if len(when) == 1:
        word = when[0].lower()
        if word == "@reboot":
            return None
        if word not in SPECIAL:
            raise ValueError(f"{when[0]!r} is not @reboot, @hourly, @daily, @weekly, "
                             "@monthly or @yearly")
        return [SPECIAL[word]]
    minute, hour, dom, month, dow = when
    time = f"{_field(hour, 0, 23)}:{_field(minute, 0, 59)}:00"
    date = f"*-{_field(month, 1, 12, MONTHS)}-"
    days = _weekdays(dow)
    if dom == "*" or days is None:
        out = [(f"{days} " if days else "") + date + _field(dom, 1, 31) + " " + time]
    else:  # cron: either one matches
        out = [date + _field(dom, 1, 31) + " " + time, f"{days} {date}* {time}"]
    from vigil.model.calendar import parse
    for expression in out:
        parse(expression)  # ValueError names what is wrong
    return out


def _field(text: str, low: int, high: int, names: tuple[str, ...] = ()) -> str:
    """A cron field in systemd's syntax: 1-5 -> 1..5, names -> numbers."""
    if text == "*":
        return "*"
    items = []
    for item in text.split(","):
        span, slash, step = item.partition("/")
        first, dash, last = span.partition("-")
        bounds = [] if span == "*" else [_number(first, low, high, names)] + (
            [_number(last, low, high, names)] if dash else [])
        base = "..".join(f"{b:02d}" for b in bounds) or "*"
        if slash:
            base += f"/{_number(step, 1, high, ())}"
        items.append(base)
    return ",".join(items)


def _number(text: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text.lower() in names:
        return names.index(text.lower()) + low
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{text!r} is not a number from {low} to {high}")
    return int(text)


def _weekdays(text: str) -> str | None:
    """A cron day-of-week field (0-7, 0 and 7 Sunday, names) as Mon,Tue...;
    None for every day."""
    if text == "*":
        return None
    days: set[int] = set()
    for item in text.split(","):
        span, slash, step_text = item.partition("/")
        first, dash, last = span.partition("-")
        a = 0 if span == "*" else _number(first, 0, 7, DAYS)
        b = 7 if span == "*" else (_number(last, 0, 7, DAYS) if dash else (7 if slash else a))
        step = _number(step_text, 1, 7, ()) if slash else 1
        days.update(d % 7 for d in range(a, b + 1, step))
    order = [1, 2, 3, 4, 5, 6, 0]  # systemd's week starts on Monday
    return ",".join(DAY_NAMES[d] for d in order if d in days)
