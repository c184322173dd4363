"""PID 1's own path: what runs the daemon and what happens when it cannot.

PID 1 never exits (the kernel would panic): a daemon that fails is executed
afresh once with what it can save (reexec.rescue); after that, or when the
machine did not reboot, a shell on the console, or reaping forever.
"""

from __future__ import annotations

import os
import signal
import sys

from vigil import reexec
from vigil.kernel import namespaces
from vigil.serve import start

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    import argparse

    from vigil.unitdb import Units


def run(opts: argparse.Namespace, argv: list[str], loader: Units | None = None) -> int:
    """PID 1 never exits: a daemon that cannot go on is executed afresh; one
    that cannot even start leaves a shell on the console, or keeps reaping."""
    daemon = None
    try:
        daemon = start(opts, argv, loader)
        status = daemon.run()
    except BaseException as err:  # the last line of defence
        print(f"vigil: PID 1 failed: {err!r}", file=sys.stderr)
        if "--reexecuted" not in argv:  # once: failing again at once means it cannot start
            try:
                reexec.execute(argv, ["--reexecuted", *reexec.rescue(daemon)])
            except OSError as exec_err:
                print(f"vigil: cannot execute vigil afresh: {exec_err}", file=sys.stderr)
        return last_resort()
    if namespaces.on_machine():
        return last_resort()  # reboot(2) did not happen
    return status


def last_resort() -> int:
    """Nothing else works: a shell on the console if there is one; else reap
    forever (the one wait outside the reaper that runs while PID 1 lives,
    once the daemon is gone)."""
    for shell in ("/bin/sh", "/bin/busybox"):
        if os.access(shell, os.X_OK):
            print(f"vigil: starting {shell} on the console", file=sys.stderr)
            pid = os.fork()
            if pid == 0:
                os.execv(shell, [shell, "sh"] if shell.endswith("busybox") else [shell])
            break
    while True:
        try:
            os.wait()
        except ChildProcessError:
            signal.pause()
