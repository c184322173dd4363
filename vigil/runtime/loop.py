"""The event loop: one thread, a selector, signals through a wakeup fd, and
a heap of timers on the monotonic clock.

With no timer armed and nothing to read, `select` waits without a timeout:
an idle daemon makes no wake-ups. A callback that raises is logged and the
loop goes on; the daemon never exits because one handler failed.
"""

from __future__ import annotations

import heapq
import itertools
import selectors
import signal
import socket
import time
from collections.abc import Callable
from vigil.base.records import dataclass, field

Callback = Callable[[], None]


@dataclass(order=True)
class Timer:
    when: float
    seq: int
    callback: Callback = field(compare=False)
    on_cancel: Callback = field(compare=False, repr=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.on_cancel()


class Loop:
    def __init__(self, on_error: Callable[[str, BaseException], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.on_error = on_error
        self.selector = selectors.DefaultSelector()
        self._timers: list[Timer] = []
        self._cancelled = 0  # cancelled timers still in the heap
        self._seq = itertools.count()
        # run after every callback: the daemon drives its engine here (engine/manager.py drain)
        self.after_each: list[Callback] = []
        self._signal_handlers: dict[int, Callable[[int], None]] = {}
        self._readers: dict[int, Callback] = {}
        self._writers: dict[int, Callback] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.add_reader(self._wake_r.fileno(), self._drain_signals)
        self.stopped = False

    # -- file descriptors -------------------------------------------------
    def _update(self, fd: int) -> None:
        mask = (selectors.EVENT_READ if fd in self._readers else 0) | \
               (selectors.EVENT_WRITE if fd in self._writers else 0)
        try:
            key = self.selector.get_key(fd)
        except KeyError:
            key = None
        if key is None and mask:
            self.selector.register(fd, mask)
        elif key is not None and not mask:
            self.selector.unregister(fd)
        elif key is not None:
            self.selector.modify(fd, mask)

    def add_reader(self, fd: int, callback: Callback) -> None:
        self._readers[fd] = callback
        self._update(fd)

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self._update(fd)

    def add_writer(self, fd: int, callback: Callback) -> None:
        self._writers[fd] = callback
        self._update(fd)

    def remove_writer(self, fd: int) -> None:
        if self._writers.pop(fd, None) is not None:
            self._update(fd)

    # -- timers -------------------------------------------------------------
    def call_later(self, delay: float, callback: Callback) -> Timer:
        timer = Timer(self.clock() + max(0.0, delay), next(self._seq), callback,
                      self._timer_cancelled)
        heapq.heappush(self._timers, timer)
        return timer

    def _timer_cancelled(self) -> None:
        """A cancelled timer would stay in the heap until it falls due (a
        day, for a client's wait); once they are most of it, the heap is
        rebuilt without them, so clients cannot make it grow without bound."""
        self._cancelled += 1
        if self._cancelled > 64 and self._cancelled * 2 > len(self._timers):
            self._timers = [t for t in self._timers if not t.cancelled]
            heapq.heapify(self._timers)
            self._cancelled = 0

    def _pop(self) -> Timer:
        timer = heapq.heappop(self._timers)
        if timer.cancelled:
            self._cancelled -= 1
        else:
            timer.on_cancel = _nothing  # out of the heap: a late cancel counts nothing
        return timer

    # -- signals ----------------------------------------------------------
    def on_signal(self, signum: int, handler: Callable[[int], None]) -> None:
        """Runs `handler(signum)` from the loop when the signal arrives.

        The Python-level handler does nothing; the C-level handler writes the
        signal number to the wakeup socket, which wakes `select`."""
        self._signal_handlers[signum] = handler
        signal.signal(signum, lambda _n, _f: None)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)

    def _drain_signals(self) -> None:
        try:
            data = self._wake_r.recv(4096)
        except BlockingIOError:
            return
        for signum in dict.fromkeys(data):  # each signal once per wake, in order
            handler = self._signal_handlers.get(signum)
            if handler:
                self._guard(f"signal {signum}", _bind(handler, signum))

    # -- running ----------------------------------------------------------
    def _guard(self, what: str, callback: Callback) -> None:
        try:
            callback()
        except Exception as err:
            self.on_error(what, err)
        for hook in self.after_each:
            try:
                hook()
            except Exception as err:
                self.on_error("after " + what, err)

    def _next_timeout(self) -> float | None:
        while self._timers and self._timers[0].cancelled:
            self._pop()
        if not self._timers:
            return None
        return max(0.0, self._timers[0].when - self.clock())

    def run_once(self, max_wait: float | None = None) -> None:
        timeout = self._next_timeout()
        if max_wait is not None:
            timeout = max_wait if timeout is None else min(timeout, max_wait)
        try:
            events = self.selector.select(timeout)
        except InterruptedError:
            events = []
        for key, mask in events:
            fd = key.fd
            if mask & selectors.EVENT_READ and fd in self._readers:
                self._guard(f"reading fd {fd}", self._readers[fd])
            if mask & selectors.EVENT_WRITE and fd in self._writers:
                self._guard(f"writing fd {fd}", self._writers[fd])
        now = self.clock()
        while self._timers and (self._timers[0].cancelled or self._timers[0].when <= now):
            timer = self._pop()
            if not timer.cancelled:
                self._guard("a timer", timer.callback)

    def run(self) -> None:
        while not self.stopped:
            try:
                self.run_once()
            except Exception as err:
                self.on_error("the loop", err)

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()


def _nothing() -> None:
    pass


def _bind(handler: Callable[[int], None], signum: int) -> Callback:
    return lambda: handler(signum)
