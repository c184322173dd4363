"""The manager (what should be up, in what order) driven with a fake
supervisor: the real state table, no process, a clock the test sets.

The fake (tests/fakes.py) is the real supervisor's queue with only the
actions replaced: SPAWN records that a process would start, ANNOUNCE tells
the manager an instance settled. The test plays the processes, each news a
loop callback after which the manager drains: `sup.up("db")` (exec done),
`sup.exit("db", 1)`.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes import FakeSupervisor
from vigil.runtime.events import Events
from vigil.engine.manager import Manager
from vigil.engine.states import State
from vigil.model.unit import RestartPolicy, Service, ServiceType, Unit


def service(**kw: Any) -> Service:
    return Service(exec=("prog",), **kw)


def unit(name: str, target: bool = False, svc: Service | None = None, **kw: Any) -> Unit:
    fields = {k: tuple(v) for k, v in kw.items() if k != "enabled"}
    return Unit(name=name, path=f"{name}.toml", enabled=kw.get("enabled", True),
                service=None if target else (svc or service()), **fields)


def manager(*units: Unit) -> tuple[Manager, FakeSupervisor, Events]:
    events = Events(None)
    sup = FakeSupervisor(events)
    m = Manager(sup, events, "host")  # type: ignore[arg-type]
    m.set_units({u.name: u for u in units})
    return m, sup, events


def messages(events: Events, code: str) -> list[str]:
    return [r["message"] for r in events.recent if r["code"] == code]


def records(events: Events, code: str) -> list[tuple[str, str | None, str]]:
    """(severity, unit, message) of each event with this code."""
    return [(r["severity"], r["unit"], r["message"]) for r in events.recent if r["code"] == code]


# -- dependents wait for what they require --------------------------------------------
def test_a_dependent_waits_until_its_requirement_is_up():
    m, sup, _ = manager(unit("db"), unit("web", requires=["db"]))
    m.start(["web"])
    assert sup.spawned == ["db"]
    assert (m.state("web"), m.state("db"), m.settled("web")) == ("waiting", "starting", None)
    sup.up("db")
    assert sup.spawned == ["db", "web"]
    assert m.state("db") == "running"


def test_a_dependent_waits_for_a_oneshot_to_finish():
    prep = service(type=ServiceType.ONESHOT, restart=RestartPolicy.NEVER)
    m, sup, _ = manager(unit("prep", svc=prep), unit("app", requires=["prep"]))
    m.start(["app"])
    sup.up("prep")  # exec done, still running: not finished
    assert sup.spawned == ["prep"]
    sup.exit("prep", 0)
    assert sup.spawned == ["prep", "app"]
    assert m.settled("prep") == "up"


def test_after_orders_without_pulling_in():
    m, sup, _ = manager(unit("a", after=["b"]), unit("b"))
    m.start(["a"])
    assert sup.spawned == ["a"]  # b is not in the goal: nothing to wait for
    m2, sup2, _ = manager(unit("a", after=["b"]), unit("b"))
    m2.start(["a", "b"])
    assert sup2.spawned == ["b"]
    sup2.up("b")
    assert sup2.spawned == ["b", "a"]


def test_a_wanted_unit_that_fails_does_not_hold_back_its_wanter():
    m, sup, events = manager(unit("cache"), unit("web", wants=["cache"]))
    m.start(["web"])
    assert sup.spawned == ["cache"]
    sup.exec_failed("cache")
    assert sup.spawned == ["cache", "web"]
    assert "web" not in m.failed_why
    assert messages(events, "unit.failed") == []


def test_a_target_is_reached_once_what_it_requires_is_up():
    m, sup, events = manager(unit("db"), unit("all", target=True, requires=["db"]))
    m.start(["all"])
    assert (m.state("all"), m.settled("all")) == ("starting", None)
    sup.up("db")
    assert (m.state("all"), m.settled("all"), m.active("all")) == ("active", "up", True)
    assert records(events, "unit.ready") == [("info", "all", "Reached target all")]
    m.restart(["all"])  # a target restarts by starting: nothing to cycle
    assert (m.state("all"), sup.spawned) == ("active", ["db"])


# -- a failed requirement -----------------------------------------------------------
def test_a_unit_whose_requirement_failed_does_not_start_and_says_why():
    m, sup, events = manager(unit("db"), unit("web", requires=["db"]),
                             unit("api", requires=["web"]))
    m.start(["api"])
    sup.exec_failed("db")
    assert sup.spawned == ["db"]
    assert m.failed_why["web"] == "its requirement 'db' failed"
    assert m.failed_why["api"] == "its requirement 'web' failed"
    assert (m.state("web"), m.settled("web"), m.state("api")) == ("failed", "failed", "failed")
    assert "web" not in m.goal and "web" not in m.waiting
    assert records(events, "unit.failed") == [
        ("error", "web", "web not started: its requirement 'db' failed"),
        ("error", "api", "api not started: its requirement 'web' failed")]


def test_a_fatal_requirement_also_holds_back():
    db = service(start_retries=0, restart_delay=0)
    m, sup, _ = manager(unit("db", svc=db), unit("web", requires=["db"]))
    m.start(["web"])
    sup.exit("db", 1)
    assert sup.instances["db"].state is State.FATAL
    assert sup.spawned == ["db"]
    assert m.failed_why["web"] == "its requirement 'db' failed"


def test_starting_again_forgets_the_failure():
    m, sup, _ = manager(unit("db"), unit("web", requires=["db"]))
    m.start(["web"])
    sup.exec_failed("db")
    m.start(["web"])
    assert "web" not in m.failed_why
    assert (m.state("web"), sup.spawned) == ("waiting", ["db", "db"])
    sup.up("db")
    assert sup.spawned == ["db", "db", "web"]


def test_dependents_stop_when_a_required_unit_fails():
    never = service(restart=RestartPolicy.NEVER)
    m, sup, events = manager(unit("db", svc=never), unit("web", requires=["db"]),
                             unit("api", requires=["web"]), unit("side", wants=["db"]))
    m.start(["api", "side"])
    sup.up("db")
    sup.up("web")
    sup.up("side")
    sup.up("api")
    sup.exit("db", 1)
    assert sup.instances["db"].state is State.FAILED
    assert sorted(sup.signalled) == ["api"]  # web waits for api to stop first
    assert sup.instances["web"].state is State.RUNNING
    assert records(events, "unit.stopping") == [
        ("warning", "db", "stopping web: required db failed")]
    sup.exit("api", None, 15)
    assert sup.signalled == ["api", "web"]
    sup.exit("web", None, 15)
    assert m.state("web") == m.state("api") == "inactive"
    assert sup.instances["side"].state is State.RUNNING  # wants does not bind failure
    assert m.goal == {"db", "side"}


def test_a_requirement_that_restarts_does_not_stop_its_dependents():
    m, sup, events = manager(unit("db"), unit("web", requires=["db"]))
    m.start(["web"])
    sup.up("db")
    sup.up("web")
    sup.exit("db", 1)
    assert sup.instances["db"].state is State.BACKOFF
    assert sup.signalled == []
    assert messages(events, "unit.stopping") == []


def test_hooks_run_on_failure_and_on_success_with_the_event():
    never = service(restart=RestartPolicy.NEVER)
    m, sup, _ = manager(unit("job", svc=never, on_failure=["alert"], on_success=["done"]),
                        unit("alert", enabled=False), unit("done", enabled=False))
    m.start(["job"])
    sup.up("job")
    sup.exit("job", 3)
    assert sup.spawned == ["job", "alert"]
    assert sup.hook_env["alert"] == {
        "VIGIL_HOOK_UNIT": "job", "VIGIL_HOOK_INSTANCE": "job", "VIGIL_HOOK_RESULT": "failed",
        "VIGIL_HOOK_REASON": "exit 3", "VIGIL_HOOK_EXIT_CODE": "3", "VIGIL_HOOK_SIGNAL": ""}
    sup.up("alert")
    sup.exit("alert", 0)  # its run is over: the next event gets a run of its own
    m.start(["job"])
    sup.up("job")
    sup.exit("job", None, 9)
    assert sup.hook_env["alert"]["VIGIL_HOOK_SIGNAL"] == "SIGKILL"
    assert sup.hook_env["alert"]["VIGIL_HOOK_EXIT_CODE"] == ""
    m.start(["job"])
    sup.up("job")
    sup.exit("job", 0)
    assert sup.spawned[-1] == "done"
    assert sup.hook_env["done"]["VIGIL_HOOK_RESULT"] == "success"


# -- stopping ------------------------------------------------------------------------
def test_stop_takes_down_what_requires_it_in_reverse_order():
    m, sup, _ = manager(unit("db"), unit("web", requires=["db"]), unit("other"))
    m.start(["web", "other"])
    sup.up("db")
    sup.up("web")
    sup.up("other")
    m.stop(["db"])
    assert sup.signalled == ["web"]
    assert m.goal == {"other"}
    sup.exit("web", None, 15)
    assert sup.signalled == ["web", "db"]
    sup.exit("db", None, 15)
    assert (m.state("db"), m.state("web"), m.state("other")) == ("inactive", "inactive",
                                                                 "running")
    assert m.stop_waits == {}


def test_stopping_a_target_stops_what_it_pulled_in():
    m, sup, events = manager(unit("db"), unit("all", target=True, wants=["db"]))
    m.start(["all"])
    sup.up("db")
    m.stop(["all"])
    assert m.state("all") == "inactive"  # first: the reverse of the start order
    assert sup.signalled == ["db"]
    sup.exit("db", None, 15)
    assert m.state("db") == "inactive"
    assert (m.settled("db"), m.settled("all"), m.active("all")) == ("down", "down", False)
    assert records(events, "unit.stopped") == [("info", "all", "Stopped target all")]
    assert messages(events, "unit.stopped") == ["Stopped target all"]


def test_starting_a_unit_stops_its_conflicts_both_ways():
    m, sup, _ = manager(unit("a"), unit("b", conflicts=["a"]), unit("c"))
    m.start(["a", "c"])
    sup.up("a")
    sup.up("c")
    m.start(["b"])
    assert sup.signalled == ["a"]
    m2, sup2, _ = manager(unit("a"), unit("b", conflicts=["a"]))
    m2.start(["b"])
    sup2.up("b")
    m2.start(["a"])
    assert sup2.signalled == ["b"]


def test_restart_of_units_that_are_down_starts_each():
    once = service(type=ServiceType.ONESHOT)
    m, sup, _ = manager(unit("j1", svc=once, enabled=False), unit("j2", svc=once, enabled=False))
    m.restart(["j1", "j2"])
    assert sup.spawned == ["j1", "j2"]
    assert m.goal == {"j1", "j2"}


def test_a_failure_hook_that_names_its_own_unit_is_skipped():
    never = service(restart=RestartPolicy.NEVER)
    m, sup, _ = manager(unit("job", svc=never, on_failure=["job", "alert"]),
                        unit("alert", enabled=False))
    m.start(["job"])
    sup.up("job")
    sup.exit("job", 1)
    assert sup.spawned == ["job", "alert"]


def test_restart_of_a_finished_oneshot_runs_it_again():
    once = service(type=ServiceType.ONESHOT)
    m, sup, _ = manager(unit("job", svc=once))
    m.start(["job"])
    sup.up("job")
    sup.exit("job", 0)
    assert m.state("job") == "exited"
    m.restart(["job"])
    assert sup.spawned == ["job", "job"]


def test_restart_of_a_running_unit_cycles_it():
    m, sup, _ = manager(unit("web"))
    m.start(["web"])
    sup.up("web")
    m.restart(["web"])
    assert sup.signalled == ["web"]
    sup.exit("web", None, 15)
    assert sup.spawned == ["web", "web"]
    assert sup.instances["web"].restarts == 1


# -- what a unit is doing ---------------------------------------------------------
def test_state_of_several_instances_is_the_most_telling():
    m, sup, _ = manager(unit("w", svc=service(instances=3, restart=RestartPolicy.NEVER)))
    m.start(["w"])
    sup.up("w:0")
    assert m.state("w") == "starting"
    sup.up("w:1")
    sup.up("w:2")
    assert (m.state("w"), m.settled("w")) == ("running", "up")
    sup.exit("w:1", 1)
    assert (m.state("w"), m.settled("w")) == ("failed", "failed")


@pytest.mark.parametrize("name, state, settled", [("ghost", "unknown", "failed")])
def test_an_unknown_unit(name, state, settled):
    m, _, _ = manager()
    assert (m.state(name), m.settled(name), m.active(name)) == (state, settled, False)


def test_a_skipped_unit_counts_as_up_for_its_dependents():
    m, sup, events = manager(unit("x", hosts=["elsewhere"]), unit("y", requires=["x"]))
    m.start(["y"])
    assert (m.state("x"), m.settled("x")) == ("skipped", "up")
    assert sup.spawned == ["y"]
    assert records(events, "unit.skipped") == [("info", "x", "x skipped: not for host 'host'")]
    assert m.skipped == {"x": "not for host 'host'"}


def test_admit_refuses_a_unit_with_a_reason():
    m, sup, events = manager(unit("x"))
    asked = []
    m.admit = lambda u: asked.append(u.name) or "its scope is gone"
    m.start(["x"])
    assert sup.spawned == [] and asked == ["x"]
    assert (m.state("x"), m.settled("x")) == ("failed", "failed")
    assert m.failed_why == {"x": "its scope is gone"}
    assert records(events, "unit.failed") == [("error", "x", "x not started: its scope is gone")]


def test_a_refused_unit_is_failed_and_named_when_started():
    m, sup, events = manager(unit("x", requires=["ghost"]))
    m.start(["x"])
    assert sup.spawned == []
    assert (m.state("x"), m.settled("x")) == ("failed", "failed")
    assert records(events, "unit.refused") == [
        ("error", "x", "x refused: it requires 'ghost', which does not exist")]


def test_timeline_records_when_a_start_began_and_came_up():
    m, sup, _ = manager(unit("db"), unit("web", requires=["db"]))
    m.start(["web"])
    sup.loop.now = 101.5
    sup.up("db")
    sup.loop.now = 103.0
    sup.up("web")
    assert m.times == {"db": [100.0, 101.5], "web": [101.5, 103.0]}
    sup.loop.now = 105.0
    m.restart(["web"])
    sup.exit("web", None, 15)
    sup.up("web")
    assert m.times["web"] == [101.5, 103.0]  # the timeline is of the start, not of restarts


def test_a_target_is_up_when_it_begins_and_its_dependent_starts_in_the_same_drain():
    m, sup, _ = manager(unit("z", target=True), unit("a", requires=["z"]))
    m.start(["a"])
    assert sup.spawned == ["a"]
    assert m.times["z"] == [100.0, 100.0]


# -- reload -----------------------------------------------------------------------------
def test_plan_reload_names_each_change_and_why():
    old_edited = Unit(name="edited", path="edited.toml", service=service(),
                      raw={"service": {"exec": "prog"}})
    m, _, _ = manager(unit("same"), unit("gone"), old_edited, unit("broken"))
    changed = Unit(name="edited", path="edited.toml", service=service(stop_timeout=3.0),
                   raw={"service": {"exec": "prog", "stop-timeout": 3}})
    plan = m.plan_reload({"same": unit("same"), "edited": changed, "new": unit("new")},
                         broken={"broken"})
    assert [(c.unit, c.action, c.why) for c in plan] == [
        ("broken", "keep-old", "the new file does not load"),
        ("edited", "restart", "changed: service.stop-timeout"),
        ("gone", "remove", "its file is gone"),
        ("new", "add", "new unit")]
    equal_text = Unit(name="same", path="same.toml", service=service(stop_timeout=3.0))
    assert [(c.unit, c.why) for c in m.plan_reload({"same": equal_text}, set())
            if c.action == "restart"] == [("same", "changed: (equivalent text)")]
    two = Unit(name="edited", path="edited.toml", service=service(stop_timeout=3.0),
               raw={"service": {"exec": "other", "stop-timeout": 3}})
    assert [c.why for c in m.plan_reload({"edited": two}, set()) if c.unit == "edited"] == [
        "changed: service.exec, service.stop-timeout"]


def test_apply_reload_restarts_what_runs_removes_what_is_gone_and_adds_the_new():
    m, sup, _ = manager(unit("kept"), unit("edited"), unit("idle", enabled=False),
                        unit("gone"))
    m.start(["kept", "edited", "gone"])
    for name in ("kept", "edited", "gone"):
        sup.up(name)
    new = {"kept": unit("kept"), "edited": unit("edited", svc=service(stop_timeout=3.0)),
           "idle": unit("idle", enabled=False, svc=service(stop_timeout=3.0)),
           "fresh": unit("fresh"), "off": unit("off", enabled=False)}
    changes = m.apply_reload(new, set())
    assert {c.unit: c.action for c in changes} == {
        "edited": "restart", "idle": "restart", "gone": "remove", "fresh": "add", "off": "add"}
    assert sorted(sup.signalled) == ["edited", "gone"]  # idle is not running: not restarted
    assert sup.spawned[-1:] == ["fresh"] and "idle" not in sup.spawned  # off: only loaded
    assert "off" in m.units and sup.instances.get("off") is None
    assert sup.instances["edited"].service.stop_timeout == 3.0
    assert sup.instances["edited"].restarts == 1  # cycled once, not stopped then started
    sup.exit("edited", None, 15)
    assert sup.spawned[-1] == "edited"
    assert "gone" in m.units  # until it is down
    sup.exit("gone", None, 15)
    assert "gone" not in m.units and "gone" not in sup.instances
    assert "gone" not in m.graph.units and m.removed == set()


def test_a_reload_that_lowers_instances_stops_the_extra_ones():
    m, sup, _ = manager(unit("w", svc=service(instances=3)))
    m.start(["w"])
    for i in range(3):
        sup.up(f"w:{i}")
    m.apply_reload({"w": unit("w", svc=service(instances=2))}, set())
    assert "w:2" in sup.signalled


def test_a_broken_file_keeps_the_running_config():
    m, sup, _ = manager(unit("a", svc=service(stop_timeout=5.0)))
    m.start(["a"])
    sup.up("a")
    m.apply_reload({}, {"a"})
    assert m.units["a"].service is not None and m.units["a"].service.stop_timeout == 5.0
    assert sup.signalled == []


def test_a_transient_unit_and_a_template_instance_join_the_units():
    from vigil.base.errors import UnitError
    from vigil.model.loader import LoadResult
    m, sup, events = manager(unit("a"))
    m.add_transient(unit("run-1"))
    assert "run-1" in m.units and "run-1" in m.transient and "run-1" in m.graph.units
    assert m.load_instance("tpl@x") is False  # no template loader
    inst = unit("tpl@x", requires=["a"])
    m.instances_from = lambda name: LoadResult(units={name: inst, "a": unit("a", wants=["z"])},
                                               problems=[])
    assert m.load_instance("tpl@x") is True
    assert m.units["tpl@x"] == inst and m.units["a"] == unit("a")  # loaded units keep theirs
    assert m.graph.after("tpl@x") == {"a"}
    assert messages(events, "unit.loaded") == ["tpl@x loaded from its template"]
    m.instances_from = lambda name: LoadResult(units={}, problems=[])
    with pytest.raises(UnitError):
        m.load_instance("tpl@y")
    assert sup.spawned == []


def test_several_dependents_are_named_together():
    never = service(restart=RestartPolicy.NEVER)
    m, sup, events = manager(unit("db", svc=never), unit("a", requires=["db"]),
                             unit("b", requires=["db"]))
    m.start(["a", "b"])
    for name in ("db", "a", "b"):
        sup.up(name)
    sup.exit("db", 1)
    assert messages(events, "unit.stopping") == ["stopping a, b: required db failed"]
    assert sorted(sup.signalled) == ["a", "b"]


def test_drain_is_not_reentered_and_a_satisfied_watcher_is_dropped():
    m, sup, _ = manager(unit("a"))
    calls = []

    def watcher() -> bool:
        calls.append(len(calls))
        m.drain()  # from inside a drain: must return at once
        return True
    m.watchers.append(watcher)
    m.start(["a"])
    assert calls == [0] and m.watchers == [] and sup.spawned == ["a"]
    m.drain()
    assert calls == [0]


def test_a_fresh_manager_knows_no_unit():
    sup = FakeSupervisor()
    m = Manager(sup, Events(None), "host")  # type: ignore[arg-type]
    assert (m.state("x"), m.settled("x"), m.active("x")) == ("unknown", "failed", False)
    assert (m.broken, m.problems, m.stopped_why) == ({}, [], {})  # read by commands.py
    m.start([])
    assert m.t0 == 100.0 and sup.spawned == []


def test_ordering_waits_for_every_dependency_in_the_goal():
    # m is after a (not starting) and z (starting): the first must not end the look
    m, sup, _ = manager(unit("m", after=["a", "z"]), unit("a"), unit("z"))
    m.start(["m", "z"])
    assert sup.spawned == ["z"]
    sup.up("z")
    assert sup.spawned == ["z", "m"]


def test_a_chain_waits_link_by_link():
    m, sup, _ = manager(unit("db"), unit("web", requires=["db"]), unit("api", requires=["web"]))
    m.start(["api"])
    sup.up("db")
    assert sup.spawned == ["db", "web"]  # web's START is queued while db's news is handled
    sup.up("web")
    assert sup.spawned == ["db", "web", "api"]


def test_starting_a_unit_again_cancels_its_pending_stop():
    m, sup, _ = manager(unit("db"), unit("web", requires=["db"]))
    m.start(["web"])
    sup.up("db")
    sup.up("web")
    m.stop(["db"])  # web first, db once web is down
    assert sup.signalled == ["web"] and "db" in m.stop_waits
    m.start(["db"])
    assert "db" not in m.stop_waits
    sup.exit("web", None, 15)
    assert sup.signalled == ["web"] and m.state("db") == "running"


def test_a_skipped_unit_is_looked_at_again_when_started_again(tmp_path):
    flag = tmp_path / "flag"
    m, sup, _ = manager(unit("x", if_exists=[str(flag)]))
    m.start(["x"])
    assert m.state("x") == "skipped" and sup.spawned == []
    flag.touch()
    m.start(["x"])
    assert sup.spawned == ["x"] and "x" not in m.skipped


def test_starting_a_running_unit_again_changes_nothing():
    m, sup, _ = manager(unit("a"))
    m.start(["a"])
    sup.loop.now = 101.0
    sup.up("a")
    sup.loop.now = 102.0
    m.start(["a"])
    assert m.times["a"] == [100.0, 101.0] and sup.spawned == ["a"]


def test_a_stop_goes_on_past_a_unit_that_still_waits():
    # c requires a: a waits for c; b waits for nobody and stops at once
    m, sup, _ = manager(unit("a"), unit("b"), unit("c", requires=["a"]))
    m.start(["b", "c"])
    for name in ("a", "b", "c"):
        sup.up(name)
    m.stop(["a", "b"])
    assert sorted(sup.signalled) == ["b", "c"]


def test_a_stopped_target_lets_what_it_pulled_in_stop_in_the_same_drain():
    m, sup, _ = manager(unit("a"), unit("z", target=True, wants=["a"]))
    m.start(["z"])
    sup.up("a")
    m.stop(["z"])
    assert sup.signalled == ["a"]


def test_reload_restarts_a_finished_oneshot_in_the_goal_and_a_unit_being_stopped():
    once = service(type=ServiceType.ONESHOT)
    slow = service(stop_timeout=9.0)
    m, sup, _ = manager(unit("job", svc=once), unit("web", svc=slow))
    m.start(["job", "web"])
    sup.up("job")
    sup.exit("job", 0)
    sup.up("web")
    m.stop(["web"])
    assert sup.instances["web"].state is State.STOPPING and "web" not in m.goal
    m.apply_reload({"job": unit("job", svc=replace_timeout(once)),
                    "web": unit("web", svc=replace_timeout(slow))}, set())
    assert sup.spawned.count("job") == 2  # exited, in the goal: run again with its new config
    sup.exit("web", None, 15)
    assert sup.spawned.count("web") == 2  # it was running when the reload came


def test_units_removed_by_two_reloads_are_both_forgotten():
    m, sup, _ = manager(unit("g1"), unit("g2"), unit("keep"))
    m.start(["g1", "g2", "keep"])
    for name in ("g1", "g2", "keep"):
        sup.up(name)
    m.apply_reload({"g2": unit("g2"), "keep": unit("keep")}, set())
    m.apply_reload({"keep": unit("keep")}, set())
    sup.exit("g1", None, 15)
    sup.exit("g2", None, 15)
    assert set(m.units) == {"keep"} and m.removed == set()


def test_reload_of_a_changed_target_restarts_it_as_a_target():
    m, sup, _ = manager(unit("a"), unit("z", target=True, wants=["a"]))
    m.start(["z"])
    sup.up("a")
    m.apply_reload({"a": unit("a"), "z": unit("z", target=True, wants=["a"], after=["a"])},
                   set())
    assert m.state("z") == "active" and sup.signalled == []


def replace_timeout(svc: Service) -> Service:
    from dataclasses import replace
    return replace(svc, stop_timeout=svc.stop_timeout + 1)


def test_a_stop_wait_for_a_unit_no_longer_loaded_is_dropped_and_the_rest_go_on():
    m, sup, _ = manager(unit("b"))
    m.start(["b"])
    sup.up("b")
    m.stop_waits["a-ghost"] = set()
    m.stop(["b"])
    assert "a-ghost" not in m.stop_waits and sup.signalled == ["b"]


# -- units whose file does not load ------------------------------------------------
def test_note_load_names_each_broken_unit_with_its_files_problems():
    from vigil.base.errors import Problem
    from vigil.model.loader import LoadResult
    m, _, _ = manager(unit("ok"))
    problems = [
        Problem("/etc/vigil/web.toml", "not a list", key="service.exec", line=3),
        Problem("/etc/vigil/web.d/10-env.toml", "unknown key", line=None),
        Problem("/etc/vigil/getty@.toml", "bad type", key="service.type"),
        Problem("/etc/vigil/getty@tty1.d/x.toml", "no such user", line=7),
        Problem("/etc/vigil/other.toml", "not mine"),
        Problem("/etc/vigil/webx.toml", "a name that only starts like it"),
        Problem("/etc/vigil/tpl@.toml", "bad key"),  # the template of tpl@a@b: up to the 1st @
    ]
    m.note_load(LoadResult(units={}, problems=problems,
                           broken={"web", "getty@tty1", "lost", "tpl@a@b"}),
                ["web.toml:3: service.exec: not a list"])
    assert m.problems == ["web.toml:3: service.exec: not a list"]
    assert m.broken == {
        "web": "web.toml:3: service.exec: not a list; web.d/10-env.toml: unknown key",
        "getty@tty1": "getty@.toml: service.type: bad type; getty@tty1.d/x.toml:7: no such user",
        "lost": "its file does not load (vigil check says why)", "tpl@a@b": "tpl@.toml: bad key"}
    m.note_load(LoadResult(units={}, problems=[], broken=set()), [])
    assert m.broken == {} and m.problems == []


# -- why a unit was stopped (for `vigilctl why`) ----------------------------------------
def test_stop_keeps_why_for_the_units_asked_and_what_requires_them():
    m, sup, _ = manager(unit("db"), unit("slow"), unit("web", requires=["db", "slow"]),
                        unit("api", requires=["db"]), unit("idle", requires=["db"]),
                        unit("other"))
    m.start(["api"])
    sup.up("db")
    sup.up("api")
    m.stop(["api"])  # no reason given: none kept
    assert m.stopped_why == {}
    assert sup.instances["api"].state is State.STOPPING and "api" not in m.goal
    m.start(["web"])  # slow starts; web waits for it (in the goal, not active)
    assert m.state("web") == "waiting"
    m.stop(["db", "other"], "by hand")
    because = "stopped with db, other, which it requires (by hand)"
    assert m.stopped_why == {"db": "by hand", "other": "by hand", "web": because,
                             "api": because}  # idle: neither active nor in the goal
    m.start(["db"])
    assert "db" not in m.stopped_why


def test_a_conflict_and_a_failed_requirement_and_a_removed_file_say_why_they_stopped():
    m, sup, _ = manager(unit("a"), unit("b", conflicts=["a"]), unit("d"))
    m.start(["a"])
    sup.up("a")
    m.start(["b", "d"])
    assert m.stopped_why == {"a": "stopped because b, d conflicts with it"}
    never = service(restart=RestartPolicy.NEVER)
    m, sup, _ = manager(unit("db", svc=never), unit("web", requires=["db"]),
                        unit("api", requires=["web"]))
    m.start(["api"])
    for name in ("db", "web", "api"):
        sup.up(name)
    sup.exit("db", 1)
    why = "stopped because its requirement db failed (exit 1)"
    assert m.stopped_why == {"web": why, "api": f"stopped with web, which it requires ({why})"}
    m, sup, _ = manager(unit("gone"))
    m.start(["gone"])
    sup.up("gone")
    m.apply_reload({}, set())
    assert m.stopped_why == {"gone": "its file is gone (reload)"}


def test_a_change_of_only_keys_that_do_not_touch_the_process_is_an_update():
    old = Unit(name="x", path="x.toml", service=service(), description="old",
               raw={"unit": {"description": "old"}, "service": {"exec": "prog"}})
    m, _, _ = manager(old)
    new = Unit(name="x", path="x.toml", service=service(), description="new",
               raw={"unit": {"description": "new"}, "service": {"exec": "prog"}})
    assert [(c.unit, c.action, c.why) for c in m.plan_reload({"x": new}, set())] == [
        ("x", "update", "changed: unit.description")]


# -- each hook event gets a run of its own ---------------------------------------------
def hook_reasons(sup: FakeSupervisor, hook: str) -> list[str]:
    return [env["VIGIL_HOOK_REASON"] for env in sup.hook_queue.get(hook, [])]


def test_hook_events_wait_for_the_run_before_and_overflow_is_dropped(monkeypatch):
    from vigil.engine import hooks
    monkeypatch.setattr(hooks, "HOOK_QUEUE_MAX", 2)
    never = service(restart=RestartPolicy.NEVER)
    m, sup, events = manager(unit("job", svc=never, on_failure=["alert", "page"]),
                             unit("alert", enabled=False), unit("page", enabled=False))
    for code in (1, 2, 3, 4):
        m.start(["job"])
        sup.up("job")
        sup.exit("job", code)
        if sup.instances["page"].state is State.STARTING:
            sup.up("page")
            sup.exit("page", 0)  # page's runs end at once: it gets every event
    assert sup.spawned.count("page") == 4
    assert sup.spawned.count("alert") == 1  # still starting: the next events wait
    assert sup.hook_env["alert"]["VIGIL_HOOK_REASON"] == "exit 1"
    assert hook_reasons(sup, "alert") == ["exit 2", "exit 3"]
    assert records(events, "hook.dropped") == [
        ("error", "alert", "alert: 2 events already wait for it; dropping the one from job")]
    sup.up("alert")
    sup.exit("alert", 0)
    assert sup.spawned.count("alert") == 2 and sup.hook_env["alert"]["VIGIL_HOOK_REASON"] == (
        "exit 2")
    assert hook_reasons(sup, "alert") == ["exit 3"]
    sup.up("alert")
    sup.exit("alert", 0)
    assert sup.spawned.count("alert") == 3 and sup.hook_env["alert"]["VIGIL_HOOK_REASON"] == (
        "exit 3")
    assert sup.hook_queue == {}


def test_a_hook_waiting_for_its_requirement_is_busy_until_its_run_begins():
    never = service(restart=RestartPolicy.NEVER)
    m, sup, _ = manager(unit("job", svc=never, on_failure=["alert"]),
                        unit("alert", enabled=False, requires=["dep"]), unit("dep"))
    m.start(["job"])
    sup.up("job")
    sup.exit("job", 1)
    assert m.state("alert") == "waiting" and sup.spawned == ["job", "dep"]
    m.start(["job"])
    sup.up("job")
    sup.exit("job", 2)
    assert hook_reasons(sup, "alert") == ["exit 2"]  # alert's first run has not begun
    sup.up("dep")  # alert's START is queued in the same pass: still busy
    assert sup.spawned.count("alert") == 1
    assert sup.hook_env["alert"]["VIGIL_HOOK_REASON"] == "exit 1"
    assert hook_reasons(sup, "alert") == ["exit 2"]


def test_a_queued_event_of_a_hook_no_longer_loaded_is_dropped():
    m, sup, _ = manager(unit("a"))
    sup.hook_queue["ghost"] = [{"VIGIL_HOOK_REASON": "exit 1"}]
    m.drain()
    assert sup.hook_queue == {} and sup.spawned == [] and "ghost" not in sup.hook_env


def test_a_request_a_watcher_makes_is_carried_out_in_the_same_drain():
    m, sup, _ = manager(unit("a"), unit("b"))
    m.start(["a", "b"])
    sup.up("a")
    sup.up("b")
    kept, asked = [], []

    def stopper() -> bool:
        if not asked:
            asked.append(True)
            m.stop(["a"])  # inside the drain: only recorded, the drain goes on
        return True

    def not_yet() -> bool:
        kept.append(True)
        return False
    m.watchers += [stopper, not_yet]
    m.drain()
    assert sup.signalled == ["a"] and sup.instances["a"].state is State.STOPPING
    assert m.watchers == [not_yet] and kept  # an unsatisfied watcher stays


def test_snapshot_and_restore_keep_the_wanted_side_across_a_reexec():
    """daemon-reexec: what the manager wants survives as JSON; names whose
    files went meanwhile are dropped; `vigilctl run` units come back."""
    import json

    from vigil.model.schema import build_unit
    m, _, _ = manager(unit("a"), unit("b"), unit("t", target=True), unit("gone"))
    m.goal, m.waiting, m.targets_up = {"a", "b", "gone"}, {"b", "gone"}, {"t", "gone"}
    m.skipped, m.failed_why, m.times = {"x": "no /dev/x"}, {"a": "exit 1"}, {"a": [1.0, 2.5]}
    m.add_transient(build_unit("job", {"service": {"exec": ["true"]}}, "<vigilctl run job>", {}))
    saved = json.loads(json.dumps(m.snapshot()))
    assert saved == {"goal": ["a", "b", "gone"], "waiting": ["b", "gone"],
                     "targets_up": ["gone", "t"], "skipped": {"x": "no /dev/x"},
                     "failed_why": {"a": "exit 1"}, "times": {"a": [1.0, 2.5]},
                     "transient": {"job": {"service": {"exec": ["true"]}}}}
    fresh, _, _ = manager(unit("a"), unit("b"), unit("t", target=True))  # gone's file went
    fresh.restore(saved)
    assert (fresh.goal, fresh.waiting, fresh.targets_up) == ({"a", "b"}, {"b"}, {"t"})
    assert (fresh.skipped, fresh.failed_why, fresh.times) == (
        {"x": "no /dev/x"}, {"a": "exit 1"}, {"a": [1.0, 2.5]})
    assert fresh.transient == {"job"}
    assert fresh.units["job"].service is not None
    assert fresh.units["job"].service.exec == ("true",)
    assert fresh.units["job"].path == "<vigilctl run job>"
    again, _, _ = manager(unit("a"))
    older = {key: value for key, value in saved.items() if key != "transient"}
    again.restore(older)  # a state file written before transient units existed
    assert again.goal == {"a"} and again.transient == set()
