"""The control socket server: connections, framing, limits and permissions.

What each command does lives in commands.py; this module only moves bytes.
A client that sends garbage, too much, or nothing for too long gets an
error reply and a closed connection; the daemon carries on.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
from collections.abc import Callable

from vigil.loop import Loop, Timer
from vigil.protocol import MAX_REQUEST, READ_ONLY, ProtocolError, encode, parse_request

MAX_PENDING_OUTPUT = 8 << 20  # a client that does not read loses its connection


TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Server(Protocol):
        """What a connection needs from whoever accepted it (local or remote)."""

        loop: Loop
        idle_timeout: float
        owner_uid: int
        connections: set[Connection]
        want_errors: tuple[type[BaseException], ...]  # TLS: try again when readable/writable

        def allowed(self, conn: Connection, cmd: str) -> bool: ...

        def handler(self, conn: Connection, req: dict[str, Any]) -> None: ...

        def on_error(self, where: str, err: BaseException) -> None: ...


class Connection:
    def __init__(self, server: Server, sock: socket.socket) -> None:
        self.server, self.sock = server, sock
        self.fd = sock.fileno()
        self.inbuf = b""
        self.outbuf = b""
        self.closed = False
        self.streaming = False  # a follower: no idle timeout
        self.waiting = 0  # requests waiting for their answer (start...): no idle timeout
        self.on_close: list[Callable[[], None]] = []
        self.pid = self.uid = self.gid = -1  # unknown over TCP: the token decides
        self.authenticated = False
        if sock.family == socket.AF_UNIX:
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            self.pid, self.uid, self.gid = struct.unpack("3i", creds)
        self.idle: Timer | None = None
        self._touch()

    def groups(self) -> set[int]:
        """The peer's primary and supplementary groups (from /proc, by its pid)."""
        found = {self.gid}
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("Groups:"):
                        found |= {int(g) for g in line.split()[1:]}
        except (OSError, ValueError):
            pass
        return found

    def _touch(self) -> None:
        if self.idle:
            self.idle.cancel()
            self.idle = None
        if not self.streaming and not self.waiting and not self.closed:
            self.idle = self.server.loop.call_later(self.server.idle_timeout, self.close)

    def wait_begins(self) -> None:
        """A request waits for its answer (a unit becoming ready may take longer
        than the idle timeout, and has its own)."""
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
        while b"\n" in self.inbuf and not self.closed:
            line, self.inbuf = self.inbuf.split(b"\n", 1)
            self._request(line)
        if len(self.inbuf) > MAX_REQUEST:
            self.fail(None, "too-large", f"a request may be at most {MAX_REQUEST} bytes")

    def _request(self, line: bytes) -> None:
        if len(line) > MAX_REQUEST:
            self.fail(None, "too-large", f"a request may be at most {MAX_REQUEST} bytes")
            return
        if not line.strip():
            return
        try:
            req = parse_request(line)
        except ProtocolError as err:
            self.fail(None, err.code, str(err))
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
        if self.closed:
            return
        self.outbuf += encode(obj)
        if len(self.outbuf) > MAX_PENDING_OUTPUT:
            self.close()
            return
        self._flush()

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
        self.server.loop.remove_reader(self.fd)
        self.server.loop.remove_writer(self.fd)
        self.server.connections.discard(self)
        for callback in self.on_close:
            callback()
        self.sock.close()


def private_dir(directory: str) -> None:
    """Makes (or checks) a directory of ours that is not a symlink, before
    anything is created in it."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.lstat(directory)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise OSError(f"{directory} is not a directory (a symlink is refused)")
    if info.st_uid != os.getuid():
        raise OSError(f"{directory} belongs to uid {info.st_uid}, not to us")


def _inherited(fd: int | None, path: str) -> socket.socket | None:
    """The handed-over listening socket, if `fd` is one on `path`."""
    if fd is None:
        return None
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    if (sock.family != socket.AF_UNIX or sock.getsockname() != path
            or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
        sock.close()
        return None
    os.set_inheritable(fd, False)
    sock.setblocking(False)
    return sock


def _reserve_fd() -> int:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1


class ControlServer:
    def __init__(self, loop: Loop, path: str, handler: Callable[[Connection, dict[str, Any]], None],
                 on_error: Callable[[str, BaseException], None], idle_timeout: float = 60.0,
                 read_gid: int | None = None, listen_fd: int | None = None) -> None:
        """listen_fd: the listening socket a daemon-reexec handed over, so the
        socket never goes away (a connect during the exec waits in its queue)."""
        self.loop, self.path, self.handler, self.on_error = loop, path, handler, on_error
        self.idle_timeout = idle_timeout
        self.owner_uid = os.getuid()
        self.read_gid = read_gid
        self.want_errors: tuple[type[BaseException], ...] = ()
        self.connections: set[Connection] = set()
        self.sock = _inherited(listen_fd, path) or self._listen(path, read_gid)
        self.reserve = _reserve_fd()  # spent when fds run out, so a client still gets in
        loop.add_reader(self.sock.fileno(), self._accept)

    @staticmethod
    def _listen(path: str, read_gid: int | None) -> socket.socket:
        """Creates the socket inside a 0700 directory (0750 and 0660 when a
        group may read); refuses symlinks there."""
        directory = os.path.dirname(path)
        private_dir(directory)
        os.chmod(directory, 0o700 if read_gid is None else 0o750)
        if read_gid is not None:
            os.chown(directory, -1, read_gid)
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                raise OSError(f"{path} is a symlink; refusing to use it")
            os.unlink(path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        if read_gid is not None:
            os.chown(path, -1, read_gid)
            os.chmod(path, 0o660)
        sock.listen(64)
        sock.setblocking(False)
        return sock

    def allowed(self, conn: Connection, cmd: str) -> bool:
        if conn.uid in (0, self.owner_uid):
            return True
        return cmd in READ_ONLY and self.read_gid is not None and self.read_gid in conn.groups()

    def _accept(self) -> None:
        for _ in range(64):
            if self.reserve < 0:  # give it back as soon as fds are free again
                self.reserve = _reserve_fd()
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                if err.errno not in (errno.EMFILE, errno.ENFILE) or self.reserve < 0:
                    self._pause(err)
                    return
                # Out of fds: spend the one kept in reserve, so status still answers.
                os.close(self.reserve)
                self.reserve = -1
                try:
                    sock, _ = self.sock.accept()
                except OSError as again:
                    self._pause(again)
                    return
            self.take(sock)

    def take(self, sock: socket.socket, inbuf: bytes = b"", outbuf: bytes = b"") -> Connection:
        """Serves a connection: a new one, or one handed over by daemon-reexec
        with the bytes that were pending on it."""
        sock.setblocking(False)
        conn = Connection(self, sock)
        conn.inbuf = inbuf
        self.connections.add(conn)
        self.loop.add_reader(conn.fd, conn.readable)
        if outbuf:
            conn.outbuf = outbuf
            conn._flush()
        return conn

    def _pause(self, err: OSError) -> None:
        """Accept failed for want of fds: wait a little rather than spin on a
        socket that stays readable."""
        self.on_error("accepting a control connection", err)
        fd = self.sock.fileno()
        self.loop.remove_reader(fd)
        self.loop.call_later(0.1, lambda: self.loop.add_reader(fd, self._accept))

    def close(self) -> None:
        for conn in list(self.connections):
            conn.close()
        if self.reserve >= 0:
            os.close(self.reserve)
            self.reserve = -1
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
