"""The state table's cells for the phases within a state (lifecycle
commands, reload, what a service says over sd_notify: RELOADING=1,
STOPPING=1, the watchdog), the stop's escalation, and the resumption after
a re-exec. The table itself stays in vigil/engine/states.py; these are its cells,
kept here so that module stays short. Like every handler they change the record and
return actions, and never touch a process.

systemd's order, which vigil keeps: exec-pre before the main process (one
failing fails the start, and the restart policy decides); exec-post once it
is ready (one failing stops it as a failed start); exec-stop in place of the
stop signal for a running service; exec-reload, or reload-signal, while it
runs (a failed reload leaves it running, and says so).
"""

from __future__ import annotations

from vigil.engine.states import (Act, Action, Input, Instance, State, _after_failure, _arm_backoff,
                          _exec_ok, _fail, _stop)
from vigil.model.unit import RestartPolicy, ServiceType


def _graceful_stop(inst: Instance, ev: Input) -> list[Action]:
    return _stop(inst, ev, graceful=True)


def _ready(inst: Instance, _: Input) -> list[Action]:
    if inst.phase:  # a second READY=1 while exec-post runs, or a pre command's line
        return []
    if inst.service.exec_post:  # as ExecStartPost: after ready, before dependents
        inst.phase = "post"
        return [Action(Act.CANCEL_TIMERS), Action(Act.RUN_COMMANDS, what="post")]
    return _up(inst, _)


def _up(inst: Instance, _: Input) -> list[Action]:
    inst.phase = ""
    if inst.service.type is ServiceType.ONESHOT:  # its exec-post ran after it exited
        inst.state = State.EXITED
        return [Action(Act.CANCEL_TIMERS), Action(Act.ANNOUNCE)]
    inst.state = State.RUNNING
    return [Action(Act.CANCEL_TIMERS), Action(Act.ANNOUNCE), Action(Act.START_HEALTH)]


def _resume_stopping(inst: Instance, _: Input) -> list[Action]:
    if inst.phase == "self-stop":
        return [Action(Act.ARM_STOP, inst.service.stop_timeout)]
    inst.phase = ""  # exec-stop's commands went with the old daemon: the signal now
    return [Action(Act.SIGNAL_STOP), Action(Act.ARM_STOP, inst.service.stop_timeout)]


def _resume_starting(inst: Instance, ev: Input) -> list[Action]:
    if inst.phase in ("pre", "post"):  # its commands went with the old daemon: again
        return [Action(Act.RUN_COMMANDS, what=inst.phase)]
    return _exec_ok(inst, ev)


def _resume_backoff(inst: Instance, _: Input) -> list[Action]:
    return [_arm_backoff(inst)]


def _resume_fatal(inst: Instance, _: Input) -> list[Action]:
    delay = inst.service.retry_after_fatal
    return [Action(Act.ARM_RETRY, delay)] if delay > 0 else []


def _resume_health(inst: Instance, _: Input) -> list[Action]:
    inst.phase = ""  # a reload's commands went with the old daemon
    return [Action(Act.START_HEALTH)]


def _kill(inst: Instance, _: Input) -> list[Action]:
    if inst.phase == "stop":  # exec-stop had stop-timeout: now the stop signal
        inst.phase = ""
        return [Action(Act.CANCEL_TIMERS), Action(Act.SIGNAL_STOP),
                Action(Act.ARM_STOP, inst.service.stop_timeout)]
    return [Action(Act.KILL), Action(Act.ARM_STOP, inst.service.stop_timeout)]


def _start_failed(inst: Instance, ev: Input) -> list[Action]:
    """A start that failed before (or as) the service was up: as an early exit."""
    if inst.service.restart is RestartPolicy.NEVER:
        return _fail(inst, ev)
    return _after_failure(inst, 0.0, True, ev.detail)


def _commands_done(inst: Instance, ev: Input) -> list[Action]:
    phase = inst.phase
    if inst.state is State.STARTING and phase == "pre":
        inst.phase = ""
        return [Action(Act.SPAWN)]
    if inst.state is State.STARTING and phase == "post":
        return _up(inst, ev)
    if inst.state is State.RUNNING and phase == "reload":
        inst.phase = ""
        return [Action(Act.RELOADED, what=f"{inst.name} reloaded (exec-reload)")]
    return []  # exec-stop done: the exit, or stop-timeout and the signal, comes next


