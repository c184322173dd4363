"""What new unit files mean for the units running: the reload plan (add,
remove, restart, update in place, or keep the old one when the new file
does not load) and the reason a broken unit's files give."""

from __future__ import annotations

import os
from vigil.base.records import dataclass

from vigil.base.errors import Problem
from vigil.model.unit import Unit, changed_keys

# Keys that change how vigil describes or orders a unit, not its process: a
# reload takes them without restarting it.
NO_RESTART = frozenset({"unit.description", "unit.enabled", "unit.wants", "unit.after",
                        "unit.before", "unit.on-failure", "unit.on-success", "unit.critical"})


@dataclass
class Change:
    unit: str
    action: str  # add | remove | restart | update (no restart needed) | keep-old
    why: str


def plan(units: dict[str, Unit], new: dict[str, Unit], broken: set[str]) -> list[Change]:
    """What a reload does to each unit, and why (the units now, the new set,
    and the names whose new file does not load)."""
    changes = []
    for name in sorted(set(units) | set(new)):
        old, fresh = units.get(name), new.get(name)
        if fresh is None and name in broken and old is not None:
            changes.append(Change(name, "keep-old", "the new file does not load"))
        elif fresh is None:
            changes.append(Change(name, "remove", "its file is gone"))
        elif old is None:
            changes.append(Change(name, "add", "new unit"))
        elif old != fresh:
            keys = changed_keys(old.raw, fresh.raw) or ["(equivalent text)"]
            action = "update" if all(k in NO_RESTART for k in keys) else "restart"
            changes.append(Change(name, action, "changed: " + ", ".join(keys)))
    return changes


def broken_reason(name: str, problems: list[Problem]) -> str:
    """The problems of one unit's files (NAME.toml, NAME.d/, or its
    template's), each with the file's name and line."""
    prefix, at, _ = name.partition("@")
    stems = {name, prefix + at}
    mine = []
    for problem in problems:
        folder, file = os.path.split(problem.path)
        if file.removesuffix(".toml") in stems:
            where = file
        elif os.path.basename(folder).removesuffix(".d") in stems:
            where = f"{os.path.basename(folder)}/{file}"
        else:
            continue
        line = f":{problem.line}" if problem.line is not None else ""
        key = f" {problem.key}:" if problem.key else ""
        mine.append(f"{where}{line}:{key} {problem.message}")
    return "; ".join(mine) or "its file does not load (vigil check says why)"
