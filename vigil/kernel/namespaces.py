"""Which kernel state is ours to change.

On a machine or VM vigil is PID 1 of the initial PID namespace and owns
everything. In a container, or in a test's namespaces, it is PID 1 of a
new PID namespace and may change only what lives in namespaces that are
not the host's: mounts in a private mount namespace, the hostname in a
private UTS namespace, net.* sysctls in a private network namespace.
Swap, modules, other sysctls and filesystem superblocks are global, so
they are left alone there, and the log says so.
"""

from __future__ import annotations

import os

# Inode numbers of the initial namespaces (include/linux/proc_ns.h; mnt and
# net as this kernel numbers them).
INITIAL = {"ipc": 0xEFFFFFFF, "uts": 0xEFFFFFFE, "user": 0xEFFFFFFD, "pid": 0xEFFFFFFC,
           "cgroup": 0xEFFFFFFB, "time": 0xEFFFFFFA, "net": 0xEFFFFFF9, "mnt": 0xEFFFFFF8}


def private(kind: str) -> bool:
    """True when our `kind` namespace is not the initial one."""
    try:
        return os.stat(f"/proc/self/ns/{kind}").st_ino != INITIAL[kind]
    except OSError:
        return False


def on_machine() -> bool:
    """PID 1 of the initial PID namespace: a real machine or VM."""
    return os.getpid() == 1 and not private("pid")


def may(what: str) -> bool:
    """Whether a system-mode step that changes `what` is ours to do."""
    if on_machine():
        return True
    needs = {"mount": "mnt", "hostname": "uts", "net-sysctl": "net"}.get(what)
    return needs is not None and os.getpid() == 1 and private(needs)
