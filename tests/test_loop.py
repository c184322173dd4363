"""The event loop alone, on a fake clock: no processes, no sleeping."""

from __future__ import annotations

from vigil.runtime.loop import Loop


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cancelled_timers_do_not_pile_up():
    """A client's wait arms a timer of up to a day and cancels it when
    answered; a busy client must not grow the heap without bound."""
    loop = Loop(on_error=lambda where, err: None, clock=Clock())
    try:
        kept = loop.call_later(5, lambda: None)
        for _ in range(10_000):
            loop.call_later(86400, lambda: None).cancel()
        assert len(loop._timers) <= 200
        assert kept in loop._timers and not kept.cancelled
    finally:
        loop.close()


def test_timers_fire_in_order_and_cancelled_ones_never():
    clock = Clock()
    loop = Loop(on_error=lambda where, err: None, clock=clock)
    fired: list[str] = []
    try:
        loop.call_later(2, lambda: fired.append("b"))
        loop.call_later(1, lambda: fired.append("a"))
        gone = [loop.call_later(1.5, lambda: fired.append("x")) for _ in range(100)]
        for timer in gone:
            timer.cancel()
        late = loop.call_later(3, lambda: fired.append("c"))
        clock.now += 2.5
        loop.run_once(max_wait=0)
        assert fired == ["a", "b"]
        late.cancel()
        late.cancel()
        clock.now += 1
        loop.run_once(max_wait=0)
        assert fired == ["a", "b"]
        assert loop._next_timeout() is None
    finally:
        loop.close()
