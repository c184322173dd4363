"""NOTIFY_SOCKET: one datagram socket per instance of a notify unit, which
only the unit's user may reach.

systemd has one socket for every service, writable by all, and believes a
message by its sender's credentials (NotifyAccess=main: only from the main
process). vigil keeps that check (SO_PASSCRED: the main process or its
process group) and adds the file system's: the socket is the instance's own,
`<notify-dir>/<instance>.sock`, mode 0600 and owned by the unit's user, in a
directory of the daemon's that anyone may traverse but not list or change
(0711). So a service with `user` can send (the daemon's runtime directory is
0700 root, which gave EACCES and a restart loop), other users cannot, and a
message on a socket says which instance it is for.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from collections.abc import Callable

from vigil.kernel.asuser import Creds, as_user
from vigil.engine.launch import LaunchError
from vigil.runtime.loop import Loop

Message = Callable[[int, dict[str, str]], None]  # sender pid, fields


class NotifySocket:
    """A bound datagram socket that passes each message on with its
    sender's pid (from SCM_CREDENTIALS, which the kernel fills in)."""

    def __init__(self, path: str, on_message: Message, owner: Creds | None = None,
                 fd: int = -1) -> None:
        self.path = path
        self.on_message = on_message
        if fd >= 0:  # handed over by the daemon before a re-exec: bound all along
            self.sock = socket.socket(fileno=fd)
            os.set_inheritable(fd, False)
            self.sock.setblocking(False)
            return
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            os.fchmod(self.sock.fileno(), 0o600)  # the mode bind gives the file: no window
            self.sock.bind(path)
            if owner is not None:
                os.chown(path, owner.uid, owner.gid)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            self.sock.setblocking(False)
        except OSError:
            self.close()
            raise

    def read(self) -> None:
        while True:
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except (BlockingIOError, InterruptedError):
                return
            pid = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[:12])[0]
            fields = {}
            for line in data.decode("utf-8", "replace").splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    fields[key] = value
            if pid:
                self.on_message(pid, fields)

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class NotifySockets:
    """The instances' sockets, each bound from a start until its main
    process exits; `on_message(instance, pid, fields)`."""

    def __init__(self, loop: Loop, directory: str,
                 on_message: Callable[[str, int, dict[str, str]], None]) -> None:
        self.loop, self.directory, self.on_message = loop, directory, on_message
        self.sockets: dict[str, NotifySocket] = {}

    def open(self, name: str, creds: Creds, fd: int = -1) -> str:
        """(Re)binds the instance's socket for the unit's user, or takes back
        the one a re-exec handed over (`fd`); returns its path."""
        self.close_one(name)
        self._directory()
        path = os.path.join(self.directory, name.replace("/", "_") + ".sock")
        sock = NotifySocket(path, lambda pid, fields: self.on_message(name, pid, fields), creds,
                            fd)
        try:
            with as_user(creds):  # say so now, not with a restart loop on EACCES
                os.stat(path)
        except OSError as err:
            sock.close()
            raise LaunchError(f"NOTIFY_SOCKET {path}: the unit's user cannot reach it "
                              f"({err.strerror}); give the daemon a runtime directory whose "
                              "parents that user may traverse") from None
        self.sockets[name] = sock
        self.loop.add_reader(sock.sock.fileno(), sock.read)
        return path

    def _directory(self) -> None:
        """Ours, not a symlink, traversable by all (0711), listable by us only."""
        os.makedirs(self.directory, mode=0o711, exist_ok=True)
        info = os.lstat(self.directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise OSError(f"{self.directory} is not a directory of ours (a symlink is refused)")
        if stat.S_IMODE(info.st_mode) != 0o711:
            os.chmod(self.directory, 0o711)

    def close_one(self, name: str) -> None:
        sock = self.sockets.pop(name, None)
        if sock is not None:
            self.loop.remove_reader(sock.sock.fileno())
            sock.close()

    def fd_of(self, name: str) -> int:
        sock = self.sockets.get(name)
        return sock.sock.fileno() if sock is not None else -1

    def hand_over(self) -> None:
        """Re-exec: each socket stays bound and open for the new daemon (a
        READY=1 sent meanwhile waits in it), no longer ours to close."""
        for name, sock in list(self.sockets.items()):
            self.loop.remove_reader(sock.sock.fileno())
            sock.sock.detach()
            del self.sockets[name]

    def close(self) -> None:
        """All of them, paths included (shutdown)."""
        for name in list(self.sockets):
            self.close_one(name)
