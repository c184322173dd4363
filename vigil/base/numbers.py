"""Numbers read from text someone else wrote: ASCII digits in range, or nothing.

`str.isdigit()` and `int()` accept far more than a number. "²" is a digit to
isdigit() and then makes int() raise; "٠" (an Arabic-Indic zero) is 0 to
int(), so `user = "٠"` once ran a service as root; int() also takes a sign,
spaces, underscores and "0o" prefixes, and raises on 4,300 digits. Text from a
unit file, a request, a pid file, /proc or the environment goes through here.
"""

from __future__ import annotations

_DIGITS = {10: frozenset("0123456789"), 8: frozenset("01234567")}
MAX_DIGITS = 32  # more than any number vigil reads; int() never sees a huge string


def parse_number(text: str, low: int, high: int, base: int = 10) -> int | None:
    """The value of `text` if it is only ASCII digits of `base` and in [low, high]."""
    if not text or len(text) > MAX_DIGITS or not set(text) <= _DIGITS[base]:
        return None
    value = int(text, base)
    return value if low <= value <= high else None


def parse_seconds(text: str, high: float) -> float | None:
    """A duration written as ASCII digits with at most one decimal point
    ("30", "2.5"), in [0, high]; "nan", "inf", "1e9" and signs are not."""
    whole, _, fraction = text.partition(".")
    if (not whole and not fraction) or len(text) > MAX_DIGITS or \
            not set(whole + fraction) <= _DIGITS[10]:
        return None
    value = float(text)
    return value if value <= high else None
