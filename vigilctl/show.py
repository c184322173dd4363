"""How vigilctl prints what the daemon answers: tables, trees, timelines,
log and event lines. Text that services or files control (output, reasons,
descriptions) goes through `printable`, so it cannot drive the terminal."""

from __future__ import annotations

import time

from vigil.base.printable import printable
from vigil.base.unitstates import UNIT_STATES

TYPE_CHECKING = False  # typing costs the client ~10 ms to import; annotations are strings
if TYPE_CHECKING:
    from typing import Any

COLORS = {"up": "32", "bad": "31", "busy": "33"}  # by the state's kind; "down" plain


def good(state: str) -> bool:
    """Settled and fine: `vigilctl status` exits 3 when a unit is not."""
    return UNIT_STATES.get(state) in ("up", "down")


def paint(text: str, state: str, color: bool) -> str:
    kind = UNIT_STATES.get(state, "")
    return f"\x1b[{COLORS[kind]}m{text}\x1b[0m" if color and kind in COLORS else text


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 86400}d{s % 86400 // 3600}h" if s >= 86400 else (
        f"{s // 3600}h{s % 3600 // 60}m" if s >= 3600 else f"{s // 60}m{s % 60}s")


def status(units: list[dict[str, Any]], color: bool) -> None:
    ports = any(i.get("port") for u in units for i in u["instances"])
    rows = [("UNIT", "STATE", "PID :PORT" if ports else "PID", "UPTIME", "RESTARTS",
             "LAST EXIT", "DESCRIPTION")]
    for u in units:
        what = printable(u["description"]) + (f" [scope pid {u['scope']}]" if u.get("scope")
                                              else "")
        for inst in u["instances"] or [None]:
            if inst is None:
                rows.append((printable(u["unit"]), u["state"], "-", "-", "-", "-", what))
                continue
            pid = str(inst["pid"] or "-") + (f" :{inst['port']}" if inst.get("port") else "")
            rows.append((printable(inst["name"]), inst["state"], pid,
                         age(inst["uptime"]), str(inst["restarts"]),
                         printable(inst["last_exit"] or "-"), what))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for n, row in enumerate(rows):
        cells = [row[i].ljust(widths[i]) for i in range(6)]
        if n:
            cells[1] = paint(cells[1], row[1], color)
        print("  ".join(cells) + "  " + row[6])
    for u in units:
        if u["why"] and UNIT_STATES.get(u["state"]) != "up":
            print(printable(f"  {u['unit']}: {u['why']}"))
    if len(units) == 1 and units[0]["instances"]:
        runs(units[0])


def runs(unit: dict[str, Any]) -> None:
    """The last finished runs of one unit, with their resource usage."""
    shown = [(i["name"], r) for i in unit["instances"] for r in i["runs"]]
    if not shown:
        return
    print("\nLAST RUNS")
    for name, r in sorted(shown, key=lambda x: x[1]["ended"])[-5:]:
        began = time.strftime("%H:%M:%S", time.localtime(r["started"]))
        print(f"  {name}  {began}  {r['ended'] - r['started']:8.3f}s  {printable(r['exit']):<20}"
              f"  cpu {r['user_cpu']:.2f}u {r['system_cpu']:.2f}s  max rss "
              f"{r['max_rss_kb'] / 1024:.1f} MB")


def deps(graph: dict[str, dict[str, Any]], root: str, color: bool, reverse: bool = False) -> None:
    """The dependency tree under root (or what depends on it, reversed)."""
    if reverse:
        edges = {n: sorted(m for m, e in graph.items() if n in e["requires"] or n in e["wants"])
                 for n in graph}
    else:
        edges = {n: sorted(set(e["requires"]) | set(e["wants"])) for n, e in graph.items()}

    def label(name: str) -> str:
        state = graph[name]["state"] if name in graph else "missing"
        return f"{name} ({paint(state, state, color)})"

    def walk(name: str, prefix: str, seen: tuple[str, ...]) -> None:
        children = edges.get(name, [])
        for i, child in enumerate(children):
            last = i == len(children) - 1
            kind = "" if reverse or child in graph[name]["requires"] else " [wants]"
            loop = " [cycle]" if child in seen else ""
            print(f"{prefix}{'└─ ' if last else '├─ '}{label(child)}{kind}{loop}")
            if not loop:
                walk(child, prefix + ("   " if last else "│  "), (*seen, child))
    print(label(root))
    walk(root, "", (root,))


