"""The checks of vigilctl's option values: a number that is not finite or
out of range, a bad port or time, is refused here, naming the option,
before anything is sent (argparse shows the ArgumentTypeError's words)."""

from __future__ import annotations

import argparse
import math


def seconds(text: str) -> float:
    """A length of time: finite and above zero (float() takes nan and inf)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def _whole(text: str, least: int, what: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < least:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return int(text)


def count(text: str) -> int:
    return _whole(text, 0, "a count (0 or more)")


def positive(text: str) -> int:
    return _whole(text, 1, "a whole number above 0")


def pid(text: str) -> int:
    return _whole(text, 1, "a process id")


def port(text: str) -> int | str:
    if text == "auto":
        return text
    value = _whole(text, 1, "a port (1-65535) or auto")
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535) or auto")
    return value


def address(text: str) -> str:
    """HOST:PORT ([V6]:PORT); getaddrinfo would take port 99999 as 34463."""
    host, sep, number = text.rpartition(":")
    if not sep or not host or not number.isascii() or not number.isdigit() \
            or not 0 < int(number) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (port 1-65535)")
    return text


def since(text: str) -> float:
    """A moment (epoch seconds) from 10m, 2h, 14:05, an ISO time or epoch seconds."""
    from vigilctl.show import parse_since
    try:
        value = parse_since(text)
    except (ValueError, OverflowError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time since 1970")
    return value


def when(text: str) -> float:
    """--since/--until of logs: since's forms, and -1h, +10m, yesterday, today, now."""
    from vigilctl.logs import moment
    try:
        value = moment(text)
    except (ValueError, OverflowError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time since 1970")
    return value
