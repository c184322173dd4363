"""Calendar expressions, a subset of systemd.time(7): parsing and the next
elapse after a moment.

    [WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]] [TIMEZONE]

Each numeric field is `*`, a number, a range `A..B`, a repetition `A/STEP`
(or `*/STEP`, `A..B/STEP`), or a comma list of those; weekdays are names
(`Mon`, `monday`) in lists and ranges (`Mon..Fri`, `Sat,Sun`). A missing
date is every day, a missing time is midnight, missing seconds are 0. The
shorthands `minutely`, `hourly`, `daily`, `weekly`, `monthly`, `yearly`
(`annually`), `quarterly` and `semiannually` stand for their systemd forms.
The zone is `UTC` or an IANA name (`Europe/Berlin`); without one the local
zone (TZ, else /etc/localtime).

Daylight saving: a local time that happens twice fires once, at its first
occurrence; a local time skipped by a jump forward fires at the moment of
the jump. So elapses never go back in time and none is lost.

This module is imported only when a unit has a calendar timer: PID 1 pays
for datetime and zoneinfo only then.
"""

from __future__ import annotations

import bisect
import calendar as _cal
from vigil.base.records import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

MIN_YEAR, MAX_YEAR = 1970, 2199
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LONG_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
SHORTHANDS = {
    "minutely": "*-*-* *:*:00", "hourly": "*-*-* *:00:00", "daily": "*-*-* 00:00:00",
    "weekly": "Mon *-*-* 00:00:00", "monthly": "*-*-01 00:00:00",
    "yearly": "*-01-01 00:00:00", "annually": "*-01-01 00:00:00",
    "quarterly": "*-01,04,07,10-01 00:00:00", "semiannually": "*-01,07-01 00:00:00",
}
_ONE_SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class Calendar:
    """A parsed expression: the sorted values each field may take."""

    text: str
    weekdays: frozenset[int] | None  # 0 = Monday; None: any
    years: tuple[int, ...] | None  # None: any
    months: tuple[int, ...]
    days: tuple[int, ...]
    hours: tuple[int, ...]
    minutes: tuple[int, ...]
    seconds: tuple[int, ...]
    zone_name: str | None = None  # None: the local zone

    def zone(self) -> tzinfo:
        return zone(self.zone_name)


def zone(name: str | None) -> tzinfo:
    """UTC, a named zone, or (None) the local zone: TZ, else /etc/localtime."""
    import os
    import zoneinfo
    if name in ("UTC", "Z"):
        return UTC
    if name is not None:
        return zoneinfo.ZoneInfo(name)
    env = os.environ.get("TZ", "").removeprefix(":")
    try:
        if env:
            return zoneinfo.ZoneInfo(env)
        with open("/etc/localtime", "rb") as f:
            return zoneinfo.ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):  # zoneinfo's errors are ValueErrors
        return UTC


