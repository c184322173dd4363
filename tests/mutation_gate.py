"""`make mutate`'s gate, run after `mutmut run`: every mutant that survived
(or that no test reaches) must be a known equivalent, listed below with the
reason it changes nothing. The score (killed / mutants that are not
equivalent) is so held at 100%: a new survivor fails `make mutate` until a
test kills it or a line here explains it.

Equivalents are keyed by function and mutated line, not by mutmut's number,
so an edit elsewhere in the file does not invalidate the list.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

MUTMUT = str(Path(sys.executable).parent / "mutmut")

# (function, the mutated line, stripped) -> why the mutant behaves as the original
EQUIVALENT: dict[tuple[str, str], str] = {
    **{(f"vigil.engine.states.x_{fn}", line): "the callee ignores its event argument"
       for fn, line in [
           ("_start_fresh", "return _spawn(inst, None)"),
           ("_retry", "return _spawn(inst, None)"),
           ("_retry_after_fatal", "return _retry(inst, None)"),
           ("_restart", "actions = _stop(inst, None, graceful=True)"),
           ("_exec_ok", "return _ready(inst, None)"),
           ("_forked", "return _ready(inst, None)"),
           ("_stopped", "return _spawn(inst, None)"),
           ("_stopped", "return _settle_stopped(inst, None)"),
           ("_exited", "return _ready(inst, None)"),
       ]},
    # the cells of vigil/engine/lifecycle_states.py (issue 20; _kill_for and _health_failed moved)
    **{(f"vigil.engine.lifecycle_states.x_{fn}", line): "the callee ignores its event argument"
       for fn, line in [
           ("_kill_for", "actions = _stop(inst, None)"),
           ("_health_failed", "actions = _stop(inst, None)"),
           ("_graceful_stop", "return _stop(inst, None, graceful=True)"),
           ("_ready", "return _up(inst, None)"),
           ("_commands_done", "return _up(inst, None)"),
           ("_resume_starting", "return _exec_ok(inst, None)"),
       ]},
    **{("vigil.engine.states.x__stopped", line): "_fail reads only the Input's detail"
       for line in ("return _fail(inst, Input(None, ev.exit, inst.pending_failure))",
                    "return _fail(inst, Input(ev.event, None, inst.pending_failure))")},
    ("vigil.engine.states.x_backoff_delay", "if svc.restart_delay < 0:"):
        "a delay of 0 gives float(min(0 * 2**n, cap)) = 0.0 too",
    ("vigil.model.graph.xǁPlanǁbatches",
     "out: list[list[str]] = [[] for _ in range(max(level.values(), default=-2) + 1)]"):
        "range(-1) and range(0) are both empty",
    ("vigil.model.graph.x__strongly_connected", "counter = 1"):
        "Tarjan compares indices only with each other: a shift keeps every comparison",
    ("vigil.model.graph.x__strongly_connected", "counter += 2"):
        "a larger step keeps the indices' order, all Tarjan reads",
    ("vigil.model.graph.x__strongly_connected", "advanced = None"):
        "None is as false as False in `if advanced`",
    ("vigil.model.graph.x__strongly_connected",
     "work.append((child, iter(sorted(edges.get(child, None)))))"):
        "every child is a key of edges (Graph._link links only loaded units)",
    ("vigil.model.graph.x__strongly_connected",
     "work.append((child, iter(sorted(edges.get(child, )))))"):
        "every child is a key of edges (Graph._link links only loaded units)",
    **{(f"vigil.engine.manager.xǁManagerǁ{fn}", "self._draining = None"):
       "None is as false as False for the re-entry guard" for fn in ("__init__", "drain")},
    **{("vigil.engine.manager.xǁManagerǁstart",
        f'if was_skipped or name not in self.goal or self.settled(name) in ("{down}", "failed"):'):
       "a unit in the goal is never settled 'down' (a service in the goal with no instance up "
       "is None; a target in the goal is waiting or up)" for down in ("XXdownXX", "DOWN")},
    ("vigil.engine.manager.xǁManagerǁstate",
     "if name in self.graph.refused or (name in self.failed_why and not self.active(None)):"):
        "failed_why is set only for a unit that did not begin, so none of its instances is active",
    ("vigil.engine.manager.xǁManagerǁ_drain_stops", "break"):
        "the two `continue`s after a change (a unit gone, a target stopped): changed is "
        "already True, so the fixed-point loop runs the pass again (the first `continue`, "
        "before any change, is killed by test_a_stop_goes_on_past_a_unit_that_still_waits)",
    **{("vigil.engine.manager.xǁManagerǁdrain", line):
       "a `continue` lost after a change: the loop's final check sees the same work (the "
       "queued event, or the same calls made again) and runs the loop again; only the "
       "watchers run one pass early, before the pump, and none is satisfied by a change "
       "still queued" for line in (
           "if self._drain_starts() | self._drain_stops() & self._advance_hooks():",
           "if self._drain_starts() & self._drain_stops() | self._advance_hooks():")},
    **{(fn, "changed = False"):
       "the drain loop's final check calls the same passes again and they see the change "
       "(a unit failed for its requirement; a hook's restart, which queued an event or "
       "left it waiting)" for fn in ("vigil.engine.manager.xǁManagerǁ_drain_starts",
                                     "vigil.engine.hooks.x_advance")},
    ("vigil.engine.manager.xǁManagerǁdrain", "return"):
        "`break` and `return` both leave the loop for the `finally`; nothing follows the loop",
    ("vigil.engine.manager.xǁManagerǁsettled", 'return None if (name in self.goal) and False else "down"'):
        "a unit in the goal with every instance INACTIVE has its START queued: the pump "
        "runs before anything reads settled, except _drain_starts, which checks the queue "
        "itself, and start(), where 'down' only re-queues a START the table ignores",
    ("vigil.engine.manager.xǁManagerǁapply_reload", "self.removed = set(removed)"):
        "a unit still being removed stays in units, so every later reload plans it as "
        "removed again",
    ("vigil.engine.manager.xǁManagerǁ_forget_removed", "self.units.pop(name, )"):
        "the name is a loaded unit: pop finds it without a default",
    ("vigil.engine.manager.xǁManagerǁ_forget_removed", "self.sup.instances.pop(inst.name, )"):
        "the instance was just listed by of_unit: pop finds it without a default",
}

KILLED = {"killed", "timeout", "segfault"}


def results() -> dict[str, str]:
    out = subprocess.run([MUTMUT, "results", "--all", "true"], capture_output=True,
                         text=True, check=True).stdout
    return dict(m.groups() for m in re.finditer(r"^\s*(\S+): (.+)$", out, re.M))


def mutated_line(name: str) -> str:
    diff = subprocess.run([MUTMUT, "show", name], capture_output=True, text=True,
                          check=True).stdout
    added = [ln[1:].strip() for ln in diff.splitlines()
             if ln.startswith("+") and not ln.startswith("+++")]
    return added[0] if added else ""


def main() -> int:
    status = results()
    if not status:
        print("mutation gate: no mutmut results (run `mutmut run` first)")
        return 1
    unexplained, equivalent = [], 0
    for name, state in sorted(status.items()):
        if state in KILLED:
            continue
        function = name.rsplit("__mutmut_", 1)[0]
        line = mutated_line(name)
        if (function, line) in EQUIVALENT:
            equivalent += 1
            continue
        unexplained.append(f"  {name}: {state}: {line}")
    killed = sum(s in KILLED for s in status.values())
    score = 100.0 * killed / max(1, len(status) - equivalent)
    print(json.dumps({"mutants": len(status), "killed": killed, "equivalent": equivalent,
                      "unexplained": len(unexplained), "score": round(score, 1)}))
    if unexplained:
        print("survivors with no test and no reason (kill each with a test, or add it to "
              "EQUIVALENT in tests/mutation_gate.py with why):\n" + "\n".join(unexplained))
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
