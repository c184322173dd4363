"""The control socket server: where the socket lives, who may connect,
how many at once, and who may run what (connection.py moves the bytes).

Every connection costs the daemon an fd; the caps here keep clients from
taking the fds that services need, and a refused client is told why.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Callable

from vigil.control.connection import Connection as Connection  # commands.py imports it here
from vigil.control.connection import peer_credentials
from vigil.runtime.events import Events, Notice
from vigil.base.limits import Limits
from vigil.runtime.loop import Loop
from vigil.wire.protocol import READ_ONLY, encode
from vigil.base.rundir import open_private_dir

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any


def _inherited(fd: int | None, path: str) -> socket.socket | None:
    """The handed-over listening socket, if `fd` is one on `path`'s name (it
    was bound through /proc/self/fd/N/NAME, so that is the name it knows)."""
    if fd is None:
        return None
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    name = sock.getsockname() if sock.family == socket.AF_UNIX else ""
    if (not isinstance(name, str) or os.path.basename(name) != os.path.basename(path)
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


def refuse(sock: socket.socket, code: str, message: str) -> None:
    """Answers a connection that is not taken, at once and without waiting."""
    try:
        sock.setblocking(False)
        sock.send(encode({"id": None, "ok": False, "error": {"code": code, "message": message}}))
    except OSError:
        pass
    sock.close()


class ControlServer:
    """The local socket. Connections are capped in total and per uid (the
    last quarter of the slots kept for root and the owner) and refused at
    accept with a reason, so no client can exhaust the daemon's fds."""

    def __init__(self, loop: Loop, path: str, handler: Callable[[Connection, dict[str, Any]], None],
                 on_error: Callable[[str, BaseException], None], idle_timeout: float = 60.0,
                 read_gid: int | None = None, limits: Limits | None = None,
                 events: Events | None = None, listen_fd: int | None = None) -> None:
        """listen_fd: the listening socket a daemon-reexec handed over, so the
        socket never goes away (a connect during the exec waits in its queue)."""
        self.loop, self.path, self.handler, self.on_error = loop, path, handler, on_error
        self.idle_timeout = idle_timeout
        self.limits = (limits or Limits()).within_fds()
        # refusals, summed up: clients cause them at will
        self.notices = None if events is None else Notice(
            events, loop.call_later, "control.refused", "warning", self.limits.notice_interval)
        self.needs_auth = False
        self.owner_uid = os.getuid()
        self.read_gid = read_gid
        self.want_errors: tuple[type[BaseException], ...] = ()
        self.connections: set[Connection] = set()
        self.sock = _inherited(listen_fd, path) or self._listen(path, read_gid)
        self.reserve = _reserve_fd()  # spent when fds run out, so a client still gets an answer
        loop.add_reader(self.sock.fileno(), self._accept)

    @staticmethod
    def _listen(path: str, read_gid: int | None) -> socket.socket:
        """Creates the socket inside a 0700 directory (0750 and 0660 when a
        group may read), bound through the checked directory's fd
        (/proc/self/fd/N/NAME), so the path cannot be redirected since."""
        directory, name = os.path.split(path)
        dir_fd = open_private_dir(directory or ".", 0o700 if read_gid is None else 0o750, read_gid)
        try:
            try:
                if stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
                    raise OSError(f"{path} is a symlink; refusing to use it")
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            via_fd = f"/proc/self/fd/{dir_fd}"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            old = os.umask(0o177 if read_gid is None else 0o117)
            try:
                sock.bind(f"{via_fd}/{name}" if os.path.isdir(via_fd) else path)
            finally:
                os.umask(old)
            if read_gid is not None:
                os.chown(name, -1, read_gid, dir_fd=dir_fd, follow_symlinks=False)
        finally:
            os.close(dir_fd)
        sock.listen(64)
        sock.setblocking(False)
        return sock

    def allowed(self, conn: Connection, cmd: str) -> bool:
        if conn.uid in (0, self.owner_uid):
            return True
        return cmd in READ_ONLY and self.read_gid is not None and self.read_gid in conn.groups()

    def _refusal(self, uid: int) -> str:
        """Why a new connection from uid is not taken ("" when it is)."""
        limits = self.limits
        trusted = uid in (0, self.owner_uid)
        total = len(self.connections)
        if total >= (limits.clients if trusted else limits.clients - limits.clients // 4):
            return f"too many control connections ({total})"
        mine = sum(1 for c in self.connections if c.uid == uid)
        if mine >= limits.clients_per_uid:
            return f"too many control connections from uid {uid} ({mine})"
        return ""

    def _accept(self) -> None:
        for _ in range(64):
            if self.reserve < 0:  # take it back as soon as fds are free again
                self.reserve = _reserve_fd()
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                if err.errno not in (errno.EMFILE, errno.ENFILE) or self.reserve < 0:
                    pause(self.loop, self.sock, self._accept, self.notices, err)
                    return
                # Out of fds (services took them): spend the reserve, so status still answers.
                os.close(self.reserve)
                self.reserve = -1
                try:
                    sock, _ = self.sock.accept()
                except OSError as again:
                    pause(self.loop, self.sock, self._accept, self.notices, again)
                    return
            self._take(sock)

    def _take(self, sock: socket.socket) -> None:
        """Checks the peer before a Connection (and its idle timer) exists."""
        sock.setblocking(False)
        uid = peer_credentials(sock)[1]
        why = self._refusal(uid)
        if why:
            if self.notices is not None:
                self.notices.add(f"refused a control connection from uid {uid}: {why}")
            refuse(sock, "too-many-connections", why)
            return
        self.take(sock)

    def take(self, sock: socket.socket, inbuf: bytes = b"", outbuf: bytes = b"") -> Connection:
        """Serves a connection: a new one past its checks, or one handed over
        by daemon-reexec with the bytes that were pending on it."""
        sock.setblocking(False)
        conn = Connection(self, sock)
        conn.inbuf = inbuf
        self.connections.add(conn)
        self.loop.add_reader(conn.fd, conn.readable)
        if outbuf:
            conn.outbuf = outbuf
            conn._flush()
        return conn

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


def pause(loop: Loop, listener: socket.socket, accept: Callable[[], None],
          notices: Notice | None, err: OSError) -> None:
    """Accept failed (fds ran out): wait a little rather than spin on a
    socket that stays readable; said once per notice interval."""
    if notices is not None:
        notices.add(f"cannot accept a connection: {err.strerror or err}")
    fd = listener.fileno()
    loop.remove_reader(fd)
    loop.call_later(0.1, lambda: loop.add_reader(fd, accept))
