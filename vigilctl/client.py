"""A blocking client of the control socket, with a timeout on every wait."""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Iterator

from vigil.protocol import VERSION, encode

TYPE_CHECKING = False  # typing costs the client ~10 ms to import; annotations are strings
if TYPE_CHECKING:
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
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(path)
            except FileNotFoundError:
                raise NotRunning(f"vigil is not running (no socket at {path})") from None
            except ConnectionRefusedError:
                raise NotRunning(f"vigil is not running (nothing listens on {path})") from None
            except PermissionError:
                raise ClientError(f"permission denied opening {path}") from None
            except OSError as err:
                raise ClientError(f"cannot use {path}: {err.strerror or err}") from None
            return
        host, _, port = remote.rpartition(":")
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
        reply: dict[str, Any] = json.loads(line)
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

    def stream(self) -> Iterator[Any]:
        """Further replies of a streaming command (logs -f), without a timeout."""
        self.sock.settimeout(None)
        while True:
            reply = self._line()
            yield reply.get("result")

    def close(self) -> None:
        self.sock.close()
