"""Rules on a service's output: ready when a line matches (`[service.ready]
log`), restart when a line matches (`[service.health] log-fails`) or when
nothing was printed for a while (`silence`).

They run on the lines vigil already reads for the log (vigil/engine/streams.py
hands each line to the sink made here), with no process and no extra read.
A unit without rules gets no sink at all, so its lines cost nothing more.
Silence costs one float store per line: a single timer per instance wakes
when the silence could have run out, and re-arms for what is left if a
line came since (no timer churn under a flood of lines).
"""

from __future__ import annotations

from collections.abc import Callable
from vigil.base.records import dataclass, field

from vigil.runtime.loop import Loop
from vigil.runtime.loop import Timer as Handle
from vigil.runtime.output import Line
from vigil.engine.states import Event, Instance, State
from vigil.model.unit import ProbeKind, Service

TYPE_CHECKING = False  # re is compiled in only for a unit with a log rule
if TYPE_CHECKING:
    import re

# (instance, event, detail): the supervisor sends the event and pumps
Send = Callable[[Instance, Event, str], None]


def has_rules(svc: Service) -> bool:
    return svc.log_fails is not None or svc.silence is not None or (
        svc.ready is not None and svc.ready.probe.kind is ProbeKind.LOG)


@dataclass
class Watch:
    """One instance's rules and when it last printed (loop clock)."""

    inst: Instance
    pid: int | None
    ready: re.Pattern[str] | None
    fails: re.Pattern[str] | None
    last: float
    silence_timer: Handle | None = field(default=None)


class Watches:
    def __init__(self, loop: Loop, send: Send) -> None:
        self.loop, self.send = loop, send
        self.watches: dict[str, Watch] = {}

    def sink(self, inst: Instance) -> Callable[[Line], None] | None:
        """The line sink for an instance's captured stream; None without rules."""
        svc = inst.service
        if not has_rules(svc):
            return None
        watch = self.watches.get(inst.name)
        if watch is None or watch.pid != inst.pid:  # a new run: stdout and stderr share it
            ready = svc.ready.probe.pattern if svc.ready and svc.ready.probe.kind is \
                ProbeKind.LOG else None
            watch = self.watches[inst.name] = Watch(
                inst, inst.pid, _compile(ready) if ready else None,
                _compile(svc.log_fails) if svc.log_fails else None, self.loop.clock())
        return self._sink(watch)

    def _sink(self, watch: Watch) -> Callable[[Line], None]:
        """A closure over what this unit uses: no clock read without silence,
        no search without a pattern (the per-line cost: docs/benchmarks.md)."""
        inst, watches, send, clock = watch.inst, self.watches, self.send, self.loop.clock
        ready = watch.ready.search if watch.ready is not None else None
        fails = watch.fails.search if watch.fails is not None else None
        timed = inst.service.silence is not None

        def line(line: Line) -> None:
            if timed:
                watch.last = clock()
            if watches.get(inst.name) is not watch:
                return  # the output of a run that has ended
            if ready is not None and inst.state is State.STARTING and ready(line.text):
                send(inst, Event.READY, "")
            if fails is not None and inst.state is State.RUNNING and fails(line.text):
                send(inst, Event.HEALTH_FAILED, f"a line matched log-fails: {line.text[:200]}")
        return line

    def start_silence(self, inst: Instance) -> None:
        """Running: watch for silence, counted from now at the latest."""
        silence = inst.service.silence
        watch = self.watches.get(inst.name)
        if silence is None or watch is None:
            return
        watch.last = max(watch.last, self.loop.clock())
        self._arm(watch, silence)

    def _arm(self, watch: Watch, silence: float) -> None:
        def due() -> None:
            watch.silence_timer = None
            quiet = self.loop.clock() - watch.last
            if self.watches.get(watch.inst.name) is not watch \
                    or watch.inst.state is not State.RUNNING:
                return
            if quiet >= silence:
                self.send(watch.inst, Event.HEALTH_FAILED,
                          f"no output for {quiet:.0f}s (silence = {silence:g}s)")
            else:
                self._arm(watch, silence)
        delay = watch.last + silence - self.loop.clock()
        watch.silence_timer = self.loop.call_later(max(0.0, delay), due)

    def cancel(self, name: str) -> None:
        """The instance's timers are cancelled (it stops or starts again)."""
        watch = self.watches.get(name)
        if watch is not None and watch.silence_timer is not None:
            watch.silence_timer.cancel()
            watch.silence_timer = None


def _compile(pattern: str) -> re.Pattern[str]:
    """PID 1 imports `re` only when a unit has a log rule (issue 17)."""
    import re
    return re.compile(pattern)
