"""The states `status` reports for a unit, in one place for the daemon and
vigilctl: an instance's own (vigil/engine/states.py) or one only a unit has. The
kind decides vigilctl's colour and its exit status 3: "up" and "down" are
settled and fine, "busy" is on its way, "bad" needs a look."""

from __future__ import annotations

UNIT_STATES: dict[str, str] = {
    "running": "up", "exited": "up", "active": "up",
    "inactive": "down", "skipped": "down",
    "starting": "busy", "stopping": "busy", "waiting": "busy", "backoff": "busy",
    "failed": "bad", "fatal": "bad", "broken": "bad", "unknown": "bad",
}
