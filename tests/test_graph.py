"""The dependency graph: ordering edges, cycles, missing deps, plans."""

from __future__ import annotations

import random
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.model.graph import Graph, Plan
from vigil.model.unit import Unit


def units(**deps: dict) -> dict[str, Unit]:
    return {name: Unit(name=name, path=f"{name}.toml", **{k: tuple(v) for k, v in d.items()})
            for name, d in deps.items()}


def respects(plan: Plan, graph: Graph) -> bool:
    position = {n: i for i, n in enumerate(plan.order)}
    return all(position[d] < position[n] for n in plan.order for d in plan.waits_for[n])


def test_requires_wants_after_before_all_order():
    g = Graph.build(units(web={"requires": ["db"], "wants": ["cache"]}, db={},
                          cache={"after": ["db"]}, log={"before": ["db"]}))
    plan = g.start_plan(["web", "log"])
    assert plan.batches() == [["log"], ["db"], ["cache"], ["web"]]
    assert plan.waits_for["web"] == {"db", "cache"}


def test_after_without_pull_orders_only_when_both_present():
    g = Graph.build(units(a={"after": ["b"]}, b={}))
    assert g.start_plan(["a"]).order == ("a",)
    assert g.start_plan(["a", "b"]).order == ("b", "a")


def test_independent_units_share_a_batch():
    g = Graph.build(units(**{f"s{i}": {} for i in range(5)}))
    assert g.start_plan(g.units).batches() == [["s0", "s1", "s2", "s3", "s4"]]


def test_stop_plan_is_exact_reverse():
    g = Graph.build(units(web={"requires": ["db"]}, db={"after": ["fs"]}, fs={}, other={}))
    start = g.start_plan(g.units).batches()
    stop = g.stop_plan(g.units).batches()
    assert stop == [["other", "web"], ["db"], ["fs"]]
    assert start == [["fs", "other"], ["db"], ["web"]]


def test_cycle_named_in_order_and_only_its_units_refused():
    g = Graph.build(units(a={"requires": ["b"]}, b={"after": ["c"]}, c={"wants": ["a"]},
                          d={}, e={"requires": ["d"]}))
    assert set(g.refused) == {"a", "b", "c"}
    assert "dependency cycle: a -> b -> c -> a" in g.refused["a"]
    assert [str(p) for p in g.problems].count("a.toml: unit: dependency cycle: a -> b -> c -> a") == 1
    assert g.start_plan(g.units).order == ("d", "e")


def test_self_dependency_is_a_cycle():
    g = Graph.build(units(a={"after": ["a"]}))
    assert "a -> a" in g.refused["a"]


def test_missing_requirement_refuses_missing_want_only_reports():
    g = Graph.build(units(a={"requires": ["ghost"]}, b={"wants": ["ghost"]}))
    assert set(g.refused) == {"a"}
    messages = sorted(str(p) for p in g.problems)
    assert messages == ["a.toml: unit.requires: requires unknown unit 'ghost'",
                        "b.toml: unit.wants: wants unknown unit 'ghost'"]


def test_required_by_is_what_a_stop_takes_down():
    g = Graph.build(units(web={"requires": ["db"]}, api={"requires": ["web"]},
                          side={"wants": ["db"]}, db={}))
    assert g.required_by(["db"]) == {"db", "web", "api"}


@st.composite
def dags_and_noise(draw):
    n = draw(st.integers(1, 30))
    names = [f"u{i}" for i in range(n)]
    spec = {}
    for i, name in enumerate(names):
        kinds = {}
        for key in ("requires", "wants", "after", "before"):
            pool = names[:i] if key != "before" else names[i + 1:]
            kinds[key] = draw(st.lists(st.sampled_from(pool), max_size=3, unique=True)) if pool else []
        spec[name] = kinds
    return spec


@given(dags_and_noise())
@settings(max_examples=200, deadline=None)
def test_plans_respect_every_edge(spec):
    g = Graph.build(units(**spec))
    assert not g.refused  # edges only point one way, so no cycles
    plan = g.start_plan(g.units)
    assert sorted(plan.order) == sorted(g.units) and respects(plan, g)
    for name, unit in g.units.items():
        for dep in (*unit.requires, *unit.wants, *unit.after):
            assert plan.order.index(dep) < plan.order.index(name)
        for later in unit.before:
            assert plan.order.index(name) < plan.order.index(later)
    stop = g.stop_plan(g.units)
    assert respects(stop, g)
    assert all(stop.order.index(a) > stop.order.index(b)
               for b in plan.order for a in plan.waits_for[b])


@given(st.dictionaries(st.sampled_from("abcdefgh"),
                       st.lists(st.sampled_from("abcdefgh"), max_size=3), min_size=1))
@settings(max_examples=300, deadline=None)
def test_any_graph_plans_without_refused_units(edges):
    g = Graph.build(units(**{n: {"after": d} for n, d in edges.items()}))
    plan = g.start_plan(g.units)
    assert set(plan.order) == set(g.units) - set(g.refused)
    assert respects(plan, g)


def test_thousand_units_load_and_plan_fast(unit_dir):
    from vigil.model.loader import Loader
    rng = random.Random(7)
    files = {}
    for i in range(1000):
        deps = sorted({f"u{rng.randrange(i)}" for _ in range(3)}) if i else []
        files[f"u{i}.toml"] = f'[unit]\nrequires = {deps!r}\n[service]\nexec = "sleep 1"\n'.replace("'", '"')
    root = unit_dir(files)
    began = time.perf_counter()
    result = Loader([root]).load_all()
    g = Graph.build(result.units)
    plan = g.start_plan(g.units)
    elapsed = time.perf_counter() - began
    assert len(plan.order) == 1000 and not result.problems
    # Generous bound: the claim is "well under a second" on a quiet machine;
    # this guards against an accidental quadratic blow-up, not noise.
    assert elapsed < 5.0, elapsed