def parse(text: str) -> Calendar:
    """A Calendar, or ValueError saying what is wrong with the expression."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty calendar expression")
    words = text.split()
    if words[0].lower() in SHORTHANDS:
        words = SHORTHANDS[words[0].lower()].split() + words[1:]
    weekdays = None
    if words and _is_weekdays(words[0]):
        weekdays = _weekdays(words.pop(0))
    zone_name = None
    if words and words[-1][:1].isalpha():  # dates and times begin with a digit or *
        zone_name = words.pop()
        _check_zone(zone_name)
    date_part = time_part = None
    for word in words:
        if ":" in word and time_part is None:
            time_part = word
        elif "-" in word and date_part is None and time_part is None:
            date_part = word
        else:
            raise ValueError(f"{word!r}: expected [WEEKDAYS] [YEAR-MONTH-DAY] "
                             "[HOUR:MINUTE[:SECOND]] [TIMEZONE]")
    years, months, days = _date(date_part or "*-*-*")
    hours, minutes, seconds = _time(time_part or "00:00:00")
    return Calendar(text.strip(), weekdays, years, months, days, hours, minutes, seconds,
                    zone_name)


def _check_zone(name: str) -> None:
    if name in ("UTC", "Z"):
        return
    import zoneinfo
    try:
        zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise ValueError(f"{name!r} is not a time zone (UTC or a name such as "
                         "Europe/Berlin)") from None


def _is_weekdays(word: str) -> bool:
    return word.replace(",", "").replace(".", "").replace("-", "").isalpha()


def _day_number(name: str) -> int:
    low = name.lower()
    if low in WEEKDAYS:
        return WEEKDAYS.index(low)
    if low in LONG_DAYS:
        return LONG_DAYS.index(low)
    raise ValueError(f"{name!r} is not a weekday (Mon, Tue, ... or Monday, ...)")


def _weekdays(word: str) -> frozenset[int]:
    days: set[int] = set()
    for item in word.split(","):
        first, dots, last = item.partition("..")
        if not dots:
            first, dots, last = item.partition("-")  # Wed-Sat, as systemd takes it too
        a = _day_number(first)
        b = _day_number(last) if dots else a
        if b < a:
            raise ValueError(f"{item!r}: a weekday range goes forward (Mon..Fri)")
        days.update(range(a, b + 1))
    return frozenset(days)


def _date(word: str) -> tuple[tuple[int, ...] | None, tuple[int, ...], tuple[int, ...]]:
    parts = word.split("-")
    if len(parts) == 2:
        parts = ["*", *parts]
    if len(parts) != 3:
        raise ValueError(f"{word!r} is not a date (YEAR-MONTH-DAY or MONTH-DAY)")
    years = None if parts[0] == "*" else _field(_full_years(parts[0]), MIN_YEAR, MAX_YEAR,
                                                "year")
    return years, _field(parts[1], 1, 12, "month"), _field(parts[2], 1, 31, "day")


def _full_years(text: str) -> str:
    """Two-digit years as systemd reads them: 70-99 are 19xx, 00-69 20xx."""
    def full(number: str) -> str:
        if len(number) == 2 and number.isdigit():
            return str(int(number) + (1900 if int(number) >= 70 else 2000))
        return number
    return ",".join("..".join(full(n) for n in item.split("..")) if "/" not in item
                    else full(item.split("/")[0]) + "/" + item.split("/")[1]
                    for item in text.split(","))


def _time(word: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    parts = word.split(":")
    if len(parts) == 2:
        parts.append("00")
    if len(parts) != 3:
        raise ValueError(f"{word!r} is not a time (HOUR:MINUTE or HOUR:MINUTE:SECOND)")
    return (_field(parts[0], 0, 23, "hour"), _field(parts[1], 0, 59, "minute"),
            _field(parts[2], 0, 59, "second"))


def _field(text: str, low: int, high: int, what: str) -> tuple[int, ...]:
    """The values of one field: `*`, N, A..B, A/STEP, A..B/STEP, lists of them."""
    values: set[int] = set()
    for item in text.split(","):
        span, slash, step_text = item.partition("/")
        step = _number(step_text, 1, high - low + 1, f"{what} step") if slash else 1
        if span == "*":
            first, last = low, high
        else:
            a, dots, b = span.partition("..")
            first = _number(a, low, high, what)
            last = _number(b, low, high, what) if dots else (high if slash else first)
        if last < first:
            raise ValueError(f"{item!r}: the {what} range goes backwards")
        values.update(range(first, last + 1, step))
    return tuple(sorted(values))


def _number(text: str, low: int, high: int, what: str) -> int:
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{text!r} is not a {what} ({low}-{high})")
    return int(text)


# -- the next elapse ---------------------------------------------------------------

def next_elapse(spec: Calendar, after: datetime, tz: tzinfo | None = None) -> datetime | None:
    """The first moment strictly after `after` (aware) that the expression
    names, in UTC (an aware time in a zone's repeated hour compares unequal
    to every other zone's: PEP 495); None if there is none (a year gone by,
    February 30th)."""
    where = tz or spec.zone()
    local = after.astimezone(where).replace(tzinfo=None, microsecond=0) + _ONE_SECOND
    while True:
        naive = next_local(spec, local)
        if naive is None:
            return None
        moment = instant(naive, where)
        if moment > after:  # not so in the second pass of a repeated hour
            return moment
        local = naive + _ONE_SECOND


def next_local(spec: Calendar, start: datetime) -> datetime | None:
    """The smallest naive local time at or after `start` that matches."""
    years = spec.years or range(MIN_YEAR, MAX_YEAR + 1)
    for year in years[bisect.bisect_left(years, start.year):]:
        for month in spec.months:
            if (year, month) < (start.year, start.month):
                continue
            length = _cal.monthrange(year, month)[1]
            for day in spec.days:
                if day > length:
                    break
                d = date(year, month, day)
                if d < start.date() or (spec.weekdays is not None
                                        and d.weekday() not in spec.weekdays):
                    continue
                tod = _time_of_day(spec, start.time() if d == start.date() else None)
                if tod is not None:
                    return datetime.combine(d, tod)
    return None


def _time_of_day(spec: Calendar, lower: time | None) -> time | None:
    """The earliest time of day the expression names, not before `lower`."""
    hours, minutes, seconds = spec.hours, spec.minutes, spec.seconds
    if lower is None:
        return time(hours[0], minutes[0], seconds[0])
    for h in hours[bisect.bisect_left(hours, lower.hour):]:
        if h > lower.hour:
            return time(h, minutes[0], seconds[0])
        for m in minutes[bisect.bisect_left(minutes, lower.minute):]:
            if m > lower.minute:
                return time(h, m, seconds[0])
            i = bisect.bisect_left(seconds, lower.second)
            if i < len(seconds):
                return time(h, m, seconds[i])
    return None


def instant(naive: datetime, where: tzinfo) -> datetime:
    """The moment a local time names: its first occurrence if the clock
    repeats it, the moment of the jump if the clock skips it."""
    aware = naive.replace(tzinfo=where, fold=0)
    utc = aware.astimezone(UTC)
    if utc.astimezone(where).replace(tzinfo=None) == naive:
        return utc
    # In a gap: between the reading with the later offset (before the jump)
    # and the one with the earlier offset (after it); find the jump's second.
    lo = int(naive.replace(tzinfo=where, fold=1).timestamp())
    hi = int(utc.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, where).replace(tzinfo=None) > naive:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def matches(spec: Calendar, local: datetime) -> bool:
    """Whether a naive local time is one the expression names (for tests and
    `vigilctl`'s checks; the scheduler uses next_elapse)."""
    return ((spec.years is None or local.year in spec.years) and local.month in spec.months
            and local.day in spec.days and local.hour in spec.hours
            and local.minute in spec.minutes and local.second in spec.seconds
            and (spec.weekdays is None or local.weekday() in spec.weekdays))
