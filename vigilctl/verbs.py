"""The verbs systemctl and supervisorctl users type, with their exit codes:
enable/disable, is-active/is-enabled/is-failed, show, reset-failed,
list-unit-files, pid, signal (docs/vigilctl.md has the whole mapping)."""

from __future__ import annotations

import argparse
import json
import sys

from vigil.base.printable import printable
from vigilctl.client import Client, RequestFailed

TYPE_CHECKING = False  # typing costs the client ~10 ms to import; annotations are strings
if TYPE_CHECKING:
    from typing import Any

# vigil's states in systemctl's words (is-active)
ACTIVE = {"running": "active", "exited": "active", "active": "active", "starting": "activating",
          "waiting": "activating", "backoff": "activating", "stopping": "deactivating",
          "failed": "failed", "fatal": "failed", "broken": "failed", "inactive": "inactive",
          "skipped": "inactive"}


def _status(client: Client, names: list[str]) -> list[dict[str, Any]] | None:
    """The units' status, or None (said on stderr) if one is unknown."""
    try:
        result: list[dict[str, Any]] = client.call("status", units=names)
        return result
    except RequestFailed as err:
        if err.code != "no-such-unit":
            raise
        print(f"vigilctl: {printable(str(err))}", file=sys.stderr)
        return None


def _words(client: Client, opts: argparse.Namespace) -> list[str] | None:
    """Each unit's state in systemctl's words, printed unless --quiet; None
    for a unit that does not exist."""
    units = _status(client, opts.units)
    if units is None:
        return None
    words = [ACTIVE.get(u["state"], u["state"]) for u in units]
    if not opts.quiet:
        print("\n".join(words))
    return words


def is_active(client: Client, opts: argparse.Namespace) -> int:
    """systemctl is-active: prints each state; 0 if one is active, 3 if none,
    4 for a unit that does not exist."""
    words = _words(client, opts)
    return 4 if words is None else 0 if "active" in words else 3


def is_failed(client: Client, opts: argparse.Namespace) -> int:
    """systemctl is-failed: 0 if one of them is failed, else 1."""
    words = _words(client, opts)
    return 4 if words is None else 0 if "failed" in words else 1


def is_enabled(client: Client, opts: argparse.Namespace) -> int:
    """systemctl is-enabled: enabled/disabled (bad: its file does not load);
    0 if one is enabled, else 1."""
    units = _status(client, opts.units)
    if units is None:
        return 4
    words = ["bad" if u["state"] == "broken" else "enabled" if u.get("enabled") else "disabled"
             for u in units]
    if not opts.quiet:
        print("\n".join(words))
    return 0 if "enabled" in words else 1


def enable(client: Client, opts: argparse.Namespace) -> int:
    """enable/disable, persisted as a drop-in; --now also starts/stops them."""
    result = client.call(opts.cmd, units=opts.units)
    for name, path in sorted(result["written"].items()):
        print(f"{name}: {opts.cmd}d ({path})")
    for problem in result["problems"]:
        print(f"vigilctl: problem: {printable(problem)}", file=sys.stderr)
    if opts.now:
        from vigilctl.main import cmd_change
        return cmd_change(client, argparse.Namespace(
            cmd="start" if opts.cmd == "enable" else "stop", units=opts.units, no_block=False,
            scope=None))
    return 0


def reset_failed(client: Client, opts: argparse.Namespace) -> int:
    for name in client.call("reset-failed", units=opts.units):
        print(f"{name}: reset")
    return 0


def show(client: Client, opts: argparse.Namespace) -> int:
    """The effective settings and the runtime properties, as KEY=VALUE lines
    (dotted for nested settings) or --json."""
    result = client.call("show", units=[opts.unit])
    if opts.json:
        print(json.dumps(result, indent=2))
        return 0
    runtime = result["runtime"]
    rows: list[tuple[str, Any]] = [("unit", result["unit"]), ("state", runtime["state"]),
                                   ("why", runtime["why"]), ("files", result["files"])]
    rows += _flat(result["settings"], "")
    for inst in runtime["instances"]:
        for key in ("state", "pid", "uptime", "restarts", "last_exit", "port", "reason"):
            rows.append((f"instance.{inst['name']}.{key}", inst.get(key)))
    for key, value in rows:
        if opts.property and key not in opts.property:
            continue
        shown = " ".join(map(str, value)) if isinstance(value, list) else \
            "" if value is None else str(value)
        print(f"{key}={printable(shown)}")
    return 0


def _flat(settings: dict[str, Any], prefix: str) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in settings.items():
        if key == "name":
            continue
        if isinstance(value, dict):
            rows += _flat(value, f"{prefix}{key}.")
        else:
            rows.append((prefix + key, value))
    return rows


def list_unit_files(client: Client, opts: argparse.Namespace) -> int:
    """UNIT and STATE (enabled, disabled, bad), as systemctl lists them."""
    units = client.call("status", units=opts.units)
    width = max([4, *(len(u["unit"]) for u in units)])
    print(f"{'UNIT':<{width}}  STATE")
    for u in units:
        state = "bad" if u["state"] == "broken" else "enabled" if u.get("enabled") \
            else "disabled"
        print(f"{printable(u['unit']):<{width}}  {state}")
    return 0


def pid(client: Client, opts: argparse.Namespace) -> int:
    """supervisorctl pid: the main pid of each running instance, one a line."""
    pids = [inst["pid"] for u in client.call("status", units=opts.units)
            for inst in u["instances"] if inst["pid"]]
    for number in pids:
        print(number)
    return 0 if pids else 1


def edit(client: Client, opts: argparse.Namespace) -> int:
    from vigilctl.edit import edit as edit_unit
    return edit_unit(client, opts)


COMMANDS = {"edit": edit, "is-active": is_active, "is-failed": is_failed, "is-enabled": is_enabled,
            "enable": enable, "disable": enable, "reset-failed": reset_failed, "show": show,
            "list-unit-files": list_unit_files, "pid": pid}
