"""A blocking client of the control socket, with a timeout on every wait."""

from __future__ import annotations

import _socket
import itertools
import os
import stat

from vigil.base import jsonc
from vigil.wire.protocol import VERSION, encode

TYPE_CHECKING = False  # typing costs the client ~10 ms to import; annotations are strings
if TYPE_CHECKING:  # and collections.abc ~2.5 ms
    from collections.abc import Callable, Iterator
    from typing import Any


class ClientError(Exception):
    """Something a person can act on; printed without a traceback."""


class NotRunning(ClientError):
    """No daemon listens on the socket (none there, or a stale one)."""


class RequestFailed(ClientError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Client:
    """One connection to the daemon: its Unix socket, or with `remote`
    (HOST:PORT) a TCP endpoint, authenticated with a token, over TLS if asked."""

    def __init__(self, path: str, timeout: float = 30.0, remote: str | None = None,
                 token: str | None = None, tls: bool = False, ca: str | None = None) -> None:
        self.path = remote or path
        self.ids = itertools.count(1)
        self.buffer = b""
        if remote is None:
            self.sock = _unix(path, timeout)
            return
        host, _, port = remote.rpartition(":")
        import socket
        try:
            self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout)
        except (OSError, ValueError) as err:
            raise ClientError(f"cannot reach vigil at {remote}: {err}") from None
        if not tls:
            self._only_loopback(remote)
        if tls:
            import ssl
            context = ssl.create_default_context(cafile=ca)
            try:
                self.sock = context.wrap_socket(self.sock, server_hostname=host.strip("[]"))
            except (OSError, ssl.SSLError) as err:
                raise ClientError(f"TLS with {remote} failed: {err}") from None
        self.call("auth", token=token or "")

    def _only_loopback(self, remote: str) -> None:
        """Without TLS the token goes in clear: only to this machine, as the
        daemon only listens without TLS there. The address checked is the one
        connected to, whatever the name said."""
        import ipaddress
        peer = ipaddress.ip_address(self.sock.getpeername()[0])
        mapped = getattr(peer, "ipv4_mapped", None)
        if not (mapped or peer).is_loopback:
            self.sock.close()
            raise ClientError(f"--remote {remote} is {peer}, not this machine: the token "
                              "would cross the network in clear; use --tls")

    def _line(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise ClientError("no answer from vigil in time") from None
            except OSError as err:
                raise ClientError(f"connection to vigil lost: {err}") from None
            if not chunk:
                raise ClientError("vigil closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        reply: dict[str, Any] = jsonc.loads(line)
        return reply

    def send(self, cmd: str, **args: Any) -> int:
        """Sends a request without waiting; returns its id."""
        rid = next(self.ids)
        self.sock.sendall(encode({"v": VERSION, "id": rid, "cmd": cmd, "args": args}))
        return rid

    def reply(self) -> dict[str, Any]:
        """The next whole reply, as sent."""
        return self._line()

    def pending(self) -> bool:
        """Whether a whole reply is already buffered (select cannot tell)."""
        return b"\n" in self.buffer

    def call(self, cmd: str, **args: Any) -> Any:
        self.send(cmd, **args)
        reply = self._line()
        if not reply.get("ok"):
            err = reply.get("error", {})
            raise RequestFailed(err.get("code", "error"), err.get("message", "failed"))
        return reply.get("result")

    def call_reporting(self, cmd: str, report: Callable[[Any], None],
                       tick: Callable[[], None], **args: Any) -> Any:
        """call() of a request whose streamed replies come before its answer
        (a start's progress): each goes to `report`; `tick` runs every 0.1 s
        of quiet (a live display's clock). The overall timeout still holds."""
        import select
        import time
        rid = self.send(cmd, **args)
        deadline = time.monotonic() + (self.sock.gettimeout() or 86400.0)
        while True:
            if not self.pending() and not select.select([self.sock], [], [], 0.1)[0]:
                if time.monotonic() > deadline:
                    raise ClientError("no answer from vigil in time")
                tick()
                continue
            reply = self._line()
            if reply.get("id") == rid and reply.get("stream"):
                report(reply.get("result"))
                continue
            if not reply.get("ok"):
                err = reply.get("error", {})
                raise RequestFailed(err.get("code", "error"), err.get("message", "failed"))
            return reply.get("result")

    def wait_closed(self, timeout: float) -> bool:
        """Reads until the daemon closes the connection (it has exited)."""
        import time
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                return False
            except OSError:
                return True
        return False

    def stream(self) -> Iterator[Any]:
        """Further replies of a streaming command (logs -f), without a timeout."""
        self.sock.settimeout(None)
        while True:
            reply = self._line()
            yield reply.get("result")

    def close(self) -> None:
        self.sock.close()


def _unix(path: str, timeout: float) -> _socket.socket:
    """A connection to the daemon at `path`, only if it is the caller's or
    root's: another user may have made the directory (/tmp/vigil-UID) first
    and serve a socket there that takes our requests and secrets. The
    directory is opened once and checked by its fd, the socket reached
    through that fd, and the server's uid read from the connection. (The C
    socket: the socket module's enums cost ~6 ms to import, a fifth of a
    `vigilctl status`.)"""
    directory, name = os.path.split(path)
    try:
        dfd = os.open(directory or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotRunning(f"vigil is not running (no socket at {path})") from None
    except OSError as err:
        raise ClientError(f"cannot use {path}: {err.strerror or err}") from None
    try:
        _check_place(dfd, name, path)
        via = f"/proc/self/fd/{dfd}/{name}"
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(via if len(via) < 108 and os.path.isdir(via[:-len(name) - 1])
                         else path)
        except BaseException:
            sock.close()
            raise
    except FileNotFoundError:
        raise NotRunning(f"vigil is not running (no socket at {path})") from None
    except ConnectionRefusedError:
        raise NotRunning(f"vigil is not running (nothing listens on {path})") from None
    except PermissionError:
        raise ClientError(f"permission denied opening {path}") from None
    except OSError as err:
        raise ClientError(f"cannot use {path}: {err.strerror or err}") from None
    finally:
        os.close(dfd)
    _check_server(sock, path)
    return sock


def owners() -> tuple[int, int]:
    """Whose daemons and files vigilctl trusts: the caller's and root's."""
    return (os.geteuid(), 0)


def _check_place(dfd: int, name: str, path: str) -> None:
    """The socket's directory and the socket: the caller's or root's, and
    no one else may write in the directory, so no one else put the socket
    there or can swap it (the daemon makes it 0700, or 0750 for a
    --read-group; reading it gives nothing away)."""
    place = os.fstat(dfd)
    info = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    why = None
    if place.st_uid not in owners():
        why = f"its directory belongs to uid {place.st_uid}, not to you or root"
    elif place.st_mode & 0o022:
        why = f"others may write in its directory (mode {place.st_mode & 0o777:o})"
    elif not stat.S_ISSOCK(info.st_mode):
        why = "it is not a socket"
    elif info.st_uid not in owners():
        why = f"it belongs to uid {info.st_uid}, not to you or root"
    if why:
        raise ClientError(f"not using {path}: {why}")


def _check_server(sock: _socket.socket, path: str) -> None:
    """SO_PEERCRED: the uid the server listened as, which no one can fake."""
    import struct
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", creds)
    if uid not in owners():
        sock.close()
        raise ClientError(f"not using {path}: the daemon there (pid {pid}) runs as uid {uid}, "
                          "not as you or root")
