"""What each control command does, on top of the manager and supervisor:
the ones that change something here, the read-only ones and the
terminals in vigil/queries.py."""

from __future__ import annotations

from collections.abc import Callable

from vigil.control.control import Connection
from vigil.base.errors import UnitError
from vigil.runtime.events import Events
from vigil.model.compiled import Incomplete
from vigil.engine.manager import Manager
from vigil.runtime.output import Tail
from vigil.wire.protocol import ProtocolError
from vigil.queries import Queries, named_units
from vigil.engine.scopes import Scopes
from vigil.waiting import Wait

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any

Handler = Callable[[Connection, "Any", dict[str, "Any"]], None]


class Commands(Queries):
    def __init__(self, manager: Manager, tail: Tail, events: Events,
                 reload: Callable[[bool], dict[str, Any]],
                 shutdown: Callable[[], None], end_system: Callable[[str], str],
                 reexec: Callable[[], str], scopes: Scopes,
                 wait_timeout: float = 120.0) -> None:
        self.manager, self.tail, self.reload, self.shutdown = manager, tail, reload, shutdown
        self.scopes = scopes
        self.end_system, self.reexec = end_system, reexec
        self.events = events
        self.timers: Any = None  # vigil.engine.timers.Timers, set once a unit has a [timer]
        self.wait_timeout = wait_timeout
        # what each connection waits for, so daemon-reexec can hand it over
        self.waits: dict[Connection, list[dict[str, Any]]] = {}
        self.table: dict[str, Handler] = {
            "ping": lambda c, rid, a: c.reply(rid, "pong"),
            "status": self.status, "start": self.start, "stop": self.stop,
            "restart": self.restart, "reload": self.reload_cmd, "logs": self.logs,
            "reload-unit": self.reload_unit,
            "shutdown": self.shutdown_cmd, "why": self.why, "list": self.list_units,
            "events": self.events_cmd, "cat": self.cat, "deps": self.deps,
            "timeline": self.timeline, "attach": self.attach, "input": self.input,
            "resize": self.resize, "kill": self.kill, "daemon-reexec": self.reexec_cmd,
            "run": self.run_cmd, "scope": self.scope, "timers": self.timers_cmd,
            "problems": lambda c, rid, a: c.reply(rid, self.manager.problems),
            "enable": lambda c, rid, a: self.enable(c, rid, a, True),
            "disable": lambda c, rid, a: self.enable(c, rid, a, False),
            "reset-failed": self.reset_failed,
            "show": self.show,
            **{kind: self._ender(kind) for kind in ("reboot", "halt", "poweroff")},
        }

    def handle(self, conn: Connection, req: dict[str, Any]) -> None:
        handler = self.table.get(req["cmd"])
        if handler is None:
            raise ProtocolError("unknown-command", f"unknown command '{req['cmd']}'")
        handler(conn, req.get("id"), req["args"])

    # -- changes ----------------------------------------------------------------
    def _timeout(self, args: dict[str, Any]) -> float:
        """The wait a start/stop/restart asks for, checked before anything is done."""
        timeout = args.get("timeout", self.wait_timeout)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or \
                not 0 < timeout <= 86400:
            raise ProtocolError("bad-args", "\"timeout\" must be seconds, more than 0 and at "
                                "most 86400")
        return float(timeout)

    def _wait(self, conn: Connection, rid: Any, names: list[str], want_up: bool,
              args: dict[str, Any], since: float, finished_ok: bool = False) -> None:
        """Replies once every unit is ready and stable (or down), failed, or at
        the timeout (vigil/waiting.py); with "progress", streams events meanwhile."""
        if args.get("no_block"):
            conn.reply(rid, {n: self.manager.state(n) for n in names})
            return
        wait = Wait(self.manager, conn, rid, names, want_up, self.explain, since, finished_ok)
        wait.begin(self._timeout(args), bool(args.get("progress")))
        if not wait.done:
            self._keep_for_reexec(conn, wait)

    def _keep_for_reexec(self, conn: Connection, wait: Wait) -> None:
        """What daemon-reexec hands over of a wait, while it lasts."""
        record = {"id": wait.rid, "units": wait.names, "want_up": wait.want_up,
                  "deadline": wait.deadline, "since": wait.since,
                  "finished_ok": wait.finished_ok}
        if conn not in self.waits:
            def gone() -> None:
                self.waits.pop(conn, None)
            conn.on_close.append(gone)
        self.waits.setdefault(conn, []).append(record)

        def forget() -> None:
            if record in self.waits.get(conn, []):
                self.waits[conn].remove(record)
        wait.on_end = forget

    def resume(self, conn: Connection, waits: list[dict[str, Any]]) -> None:
        """After daemon-reexec: a handed-over connection's requests go on
        waiting, to the same deadline (the monotonic clock survives exec); a
        restart already done is not done again."""
        now = self.manager.sup.loop.clock()
        for w in waits:
            names = [n for n in w["units"] if n in self.manager.units]
            since = w.get("since", now)
            self._wait(conn, w["id"], names, w["want_up"],
                       {"timeout": max(w["deadline"] - since, 0.001)}, since,
                       bool(w.get("finished_ok", False)))

    def start(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        since = self.manager.sup.loop.clock()
        names = named_units(args, self.manager, load=True)
        self._timeout(args)
        scope = _pid(args, "scope")
        if scope is not None:
            self._bind(scope, names)
        self.manager.start(names)
        self._wait(conn, rid, names, True, args, since)

    def stop(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        since = self.manager.sup.loop.clock()
        names = named_units(args, self.manager)
        self._timeout(args)
        self.manager.stop(names, "stopped by hand (vigilctl stop)")
        self._wait(conn, rid, names, False, args, since)

    def restart(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        since = self.manager.sup.loop.clock()
        names = named_units(args, self.manager, load=True)
        self._timeout(args)
        self.manager.restart(names)
        self._wait(conn, rid, names, True, args, since)

    def reload_cmd(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        try:
            conn.reply(rid, self.reload(bool(args.get("dry_run"))))
        except Incomplete as err:  # an incomplete read would remove what it missed
            self.events.emit("daemon.reload-refused", str(err).replace("\n", "; "), "error")
            raise ProtocolError("reload-refused", str(err)) from None

    def reload_unit(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        """Each running instance's exec-reload or reload-signal, no restart
        (`reload` re-reads unit files); replies once every one has ended."""
        sup = self.manager.sup
        insts = [i for n in named_units(args, self.manager) for i in sup.of_unit(n)]
        results: dict[str, dict[str, Any]] = {}

        def answer(name: str) -> Callable[[bool, str], None]:
            def reply(ok: bool, text: str) -> None:
                results[name] = {"ok": ok, "message": text}
                if len(results) == len(insts):
                    conn.reply(rid, results)
            return reply
        if not insts:
            conn.reply(rid, results)
        for inst in insts:
            sup.lifecycle.reload(inst, answer(inst.name))

    def kill(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        """Sends a signal to the main process of each instance (or, with
        all, to its whole process group and cgroup); what happens next is the
        unit's restart policy."""
        from vigil.base import signames
        names = named_units(args, self.manager)
        raw = args.get("signal", "TERM")
        try:
            signum = signames.number(raw)
        except ValueError:
            raise ProtocolError("bad-args", f"{raw!r} is not a signal") from None
        sup = self.manager.sup
        sent = {}
        for name in names:
            for inst in sup.of_unit(name):
                if inst.pid is None:
                    continue
                if args.get("all"):
                    sup.signal_all(inst, signum)
                elif inst.pid in sup.procs and not sup.reaper.signal(inst.pid, signum):
                    continue
                sent[inst.name] = inst.pid
        conn.reply(rid, sent)

    def run_cmd(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        """A transient unit, like systemd-run: no file; the client's PATH, cwd and
        the variables it names come with the request."""
        from vigil.model.schema import build_unit
        m = self.manager
        argv = args.get("exec")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ProtocolError("bad-args", "\"exec\" must be a non-empty list of strings")
        name = args.get("name") or f"run-{len(m.transient) + 1}"
        while not args.get("name") and name in m.units:
            name += "x"
        if not isinstance(name, str):
            raise ProtocolError("bad-args", "\"name\" must be a string")
        if name in m.units and (name not in m.transient or m.active(name)):
            raise ProtocolError("exists", f"a unit '{name}' already exists"
                                + (" and is running" if m.active(name) else ""))
        service: dict[str, Any] = {"exec": argv, "restart": args.get("restart", "never"),
                                   "env": args.get("env", {}), "stdout": "log",
                                   "stderr": "log"}
        if args.get("cwd"):
            service["cwd"] = args["cwd"]
        if args.get("port") is not None:
            service["port"] = args["port"]
        for table in ("ready", "health"):  # checked below as a unit file's would be
            if args.get(table) is not None:
                service[table] = args[table]
        if isinstance(service.get("ready"), dict):
            service["ready"] = {"timeout": self._timeout(args), **service["ready"]}
        doc: dict[str, Any] = {"unit": {"description": "transient: " + " ".join(argv)[:60]},
                               "service": service}
        scope = _pid(args, "scope")
        if scope is not None:
            doc["unit"]["scope"] = f"pid:{scope}"
        try:
            unit = build_unit(name, doc, f"<vigilctl run {name}>", {})
        except UnitError as err:
            raise ProtocolError("bad-args", str(err)) from None
        m.add_transient(unit)
        since = m.sup.loop.clock()
        m.start([name])
        self._wait(conn, rid, [name], True, args, since, finished_ok=True)

    def scope(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        """Binds units to a process, or (no units) a bound daemon to one more holder."""
        pid = _pid(args, "pid")
        if pid is None:
            raise ProtocolError("bad-args", "\"pid\" is required")
        names = named_units(args, self.manager, required=False)
        if names:
            self._bind(pid, names)
            conn.reply(rid, f"{', '.join(names)} bound to pid {pid}")
            return
        try:
            held = self.scopes.hold(pid)
        except ValueError as err:
            raise ProtocolError("no-such-process", str(err)) from None
        conn.reply(rid, f"the daemon is bound to pid {pid}" if held else
                   "this daemon is not bound to any process (it was started on its own)")

    def _bind(self, pid: int, names: list[str]) -> None:
        try:
            self.scopes.bind(pid, names)
        except ValueError as err:
            raise ProtocolError("no-such-process", str(err)) from None

    def enable(self, conn: Connection, rid: Any, args: dict[str, Any], on: bool) -> None:
        """enable/disable: persisted as a drop-in (vigil/admin.py), then reloaded."""
        from vigil import admin
        names = named_units(args, self.manager, load=True)
        conn.reply(rid, admin.enable(self.manager, self.reload, names, on))

    def reset_failed(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        from vigil import admin
        conn.reply(rid, admin.reset_failed(self.manager, named_units(args, self.manager,
                                                                 required=False)))

    def show(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        from vigil import admin
        name = named_units(args, self.manager)[0]
        admin.show(conn, rid, self.manager, name, self.unit_status(name))

    def reexec_cmd(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        try:
            conn.reply(rid, self.reexec())
        except ValueError as err:
            raise ProtocolError("busy", str(err)) from None

    def _ender(self, kind: str) -> Handler:
        """reboot, halt, poweroff: the reply goes out before the units stop."""
        def end(conn: Connection, rid: Any, args: dict[str, Any]) -> None:
            try:
                conn.reply(rid, self.end_system(kind))
            except ValueError as err:
                raise ProtocolError("not-system-mode", str(err)) from None
        return end

    def shutdown_cmd(self, conn: Connection, rid: Any, args: dict[str, Any]) -> None:
        conn.reply(rid, "stopping all units and exiting")
        self.shutdown()


def _pid(args: dict[str, Any], key: str) -> int | None:
    """A scope's process id from args[key], if given."""
    pid = args.get(key)
    if pid is None:
        return None
    if isinstance(pid, bool) or not isinstance(pid, int) or not 1 <= pid <= 2**31 - 1:
        raise ProtocolError("bad-args", f"\"{key}\" must be a process id (a positive whole "
                            "number)")
    return pid
