"""`vigilctl logs`: where the store is, the records shown (short, json,
cat), the boots listed, and -f, which polls this boot's files for growth."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from vigil.base.printable import printable
from vigilctl.logs import BLOCK, BOOT_FILE, Query, Segment, Store, epoch, log_name, split


def render(boot: str, parts: list[str], output: str, color: bool) -> str:
    wall, mono, unit, instance, stream, pid, text = parts
    if output == "cat":
        return printable(text)
    if output == "json":
        record: dict[str, Any] = {
            "time": epoch(wall), "monotonic": float(mono), "boot": boot, "unit": unit,
            "instance": instance, "stream": stream, "pid": int(pid) if pid.isdigit() else None,
            "text": text}
        if stream == "event":
            code, severity, message = ([*text.split(" ", 2), "", ""])[:3]
            record.update(code=code, severity=severity, message=message)
        return json.dumps(record)
    from vigilctl.show import log_line
    clock = time.strftime("%H:%M:%S", time.localtime(epoch(wall)))
    name = instance if instance != "-" else "vigil"
    return log_line({"clock": clock, "instance": name, "unit": unit, "stream": stream,
                     "text": text}, color)


def list_boots(store: Store, boots: list[tuple[str, int]]) -> None:
    for n, (boot, fd) in enumerate(boots):
        first, last = "", ""
        for names in store.chains(fd, lambda base: True).values():
            for name in (names[0], names[-1]):
                file_fd = store.open(fd, name)
                if file_fd < 0:
                    continue
                segment = Segment(file_fd)
                head = segment.line_at(0)[2]
                tail = next(segment.backward(), "")[:27]
                first = min(first or head, head) if head else first
                last = max(last, tail)
                os.close(file_fd)
        print(f"{n - len(boots) + 1:3} {boot} {first or '-'} {last or '-'}")


def follow(store: Store, q: Query, ends: dict[str, list[int]], output: str,
           color: bool) -> None:
    """-f: this boot's files, polled for growth. A file that was rotated is
    read to its end, then the files rotated after it, oldest first, then
    the new one: every line once. Ends with Ctrl-C."""
    held_files: dict[str, list[int]] = dict(ends)  # base -> [fd, inode, offset]
    rests: dict[str, bytes] = {}
    boot = store_boot(store)
    while True:
        batch: list[list[str]] = []
        for name in os.listdir(store.fd):
            found = log_name(name)
            if found is None or found[1] or not q.file(found[0]):
                continue
            base = found[0]
            try:
                inode = os.stat(name, dir_fd=store.fd, follow_symlinks=False).st_ino
            except OSError:
                continue
            held = held_files.get(base)
            if held is not None and held[1] != inode:
                batch += _drain(held, base, rests, q) + _rotated(store, base, held[1], q)
                os.close(held[0])
                held = None
            if held is None:
                fd = store.open(store.fd, name)
                if fd < 0:
                    continue
                held = held_files[base] = [fd, inode, 0]
            batch += _drain(held, base, rests, q)
        batch.sort(key=lambda parts: parts[0])
        for parts in batch:
            print(render(boot, parts, output, color))
        sys.stdout.flush()
        time.sleep(0.2)


def _rotated(store: Store, base: str, inode: int, q: Query) -> list[list[str]]:
    """The files rotated after the one with `inode` (now BASE.log.N): N-1 .. 1."""
    numbered: dict[int, int] = {}
    for name in os.listdir(store.fd):
        found = log_name(name)
        if found is not None and found[0] == base and found[1]:
            try:
                numbered[found[1]] = os.stat(name, dir_fd=store.fd,
                                             follow_symlinks=False).st_ino
            except OSError:
                pass
    at = next((n for n, found in numbered.items() if found == inode), None)
    lines: list[list[str]] = []
    for n in sorted((n for n in numbered if at is not None and n < at), reverse=True):
        fd = store.open(store.fd, f"{base}.log.{n}")
        if fd >= 0:
            lines += _drain([fd, numbered[n], 0], base + f".{n}", {}, q)
            os.close(fd)
    return lines


def store_boot(store: Store) -> str:
    return store._read(store.fd, BOOT_FILE).split(" ")[0] or "current"


def _drain(held: list[int], base: str, rests: dict[str, bytes], q: Query) -> list[list[str]]:
    data = rests.pop(base, b"")
    while chunk := os.pread(held[0], BLOCK * 16, held[2]):
        held[2] += len(chunk)
        data += chunk
    *complete, rest = data.split(b"\n")
    if rest:
        rests[base] = rest
    found = []
    for raw in complete:
        parts = split(raw.decode("utf-8", "replace"))
        if parts is not None and q.keeps(parts) and q.in_range(parts[0]):
            found.append(parts)
    return found


def store_of(opts: Any, socket: Callable[[], str]) -> str:
    """The store's directory: --directory, else where the daemon that every
    command would find keeps it, without connecting: a project's under
    $XDG_STATE_HOME (vigilctl/project.py), else RUNTIME/logs or a user's
    daemon's state directory; the system's: /var/log/vigil once this boot
    is there."""
    from vigil.wire.protocol import SYSTEM_DIR
    if opts.directory:
        return str(opts.directory)
    from vigilctl import project
    path = socket()
    if not (opts.socket or opts.system or os.environ.get("VIGIL_SOCKET")):
        units = project.find(opts.project)
        procfile = project.find_procfile() if units is None else None
        if procfile is not None and not (os.path.exists(project.socket_for(procfile)) or
                                         os.path.isdir(project.log_dir_for(
                                             project.socket_for(procfile)))):
            procfile = None  # a Procfile never brought up: the default daemon's
        for found, verb in ((units, "start"), (procfile, "up")):
            if found is None:
                continue
            store = project.log_dir_for(project.socket_for(found))
            if not os.path.isdir(store):
                from vigilctl.client import ClientError
                raise ClientError(f"vigil is not running for {found} (`vigilctl {verb}` "
                                  "starts it), and has kept no logs yet")
            return store
    runtime = os.path.dirname(path)
    if os.path.basename(os.path.dirname(runtime)) == "p":  # --socket of a project's daemon
        store = project.log_dir_for(path)
        if os.path.isdir(store):
            return store
    if runtime != SYSTEM_DIR:
        beside = os.path.join(runtime, "logs")
        state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        kept = os.path.join(state, "vigil", "logs")  # a user's daemon at its default place
        return kept if not os.path.isdir(beside) and os.path.isdir(kept) else beside
    early, kept = os.path.join(SYSTEM_DIR, "logs"), "/var/log/vigil"
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            now = f.read().strip().replace("-", "")
        with open(os.path.join(kept, BOOT_FILE)) as f:
            moved = f.read().split(" ")[0] == now
    except OSError:
        moved = False
    return kept if moved or not os.path.isdir(early) else early
