"""Soak and chaos: 50 units under vigil as PID 1 of a PID namespace while a
driver SIGKILLs and SIGSTOPs services, four clients start, stop, restart,
reload and query at random, one service forks bursts of children, one writes
as fast as it can and one closes its stdout. Invariants are checked all the
time; any breach is recorded with what was seen.

    python -m tests.soak [SECONDS]      (make soak: 600 s; make test: 60 s)
"""

from __future__ import annotations

import os
import random
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.daemon import Daemon, wait_for
from vigilctl.client import Client, ClientError

SLEEPERS = 46
LOG_MAX, LOG_KEEP = 65536, 2


def units() -> dict[str, str]:
    files = {}
    for i in range(SLEEPERS):
        delay = random.Random(i).choice(["0", "0.05", "0.2"])
        files[f"s{i:02}.toml"] = (f'[service]\nexec = "sleep 1000"\nrestart = "always"\n'
                                  f'restart-delay = {delay}\nstart-seconds = 0\n'
                                  'stop-timeout = 2\n')
    files["forker.toml"] = ('[service]\nexec = ["sh", "-c", "while :; do i=0; while [ $i -lt 20 ]; '
                            'do (sleep 0.01 &); i=$((i+1)); done; sleep 0.2; done"]\n'
                            'restart = "always"\n')
    files["loud.toml"] = (f'[service]\nexec = ["sh", "-c", "yes vigil-soak-line"]\n'
                          f'restart = "always"\nlog-max-size = {LOG_MAX}\nlog-keep = {LOG_KEEP}\n')
    files["mute.toml"] = ('[service]\nexec = ["sh", "-c", "exec >&- 2>&-; exec sleep 1000"]\n'
                          'restart = "always"\n')
    files["app.toml"] = '[unit]\nwants = ["s00", "s01", "s02"]\n'
    return files


