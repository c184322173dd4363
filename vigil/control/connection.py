"""One client connection: framing, limits and permissions.

What each command does lives in commands.py; this module only moves bytes.
A client that sends garbage, too much, or nothing for too long gets an
error reply and a closed connection; the daemon carries on.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable

from vigil.base.limits import Limits
from vigil.runtime.loop import Loop, Timer
from vigil.wire.protocol import MAX_REQUEST, READ_ONLY, ProtocolError, encode, parse_request

MAX_AUTH = 4096  # the one request allowed before auth is small
SO_PEERGROUPS = 59  # <asm-generic/socket.h>; Python does not name it


TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Server(Protocol):
        """What a connection needs from whoever accepted it (local or remote)."""

        loop: Loop
        idle_timeout: float
        limits: Limits
        needs_auth: bool  # remote: auth first, alone
        owner_uid: int
        connections: set[Connection]
        want_errors: tuple[type[BaseException], ...]  # TLS: try again when readable/writable

        def allowed(self, conn: Connection, cmd: str) -> bool: ...

        def handler(self, conn: Connection, req: dict[str, Any]) -> None: ...

        def on_error(self, where: str, err: BaseException) -> None: ...


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """pid, uid and gid of a Unix socket's peer; -1s over TCP (the token decides)."""
    if sock.family != socket.AF_UNIX:
        return -1, -1, -1
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return pid, uid, gid


