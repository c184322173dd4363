"""The sending side of sd_notify, for vigil's own helper processes
(vigil-net, vigil-devlog) run as `type = "notify"` units."""

from __future__ import annotations

import os
import socket


def notify(message: str = "READY=1") -> None:
    """One datagram to $NOTIFY_SOCKET (an abstract one when it starts with @);
    nothing when the helper was not started by a supervisor that listens."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), "\0" + path[1:] if path.startswith("@") else path)