@dataclass
class Report:
    seconds: float = 0.0
    ops: int = 0
    kills: int = 0
    stops: int = 0
    checks: int = 0
    breaches: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, root: Path, seconds: float) -> None:
        self.root, self.seconds = root, seconds
        unit_dir = root / "units"
        unit_dir.mkdir()
        for name, text in units().items():
            (unit_dir / name).write_text(text)
        self.logs = root / "logs"
        self.daemon = Daemon(unit_dir, root, pid1=True,
                             extra=["--log-dir", str(self.logs), "--cgroup", "off", "--quiet"])
        self.names = [f"s{i:02}" for i in range(SLEEPERS)] + ["forker", "loud", "mute", "app"]
        self.report = Report()
        self.done = threading.Event()
        self.lock = threading.Lock()

    def breach(self, what: str) -> None:
        with self.lock:
            self.report.breaches.append(f"{time.monotonic() - self.began:.1f}s: {what}")

    # -- actors --------------------------------------------------------------
    def chaos(self) -> None:
        rng = random.Random(1)
        while not self.done.wait(rng.uniform(0.03, 0.1)):
            try:
                pid_map = self.ns_pids()
                inst = rng.choice(self.status())["instances"]
                if not inst or not inst[0]["pid"] or inst[0]["pid"] not in pid_map:
                    continue
                host = pid_map[inst[0]["pid"]]
                if rng.random() < 0.8:
                    os.kill(host, signal.SIGKILL)
                    self.report.kills += 1
                else:
                    os.kill(host, signal.SIGSTOP)
                    self.report.stops += 1
                    threading.Timer(rng.uniform(0.1, 2.0), _cont, (host,)).start()
            except (ClientError, OSError, IndexError):
                continue

    def client(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.done.is_set():
            op = rng.choice(["start", "stop", "restart", "status", "status", "reload"])
            units = rng.sample(self.names, rng.randint(1, 3))
            try:
                c = Client(self.daemon.socket, timeout=30)
                try:
                    if op == "reload":
                        c.call("reload")
                    elif op == "status":
                        c.call("status")
                    else:
                        c.call(op, units=units, no_block=rng.random() < 0.5, timeout=5)
                finally:
                    c.close()
                self.report.ops += 1
            except ClientError:
                self.report.ops += 1  # a failed start (a stopped dependency) is an answer too
            time.sleep(rng.uniform(0.01, 0.1))

    # -- invariants ------------------------------------------------------------
    def status(self, timeout: float = 30) -> list[dict]:
        c = Client(self.daemon.socket, timeout=timeout)
        try:
            result: list[dict] = c.call("status")
            return result
        finally:
            c.close()

    def ns_pids(self) -> dict[int, int]:
        """Namespace pid -> host pid, for every process under the daemon."""
        out: dict[int, int] = {}
        mine = os.readlink(f"/proc/{self.daemon.daemon_pid()}/ns/pid")
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != mine:
                    continue
                for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                    if line.startswith("NSpid:"):
                        out[int(line.split()[-1])] = int(entry)
            except OSError:
                continue
        return out

    def check(self, suspects: dict[tuple[str, int], int], zombies_seen: dict[int, float],
              rss_limit: int) -> None:
        self.report.checks += 1
        t0 = time.monotonic()
        try:
            units = self.status(timeout=1.0)
        except ClientError as err:
            self.breach(f"status did not answer within 1 s: {err}")
            return
        if time.monotonic() - t0 > 1.0:
            self.breach(f"status took {time.monotonic() - t0:.2f}s")
        pid_map = self.ns_pids()
        now_suspects: dict[tuple[str, int], int] = {}
        for unit in units:
            for inst in unit["instances"]:
                pid, state = inst["pid"], inst["state"]
                if state in ("running", "starting", "stopping") and pid:
                    host = pid_map.get(pid)
                    alive = host is not None and _state(host) not in ("Z", "?")
                    if not alive or not _cmd_ok(host, inst["name"]):
                        now_suspects[(inst["name"], pid)] = suspects.get((inst["name"], pid), 0) + 1
                elif state in ("inactive", "failed", "fatal", "exited") and pid:
                    now_suspects[(inst["name"], pid)] = suspects.get((inst["name"], pid), 0) + 1
        for (name, pid), count in now_suspects.items():
            if count >= 3:  # the same disagreement three checks in a row: not a race
                self.breach(f"{name} reported pid {pid} but that process is not as reported")
        suspects.clear()
        suspects.update(now_suspects)
        now = time.monotonic()
        current = set(self.daemon.zombies())
        for pid in current:
            zombies_seen.setdefault(pid, now)
            if now - zombies_seen[pid] > 1.0:
                self.breach(f"zombie {pid} older than 1 s")
                zombies_seen[pid] = now + 3600  # once
        for pid in set(zombies_seen) - current:
            del zombies_seen[pid]
        rss = _rss_kb(self.daemon.daemon_pid())
        if rss > rss_limit:
            self.breach(f"daemon resident set {rss} kB > 2x start ({rss_limit // 2} kB)")
        for path in self.logs.glob("loud.log*"):
            suffix = path.name[len("loud.log"):]
            if suffix and int(suffix.lstrip(".")) > LOG_KEEP:
                self.breach(f"{path.name}: more rotated files than log-keep = {LOG_KEEP}")
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # rotated away between the listing and now
                continue
            if size > LOG_MAX + 4096:
                self.breach(f"{path.name}: {size} bytes > log-max-size")

    def run(self) -> Report:
        d = self.daemon
        wait_for(lambda: all(u["state"] in ("running", "active") for u in self.status()),
                 timeout=60, what="every unit to start")
        time.sleep(1.0)
        rss_limit = 2 * _rss_kb(d.daemon_pid())
        self.began = time.monotonic()
        actors = [threading.Thread(target=self.chaos)] + [
            threading.Thread(target=self.client, args=(n,)) for n in range(4)]
        for actor in actors:
            actor.start()
        suspects: dict[tuple[str, int], int] = {}
        zombies: dict[int, float] = {}
        try:
            while time.monotonic() - self.began < self.seconds:
                if d.proc.poll() is not None:
                    self.breach(f"the daemon exited ({d.proc.returncode})")
                    break
                self.check(suspects, zombies, rss_limit)
                time.sleep(0.3)
        finally:
            self.done.set()
            for actor in actors:
                actor.join(timeout=60)
            self.report.seconds = time.monotonic() - self.began
            if d.stop() not in (0, None):
                self.breach(f"the daemon's shutdown ended with {d.proc.returncode}")
            if "daemon.bug" in d.output() or "Traceback" in d.output():
                self.breach("the daemon logged a bug or a traceback")
        return self.report


def _cont(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except OSError:
        pass


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def _cmd_ok(pid: int, name: str) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    expected = {"forker": b"sh", "loud": b"sh", "mute": b"sleep"}.get(name, b"sleep")
    return cmd[0] == expected


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main(argv: list[str]) -> int:
    seconds = float(argv[0]) if argv else 600.0
    with tempfile.TemporaryDirectory() as tmp:
        report = Soak(Path(tmp), seconds).run()
    print(f"soak: {report.seconds:.0f}s, {report.ops} client operations, {report.kills} "
          f"SIGKILLs, {report.stops} SIGSTOPs, {report.checks} invariant checks, "
          f"{len(report.breaches)} breach(es)")
    for line in report.breaches:
        print("  " + line)
    return 1 if report.breaches else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
