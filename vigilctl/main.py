"""The `vigilctl` command: drives a running vigil over its control socket."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from vigil.protocol import default_socket
from vigilctl.client import Client, ClientError, RequestFailed

COLORS = {"running": "32", "active": "32", "exited": "32", "failed": "31", "fatal": "31",
          "backoff": "33", "starting": "33", "stopping": "33", "waiting": "33"}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 86400}d{s % 86400 // 3600}h" if s >= 86400 else (
        f"{s // 3600}h{s % 3600 // 60}m" if s >= 3600 else f"{s // 60}m{s % 60}s")


def print_status(units: list[dict[str, Any]], color: bool) -> None:
    rows = [("UNIT", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT", "DESCRIPTION")]
    for u in units:
        insts = u["instances"] or [None]
        for inst in insts:
            if inst is None:
                rows.append((u["unit"], u["state"], "-", "-", "-", "-", u["description"]))
                continue
            rows.append((inst["name"], inst["state"], str(inst["pid"] or "-"),
                         _age(inst["uptime"]), str(inst["restarts"]),
                         inst["last_exit"] or "-", u["description"]))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for n, row in enumerate(rows):
        cells = [row[i].ljust(widths[i]) for i in range(6)]
        if color and n and row[1] in COLORS:
            cells[1] = f"\x1b[{COLORS[row[1]]}m{cells[1]}\x1b[0m"
        print("  ".join(cells) + "  " + row[6])
    for u in units:
        if u["why"] and u["state"] not in ("running", "active", "exited"):
            print(f"  {u['unit']}: {u['why']}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vigilctl", description="Control a running vigil.")
    p.add_argument("--socket", help="control socket (default: VIGIL_SOCKET or the usual place)")
    p.add_argument("--system", action="store_true", help="talk to the system instance")
    p.add_argument("--timeout", type=float, default=130.0, help="seconds to wait for answers")
    sub = p.add_subparsers(dest="cmd")
    s = sub.add_parser("status", help="show units")
    s.add_argument("units", nargs="*")
    s.add_argument("--json", action="store_true")
    for name in ("start", "stop", "restart"):
        c = sub.add_parser(name, help=f"{name} units and wait for the result")
        c.add_argument("units", nargs="+")
        c.add_argument("--no-block", action="store_true", help="do not wait")
    r = sub.add_parser("reload", help="re-read unit files; restart only what changed")
    r.add_argument("--dry-run", action="store_true")
    lg = sub.add_parser("logs", help="show service output")
    lg.add_argument("units", nargs="*")
    lg.add_argument("-n", "--lines", type=int, default=50)
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("--json", action="store_true")
    w = sub.add_parser("why", help="why a unit is not running")
    w.add_argument("unit")
    sub.add_parser("shutdown", help="stop everything and exit the daemon")
    sub.add_parser("ping", help="check the daemon answers")
    c = sub.add_parser("check", help="validate unit directories offline")
    c.add_argument("dirs", nargs="*")
    return p


def run(opts: argparse.Namespace) -> int:
    if opts.cmd == "check":
        from vigil.check import check
        return check(opts.dirs)
    client = Client(opts.socket or default_socket(opts.system), timeout=opts.timeout)
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    if opts.cmd == "status":
        units = client.call("status", units=opts.units)
        if opts.json:
            print(json.dumps(units, indent=2))
        else:
            print_status(units, color)
        return 0 if all(u["state"] in ("running", "active", "exited", "inactive", "skipped")
                        for u in units) else 3
    if opts.cmd in ("start", "stop", "restart"):
        result = client.call(opts.cmd, units=opts.units, no_block=opts.no_block)
        for name, state in sorted(result.items()):
            print(f"{name}: {state}")
        return 0
    if opts.cmd == "reload":
        result = client.call("reload", dry_run=opts.dry_run)
        for change in result["changes"]:
            print(f"{change['action']:9} {change['unit']}: {change['why']}")
        for problem in result["problems"]:
            print(f"problem: {problem}", file=sys.stderr)
        if not result["changes"]:
            print("nothing changed")
        return 1 if result["problems"] else 0
    if opts.cmd == "logs":
        lines = client.call("logs", units=opts.units, lines=opts.lines, follow=opts.follow)
        def show(x: dict[str, Any]) -> None:
            print(json.dumps(x) if opts.json else f"{x['clock']} {x['instance']}: {x['text']}")
        for line in lines:
            show(line)
        if opts.follow:
            sys.stdout.flush()
            for line in client.stream():
                show(line)
                sys.stdout.flush()
        return 0
    if opts.cmd == "why":
        print(client.call("why", units=[opts.unit]))
        return 0
    if opts.cmd == "shutdown":
        print(client.call("shutdown"))
        return 0
    if opts.cmd == "ping":
        began = time.perf_counter()
        client.call("ping")
        print(f"pong in {(time.perf_counter() - began) * 1000:.1f} ms")
        return 0
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    opts = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if opts.cmd is None:
        parser.print_help()
        return 2
    try:
        return run(opts)
    except RequestFailed as err:
        print(f"vigilctl: {err}", file=sys.stderr)
        return 1
    except ClientError as err:
        print(f"vigilctl: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
