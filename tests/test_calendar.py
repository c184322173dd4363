"""Calendar expressions (vigil/model/calendar.py): parsing and the next elapse,
pure, with no daemon and no clock."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.model.calendar import matches, next_elapse, parse



def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def nxt(expr: str, after: datetime) -> datetime | None:
    return next_elapse(parse(expr), after)


@pytest.mark.parametrize("expr,after,expected", [
    ("daily", at(2026, 12, 2, 17, 30), at(2026, 12, 3)),
    ("hourly", at(2026, 12, 2, 17, 30), at(2026, 12, 2, 18)),
    ("minutely", at(2026, 12, 2, 17, 30, 5), at(2026, 12, 2, 17, 31)),
    ("weekly", at(2026, 12, 2), at(2026, 12, 7)),  # 2026-12-07 is a Monday
    ("monthly", at(2026, 12, 2), at(2027, 1, 1)),
    ("yearly", at(2026, 12, 2), at(2027, 1, 1)),
    ("quarterly", at(2026, 2, 2), at(2026, 4, 1)),
    ("semiannually", at(2026, 2, 2), at(2026, 7, 1)),
    ("Mon..Fri 09:00 UTC", at(2026, 12, 4, 9), at(2026, 12, 7, 9)),  # Friday -> Monday
    ("Mon..Fri *-*-* 09:00:00 UTC", at(2026, 12, 2, 8, 59, 59), at(2026, 12, 2, 9)),
    ("*-*-01 00:00:00", at(2026, 12, 1), at(2027, 1, 1)),
    ("Sat,Sun 10:00 UTC", at(2026, 12, 2), at(2026, 12, 5, 10)),
    ("*:0/15", at(2026, 12, 2, 17, 30), at(2026, 12, 2, 17, 45)),
    ("*:5/20:30", at(2026, 12, 2, 17, 50), at(2026, 12, 2, 18, 5, 30)),
    ("12:30", at(2026, 12, 2, 12, 30), at(2026, 12, 3, 12, 30)),
    ("02-29", at(2026, 12, 2), at(2028, 2, 29)),
    ("2027-03-04 05:06:07", at(2026, 1, 1), at(2027, 3, 4, 5, 6, 7)),
    ("*-1..3-10..11 00:00", at(2026, 3, 11, 1), at(2027, 1, 10)),
    ("Fri *-*-13", at(2026, 1, 1), at(2026, 2, 13)),
    ("monday 8:00", at(2026, 12, 2), at(2026, 12, 7, 8)),
    ("Wed-Fri 12-10-17 1:2:3", at(2000, 1, 1), at(2012, 10, 17, 1, 2, 3)),  # systemd's own
    ("*:2/3", at(2026, 12, 2, 17, 58), at(2026, 12, 2, 17, 59)),  # = *-*-* *:02/3:00
])
def test_next_elapse_of_common_forms(expr: str, after: datetime, expected: datetime) -> None:
    assert nxt(expr, after) == expected


def test_an_expression_that_never_matches_has_no_next_elapse() -> None:
    assert nxt("*-02-30", at(2026, 1, 1)) is None
    assert nxt("2020-01-01", at(2026, 1, 1)) is None


@pytest.mark.parametrize("bad,why", [
    ("", "empty"), ("Mon..Fryday", "weekday"), ("*-13-01", "month"), ("25:00", "hour"),
    ("*:61", "minute"), ("*-*-* 00:00 Mars/Olympus", "time zone"), ("1-2-3-4", "date"),
    ("Fri..Mon", "forward"), ("*-*-5..1", "backwards"), ("10:00 11:00", "expected"),
    ("*:*/0", "step"), ("*:１", "minute"),
])
def test_a_bad_expression_is_refused_saying_why(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse(bad)


def test_a_time_zone_is_followed_with_its_summer_time() -> None:
    berlin = "Mon..Fri 09:00 Europe/Berlin"
    assert nxt(berlin, at(2026, 1, 5)) == at(2026, 1, 5, 8)  # CET, UTC+1
    assert nxt(berlin, at(2026, 7, 6)) == at(2026, 7, 6, 7)  # CEST, UTC+2


def test_a_time_skipped_by_the_spring_jump_fires_at_the_jump() -> None:
    """Europe/Berlin jumps from 02:00 to 03:00 on 2026-03-29 (01:00 UTC)."""
    assert nxt("02:30 Europe/Berlin", at(2026, 3, 28, 12)) == at(2026, 3, 29, 1)
    hourly = parse("hourly Europe/Berlin")
    seen, t = [], at(2026, 3, 28, 23, 30)
    for _ in range(3):
        t = next_elapse(hourly, t)  # type: ignore[assignment]
        seen.append(t.astimezone(UTC).hour)
    assert seen == [0, 1, 2]  # one run each real hour, none twice


def test_a_repeated_local_time_fires_once() -> None:
    """On 2026-10-25, Berlin's 02:00-03:00 happens twice (00:00-01:00 UTC,
    then 01:00-02:00 UTC): 02:30 fires at its first occurrence only."""
    spec = parse("02:30 Europe/Berlin")
    first = next_elapse(spec, at(2026, 10, 24, 12))
    assert first == at(2026, 10, 25, 0, 30)
    assert next_elapse(spec, first) == at(2026, 10, 26, 1, 30)  # the next day, CET
    assert next_elapse(spec, at(2026, 10, 25, 1, 10)) == at(2026, 10, 26, 1, 30)


# -- properties, against a brute force that does not share the search -----------

def field(low: int, high: int, most: int) -> st.SearchStrategy[tuple[int, ...]]:
    return st.sets(st.integers(low, high), min_size=1, max_size=most).map(
        lambda s: tuple(sorted(s)))


def text(values: tuple[int, ...]) -> str:
    return ",".join(str(v) for v in values)


@st.composite
def expressions(draw: st.DrawFn) -> str:
    days = draw(st.none() | st.sets(st.sampled_from(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat",
                                                     "Sun"]), min_size=1))
    months = draw(st.none() | field(1, 12, 3))
    mdays = draw(st.none() | field(1, 31, 4))
    hours, minutes, seconds = draw(field(0, 23, 3)), draw(field(0, 59, 3)), draw(field(0, 59, 2))
    head = ",".join(sorted(days)) + " " if days else ""
    return (f"{head}*-{text(months) if months else '*'}-{text(mdays) if mdays else '*'} "
            f"{text(hours)}:{text(minutes)}:{text(seconds)} UTC")


moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC))


def brute_force_between(expr: str, after: datetime, until: datetime) -> list[datetime]:
    """Every matching second in (after, until), day by day, from the fields."""
    spec = parse(expr)
    found = []
    day = after.date()
    while day <= until.date():
        if matches(spec, datetime.combine(day, datetime.min.time()).replace(
                hour=spec.hours[0], minute=spec.minutes[0], second=spec.seconds[0])):
            for h, m, s in itertools.product(spec.hours, spec.minutes, spec.seconds):
                moment = datetime(day.year, day.month, day.day, h, m, s, tzinfo=UTC)
                if after < moment < until:
                    found.append(moment)
        day += timedelta(days=1)
    return found


@settings(max_examples=150, deadline=None)
@given(expressions(), moments)
def test_next_elapse_is_later_matching_and_the_first(expr: str, after: datetime) -> None:
    result = nxt(expr, after)
    if result is None:  # only when the fields cannot meet before MAX_YEAR
        assert not brute_force_between(expr, after, after + timedelta(days=366 * 8))
        return
    assert result > after
    assert matches(parse(expr), result.replace(tzinfo=None))
    assert brute_force_between(expr, after, result) == []


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["hourly Europe/Berlin", "*:0/20 America/New_York",
                        "02:30 Europe/London", "Mon..Fri 01,02,03:00 Australia/Sydney"]),
       st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)))
def test_across_summer_time_elapses_only_go_forward(expr: str, start: datetime) -> None:
    spec = parse(expr)
    t = start.replace(tzinfo=UTC)
    for _ in range(30):
        following = next_elapse(spec, t)
        assert following is not None and following > t
        assert following - t <= timedelta(days=4)
        t = following


def test_a_weekday_range_and_a_date_must_both_hold() -> None:
    spec = parse("Mon *-*-01 UTC")
    result = next_elapse(spec, at(2026, 1, 1))
    assert result == at(2026, 6, 1) and date(2026, 6, 1).weekday() == 0
