"""Optional remote control over TCP: off by default, a token always, TLS
required off loopback. `ssl` is imported only here, only when enabled, so
the daemon's resident set does not pay for it otherwise.

A connection must send `auth` with the token before anything else. A wrong
token is answered late (the delay doubles per failure from that address,
up to a cap) and the connection closed, so guessing is slow.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
from collections.abc import Callable
from typing import Any

from vigil.control import Connection
from vigil.loop import Loop

FIRST_DELAY, MAX_DELAY = 0.25, 30.0


class RemoteError(ValueError):
    """A remote endpoint that must not start; the message says why."""


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise RemoteError(f"--listen {text!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


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


class RemoteServer:
    def __init__(self, loop: Loop, address: str, token: bytes,
                 handler: Callable[[Connection, dict[str, Any]], None],
                 on_error: Callable[[str, BaseException], None], idle_timeout: float,
                 cert: str | None = None, key: str | None = None) -> None:
        host, port = parse_address(address)
        if cert is None and not is_loopback(host):
            raise RemoteError(f"--listen {address}: off loopback, TLS is required "
                              "(--tls-cert and --tls-key)")
        self.loop, self.token, self.on_error = loop, token, on_error
        self.idle_timeout = idle_timeout
        self.owner_uid = os.getuid()
        self.commands = handler
        self.connections: set[Connection] = set()
        self.failures: dict[str, int] = {}  # address -> failed attempts in a row
        self.want_errors: tuple[type[BaseException], ...] = ()
        self.context: Any = None
        if cert is not None:
            import ssl
            self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.context.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                self.context.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as err:
                raise RemoteError(f"--tls-cert {cert}: {err}") from None
            self.want_errors = (ssl.SSLWantReadError, ssl.SSLWantWriteError)
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
        peer = conn.sock.getpeername()[0]
        given = req["args"].get("token")
        if isinstance(given, str) and hmac.compare_digest(given.encode(), self.token):
            self.failures.pop(peer, None)
            conn.authenticated = True
            conn.reply(req.get("id"), "ok")
            return
        count = self.failures[peer] = self.failures.get(peer, 0) + 1
        delay = min(FIRST_DELAY * 2 ** (count - 1), MAX_DELAY)
        self.on_error("remote control", PermissionError(f"wrong token from {peer} "
                                                        f"({count} in a row)"))
        conn.streaming = True  # no idle timer while the answer waits
        self.loop.remove_reader(conn.fd)
        self.loop.call_later(delay, lambda: conn.fail(req.get("id"), "permission-denied",
                                                       "permission denied: wrong token"))

    def _accept(self) -> None:
        for _ in range(16):
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                self.on_error("accepting a remote connection", err)
                return
            sock.setblocking(False)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_side=True,
                                                do_handshake_on_connect=False)
                self._handshake(sock)
                continue
            self._open(sock)

    def _handshake(self, sock: Any) -> None:
        """Drives a TLS handshake from the loop; never blocks on a slow peer."""
        import ssl
        fd = sock.fileno()
        deadline = self.loop.call_later(self.idle_timeout, lambda: done(False))

        def done(ok: bool) -> None:
            deadline.cancel()
            self.loop.remove_reader(fd)
            self.loop.remove_writer(fd)
            if ok:
                self._open(sock)
            else:
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

    def _open(self, sock: socket.socket) -> None:
        conn = Connection(self, sock)
        self.connections.add(conn)
        self.loop.add_reader(conn.fd, conn.readable)

    def close(self) -> None:
        for conn in list(self.connections):
            conn.close()
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
