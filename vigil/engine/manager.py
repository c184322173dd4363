"""Units as a whole: what should be up, in what order, and reload.

The manager keeps the *desired* side (the goal set, what waits for what)
and the supervisor the *current* side (instance states). `drain` is the one
place that drives the engine (dinit's `process_queues`): it handles the
supervisor's queued events and runs the manager's fixed point (start every
waiting unit whose ordering predecessors have settled, stop every unit whose
dependents are down) until neither has work. The loop calls it after every
callback that queued an event, and each request ends with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from vigil.model import unitchanges
from vigil.base.errors import UnitError
from vigil.runtime.events import Events
from vigil.model.graph import Graph
from vigil.model.compiled import LoadResult
from vigil.engine.states import DOWN_STATES, Event, Instance, State
from vigil.engine.supervisor import Supervisor
from vigil.model.unit import Unit
from vigil.model.unitchanges import Change

TYPE_CHECKING = False  # typing is not imported at start (issue 17)
if TYPE_CHECKING:
    from typing import Any

# How a unit's several instances add up to one state, most telling first.
PRIORITY = [State.STOPPING, State.STARTING, State.BACKOFF, State.FATAL, State.FAILED,
            State.RUNNING, State.EXITED, State.INACTIVE]

class Manager:
    def __init__(self, sup: Supervisor, events: Events, hostname: str) -> None:
        self.sup, self.events, self.hostname = sup, events, hostname
        self.units: dict[str, Unit] = {}
        self.graph = Graph.build({})
        self.goal: set[str] = set()
        self.waiting: set[str] = set()
        self.stop_waits: dict[str, set[str]] = {}
        self.targets_up: set[str] = set()
        self.skipped: dict[str, str] = {}  # unit -> why it does not run here
        self.failed_why: dict[str, str] = {}
        self.stopped_why: dict[str, str] = {}  # unit -> why it was stopped, for `why`
        # name -> why its file does not load; `problems`: every load problem
        self.broken: dict[str, str] = {}
        self.problems: list[str] = []
        self.removed: set[str] = set()  # dropped by reload, forgotten once down
        self.transient: set[str] = set()  # made by `vigilctl run`, with no file
        # `start tp@x`: loads an instance of a template file (the daemon's loader)
        self.instances_from: Callable[[str], LoadResult | None] = lambda _name: None
        self.watchers: list[Callable[[], bool]] = []
        # Says why a unit may not start (its scope is gone), or binds it.
        self.admit: Callable[[Unit], str | None] = lambda _unit: None
        # name -> [began, up]: clock times of the latest start, for `timeline`
        self.times: dict[str, list[float | None]] = {}
        self.t0 = sup.loop.clock()
        self._draining = False
        sup.settled_listeners.append(self._settled)
        sup.loop.after_each.append(self._after_callback)

    def set_units(self, units: dict[str, Unit]) -> None:
        self.units = dict(units)
        self.graph = Graph.build(self.units)

    def load_instance(self, name: str) -> bool:
        """Adds a template instance named at run time, and the instances it
        pulls in, to the units; False if there is no template, UnitError if
        it does not load. Units already loaded keep their config."""
        result = self.instances_from(name)
        if result is None:
            return False
        if name not in result.units:
            raise UnitError(result.problems)
        self.set_units({**result.units, **self.units})
        self.events.emit("unit.loaded", f"{name} loaded from its template")
        return True

    def note_load(self, result: LoadResult, problems: list[str]) -> None:
        """Remembers which unit files did not load and why: such a unit is
        shown as broken, never as missing."""
        self.problems = list(problems)
        self.broken = {name: unitchanges.broken_reason(name, result.problems)
                       for name in result.broken}

    def add_transient(self, unit: Unit) -> None:
        self.transient.add(unit.name)
        self.set_units({**self.units, unit.name: unit})

    # -- daemon-reexec ------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The wanted side, and the units `vigilctl run` made (they have no file)."""
        return {"goal": sorted(self.goal), "waiting": sorted(self.waiting),
                "targets_up": sorted(self.targets_up), "skipped": self.skipped,
                "failed_why": self.failed_why, "times": self.times,
                "transient": {n: self.units[n].raw for n in self.transient if n in self.units}}

    def restore(self, saved: dict[str, Any]) -> None:
        """After set_units: the wanted side as it was, for units that still exist."""
        from vigil.model.schema import build_unit
        for name, doc in saved.get("transient", {}).items():
            self.add_transient(build_unit(name, doc, f"<vigilctl run {name}>", {}))
        units = set(self.units)
        self.goal = set(saved["goal"]) & units
        self.waiting = set(saved["waiting"]) & units
        self.targets_up = set(saved["targets_up"]) & units
        self.skipped, self.failed_why = saved["skipped"], saved["failed_why"]
        self.times = saved["times"]

    # -- what a unit is doing ---------------------------------------------------
    def state(self, name: str) -> str:
        unit = self.units.get(name)
        if unit is None:
            return "unknown"
        if name in self.graph.refused or (name in self.failed_why and not self.active(name)):
            return "failed"
        if name in self.skipped:
            return "skipped"
        if unit.is_target:
            if name in self.targets_up:
                return "active"
            return "starting" if name in self.waiting else "inactive"
        if name in self.waiting:
            return "waiting"
        states = {i.state for i in self.sup.of_unit(name)}
        for state in PRIORITY:
            if state in states:
                return state.value
        return State.INACTIVE.value

    def settled(self, name: str) -> str | None:
        """"up", "failed" or "down" once a unit has finished changing; else None."""
        if name in self.graph.refused:
            return "failed"
        if name in self.skipped:
            return "up"
        if name in self.waiting:
            return None
        unit = self.units.get(name)
        if unit is None:
            return "failed"
        if unit.is_target:
            return "up" if name in self.targets_up else "down"
        if name in self.failed_why:
            return "failed"
        states = [i.state for i in self.sup.of_unit(name)]
        if not states or all(s is State.INACTIVE for s in states):
            # In the goal but not started yet: its START may still be queued.
            return None if name in self.goal else "down"
        if any(s in (State.FAILED, State.FATAL) for s in states):
            return "failed"
        if all(s in (State.RUNNING, State.EXITED) for s in states):
            return "up"
        return None

    def active(self, name: str) -> bool:
        unit = self.units.get(name)
        if unit is not None and unit.is_target:
            return name in self.targets_up
        return any(i.state not in DOWN_STATES for i in self.sup.of_unit(name))

    # -- requests -----------------------------------------------------------
    def start(self, names: Iterable[str]) -> None:
        names = list(names)
        for name in names:
            if name in self.graph.refused:
                self.events.emit("unit.refused", f"{name} refused: {self.graph.refused[name]}",
                                 "error", unit=name)
        plan = self.graph.start_plan(names)
        starting = set(plan.order)
        conflicting = {c for n in starting for c in self.units[n].conflicts} | {
            n for n, u in self.units.items() if starting & set(u.conflicts)}
        if conflicting - starting:
            self.stop((c for c in conflicting - starting if c in self.units),
                      f"stopped because {', '.join(sorted(names))} conflicts with it")
        for name in plan.order:
            self.stop_waits.pop(name, None)
            self.stopped_why.pop(name, None)
            self.failed_why.pop(name, None)
            # A skipped unit is looked at again: its condition may hold now.
            was_skipped = self.skipped.pop(name, None) is not None
            if was_skipped or name not in self.goal or self.settled(name) in ("down", "failed"):
                self.goal.add(name)
                self.waiting.add(name)
        self.drain()

    def stop(self, names: Iterable[str], why: str = "") -> None:
        """Stops the units and what requires them; `why` is kept for `why`."""
        asked = set(names)
        victims = set(asked)
        for name in list(victims):
            unit = self.units.get(name)
            if unit is not None and unit.is_target:
                victims |= set(unit.requires) | set(unit.wants)
        victims = self.graph.required_by(victims)
        if why:
            named = ", ".join(sorted(asked))
            for name in victims:
                if name in asked:
                    self.stopped_why[name] = why
                elif self.active(name) or name in self.goal:
                    self.stopped_why[name] = f"stopped with {named}, which it requires ({why})"
        self.goal -= victims
        self.waiting -= victims
        plan = self.graph.stop_plan(victims)
        for name in plan.order:
            self.stop_waits[name] = set(plan.waits_for[name])
        self.drain()

    def restart(self, names: Iterable[str]) -> None:
        for name in names:
            unit = self.units.get(name)
            if unit is None or unit.is_target or not self.active(name):
                self.goal.discard(name)  # so a finished oneshot runs again
                self.start([name])
                continue
            for inst in self.sup.ensure_instances(unit):
                self.sup.send(inst, Event.RESTART)
        self.drain()

    # -- the fixed point ----------------------------------------------------
    def _after_callback(self) -> None:
        if self.sup.queue:
            self.drain()

    def drain(self) -> None:
        """Runs the engine until neither queue has work. A request made while
        it runs (by a settled listener or a watcher) only queues: this call
        picks it up before it returns."""
        if self._draining:
            return
        self._draining = True
        try:
            while True:
                self.sup.pump()
                if self._drain_starts() | self._drain_stops() | self._advance_hooks():
                    continue
                self._forget_removed()
                for watcher in list(self.watchers):
                    if watcher() and watcher in self.watchers:
                        self.watchers.remove(watcher)
                if not self.sup.queue and not (self._drain_starts() | self._drain_stops()
                                               | self._advance_hooks()):
                    break
        finally:
            self._draining = False

    def _drain_starts(self) -> bool:
        changed = False
        for name in sorted(self.waiting):
            unit = self.units[name]
            blocked, failed_dep = False, None
            for dep in sorted(self.graph.after(name)):  # by name: the same run every time
                if dep not in self.goal and dep not in self.failed_why:
                    # Ordering binds only units that are starting together; a unit
                    # that just failed to start (its own requirement failed) has
                    # left the goal but must still hold back what requires it.
                    continue
                # a dep with an event still queued (a START just sent) is not settled yet
                queued = any(inst.unit == dep for inst, _ in self.sup.queue)
                status = None if queued else self.settled(dep)
                if status is None:
                    blocked = True
                elif status == "failed" and dep in unit.requires:
                    failed_dep = dep
            if failed_dep is not None:
                self.waiting.discard(name)
                self.goal.discard(name)
                self.failed_why[name] = f"its requirement '{failed_dep}' failed"
                self.events.emit("unit.failed", f"{name} not started: its requirement "
                                 f"'{failed_dep}' failed", "error", unit=name)
                changed = True
            elif not blocked:
                self.waiting.discard(name)
                self._begin(unit)
                changed = True
        return changed

    def _drain_stops(self) -> bool:
        changed = False
        for name in sorted(self.stop_waits):
            if any(self.active(d) for d in self.stop_waits[name]):
                continue
            del self.stop_waits[name]
            changed = True
            unit = self.units.get(name)
            if unit is None:
                continue
            if unit.is_target:
                if name in self.targets_up:
                    self.targets_up.discard(name)
                    self.events.emit("unit.stopped", f"Stopped target {name}", unit=name)
                continue
            for inst in self.sup.of_unit(name):
                self.sup.send(inst, Event.STOP)
        return changed

    def _begin(self, unit: Unit) -> None:
        now = self.sup.loop.clock()
        self.times[unit.name] = [now, now if unit.is_target else None]
        why = unit.skip_reason(self.hostname)
        if why is not None:
            self.skipped[unit.name] = why
            self.events.emit("unit.skipped", f"{unit.name} skipped: {why}", unit=unit.name)
            return
        if unit.is_target:
            self.targets_up.add(unit.name)
            self.events.emit("unit.ready", f"Reached target {unit.name}", unit=unit.name)
            return
        why = self.admit(unit)
        if why is not None:
            self.failed_why[unit.name] = why
            self.events.emit("unit.failed", f"{unit.name} not started: {why}", "error",
                             unit=unit.name)
            return
        for inst in self.sup.ensure_instances(unit):
            self.sup.send(inst, Event.START)

    def _settled(self, inst: Instance) -> None:
        """An instance finished changing: propagate failures, queue hooks."""
        unit = self.units.get(inst.unit)
        times = self.times.get(inst.unit)
        if times is not None and times[1] is None and self.settled(inst.unit) == "up":
            times[1] = self.sup.loop.clock()
        if inst.state in (State.FAILED, State.FATAL) and unit is not None:
            dependents = {n for n, u in self.units.items()
                          if inst.unit in u.requires and self.active(n)}
            if dependents:
                self.events.emit("unit.stopping", f"stopping {', '.join(sorted(dependents))}: "
                                 f"required {inst.unit} failed", "warning", unit=inst.unit)
                self.stop(dependents, f"stopped because its requirement {inst.unit} failed "
                          f"({inst.reason})")
            self._queue_hooks(unit.on_failure, inst)
        elif inst.state is State.EXITED and unit is not None and unit.on_success:
            self._queue_hooks(unit.on_success, inst)

    # -- hooks (vigil/engine/hooks.py, imported only once a unit has them) ---------
    def _queue_hooks(self, names: tuple[str, ...], inst: Instance) -> None:
        if names:
            from vigil.engine import hooks
            hooks.queue(self, names, inst)

    def _advance_hooks(self) -> bool:
        if not self.sup.hook_queue:
            return False
        from vigil.engine import hooks
        return hooks.advance(self)

    # -- reload -------------------------------------------------------------
    def plan_reload(self, new: dict[str, Unit], broken: set[str]) -> list[Change]:
        return unitchanges.plan(self.units, new, broken)

    def apply_reload(self, new: dict[str, Unit], broken: set[str]) -> list[Change]:
        changes = self.plan_reload(new, broken)
        merged = dict(new)
        for change in changes:
            if change.action == "keep-old":
                merged[change.unit] = self.units[change.unit]
        removed = [c.unit for c in changes if c.action == "remove"]
        restart = [c.unit for c in changes if c.action == "restart" and (
            self.active(c.unit) or (c.unit in self.goal and merged[c.unit].timer is None))]
        self.stop(removed, "its file is gone (reload)")
        self.removed |= set(removed)
        old_units = self.units
        self.set_units({**merged, **{n: old_units[n] for n in removed}})
        for name in restart:
            self._resize(name)
        self.restart(restart)
        added = [c.unit for c in changes if c.action == "add" and merged[c.unit].enabled
                 and merged[c.unit].timer is None]  # a timer starts those
        self.start(added)
        return changes

    def _resize(self, name: str) -> None:
        """Drops instances a changed unit no longer has."""
        unit = self.units[name]
        keep = {i.name for i in self.sup.ensure_instances(unit)} if unit.service else set()
        for inst in self.sup.of_unit(name):
            if inst.name not in keep:
                self.sup.send(inst, Event.STOP)

    def _forget_removed(self) -> None:
        for name in list(self.removed):
            if not self.active(name) and name not in self.stop_waits:
                self.removed.discard(name)
                self.units.pop(name, None)
                for inst in self.sup.of_unit(name):
                    self.sup.instances.pop(inst.name, None)
                self.graph = Graph.build(self.units)
