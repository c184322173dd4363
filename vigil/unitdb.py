"""The daemon's units: the compiled database (vigil/model/compiled.py) when it is
trusted and fresh, else the compiler run in a child process.

The child is forked: it imports the loader, the TOML parser and the schema,
PID 1 never does. At start it is forked early (`Units.begin`, from
`serve.early_units`), so it parses while the daemon imports its own
modules. Its answer comes back through a pipe, read with a timeout; a
compiler that overruns is killed, and its errors are data (a problem
naming file and key, or "nothing was applied" for a reload).
"""

from __future__ import annotations

import marshal
import os
import select
import signal
import time

from vigil.model.compiled import (MAX_DB_SIZE, SYSTEM_PATH, TIMEOUT, Incomplete, LoadResult,
                                  compile_units, decode, default_path, read_db)
from vigil.base.errors import Problem

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any


def in_child(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    """compile_units(**job) in a forked child, so that PID 1 never imports
    the TOML parser or the schema; its answer, or {"failed": why}."""
    started = start_child(job)
    return started if isinstance(started, dict) else answer_of(started, timeout)


def start_child(job: dict[str, Any]) -> tuple[int, int] | dict[str, Any]:
    """The compiler forked on `job`: (its pid, the read end of its answer),
    or {"failed": why} if it could not be started."""
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError as err:
        os.close(r)
        os.close(w)
        return {"failed": f"cannot start the unit compiler: {err.strerror}"}
    if pid == 0:  # pragma: no cover - the child; its answer is what the tests read
        _child(r, w, job)
    os.close(w)
    return pid, r


def answer_of(started: tuple[int, int], timeout: float) -> dict[str, Any]:
    """The answer of a compiler start_child made, waited for at most
    `timeout` seconds (then it is killed); the child is reaped either way."""
    pid, r = started
    try:
        data = _read_all(r, timeout)
    finally:
        os.close(r)
    _wait(pid, data is None)
    if data is None:
        return {"failed": f"the unit compiler did not finish in {timeout:g} s"}
    try:
        answer = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        answer = None
    return answer if isinstance(answer, dict) else {"failed": "the unit compiler failed"}


def _child(r: int, w: int, job: dict[str, Any]) -> None:
    status = 1
    try:
        os.close(r)
        signal.set_wakeup_fd(-1)  # the parent's loop is not ours to wake
        try:  # the console is PID 1's: the child answers through the pipe
            quiet = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
        except OSError:
            pass
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        try:
            answer = compile_units(**job)
        except Exception as err:  # the parent reports it; the child must not go on
            answer = {"failed": f"the unit compiler failed: {err!r}"}
        view = memoryview(marshal.dumps(answer))
        while view:
            view = view[os.write(w, view):]
        status = 0
    finally:
        os._exit(status)


def _read_all(fd: int, timeout: float) -> bytes | None:
    """Everything until EOF, or None after `timeout` seconds."""
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_DB_SIZE:
            return None


def _wait(pid: int, kill: bool) -> None:
    """Reaps the compiler (a pid of ours the loop's reaper has not seen: the
    loop does not run meanwhile), killing it if it overran."""
    deadline = time.monotonic() + 5
    while True:
        if kill:
            os.kill(pid, signal.SIGKILL)
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done or (kill and time.monotonic() > deadline):
            return  # not reaped: the reaper logs it as an orphan when it ends
        kill = kill or time.monotonic() > deadline
        time.sleep(0.001)


class Units:
    """The daemon's unit files, as the loader's interface: at start the
    compiled database when it is trusted and fresh, else (and at every
    reload) the compiler in a child process."""

    def __init__(self, search_path: Sequence[str], compiled: str | None = None,
                 timeout: float = TIMEOUT) -> None:
        self.search_path = [os.fspath(p) for p in search_path]
        self.compiled = compiled or default_path(self.search_path)
        self.timeout = timeout
        self.listed: list[str] | None = None  # directories read at the last load
        self.requested: list[str] = []  # instances named at run time (`start tp@x`)
        self.source = ""  # what the last load read: "compiled" or "compiler"
        self.begun: tuple[str, str, tuple[int, int] | dict[str, Any]] | None = None  # begin()

    def begin(self) -> None:
        """The first load set going now: the compiled database read, or the
        compiler forked, which then parses while the daemon goes on with its
        own start (its imports, its socket: on two cores the two overlap).
        load_all takes what it began."""
        if self.listed is None and self.begun is None:
            self.begun = self._begin()

    def _begin(self) -> tuple[str, str, tuple[int, int] | dict[str, Any]]:
        """(source, why not the database, its answer or the compiler at work)."""
        db, why = read_db(self.compiled, self.search_path)
        if db is not None:
            return "compiled", "", db
        return "compiler", why, start_child(self._job())

    def cancel(self) -> None:
        """The daemon will not start: a compiler begun for it is killed and reaped."""
        begun, self.begun = self.begun, None
        if begun is not None and isinstance(begun[2], tuple):
            pid, r = begun[2]
            os.close(r)
            _wait(pid, True)

    def load_all(self) -> LoadResult:
        """Every unit; after the first load, Incomplete if the set could not
        be read whole (or the compiler failed): then nothing is applied."""
        problems: list[Problem] = []
        if self.listed is None:
            source, why, started = self.begun or self._begin()
            self.begun = None
            if why:
                problems.append(Problem(self.compiled, f"{why}; the units were compiled afresh"))
            answer = answer_of(started, self.timeout) if isinstance(started, tuple) else started
        else:
            source, answer = "compiler", in_child(self._job(), self.timeout)
        if "incomplete" in answer:
            raise Incomplete([decode(p) for p in answer["incomplete"]])
        if "failed" in answer:
            if self.listed is not None:
                raise Incomplete([Problem("reload", f"{answer['failed']}: nothing was applied")])
            return LoadResult(problems=[Problem(self.search_path[0], answer["failed"])])
        self.source = source
        result = self._take(answer)
        result.problems[:0] = problems
        return result

    def _job(self) -> dict[str, Any]:
        return {"search_path": self.search_path, "listed": self.listed,
                "requested": self.requested}

    def load_instance(self, name: str) -> LoadResult | None:
        """A template instance named at run time (None if it is none)."""
        answer = in_child({**self._job(), "instance": name}, self.timeout)
        if "failed" in answer:
            return LoadResult(problems=[Problem(name, answer["failed"])])
        if answer.get("result") is None:
            return None
        self.requested = answer["requested"]
        result: LoadResult = decode(answer["result"])
        return result

    def _take(self, answer: dict[str, Any]) -> LoadResult:
        self.listed, self.requested = answer["listed"], answer["requested"]
        result: LoadResult = decode(answer["result"])
        return result


def of(opts: argparse.Namespace) -> Units:
    """The units the daemon's options name: --units, else the system path,
    and --compiled (PID 1 reads no TOML)."""
    return Units(opts.units or SYSTEM_PATH, opts.compiled)
