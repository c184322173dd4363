"""Checks of a service's readiness and health, none of which block the loop.

TCP and HTTP checks are non-blocking sockets watched by the selector, each
attempt bounded by a timer. Exec checks are processes reaped by the one
reaper (the supervisor hands us a way to spawn them). Services can also say
they are ready themselves: sd_notify datagrams on NOTIFY_SOCKET (see
vigil/engine/notify.py), or a line on a readiness fd (s6 style).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable

from vigil.runtime.loop import Loop
from vigil.model.unit import Probe, ProbeKind

Done = Callable[[bool, str], None]
ExecCheck = Callable[[tuple[str, ...], float, Done], None]


class Attempt:
    """One try of a TCP or HTTP probe; calls `done` exactly once."""

    def __init__(self, loop: Loop, probe: Probe, timeout: float, done: Done) -> None:
        self.loop, self.probe, self.done_cb = loop, probe, done
        self.finished = False
        self.sock: socket.socket | None = None
        self.timer = loop.call_later(
            timeout, lambda: self.finish(False, f"no answer in {timeout:g}s"))
        self.response = b""
        try:
            host, port, self.request = self._target()
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            self.sock.setblocking(False)
            code = self.sock.connect_ex((host, port))
        except (OSError, ValueError) as err:
            self.finish(False, str(err))
            return
        if code not in (0, errno.EINPROGRESS):
            self.finish(False, os.strerror(code))
            return
        loop.add_writer(self.sock.fileno(), self._connected)

    def _target(self) -> tuple[str, int, bytes]:
        if self.probe.kind is ProbeKind.TCP:
            return self.probe.host, self.probe.port, b""
        from urllib.parse import urlsplit  # only http probes need it
        url = urlsplit(self.probe.url)
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        request = (f"GET {path} HTTP/1.0\r\nHost: {url.netloc}\r\n"
                   "User-Agent: vigil\r\nConnection: close\r\n\r\n").encode()
        return url.hostname or "127.0.0.1", url.port or 80, request

    def _connected(self) -> None:
        assert self.sock is not None
        self.loop.remove_writer(self.sock.fileno())
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self.finish(False, os.strerror(code))
        elif not self.request:
            self.finish(True, "port open")
        else:
            try:
                self.sock.send(self.request)  # a few dozen bytes fit any socket buffer
            except OSError as err:
                self.finish(False, str(err))
                return
            self.loop.add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        assert self.sock is not None
        try:
            chunk = self.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as err:
            self.finish(False, str(err))
            return
        self.response += chunk
        if b"\r\n" in self.response or not chunk:
            status = self.response.split(b"\r\n", 1)[0].split()
            ok = len(status) >= 2 and status[1][:1] == b"2"
            shown = status[1].decode(errors="replace") if len(status) >= 2 else "no status line"
            self.finish(ok, f"HTTP {shown}")

    def finish(self, ok: bool, detail: str) -> None:
        if self.finished:
            return
        self.finished = True
        self.timer.cancel()
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.loop.remove_writer(self.sock.fileno())
            self.sock.close()
        self.done_cb(ok, detail)


class Prober:
    """Runs a probe repeatedly: until it passes (readiness) or on a period
    (health), reporting through callbacks. `cancel` stops it for good."""

    def __init__(self, loop: Loop, exec_check: ExecCheck) -> None:
        self.loop, self.exec_check = loop, exec_check
        self.cancelled = False
        self.attempt: Attempt | None = None

    def try_once(self, probe: Probe, timeout: float, done: Done) -> None:
        if probe.kind in (ProbeKind.TCP, ProbeKind.HTTP):
            self.attempt = Attempt(self.loop, probe, timeout, done)
        elif probe.kind is ProbeKind.EXEC:
            self.exec_check(probe.argv, timeout, done)

    def until_ready(self, probe: Probe, interval: float, on_ready: Callable[[], None]) -> None:
        def result(ok: bool, _detail: str) -> None:
            if self.cancelled:
                return
            if ok:
                on_ready()
            else:
                self.loop.call_later(interval, attempt)

        def attempt() -> None:
            if not self.cancelled:
                self.try_once(probe, max(interval, 1.0), result)
        attempt()

    def health(self, probe: Probe, interval: float, timeout: float, retries: int,
               on_unhealthy: Callable[[str], None]) -> None:
        misses = 0

        def result(ok: bool, detail: str) -> None:
            nonlocal misses
            if self.cancelled:
                return
            misses = 0 if ok else misses + 1
            if misses >= retries:
                on_unhealthy(f"health check failed {misses} times in a row ({detail})")
                return
            self.loop.call_later(interval, attempt)

        def attempt() -> None:
            if not self.cancelled:
                self.try_once(probe, timeout, result)
        self.loop.call_later(interval, attempt)

    def cancel(self) -> None:
        self.cancelled = True
        if self.attempt is not None:
            self.attempt.finish(False, "cancelled")
