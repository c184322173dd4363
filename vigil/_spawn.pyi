"""vigil._spawn (vigil/_spawn.c): CMD started as tini starts it."""

def spawn(argv: list[bytes], envp: list[bytes], fg_tty: int, blocked: int, ignored: int,
          report_fd: int) -> int: ...
