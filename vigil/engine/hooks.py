"""on-failure and on-success hooks: every event a unit's failure or success
makes is queued for each of its hook units, and each queued event gets a run
of its own (`advance`, one pass of the manager's drain), so events that come
together, or while the hook runs, are neither merged nor cut short."""

from __future__ import annotations

import signal

from vigil.engine.states import Instance, State

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vigil.engine.manager import Manager

# Events waiting for a busy hook, per hook: a bound on PID 1's memory, far
# above what a burst of failures queues (each event is one run of the hook).
HOOK_QUEUE_MAX = 1000


def queue(m: Manager, hooks: tuple[str, ...], inst: Instance) -> None:
    """Queues the event for each hook unit; `advance` gives each
    event a run of its own, so events that come together, or while the
    hook runs, are neither merged nor cut short."""
    last = inst.last_exit
    env = {"VIGIL_HOOK_UNIT": inst.unit, "VIGIL_HOOK_INSTANCE": inst.name,
           "VIGIL_HOOK_RESULT": "success" if inst.state is State.EXITED else inst.state.value,
           "VIGIL_HOOK_REASON": inst.reason,
           "VIGIL_HOOK_EXIT_CODE": "" if last is None or last.code is None else str(last.code),
           "VIGIL_HOOK_SIGNAL": "" if last is None or last.signal is None else
           signal.Signals(last.signal).name}
    for hook in hooks:
        if hook not in m.units or hook == inst.unit:
            continue
        queue = m.sup.hook_queue.setdefault(hook, [])
        if len(queue) >= HOOK_QUEUE_MAX:
            m.events.emit("hook.dropped", f"{hook}: {len(queue)} events already wait "
                             f"for it; dropping the one from {inst.name}", "error",
                             unit=hook)
            continue
        queue.append(env)

def advance(m: Manager) -> bool:
    """Runs the next queued event of every hook whose previous run is over."""
    changed = False
    for hook in list(m.sup.hook_queue):
        queue = m.sup.hook_queue[hook]
        if hook in m.units and queue and _busy(m, hook):
            continue
        if hook in m.units and queue:
            m.sup.hook_env[hook] = queue.pop(0)
            m.restart([hook])
            changed = True
        if not queue or hook not in m.units:
            del m.sup.hook_queue[hook]
    return changed

def _busy(m: Manager, hook: str) -> bool:
    """A run of the hook is on its way or under way (a long-running hook
    that is up has had its run; the next event restarts it)."""
    if hook in m.waiting or any(inst.unit == hook for inst, _ in m.sup.queue):
        return True
    return any(inst.state in (State.STARTING, State.STOPPING, State.BACKOFF)
               for inst in m.sup.of_unit(hook))
