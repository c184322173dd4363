"""The control protocol, shared by the daemon and every client.

Versioned JSON lines over a Unix stream socket. A request is
`{"v": 1, "id": N, "cmd": "...", "args": {...}}`; a reply is
`{"id": N, "ok": true, "result": ...}` or
`{"id": N, "ok": false, "error": {"code": "...", "message": "..."}}`.
Streams (logs -f, events -f) send further replies with the same id and
`"stream": true`. See docs/protocol.md.
"""

from __future__ import annotations

import os
import stat
import sys

from vigil.base import jsonc

TYPE_CHECKING = False  # typing costs the client ~10 ms to import; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

VERSION = 1
SYSTEM_DIR = "/run/vigil"  # the system daemon's, root's
MAX_REQUEST = 64 * 1024
# Commands that change nothing; they can be opened to a group.
READ_ONLY = frozenset({"ping", "status", "logs", "events", "cat", "why", "deps", "list",
                       "problems", "timeline", "show", "timers"})


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def encode(obj: dict[str, Any]) -> bytes:
    return jsonc.dumps(obj, default=str, separators=(",", ":")).encode() + b"\n"


def parse_request(line: bytes) -> dict[str, Any]:
    """Checks the shape of a request; raises ProtocolError with a clear code."""
    try:
        req = jsonc.loads(line)
    except (ValueError, RecursionError):
        raise ProtocolError("bad-json", "the request is not valid JSON") from None
    if not isinstance(req, dict):
        raise ProtocolError("bad-request", "a request must be a JSON object")
    if req.get("v") != VERSION:
        raise ProtocolError("bad-version", f"protocol version must be {VERSION}")
    if not isinstance(req.get("cmd"), str):
        raise ProtocolError("bad-request", "the request needs \"cmd\", a string")
    args = req.setdefault("args", {})
    if not isinstance(args, dict):
        raise ProtocolError("bad-request", "\"args\" must be an object")
    return req


def user_dirs() -> list[str]:
    """A user's places for a daemon's directory, best first:
    $XDG_RUNTIME_DIR/vigil, /tmp/vigil-UID, then /dev/shm/vigil-UID (a
    container with a read-only root still has a tmpfs there)."""
    uid = os.getuid()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    found = [os.path.join(runtime, "vigil")] if runtime else []
    return [*found, f"/tmp/vigil-{uid}", f"/dev/shm/vigil-{uid}"]


def socket_candidates(system: bool) -> list[str]:
    """Where a daemon may put its socket, best first: VIGIL_SOCKET, else
    /run/vigil in system mode, else in one of the user's places."""
    env = os.environ.get("VIGIL_SOCKET")
    if env:
        return [env]
    if system:
        return [os.path.join(SYSTEM_DIR, "control.sock")]
    return [os.path.join(d, "control.sock") for d in user_dirs()]


def foreign(directory: str, owner: int) -> str | None:
    """Why `directory` is no private place of `owner`'s: another user may
    have made /tmp/vigil-UID first, to serve a socket of their own there or
    to plant symlinks. None when it is one, or does not exist yet (whoever
    makes it checks again, by its fd)."""
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return None
    except OSError as err:
        return err.strerror or str(err)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return "it is not a directory (a symlink is refused)"
    if info.st_uid != owner:
        return f"it belongs to uid {info.st_uid}"
    if info.st_mode & 0o022:
        return "others may write in it"
    return None


def _say(text: str) -> None:
    sys.stderr.write(f"vigil: {text}\n")


def usable(directories: list[str], warn: Callable[[str], None] = _say) -> list[str]:
    """The directories no one else holds, saying why each other one is passed
    over (the system's belongs to root, the others to us)."""
    chosen = []
    for directory in directories:
        why = foreign(directory, 0 if directory == SYSTEM_DIR else os.getuid())
        if why:
            warn(f"not using {directory}: {why}; trying the next place")
        else:
            chosen.append(directory)
    return chosen


def private_base(warn: Callable[[str], None] = _say) -> str | None:
    """The user's directory for per-project daemons: the first of theirs
    that no one else holds."""
    return next(iter(usable(user_dirs(), warn)), None)


def default_socket(system: bool, warn: Callable[[str], None] = _say) -> str:
    """The socket a client talks to, and a daemon listens on: the first
    candidate that exists, and for root on a machine with no daemon of its
    own, the system's. VIGIL_SOCKET is taken as given; a default place that
    someone else holds is passed over, and said so."""
    candidates = socket_candidates(system)
    if os.environ.get("VIGIL_SOCKET"):
        return candidates[0]
    if not system and os.getuid() == 0:
        candidates.append(os.path.join(SYSTEM_DIR, "control.sock"))
    places = usable([os.path.dirname(path) for path in candidates], warn)
    chosen = [path for path in candidates if os.path.dirname(path) in places] or candidates
    for path in chosen:
        if os.path.exists(path):
            return path
    return chosen[0]
