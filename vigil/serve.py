"""`vigil daemon` (and PID 1's start): refuse system mode off PID 1, become a
child subreaper, mount and boot in system mode, then run the Daemon."""

from __future__ import annotations

import os
import sys

from vigil.kernel import namespaces
from vigil.wire.flags import parse_args

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from vigil.daemon import Daemon
    from vigil.unitdb import Units


def become_subreaper() -> bool:
    """Orphans of our services come back to us rather than to PID 1."""
    try:
        import prctl
        prctl.set_child_subreaper(1)
        return True
    except (ImportError, OSError):
        return False


def system_mode(opts: argparse.Namespace) -> bool:
    return bool(opts.system) or namespaces.on_machine()


def early_units(opts: argparse.Namespace) -> Units | None:
    """Outside system mode the units start loading before the daemon's own
    modules are imported: the compiler, a child, parses them meanwhile. In
    system mode they wait for early boot (they are on the root it mounts)."""
    if system_mode(opts):
        return None
    from vigil import unitdb
    loader = unitdb.of(opts)
    loader.begin()
    return loader


def start(opts: argparse.Namespace, argv: Sequence[str], loader: Units | None = None) -> Daemon:
    """The daemon, after early boot in system mode: the mounts before it is
    built (its runtime directory is on /run), the rest once it can log."""
    from vigil.daemon import Daemon
    if not system_mode(opts):
        return Daemon(opts, argv, loader=loader)
    from vigil.system import boot
    daemon = Daemon(opts, argv, boot.mount_and_switch())
    daemon.boot()
    return daemon


def main(argv: Sequence[str]) -> int:
    opts = parse_args(argv)
    if opts.system and os.getpid() != 1 and not opts.force_system:
        print("vigil: --system mounts, kills and reboots: refused when not PID 1. "
              "Run it in a VM or a PID namespace.", file=sys.stderr)
        return 2
    loader = early_units(opts)
    if os.getpid() != 1 and not become_subreaper():
        print("vigil: could not become a child subreaper; orphans go to PID 1",
              file=sys.stderr)
    if os.getpid() == 1:
        from vigil import pid1
        return pid1.run(opts, list(argv), loader)
    try:
        daemon = start(opts, argv, loader)
    except (OSError, ValueError) as err:  # ValueError: vigil.control.remote.RemoteError
        if loader is not None:
            loader.cancel()
        print(f"vigil: cannot start: {err}", file=sys.stderr)
        return 1
    return daemon.run()
