"""vigil-devlog: the local syslog socket, /dev/log, on a machine with no
syslog daemon (journald's first job under systemd). Each message becomes one
line on stdout, which vigil stamps and keeps in the unit's log, so
`vigilctl logs devlog` shows what sshd, cron and PAM send to syslog.

Anyone may write to /dev/log, so a line names the sender's uid and pid as
the kernel gives them (SCM_CREDENTIALS), beside the tag the sender chose: a
user's process can call itself sshd, but not uid 0. Runs as its own unit,
never in PID 1.
"""

from __future__ import annotations

import argparse
import os
import socket
import stat
import struct
import sys
from collections.abc import Sequence

from vigil.base import sdnotify

FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp",
              "cron", "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
              *(f"local{n}" for n in range(8)))
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MAX_MESSAGE = 8192  # longer datagrams are cut here (RFC 3164 allows 1024; glibc sends more)


def line(data: bytes, pid: int, uid: int) -> str:
    """`auth.info uid=0 pid=42 sshd[42]: text`: one line, whatever the bytes."""
    text = data.decode("utf-8", "replace").rstrip("\n\0")
    priority = 13  # user.notice, RFC 3164's default
    if text.startswith("<") and ">" in text[:5] and text[1:text.index(">")].isdigit():
        priority = min(int(text[1:text.index(">")]), 191)
        text = text[text.index(">") + 1:]
    if len(text) >= 16 and text[:3] in MONTHS and text[15] == " " and text[9] == ":":
        text = text[16:]  # the sender's clock: vigil's own stamp replaces it
    text = "".join(c if c.isprintable() or c == "\t" else f"\\x{ord(c):02x}" for c in text)
    return (f"{FACILITIES[priority >> 3]}.{SEVERITIES[priority & 7]} uid={uid} pid={pid} "
            f"{text}")


def bind(path: str) -> socket.socket:
    """The socket at `path`, writable by all; an old socket there is replaced,
    anything else (a file, a symlink) is refused."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(info.st_mode):
            raise OSError(f"{path} exists and is not a socket; refusing to replace it")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.bind(path)
    os.chmod(path, 0o666)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    return sock


def serve(sock: socket.socket) -> None:
    while True:
        data, ancillary, _flags, _addr = sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(12))
        pid = uid = -1
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, uid, _gid = struct.unpack("iII", payload[:12])
        if data:
            print(line(data, pid, uid), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vigil-devlog", description="The local syslog socket.")
    p.add_argument("--socket", default="/dev/log")
    opts = p.parse_args(argv)
    try:
        sock = bind(opts.socket)
    except OSError as err:
        print(f"vigil-devlog: {opts.socket}: {err.strerror or err}", file=sys.stderr)
        return 1
    sdnotify.notify()
    serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
