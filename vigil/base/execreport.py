"""The exec report both spawners write (vigil/_sys_build.py's for services,
vigil/_spawn.c's for `vigil run`): nothing when exec succeeded, else eight
bytes, the failed step's number and its errno, as little-endian int32s."""

from __future__ import annotations

import os


def read(fd: int, steps: dict[int, str]) -> tuple[str, int] | None:
    """(step name, errno) if the child could not exec, None if it did. Closes
    fd. Only once the pipe is readable or the child has exited: the child
    writes before it exits, so the read never blocks then."""
    try:
        data = os.read(fd, 8)
    finally:
        os.close(fd)
    if len(data) < 8:
        return None
    step = int.from_bytes(data[:4], "little", signed=True)
    return steps.get(step, f"step {step}"), int.from_bytes(data[4:], "little", signed=True)
