"""vigil._spawn (vigil/_spawn.c): CMD started as tini starts it."""

def spawn(argv: list[bytes], envp: list[bytes], fg_tty: int, blocked: int, ignored: int,
          report_fd: int) -> int: ...

PR_SET_PDEATHSIG: int
PR_SET_CHILD_SUBREAPER: int

def set_process(option: int, value: int) -> None: ...
