"""Signals by name or number: the one parser for unit files (stop-signal),
the control protocol (`kill`) and `vigil run` (its options)."""

from __future__ import annotations

import signal


def number(value: int | str) -> int:
    """15, "TERM", "term" or "SIGTERM": the signal's number. ValueError
    saying what is wrong for anything else (0, NSIG and up, unknown names)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 1 <= value < signal.NSIG:
            return int(value)
        raise ValueError(f"{value} is not a signal number")
    text = str(value).upper()
    try:
        return int(signal.Signals[text if text.startswith("SIG") else "SIG" + text])
    except KeyError:
        raise ValueError(f"{value!r} is not a signal name (TERM, INT, HUP, ...)") from None