class Connection:
    """One client. Everything it can make the daemon hold is bounded by the
    server's limits: its request buffer (MAX_REQUEST), its unread replies
    (`output`), its streams and waits, and its time (the idle timeout)."""

    def __init__(self, server: Server, sock: socket.socket) -> None:
        self.server, self.sock = server, sock
        self.fd = sock.fileno()
        self.inbuf = b""
        self.outbuf = b""
        self.closed = False
        self.streams = 0  # follows on this connection: no idle timeout while there is one
        self.waiting = 0  # requests waiting for their answer (start...): no idle timeout
        self.on_close: list[Callable[[], None]] = []
        self.pid, self.uid, self.gid = peer_credentials(sock)
        self.authenticated = False
        self.idle: Timer | None = None
        self.active = server.loop.clock()  # the last sign of life, for the idle timeout
        self._touch()

    @property
    def streaming(self) -> bool:
        return self.streams > 0

    @streaming.setter
    def streaming(self, value: bool) -> None:
        """A command starts a stream: counted, and refused past the limit
        (before the command registers anything)."""
        if not value:
            return
        if self.streams >= self.server.limits.streams:
            raise ProtocolError("too-many-streams", f"a connection may carry at most "
                                f"{self.server.limits.streams} streams; open another")
        self.streams += 1
        self._touch()

    def groups(self) -> set[int]:
        """The peer's primary and supplementary groups as they were when it
        connected (SO_PEERGROUPS, as SO_PEERCRED gives its uid): no file to
        open per request, and no pid that may have been reused since."""
        found = {self.gid}
        size = 256
        while size <= 4 * 65536:  # NGROUPS_MAX gids of 4 bytes
            try:
                raw = self.sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, size)
            except OSError as err:
                if err.errno != errno.ERANGE:
                    return found
                size *= 16
                continue
            return found | set(struct.unpack(f"{len(raw) // 4}I", raw[:len(raw) // 4 * 4]))
        return found

    def _touch(self) -> None:
        """Notes activity. One idle timer per connection, re-armed when it
        fires rather than per read: a chatty client must not fill the
        loop's timer heap."""
        self.active = self.server.loop.clock()
        armed = self.idle is not None and not self.idle.cancelled
        if not armed and not self.streams and not self.waiting and not self.closed:
            self.idle = self.server.loop.call_later(self.server.idle_timeout, self._idle)

    def _idle(self) -> None:
        self.idle = None
        if self.streams or self.waiting or self.closed:
            return
        left = self.active + self.server.idle_timeout - self.server.loop.clock()
        if left > 0:
            self.idle = self.server.loop.call_later(left, self._idle)
        else:
            self.close()

    def wait_begins(self) -> None:
        """A request waits for its answer (a unit becoming ready may take longer
        than the idle timeout, and has its own); at most `waits` at once."""
        if self.waiting >= self.server.limits.waits:
            raise ProtocolError("too-many-waits", f"{self.waiting} requests already wait on "
                                "this connection; this one is done but not waited for")
        self.waiting += 1
        self._touch()

    def wait_ends(self) -> None:
        self.waiting -= 1
        self._touch()

    def readable(self) -> None:
        try:
            data = self.sock.recv(65536)
            pending = getattr(self.sock, "pending", lambda: 0)
            while pending():  # TLS may hold decrypted bytes select cannot see
                data += self.sock.recv(65536)
        except BlockingIOError:
            return
        except self.server.want_errors:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self._touch()
        self.inbuf += data
        if self.server.needs_auth and not self.authenticated:
            self._before_auth()
            return
        # The whole lines leave the buffer before any is acted on: a request
        # whose handling fails can never stay behind to be read again while
        # the buffer grows. (Cut by index: re-splitting per line is quadratic.)
        lines, start = [], 0
        while (end := self.inbuf.find(b"\n", start)) >= 0:
            lines.append(self.inbuf[start:end])
            start = end + 1
        self.inbuf = self.inbuf[start:]
        for line in lines:
            if self.closed:
                return
            self._request(line)
        if len(self.inbuf) > MAX_REQUEST:
            self.fail(None, "too-large", f"a request may be at most {MAX_REQUEST} bytes")

    def _before_auth(self) -> None:
        """One request, auth, and nothing after it until it is answered:
        what a client sends before it is authenticated is never acted on."""
        line, newline, rest = self.inbuf.partition(b"\n")
        if not newline:
            if len(self.inbuf) > MAX_AUTH:
                self.fail(None, "too-large", f"auth may be at most {MAX_AUTH} bytes")
            return
        self.inbuf = b""
        if rest or len(line) > MAX_AUTH:
            self.fail(None, "bad-request", "send auth alone and wait for its answer")
            return
        req = self._parse(line)
        if req is None:
            return
        if req["cmd"] != "auth":
            self.fail(req.get("id"), "permission-denied", self._denied(req["cmd"]))
            return
        self._request(line)

    def _parse(self, line: bytes) -> dict[str, Any] | None:
        """The request, or None once a malformed one has been answered."""
        try:
            return parse_request(line)
        except ProtocolError as err:
            self.fail(None, err.code, str(err))
            return None
        except Exception as err:  # a fault of ours in reading it: logged, and the client told
            self.server.on_error("reading a request", err)
            self.fail(None, "bad-json", "the request could not be read")
            return None

    def _request(self, line: bytes) -> None:
        if len(line) > MAX_REQUEST:
            self.fail(None, "too-large", f"a request may be at most {MAX_REQUEST} bytes")
            return
        if not line.strip():
            return
        req = self._parse(line)
        if req is None:
            return
        rid = req.get("id")
        if not self.server.allowed(self, req["cmd"]):
            self.send({"id": rid, "ok": False, "error": {
                "code": "permission-denied",
                "message": self._denied(req["cmd"])}})
            return
        try:
            self.server.handler(self, req)
        except ProtocolError as err:
            self.send({"id": rid, "ok": False, "error": {"code": err.code, "message": str(err)}})
        except Exception as err:
            self.server.on_error(f"command {req['cmd']!r}", err)
            self.send({"id": rid, "ok": False, "error": {"code": "internal",
                                                          "message": f"internal error: {err}"}})

    def _denied(self, cmd: str) -> str:
        if self.sock.family != socket.AF_UNIX:
            return f"permission denied: '{cmd}' needs a token first (the auth command)"
        return (f"permission denied: '{cmd}' needs root or uid {self.server.owner_uid}"
                + ("" if cmd in READ_ONLY else " (it changes things)"))

    def reply(self, rid: Any, result: Any) -> None:
        self.send({"id": rid, "ok": True, "result": result})

    def error(self, rid: Any, code: str, message: str) -> None:
        self.send({"id": rid, "ok": False, "error": {"code": code, "message": message}})

    def fail(self, rid: Any, code: str, message: str) -> None:
        """Replies with an error, then hangs up: for malformed input."""
        self.error(rid, code, message)
        self._flush()
        self.close()

    def send(self, obj: dict[str, Any]) -> None:
        """Queues a reply. Past `output` bytes queued behind earlier ones the
        client is not reading: it is hung up on, or its replies would pile up
        without end. One reply alone (a long `logs`) is never cut."""
        if self.closed:
            return
        behind = bool(self.outbuf)
        self.outbuf += encode(obj)
        self._flush()
        if behind and len(self.outbuf) > self.server.limits.output:
            self.close()

    def _flush(self) -> None:
        try:
            while self.outbuf:
                sent = self.sock.send(self.outbuf)
                self.outbuf = self.outbuf[sent:]
        except BlockingIOError:
            pass
        except self.server.want_errors:
            pass
        except OSError:
            self.close()
            return
        if self.closed:
            return
        if self.outbuf:
            self.server.loop.add_writer(self.fd, self._flush)
        else:
            self.server.loop.remove_writer(self.fd)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.idle:
            self.idle.cancel()
            self.idle = None
        self.server.loop.remove_reader(self.fd)
        self.server.loop.remove_writer(self.fd)
        self.server.connections.discard(self)
        for callback in self.on_close:
            callback()
        self.sock.close()
