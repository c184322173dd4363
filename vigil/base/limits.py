"""Bounds on what a client can make the daemon hold: connections (fds),
buffered output, streams, waits, and time before a remote client proves
who it is. Set with `vigil --limit NAME=VALUE` (docs/protocol.md).
"""

from __future__ import annotations

import resource
from collections.abc import Sequence
from vigil.base.records import dataclass, fields, replace

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any


@dataclass(frozen=True)
class Limits:
    clients: int = 128  # local connections at once; the last quarter is kept for root and owner
    clients_per_uid: int = 32  # local connections at once from one uid
    output: int = 4 << 20  # bytes of replies waiting for a client that does not read
    streams: int = 4  # follows (logs -f, events -f, attach) on one connection
    waits: int = 32  # requests on one connection waiting for units to settle
    remote_clients: int = 64  # remote connections at once
    preauth: int = 16  # remote connections not yet authenticated
    preauth_per_address: int = 4  # ... from one address
    auth_timeout: float = 5.0  # seconds for a remote client to finish TLS and auth
    auth_delay_max: float = 30.0  # the cap on the delay before a wrong token is answered
    notice_interval: float = 60.0  # client-caused events (refusals, wrong tokens): one per this

    @classmethod
    def parse(cls, items: Sequence[str]) -> Limits:
        """From `--limit NAME=VALUE` options; a clear error names the bad one."""
        known = {f.name.replace("_", "-"): f for f in fields(cls)}
        values: dict[str, Any] = {}
        for item in items:
            name, sep, text = item.partition("=")
            spec = known.get(name.strip())
            if not sep or spec is None:
                raise ValueError(f"--limit {item!r}: expected NAME=VALUE, NAME one of "
                                 + ", ".join(known))
            kind = float if spec.type in (float, "float") else int
            try:
                value = kind(text)
            except ValueError:
                raise ValueError(f"--limit {item!r}: {name} must be a {kind.__name__} "
                                 "number") from None
            if not value > 0:
                raise ValueError(f"--limit {item!r}: {name} must be more than 0")
            values[spec.name] = value
        return cls(**values)

    def within_fds(self) -> Limits:
        """Each server may hold at most a quarter of the fd limit, so clients
        can never take the fds that services and logs need."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        share = max(4, soft // 4) if soft != resource.RLIM_INFINITY else self.clients
        return replace(self, clients=min(self.clients, share),
                       remote_clients=min(self.remote_clients, share),
                       preauth=min(self.preauth, self.remote_clients, share))
