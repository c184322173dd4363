"""The control protocol, shared by the daemon and every client.

Versioned JSON lines over a Unix stream socket. A request is
`{"v": 1, "id": N, "cmd": "...", "args": {...}}`; a reply is
`{"id": N, "ok": true, "result": ...}` or
`{"id": N, "ok": false, "error": {"code": "...", "message": "..."}}`.
Streams (logs -f, events -f) send further replies with the same id and
`"stream": true`. See docs/protocol.md.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False  # typing costs the client ~10 ms to import; annotations are strings
if TYPE_CHECKING:
    from typing import Any

VERSION = 1
MAX_REQUEST = 64 * 1024
# Commands that change nothing; they can be opened to a group.
READ_ONLY = frozenset({"ping", "status", "logs", "events", "cat", "why", "deps", "list",
                       "timeline"})


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"


def parse_request(line: bytes) -> dict[str, Any]:
    """Checks the shape of a request; raises ProtocolError with a clear code."""
    try:
        req = json.loads(line)
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


def socket_candidates(system: bool) -> list[str]:
    """Where a daemon may put its socket, best first: /run/vigil in system
    mode; else $XDG_RUNTIME_DIR/vigil, /tmp/vigil-UID, then /dev/shm/vigil-UID
    (a container with a read-only root still has a tmpfs there)."""
    env = os.environ.get("VIGIL_SOCKET")
    if env:
        return [env]
    if system:
        return ["/run/vigil/control.sock"]
    uid = os.getuid()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    found = [os.path.join(runtime, "vigil", "control.sock")] if runtime else []
    return [*found, f"/tmp/vigil-{uid}/control.sock", f"/dev/shm/vigil-{uid}/control.sock"]


def default_socket(system: bool) -> str:
    """The socket a client talks to: the first candidate that exists, and
    for root on a machine with no daemon of its own, the system's."""
    candidates = socket_candidates(system)
    if not system and os.getuid() == 0 and "VIGIL_SOCKET" not in os.environ:
        candidates.append("/run/vigil/control.sock")
    for path in candidates:
        if os.path.exists(path):
            return path
    return candidates[0]