def span(seconds: float, sign: str = "") -> str:
    """A duration people read at a glance: 250ms, 12.3s, 5m03s, 2h05m."""
    if seconds < 1:
        return f"{sign}{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{sign}{seconds:.1f}s"
    s = int(seconds)
    return f"{sign}{s // 60}m{s % 60:02d}s" if s < 3600 else \
        f"{sign}{s // 3600}h{s % 3600 // 60:02d}m"


def timeline(data: dict[str, Any]) -> None:
    """BEGAN and READY count from the first unit's start: at boot that is
    the daemon's start, in a project the first `start` (which may come
    minutes after its daemon), so the numbers stay small either way."""
    zero = min((row["began"] for row in data["units"]), default=0.0)
    when = "the daemon started" if zero < 1 else f"the first start ({span(zero)} after the " \
        "daemon started)"
    print(f"{'TOOK':>9}  {'BEGAN':>9}  {'READY':>9}  UNIT   (times since {when})")
    for row in data["units"]:
        took = "-" if row["took"] is None else span(row["took"])
        ready = "not yet" if row["ready"] is None else span(row["ready"] - zero, "+")
        print(f"{took:>9}  {span(row['began'] - zero, '+'):>9}  {ready:>9}  "
              f"{printable(row['unit'])}")
    if data["chain"]:
        print("\ncritical chain (each waited for the one above):")
        for depth, row in enumerate(data["chain"]):
            print(f"{'  ' * depth}{printable(row['unit'])} @{span(row['began'] - zero)} "
                  f"+{span(row['took'])}")


PALETTE = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")


def unit_color(name: str) -> str:
    """The same colour for a unit in every run: from its name, not its order."""
    import zlib
    return PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]


def log_line(x: dict[str, Any], color: bool, width: int = 0, sep: str = ":") -> str:
    """A service's output line after its time and instance; on a terminal the
    instance is coloured and a stderr line marked with a red `!`."""
    name = printable(x["instance"])
    text = printable(x["text"])
    if not color:
        return f"{x['clock']} {name:<{width}}{sep} {text}"
    err = "\x1b[31m!\x1b[0m " if x.get("stream") == "stderr" else ""
    return f"{x['clock']} \x1b[{unit_color(x['unit'])}m{name:<{width}}\x1b[0m{sep} {err}{text}"


def stream_line(x: dict[str, Any], cmd: str, color: bool = False) -> str:
    """One line of `logs` (a service's output, after its instance's name) or
    of `events`: what the service wrote cannot begin a line of its own."""
    if cmd == "logs":
        return log_line(x, color)
    clock = time.strftime("%H:%M:%S", time.localtime(x["time"]))
    return f"{clock} {x['severity']:7} {x['code']:16} {printable(x['message'])}"


UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """`30s`, `10m`, `2h`, `1d` ago; `HH:MM[:SS]` today; an ISO date; or epoch seconds."""
    import re
    now = time.time() if now is None else now
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text)
    if m:
        return now - float(m.group(1)) * UNITS[m.group(2)]
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?", text)
    if m:
        t = time.localtime(now)
        return time.mktime((t.tm_year, t.tm_mon, t.tm_mday, int(m.group(1)), int(m.group(2)),
                            int(m.group(3) or 0), 0, 0, -1))
    from datetime import datetime
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"cannot read time {text!r}: use 10m, 2h, 14:05, 2026-11-24T14:05 "
                         "or epoch seconds") from None


def timers(rows: list[dict[str, Any]]) -> None:
    """`vigilctl timers`: like systemctl list-timers, soonest first."""
    def when(t: float | None) -> str:
        return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

    table = [("NEXT", "LEFT", "LAST", "PASSED", "UNIT", "SCHEDULE")]
    for r in sorted(rows, key=lambda r: (r["next"] is None, r["next"] or 0)):
        left = "-" if r["next"] is None else age(max(0.0, r["next"] - r["now"]))
        passed = "-" if r["last"] is None else age(max(0.0, r["now"] - r["last"])) + " ago"
        extra = (" (persistent)" if r["persistent"] else "") + (
            " [a run is queued]" if r["queued"] else "")
        table.append((when(r["next"]), left, when(r["last"]), passed, printable(r["unit"]),
                      printable(r["schedule"]) + extra))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        print("  ".join(row[i].ljust(widths[i]) for i in range(5)) + "  " + row[5])
    print(f"\n{len(rows)} timer(s)")


def next_runs(units: list[dict[str, Any]]) -> None:
    """Under `status`: when each timer unit runs next."""
    for u in units:
        if u.get("next_run") is not None:
            clock = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(u["next_run"]))
            print(printable(f"  {u['unit']}: next run {clock} "
                            f"(in {age(max(0.0, u['next_run'] - time.time()))})"))