def _commands_failed(inst: Instance, ev: Input) -> list[Action]:
    phase = inst.phase
    if inst.state is State.STARTING and phase == "pre":
        return _start_failed(inst, ev)
    if inst.state is State.STARTING and phase == "post":
        if inst.service.type is ServiceType.ONESHOT:  # it had already exited
            return _start_failed(inst, ev)
        actions = _kill_for(inst, ev)  # then the restart policy, as for an early exit
        inst.want_up = inst.service.restart is not RestartPolicy.NEVER
        return actions
    if inst.state is State.RUNNING and phase == "reload":
        inst.phase = ""
        return [Action(Act.RELOAD_FAILED, what=f"{inst.name}: reload failed: {ev.detail}; "
                                               "it keeps running")]
    if inst.state is State.STOPPING and phase == "stop":
        inst.phase = ""
        return [Action(Act.REPORT, what=f"{inst.name}: {ev.detail}; sending the stop signal"),
                Action(Act.CANCEL_TIMERS), Action(Act.SIGNAL_STOP),
                Action(Act.ARM_STOP, inst.service.stop_timeout)]
    return []


def _ready_again(inst: Instance, ev: Input) -> list[Action]:
    """READY=1 while running: the end of a reload it announced (RELOADING=1)."""
    if inst.phase == "reloading":
        inst.phase = ""
        return [Action(Act.RELOADED, what=f"{inst.name} reloaded (READY=1)")]
    return []


def _reload(inst: Instance, _: Input) -> list[Action]:
    svc = inst.service
    if inst.phase:  # a reload (or its own) is under way
        return []
    if svc.exec_reload:
        inst.phase = "reload"
        return [Action(Act.RUN_COMMANDS, what="reload")]
    if svc.reload_signal is not None:
        return [Action(Act.SIGNAL_RELOAD)]
    return [Action(Act.RELOAD_FAILED, what=f"{inst.name} has no exec-reload or "
                                           "reload-signal")]


def _reloading(inst: Instance, _: Input) -> list[Action]:
    if not inst.phase:
        inst.phase = "reloading"
    return []


def _self_stop(inst: Instance, _: Input) -> list[Action]:
    """STOPPING=1: it is on its way out. Held to stop-timeout; its exit is
    then judged by the restart policy, as any exit of its own."""
    inst.state, inst.phase = State.STOPPING, "self-stop"
    return [Action(Act.CANCEL_TIMERS), Action(Act.ARM_STOP, inst.service.stop_timeout)]


def _stop_while_stopping(inst: Instance, _: Input) -> list[Action]:
    """A stop asked while it stops (on its own, or to come back after a
    restart, a failed health check or a failed action): it then stays down.
    The process is already on its way out; the stop timeout stays armed."""
    if inst.phase == "self-stop":
        inst.phase = ""
    inst.want_up = False
    inst.pending_failure = ""
    return []


def _watchdog(inst: Instance, ev: Input) -> list[Action]:
    """No WATCHDOG=1 in time: SIGABRT (a core to look at, as systemd), then
    SIGKILL at stop-timeout; the restart policy decides what follows."""
    inst.state, inst.phase = State.STOPPING, ""
    inst.want_up = inst.service.restart is not RestartPolicy.NEVER
    inst.pending_failure = ev.detail or "watchdog timeout"
    inst.reason = inst.pending_failure
    return [Action(Act.CANCEL_TIMERS), Action(Act.ABORT),
            Action(Act.ARM_STOP, inst.service.stop_timeout)]


def _kill_for(inst: Instance, ev: Input) -> list[Action]:
    """Stops the process because it failed (not ready in time, unhealthy)."""
    actions = _stop(inst, ev)
    inst.want_up = True
    inst.pending_failure = ev.detail
    return actions


def _health_failed(inst: Instance, ev: Input) -> list[Action]:
    actions = _stop(inst, ev)
    inst.want_up = True
    inst.restarts += 1
    inst.reason = ev.detail
    return actions
