"""The control commands systemctl users reach for: enable and disable
(persisted as a drop-in next to the unit's file), reset-failed, and show
(the effective settings with the runtime properties)."""

from __future__ import annotations

import os
from collections.abc import Callable

from vigil.control.control import Connection
from vigil.model.dropins import write_dropin
from vigil.engine.manager import Manager
from vigil.wire.protocol import ProtocolError
from vigil.engine.states import Event, State

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any

# The drop-in `enable`/`disable` write: last by name, so it wins over the others.
ENABLE_DROPIN = "zz-vigilctl-enable.toml"


def dropin_dir(manager: Manager, name: str) -> str:
    """`NAME.d` beside the file the unit came from (for `tp@x`, beside tp@.toml)."""
    unit = manager.units[name]
    if not unit.path or unit.path.startswith("<"):
        raise ProtocolError("bad-args", f"{name} has no unit file (made by vigilctl run)")
    return os.path.join(os.path.dirname(unit.path), f"{name}.d")


def enable(manager: Manager, reload: Callable[[bool], dict[str, Any]], names: list[str],
           on: bool) -> dict[str, Any]:
    """enable/disable: `[unit] enabled` in a drop-in, then a reload (which
    takes the change without restarting anything)."""
    written = {}
    for name in names:
        text = ("# Written by vigilctl " + ("enable" if on else "disable") +
                f"; `vigilctl {'disable' if on else 'enable'} {name}` changes it.\n"
                f"[unit]\nenabled = {'true' if on else 'false'}\n")
        try:
            written[name] = write_dropin(dropin_dir(manager, name), ENABLE_DROPIN, text)
        except OSError as err:
            raise ProtocolError("failed", f"{name}: cannot write its drop-in: "
                                f"{err.strerror or err}") from None
    from vigil.model.loader import Incomplete
    try:
        result = reload(False)
    except Incomplete as err:
        raise ProtocolError("reload-refused", f"written, but not reloaded: {err}") from None
    return {"written": written, "problems": result["problems"]}


def reset_failed(manager: Manager, names: list[str]) -> list[str]:
    """Forgets failures: failed and fatal instances become inactive, and
    a unit not started because of a failure loses that reason."""
    reset = []
    sup = manager.sup
    for name in names or sorted(manager.units):
        failed = [i for i in sup.of_unit(name) if i.state in (State.FAILED, State.FATAL)]
        for inst in failed:
            sup.send(inst, Event.STOP)
        if failed or manager.failed_why.pop(name, None) is not None:
            reset.append(name)
        manager.stopped_why.pop(name, None)
    sup.pump()
    manager.drain()
    return reset


def plain(value: Any) -> Any:
    """A unit's settings as JSON: enums by value, tuples and sets as lists."""
    import dataclasses
    import enum
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name.replace("_", "-"): plain(getattr(value, f.name))
                for f in dataclasses.fields(value) if f.name not in ("raw", "where")}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (frozenset, set)):
        return sorted(plain(v) for v in value)
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    return value


def show(conn: Connection, rid: Any, manager: Manager, name: str,
         status: dict[str, Any]) -> None:
    unit = manager.units[name]
    files = sorted({f for f, _ in unit.where.values()} | {unit.path})
    conn.reply(rid, {"unit": name, "settings": plain(unit), "files": files,
                     "runtime": status})
