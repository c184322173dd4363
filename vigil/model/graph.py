"""The dependency graph: which unit waits for which, cycles, start/stop plans.

Ordering: A starts after B when A requires or wants B, A is `after` B, or
B is `before` A. `requires` also binds failure (if B fails or stops, A
stops); `wants` does not. A stop plan is the exact reverse of the start
plan: a unit stops only once every unit ordered after it has stopped.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from vigil.base.records import dataclass, field

from vigil.base.errors import Problem
from vigil.model.unit import Unit


@dataclass(frozen=True)
class Plan:
    """Units to act on and, for each, the units it must wait for first."""

    order: tuple[str, ...]
    waits_for: Mapping[str, frozenset[str]]

    def batches(self) -> list[list[str]]:
        """Groups that can run in parallel, in order; for display and tests."""
        level: dict[str, int] = {}
        for name in self.order:
            level[name] = 1 + max((level[d] for d in self.waits_for[name]), default=-1)
        out: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for name in self.order:
            out[level[name]].append(name)
        return out


@dataclass
class Graph:
    units: dict[str, Unit]
    problems: list[Problem] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # unit -> why
    _after: dict[str, set[str]] = field(default_factory=dict)  # unit -> starts after these

    @classmethod
    def build(cls, units: Mapping[str, Unit]) -> Graph:
        graph = cls(dict(units))
        graph._link()
        graph._find_cycles()
        return graph

    def _link(self) -> None:
        after: dict[str, set[str]] = {name: set() for name in self.units}
        for name, unit in self.units.items():
            for key, deps in (("requires", unit.requires), ("wants", unit.wants),
                              ("on-failure", unit.on_failure), ("on-success", unit.on_success)):
                for dep in deps:
                    if dep not in self.units:
                        self.problems.append(unit.problem(f"unit.{key}",
                                                          f"{key} unknown unit '{dep}'"))
                        if key == "requires":
                            self.refused.setdefault(
                                name, f"it requires '{dep}', which does not exist")
            for dep in (*unit.requires, *unit.wants, *unit.after):
                if dep in self.units and dep != name:
                    after[name].add(dep)
                elif dep == name:
                    after[name].add(dep)  # a self-loop is a cycle of one
            for later in unit.before:
                if later in self.units:
                    after[later].add(name)
        self._after = after

    def _find_cycles(self) -> None:
        for component in _strongly_connected(self._after):
            if len(component) == 1:
                only = next(iter(component))
                if only not in self._after[only]:
                    continue
            cycle = _cycle_path(self._after, component)
            text = " -> ".join([*cycle, cycle[0]])
            for name in component:
                self.refused[name] = f"it is on a dependency cycle: {text}"
                self.problems.append(self.units[name].problem("unit", f"dependency cycle: {text}"))

    def after(self, name: str) -> frozenset[str]:
        return frozenset(self._after.get(name, ()))

    def pulled_in(self, goals: Iterable[str]) -> set[str]:
        """The goals and every unit they require or want, transitively."""
        seen: set[str] = set()
        stack = [g for g in goals if g in self.units]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            unit = self.units[name]
            stack.extend(d for d in (*unit.requires, *unit.wants) if d in self.units)
        return seen

    def required_by(self, names: Iterable[str]) -> set[str]:
        """The units and every unit that requires them, transitively: what a stop takes down."""
        reverse: dict[str, set[str]] = {n: set() for n in self.units}
        for name, unit in self.units.items():
            for dep in unit.requires:
                if dep in reverse:
                    reverse[dep].add(name)
        seen: set[str] = set()
        stack = [n for n in names if n in self.units]
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack.extend(reverse[name])
        return seen

    def start_plan(self, goals: Iterable[str]) -> Plan:
        """Everything the goals pull in, minus refused units, in start order."""
        members = {n for n in self.pulled_in(goals) if n not in self.refused}
        waits = {n: frozenset(self._after[n] & members) for n in members}
        return Plan(_topological(waits), waits)

    def stop_plan(self, names: Iterable[str]) -> Plan:
        """The reverse of the start order over `names`."""
        members = {n for n in names if n in self.units}
        waits: dict[str, set[str]] = {n: set() for n in members}
        for name in members:
            for dep in self._after[name] & members:
                if dep != name:
                    waits[dep].add(name)  # dep started first, so it stops last
        frozen = {n: frozenset(w) for n, w in waits.items()}
        return Plan(_topological(frozen), frozen)


def _topological(waits: Mapping[str, frozenset[str]]) -> tuple[str, ...]:
    """Kahn's algorithm, ties broken by name so plans are reproducible.

    Edges inside a cycle never clear; such units come last, in name order
    (the caller has refused them already, so this only matters for stops)."""
    remaining = {n: set(w) - {n} for n, w in waits.items()}
    dependents: dict[str, list[str]] = {n: [] for n in waits}
    for name, deps in remaining.items():
        for dep in deps:
            dependents[dep].append(name)
    ready = sorted(n for n, deps in remaining.items() if not deps)
    order: list[str] = []
    heapq.heapify(ready)
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for dependent in dependents[name]:
            remaining[dependent].discard(name)
            if not remaining[dependent]:
                heapq.heappush(ready, dependent)
    placed = set(order)
    order.extend(sorted(n for n in waits if n not in placed))
    return tuple(order)


def _strongly_connected(edges: Mapping[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative so a 10,000-long chain does not recurse."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[set[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                out.append(component)
    return out


def _cycle_path(edges: Mapping[str, set[str]], component: set[str]) -> list[str]:
    """One cycle through the component's first member, in dependency order."""
    start = min(component)
    path, seen = [start], {start}
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:  # breadth-first back to start, inside the component
        nxt = []
        for node in frontier:
            for child in sorted(edges[node] & component):
                if child == start:
                    walk = [node]
                    while walk[-1] != start:
                        walk.append(parents[walk[-1]])
                    return list(reversed(walk))
                if child not in seen:
                    seen.add(child)
                    parents[child] = node
                    nxt.append(child)
        frontier = nxt
    return path
