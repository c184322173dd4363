"""The graph's smaller promises, each pinned by a case (the property tests in
test_graph.py check plans; these check names, messages and edges)."""

from __future__ import annotations

from vigil.model.graph import Graph, Plan
from vigil.model.unit import Unit


def units(**deps: dict) -> dict[str, Unit]:
    return {name: Unit(name=name, path=f"{name}.toml", **{k: tuple(v) for k, v in d.items()})
            for name, d in deps.items()}


def test_after_is_what_a_unit_waits_for():
    g = Graph.build(units(web={"requires": ["db"], "wants": ["cache"], "after": ["log"]},
                          db={}, cache={}, log={}, early={"before": ["web"]}))
    assert g.after("web") == frozenset({"db", "cache", "log", "early"})
    assert g.after("db") == frozenset()
    assert g.after("nobody") == frozenset()


def test_hooks_to_unknown_units_are_named_by_their_key():
    g = Graph.build(units(a={"on_failure": ["ghost"], "on_success": ["spook"]}))
    assert sorted(str(p) for p in g.problems) == [
        "a.toml: unit.on-failure: on-failure unknown unit 'ghost'",
        "a.toml: unit.on-success: on-success unknown unit 'spook'"]
    assert not g.refused  # a missing hook does not stop the unit


def test_a_missing_requirement_says_why_it_is_refused():
    g = Graph.build(units(a={"requires": ["ghost", "phantom"]}))
    assert g.refused == {"a": "it requires 'ghost', which does not exist"}


def test_hooks_order_nothing():
    g = Graph.build(units(a={"on_failure": ["h"]}, h={}))
    assert g.after("a") == frozenset() and g.after("h") == frozenset()


def test_an_empty_plan_has_no_batches():
    assert Plan((), {}).batches() == []
    g = Graph.build({})
    assert g.start_plan([]).batches() == [] and g.stop_plan([]).batches() == []


def test_a_cycle_is_named_by_its_shortest_path():
    # a waits for b and c, b for c, c for a: a -> c -> a, not a -> b -> c -> a
    g = Graph.build(units(a={"after": ["b", "c"]}, b={"after": ["c"]}, c={"after": ["a"]}))
    assert g.refused["a"] == "it is on a dependency cycle: a -> c -> a"


def test_every_cycle_is_found_after_units_with_none():
    # the first roots (a, then b, already seen) are no cycle; c and d are
    g = Graph.build(units(a={"after": ["b"]}, b={}, c={"after": ["d"]}, d={"after": ["c"]}))
    assert set(g.refused) == {"c", "d"}


def test_a_cycle_below_a_unit_that_is_not_on_it():
    g = Graph.build(units(a={"after": ["b"]}, b={"after": ["c"]}, c={"after": ["b"]}))
    assert set(g.refused) == {"b", "c"}


def test_two_paths_to_one_unit_are_no_cycle():
    g = Graph.build(units(a={"after": ["b", "c"]}, b={}, c={"after": ["b"]}))
    assert g.refused == {}
    assert g.start_plan(g.units).order == ("b", "c", "a")


def test_pulled_in_goes_past_a_unit_seen_twice():
    g = Graph.build(units(a={"requires": ["d", "b", "c"]}, b={}, c={"requires": ["b"]}, d={},
                          e={}))
    assert g.pulled_in(["a"]) == {"a", "b", "c", "d"}
