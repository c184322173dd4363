"""vigil.base.records stands in for dataclasses on PID 1's start path (issue 17):
the same class built by both must behave the same."""

from __future__ import annotations

import dataclasses

import pytest

from vigil.base import records


def make(dc):
    """One frozen, one ordered and one plain class, built by `dc`."""
    @dc.dataclass(frozen=True)
    class Frozen:
        a: int
        b: tuple[int, ...] = ()
        c: str = dc.field(default="x", compare=False)
        d: dict[str, int] = dc.field(default_factory=dict, compare=False, hash=False)

    @dc.dataclass(order=True)
    class Ordered:
        when: float
        seq: int
        label: str = dc.field(default="", compare=False, repr=False)

    @dc.dataclass
    class Plain:
        items: list[int] = dc.field(default_factory=list)
        seen: int = 0

        def __post_init__(self) -> None:
            self.seen += 1
    return Frozen, Ordered, Plain


REAL, LEAN = make(dataclasses), make(records)


@pytest.mark.parametrize("kinds", [REAL, LEAN], ids=["dataclasses", "records"])
def test_records_behave_as_dataclasses(kinds):
    frozen_cls, ordered, plain = kinds
    one, same = frozen_cls(1, (2,), "p", {"k": 1}), frozen_cls(1, (2,), "q")
    assert one == same and hash(one) == hash(same) and one != frozen_cls(2)
    with pytest.raises(AttributeError):
        one.a = 5
    assert sorted([ordered(2.0, 1), ordered(1.0, 3, "z"), ordered(1.0, 2)]) == \
        [ordered(1.0, 2), ordered(1.0, 3), ordered(2.0, 1)]
    assert repr(ordered(1.0, 2, "hidden")).endswith("(when=1.0, seq=2)")
    p, q = plain(), plain()
    p.items.append(1)
    assert q.items == [] and p.seen == 1 and p.__hash__ is None
    assert dataclasses.replace(one, a=3) == frozen_cls(3, (2,))
    assert [f.name for f in dataclasses.fields(one)] == ["a", "b", "c", "d"]
    if kinds is LEAN:  # and vigil's own helpers, on its records
        assert records.replace(one, b=(9,)).b == (9,)
        assert [f.name for f in records.fields(one)] == ["a", "b", "c", "d"]
    assert dataclasses.asdict(same) == {"a": 1, "b": (2,), "c": "q", "d": {}}


def test_a_field_needs_one_default():
    with pytest.raises(ValueError):
        records.field(default=1, default_factory=list)


def test_comparisons_match_dataclasses_for_one_and_no_field():
    """Equality, order and hash read the compared fields as one tuple, also
    when there is one (a 1-tuple, not the bare value) or none."""
    def build(dc):
        @dc.dataclass(frozen=True, order=True)
        class One:
            a: int

        @dc.dataclass(frozen=True)
        class Nothing:
            a: int = dc.field(default=0, compare=False)
        return One, Nothing
    (real_one, real_nothing), (one, nothing) = build(dataclasses), build(records)
    assert hash(one(7)) == hash(real_one(7)) == hash((7,))
    assert hash(nothing(1)) == hash(real_nothing(2)) == hash(())
    assert nothing(1) == nothing(2) and one(1) < one(2) and not one(2) <= one(1)
    assert one(1) != real_one(1) and one(1).__eq__(real_one(1)) is NotImplemented
    with pytest.raises(TypeError):
        one(1) < real_one(2)  # noqa: B015 - the comparison is what is tested
