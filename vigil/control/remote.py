"""Optional remote control over TCP: off by default, a token always, TLS
required off loopback. `ssl` is imported only here, only when enabled, so
the daemon's resident set does not pay for it otherwise.

A connection must send `auth` with the token, alone, before anything else;
it has one try. Guesses from one address are judged one at a time, and a
wrong one is answered late (the delay doubles per failure from that
address, up to a cap) with the connection closed, so guessing is slow.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
from collections.abc import Callable
from typing import Any

from vigil.control.connection import Connection
from vigil.control.control import pause, refuse
from vigil.runtime.events import Events, Notice
from vigil.base.limits import Limits
from vigil.runtime.loop import Loop
from vigil.base.numbers import parse_number

FIRST_DELAY = 0.25  # the first wrong token's delay; it doubles up to auth_delay_max
MAX_COUNT = 64  # failures in a row counted no further: 2.0 ** 63 is still a float
MAX_ADDRESSES = 4096  # addresses whose failures are remembered


class RemoteError(ValueError):
    """A remote endpoint that must not start; the message says why."""


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    number = parse_number(port, 1, 65535)
    if not sep or number is None:
        raise RemoteError(f"--listen {text!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", number


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def read_token(path: str) -> bytes:
    try:
        info = os.stat(path)
        with open(path, "rb") as f:
            token = f.read(4096).strip()
    except OSError as err:
        raise RemoteError(f"--token-file {path}: {err.strerror}") from None
    if info.st_mode & 0o077:
        raise RemoteError(f"--token-file {path}: readable by others (chmod 600 it)")
    if len(token) < 16:
        raise RemoteError(f"--token-file {path}: the token must be at least 16 characters")
    return token


def source(address: str) -> str:
    """What guesses and connections are counted against: the address, or
    for IPv6 its /64 (one host commonly holds a whole /64; counted per
    address, it could take a fresh one for every guess)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return address


def wrong_delay(count: int, cap: float) -> float:
    """How long the count-th wrong token in a row waits: doubling, capped,
    and never an OverflowError however long the run (2 ** 1024 is no float)."""
    return min(FIRST_DELAY * 2.0 ** (min(count, MAX_COUNT) - 1), cap)


