"""The control commands that only look (status, why, logs, events, cat,
deps, timeline, timers) and the terminals (attach, input, resize): the
read-only half of vigil/commands.py's Commands, which inherits them."""

from __future__ import annotations

import time

from vigil.control.control import Connection
from vigil.base.errors import UnitError
from vigil.runtime.events import Events
from vigil.engine.manager import Manager
from vigil.runtime.output import Line, Tail, Terminal
from vigil.wire.protocol import ProtocolError
from vigil.engine.scopes import Scopes
from vigil.engine.states import State

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any


def named_units(args: dict[str, Any], manager: Manager, required: bool = True,
           load: bool = False, broken_ok: bool = False) -> list[str]:
    """The unit names a request gives, each known; with `load`, an instance of a
    template (`tp@x` for tp@.toml) is loaded first, as a dependency would be.
    A unit whose file does not load is named with its error, never "no such
    unit" (`broken_ok`: the command shows it)."""
    names = args.get("units", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ProtocolError("bad-args", "\"units\" must be a list of unit names")
    if required and not names:
        raise ProtocolError("bad-args", "name at least one unit")
    for name in names:
        if name not in manager.units and load and load_instance(manager, name):
            continue
        if name not in manager.units and name in manager.broken:
            if broken_ok:
                continue
            raise ProtocolError("broken-unit", f"{name}: {manager.broken[name]}")
        if name not in manager.units:
            import difflib
            close = difflib.get_close_matches(name, manager.units, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ProtocolError("no-such-unit", f"no such unit '{name}'{hint}")
    return names


def load_instance(manager: Manager, name: str) -> bool:
    try:
        return manager.load_instance(name)
    except UnitError as err:
        raise ProtocolError("no-such-unit", f"{name} does not load: "
                            + "; ".join(str(p) for p in err.problems)) from None


class Queries:
    """Needs `manager`, `tail`, `events`, `scopes` and `timers` (set by Commands)."""

    manager: Manager
    tail: Tail
    events: Events
    scopes: Scopes
    timers: Any

    # -- read-only ------------------------------------------------------------
    def unit_status(self, name: str) -> dict[str, Any]:
        m, sup = self.manager, self.manager.sup
        logs = sup.streams.logs
        unit = m.units[name]
        now = sup.loop.clock()
        insts = []
        for inst in sup.of_unit(name):
            runs = sup.runs.get(inst.name, ())
            insts.append({
                "name": inst.name, "state": inst.state.value, "pid": inst.pid,
                "uptime": round(now - inst.started_at, 3)
                if inst.started_at is not None and inst.state is State.RUNNING else None,
                "restarts": inst.restarts,
                "last_exit": str(inst.last_exit) if inst.last_exit else None,
                "reason": inst.reason, "status": sup.status_text.get(inst.name, ""),
                "log_dropped": logs[inst.name].dropped if inst.name in logs else 0,
                "port": inst.port,
                "runs": [{"started": r.started, "ended": r.ended, "exit": str(r.exit),
                          "code": r.exit.code, "signal": r.exit.signal,
                          "user_cpu": r.user_cpu, "system_cpu": r.system_cpu,
                          "max_rss_kb": r.max_rss_kb} for r in list(runs)[-5:]],
            })
        return {"unit": name, "state": m.state(name), "description": unit.description,
                "enabled": unit.enabled,
                "target": unit.is_target, "instances": insts, "why": self.explain(name),
                "scope": self.scopes.of(name),
                "next_run": self.timers.next_run(name) if self.timers is not None else None}

    def status(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        m = self.manager
        names = named_units(args, m, required=False, broken_ok=True) or sorted(set(m.units) |
                                                                          set(m.broken))
        shown = [self.unit_status(n) if n in m.units else self._broken_status(n) for n in names]
        if args.get("units"):  # units named: their last lines too, as systemctl status shows
            for unit in shown:
                recent = list(self.tail.lines.get(unit["unit"], ()))[-10:]
                unit["recent"] = [dict(_line(x), text=x.text[:1000]) for x in recent]
        conn.reply(rid, shown)

    def _broken_status(self, name: str) -> dict[str, Any]:
        return {"unit": name, "state": "broken", "description": "", "target": False,
                "instances": [], "why": self.explain(name), "scope": None}

    def list_units(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        conn.reply(rid, sorted(self.manager.units))

    def explain(self, name: str) -> str:
        """One sentence on why a unit is in the state it is in ("" when it is
        simply running)."""
        m = self.manager
        if name in m.broken:
            if name not in m.units:
                return f"its file does not load: {m.broken[name]}"
            return (f"its file no longer loads ({m.broken[name]}); it keeps the config it "
                    "had")
        if name in m.graph.refused:
            return f"refused because {m.graph.refused[name]}"
        if name in m.failed_why:
            return f"not started: {m.failed_why[name]}"
        if name in m.skipped:
            return f"skipped: {m.skipped[name]}"
        if name in m.waiting:
            pending = sorted(d for d in m.graph.after(name) if d in m.goal and m.settled(d) is None)
            return f"waiting for {', '.join(pending)} to be ready" if pending else "starting"
        for inst in m.sup.of_unit(name):
            if inst.state in (State.FAILED, State.FATAL):
                return f"{inst.name} failed: {inst.reason}"
            if inst.state is State.BACKOFF:
                return f"{inst.name} restarting after {inst.reason}"
        if name in m.stopped_why and not m.active(name):
            return m.stopped_why[name]
        if m.state(name) in ("inactive", "unknown"):
            if not m.units[name].enabled:
                return "not enabled: start it by hand (or vigilctl enable)"
            return "enabled, not running now (vigilctl start starts it)"
        return ""

    def _running(self, name: str) -> str:
        """What `why` says of a unit that is fine: its pids and uptime, or how it ended."""
        m = self.manager
        now = m.sup.loop.clock()
        parts = []
        for inst in m.sup.of_unit(name):
            if inst.state is State.RUNNING and inst.started_at is not None:
                parts.append(f"{inst.name} running as pid {inst.pid} for "
                             f"{now - inst.started_at:.0f} s")
            elif inst.state is State.EXITED:
                parts.append(f"{inst.name} finished ({inst.last_exit or 'exit 0'})")
        return f"{name} is {m.state(name)}" + (": " + ", ".join(parts) if parts else "")

    def timers_cmd(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        """Each timer's schedule, next and last run (wall seconds), like list-timers."""
        conn.reply(rid, self.timers.listing() if self.timers is not None else [])

    def why(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        name = named_units(args, self.manager, broken_ok=True)[0]
        conn.reply(rid, self.explain(name) or self._running(name))

    def logs(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        names = named_units(args, self.manager, required=False)
        count = args.get("lines", 50)
        if not isinstance(count, int) or count < 0:
            raise ProtocolError("bad-args", "\"lines\" must be a whole number")
        since = _since(args)
        lines = [x for x in self.tail.get(names or None) if x.time >= since]
        conn.reply(rid, [_line(x) for x in lines][-count:] if count else [])
        if not args.get("follow"):
            return
        _stream(conn)

        def follow(line: Line) -> None:
            if not names or line.unit in names:
                conn.send({"id": rid, "ok": True, "stream": True, "result": _line(line)})
        self.tail.followers.append(follow)
        conn.on_close.append(lambda: self.tail.followers.remove(follow))

    def events_cmd(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        names = named_units(args, self.manager, required=False)
        count = args.get("lines", 50)
        if not isinstance(count, int) or count < 0:
            raise ProtocolError("bad-args", "\"lines\" must be a whole number")
        since = _since(args)
        wanted = [e for e in self.events.recent
                  if e["time"] >= since and (not names or e["unit"] in names)]
        conn.reply(rid, wanted[-count:] if count else [])
        if not args.get("follow"):
            return
        _stream(conn)

        def follow(event: dict[str, Any]) -> None:
            if not names or event["unit"] in names:
                conn.send({"id": rid, "ok": True, "stream": True, "result": event})
        self.events.followers.append(follow)
        conn.on_close.append(lambda: self.events.followers.remove(follow))

    def cat(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        """The effective unit (drop-ins merged) and the files it came from."""
        result = []
        for name in named_units(args, self.manager):
            unit = self.manager.units[name]
            files = sorted({f for f, _ in unit.where.values()} | {unit.path})
            result.append({"unit": name, "path": unit.path, "files": files, "toml": unit.raw})
        conn.reply(rid, result)

    def deps(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        """Every unit's edges and state; the client draws the tree it wants."""
        m = self.manager
        conn.reply(rid, {name: {"requires": list(u.requires), "wants": list(u.wants),
                                "after": sorted(m.graph.after(name)), "state": m.state(name)}
                         for name, u in m.units.items()})

    def timeline(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        """When each unit began and became ready, slowest first, and the
        critical chain: the dependencies that the last unit waited on."""
        m = self.manager
        began = {n: t[0] - m.t0 for n, t in m.times.items() if t[0] is not None}
        ready = {n: t[1] - m.t0 for n, t in m.times.items() if t[1] is not None}

        def row(name: str) -> dict[str, Any]:
            up = ready.get(name)
            return {"unit": name, "began": round(began[name], 4),
                    "ready": None if up is None else round(up, 4),
                    "took": None if up is None else round(up - began[name], 4)}
        chain: list[str] = []
        current = max(ready, key=ready.__getitem__) if ready else None
        while current is not None:
            chain.append(current)
            waited = [d for d in m.graph.after(current)
                      if d in ready and d in began and ready[d] <= began[current] + 1e-3]
            current = max(waited, key=ready.__getitem__) if waited else None
        slowest = sorted(began, key=lambda n: -(ready[n] - began[n]) if n in ready
                         else -float("inf"))
        conn.reply(rid, {"units": [row(n) for n in slowest],
                         "chain": [row(n) for n in reversed(chain)]})

    # -- terminals -------------------------------------------------------------
    def _terminal(self, args: dict[str, Any]) -> tuple[str, Terminal]:
        name = args.get("unit")
        if not isinstance(name, str):
            raise ProtocolError("bad-args", "\"unit\" must be a unit or instance name")
        sup = self.manager.sup
        if name not in sup.instances:
            named_units({"units": [name.partition(":")[0]]}, self.manager)
            insts = sup.of_unit(name)
            name = insts[0].name if insts else name
        inst = sup.instances.get(name)
        if inst is None or not inst.service.pty:
            raise ProtocolError("no-terminal", f"{name} has no terminal: set console = \"pty\" "
                                "in its [service]")
        terminal = sup.streams.terminals.get(name)
        if terminal is None or terminal.fd < 0:
            raise ProtocolError("no-terminal", f"{name} is not running")
        return name, terminal

    def attach(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        """Replies with the recent screen, then streams output as base64 frames."""
        import base64
        name, terminal = self._terminal(args)
        conn.reply(rid, {"instance": name, "data": base64.b64encode(terminal.recent).decode()})
        _stream(conn)

        def follow(data: bytes) -> None:
            frame = {"data": base64.b64encode(data).decode()} if data else {"eof": True}
            conn.send({"id": rid, "ok": True, "stream": True, "result": frame})
        terminal.followers.append(follow)
        conn.on_close.append(lambda: terminal.followers.remove(follow))

    def input(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        import base64
        import binascii
        _, terminal = self._terminal(args)
        try:
            data = base64.b64decode(args.get("data", ""), validate=True)
        except (binascii.Error, TypeError):
            raise ProtocolError("bad-args", "\"data\" must be base64") from None
        conn.reply(rid, terminal.write(data))

    def resize(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        _, terminal = self._terminal(args)
        rows, cols = args.get("rows"), args.get("cols")
        if not (isinstance(rows, int) and isinstance(cols, int) and 0 < rows < 10000
                and 0 < cols < 10000):
            raise ProtocolError("bad-args", "\"rows\" and \"cols\" must be sizes")
        terminal.resize(rows, cols)
        conn.reply(rid, None)


def _since(args: dict[str, Any]) -> float:
    since = args.get("since", 0)
    if isinstance(since, bool) or not isinstance(since, (int, float)):
        raise ProtocolError("bad-args", "\"since\" must be a time in seconds since the epoch")
    return float(since)




def _stream(conn: Connection) -> None:
    """Keeps a connection open for streamed replies, with no idle timeout."""
    conn.streaming = True
    if conn.idle:
        conn.idle.cancel()




def _line(line: Line) -> dict[str, Any]:
    return {"time": line.time, "unit": line.unit, "instance": line.instance,
            "stream": line.stream, "text": line.text,
            "clock": time.strftime("%H:%M:%S", time.localtime(line.time))}