class RemoteServer:
    """The TCP endpoint. Before auth a connection is held to little: a few
    per address and in all, `auth_timeout` seconds to finish TLS and send
    auth, one attempt, and guesses from one address judged one at a time,
    each wrong one answered late and making the next one wait as long."""

    def __init__(self, loop: Loop, address: str, token: bytes,
                 handler: Callable[[Connection, dict[str, Any]], None],
                 on_error: Callable[[str, BaseException], None], idle_timeout: float,
                 cert: str | None = None, key: str | None = None,
                 limits: Limits | None = None, events: Events | None = None) -> None:
        host, port = parse_address(address)
        if cert is None and not is_loopback(host):
            raise RemoteError(f"--listen {address}: off loopback, TLS is required "
                              "(--tls-cert and --tls-key)")
        self.loop, self.token, self.on_error = loop, token, on_error
        self.idle_timeout = idle_timeout
        self.limits = (limits or Limits()).within_fds()
        self.needs_auth = True
        self.owner_uid = os.getuid()
        self.commands = handler
        self.connections: set[Connection] = set()
        self.handshakes = 0  # TLS connections not yet Connections
        self.preauth: dict[str, int] = {}  # address -> connections not yet authenticated
        self.unproven: dict[Connection, _Admission] = {}
        self.failures: dict[str, tuple[int, float]] = {}  # address -> (in a row, judge next at)
        self.refusals = self.wrong = None
        if events is not None:  # clients cause these at will: summed up, never a flood
            interval = self.limits.notice_interval
            self.refusals = Notice(events, loop.call_later, "remote.refused", "warning", interval)
            self.wrong = Notice(events, loop.call_later, "remote.auth-failed", "warning", interval)
        self.want_errors: tuple[type[BaseException], ...] = ()
        self.context: Any = None
        if cert is not None:
            self.context, self.want_errors = _tls(cert, key)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as err:
            self.sock.close()
            raise RemoteError(f"--listen {address}: {err.strerror}") from None
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()
        loop.add_reader(self.sock.fileno(), self._accept)

    def allowed(self, conn: Connection, cmd: str) -> bool:
        return cmd == "auth" or conn.authenticated

    def handler(self, conn: Connection, req: dict[str, Any]) -> None:
        if req["cmd"] != "auth":
            self.commands(conn, req)
            return
        if conn.authenticated:
            conn.reply(req.get("id"), "ok")
            return
        # Nothing more is read until this guess is judged and answered; the
        # deadline is met (the wait from here is ours, bounded by the delay cap).
        self.loop.remove_reader(conn.fd)
        self.unproven[conn].deadline.cancel()
        self._judge(conn, self.unproven[conn].peer, req)

    def _judge(self, conn: Connection, peer: str, req: dict[str, Any]) -> None:
        """One guess from peer, no sooner than the last wrong one's delay
        (checked again when the time comes: guesses sent side by side on
        several connections wait in turn)."""
        if conn.closed:
            return
        wait = self.failures.get(peer, (0, 0.0))[1] - self.loop.clock()
        if wait > 0:
            self.loop.call_later(wait, lambda: self._judge(conn, peer, req))
            return
        given = req["args"].get("token")
        if isinstance(given, str) and hmac.compare_digest(given.encode(), self.token):
            self.failures.pop(peer, None)
            conn.authenticated = True
            self.unproven[conn].release()  # no longer before auth: its slot is free
            conn.reply(req.get("id"), "ok")
            self.loop.add_reader(conn.fd, conn.readable)
            return
        count = self.failures.pop(peer, (0, 0.0))[0] + 1
        delay = wrong_delay(count, self.limits.auth_delay_max)
        self.failures[peer] = (count, self.loop.clock() + delay)
        while len(self.failures) > MAX_ADDRESSES:  # the oldest addresses are forgotten
            del self.failures[next(iter(self.failures))]
        if self.wrong is not None:
            self.wrong.add(f"wrong remote token from {peer} ({count} in a row)")
        self.loop.call_later(delay, lambda: conn.fail(req.get("id"), "permission-denied",
                                                       "permission denied: wrong token"))

    def _refusal(self, peer: str) -> str:
        """Why a new connection from peer is not taken ("" when it is)."""
        limits = self.limits
        if len(self.connections) + self.handshakes >= limits.remote_clients:
            return "too many remote connections"
        if sum(self.preauth.values()) >= limits.preauth:
            return "too many remote connections waiting to authenticate"
        if self.preauth.get(peer, 0) >= limits.preauth_per_address:
            return f"too many connections from {peer} waiting to authenticate"
        return ""

    def _accept(self) -> None:
        for _ in range(16):
            try:
                sock, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                pause(self.loop, self.sock, self._accept, self.refusals, err)
                return
            peer = source(address[0])
            why = self._refusal(peer)
            if why:
                if self.refusals is not None:
                    self.refusals.add(f"refused a remote connection: {why}")
                if self.context is None:
                    refuse(sock, "too-many-connections", why)
                else:
                    sock.close()  # before TLS, a reason could not be read
                continue
            sock.setblocking(False)
            self._admit(sock, peer)

    def _admit(self, sock: socket.socket, peer: str) -> None:
        """Opens the connection (after TLS), counted as before auth."""
        admission = _Admission(self, peer)

        def opened(ready: socket.socket) -> None:
            conn = admission.conn = Connection(self, ready)
            conn.on_close.append(admission.release)
            self.unproven[conn] = admission
            self.connections.add(conn)
            self.loop.add_reader(conn.fd, conn.readable)
        if self.context is None:
            admission.abort = sock.close
            opened(sock)
            return
        tls = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        admission.abort = self._handshake(tls, opened, admission.release)

    def _handshake(self, sock: Any, opened: Callable[[socket.socket], None],
                   failed: Callable[[], None]) -> Callable[[], None]:
        """Drives a TLS handshake from the loop; never blocks on a slow peer.
        Returns what ends it early (the auth deadline)."""
        import ssl
        fd = sock.fileno()
        self.handshakes += 1
        ended = False

        def done(ok: bool) -> None:
            nonlocal ended
            if ended:
                return
            ended = True
            self.handshakes -= 1
            self.loop.remove_reader(fd)
            self.loop.remove_writer(fd)
            if ok:
                opened(sock)
            else:
                failed()
                sock.close()

        def step() -> None:
            try:
                sock.do_handshake()
            except ssl.SSLWantReadError:
                self.loop.remove_writer(fd)
                self.loop.add_reader(fd, step)
                return
            except ssl.SSLWantWriteError:
                self.loop.remove_reader(fd)
                self.loop.add_writer(fd, step)
                return
            except (OSError, ValueError):
                done(False)
                return
            done(True)
        step()
        return lambda: done(False)

    def close(self) -> None:
        for conn in list(self.connections):
            conn.close()
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


def _tls(cert: str, key: str | None) -> tuple[Any, tuple[type[BaseException], ...]]:
    """The server's TLS context (1.2 at least), and the errors that mean
    "try again when the socket is ready"."""
    import ssl
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        raise RemoteError(f"--tls-cert {cert}: {err}") from None
    return context, (ssl.SSLWantReadError, ssl.SSLWantWriteError)


class _Admission:
    """A connection before auth: counted against its address and the
    total, and closed at the auth deadline (a trickle of bytes, or a TLS
    handshake that never ends, does not keep it)."""

    def __init__(self, server: RemoteServer, peer: str) -> None:
        self.server, self.peer = server, peer
        server.preauth[peer] = server.preauth.get(peer, 0) + 1
        self.counted = True
        self.conn: Connection | None = None
        self.abort: Callable[[], None] = lambda: None  # ends it before it is a Connection
        self.deadline = server.loop.call_later(server.limits.auth_timeout, self.expire)

    def release(self) -> None:
        if not self.counted:
            return
        self.counted = False
        self.deadline.cancel()
        left = self.server.preauth.pop(self.peer) - 1
        if left:
            self.server.preauth[self.peer] = left
        if self.conn is not None:
            self.server.unproven.pop(self.conn, None)

    def expire(self) -> None:
        if self.conn is not None:
            self.conn.close()  # its on_close releases
            return
        self.release()
        self.abort()


def listen(opts: Any, loop: Loop, handler: Callable[[Any, dict[str, Any]], None],
           events: Events) -> RemoteServer:
    """The daemon's --listen, from its options (--token-file, --tls-cert/-key, --limit)."""
    if not opts.token_file:
        raise RemoteError("--listen needs --token-file")
    server = RemoteServer(loop, opts.listen, read_token(opts.token_file), handler, events.error,
                          opts.idle_timeout, opts.tls_cert, opts.tls_key,
                          Limits.parse(opts.limit), events)
    events.emit("daemon.remote", f"remote control on {server.address[0]}:{server.address[1]}"
                + (" with TLS" if opts.tls_cert else ""))
    return server
