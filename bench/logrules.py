"""The cost per line of rules on a service's output (vigil/engine/logwatch.py).

    python bench/logrules.py [--lines N] [--runs R]

A unit floods N lines to its log; the daemon's own CPU time (user + system,
from /proc) from `start` until the last line is in the log file, divided by
N, for: no rules; `log-fails` + `silence` (a pattern that never matches, so
every line is searched); and a `ready` pattern met only after the flood.
Prints a markdown table (the median of R runs) for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "no rules": "",
    "log-fails + silence": '[service.health]\nlog-fails = "DEADLOCK|panic: "\nsilence = "5m"\n',
    "ready log": '[service.ready]\nlog = "^listening on [0-9]+$"\ntimeout = 600\n',
}


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one(lines: int, rules: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        units = Path(tmp) / "units"
        units.mkdir()
        script = f"seq 1 {lines}; echo listening on 80; exec sleep 1000"
        (units / "flood.toml").write_text(
            f'[service]\nexec = ["sh", "-c", "{script}"]\nlog-max-size = {1 << 40}\n{rules}')
        sock = f"{tmp}/run/control.sock"
        daemon = subprocess.Popen([sys.executable, "-m", "vigil.cli", "--units", str(units),
                                   "--socket", sock, "--no-autostart", "--quiet"], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ctl = [sys.executable, "-m", "vigilctl", "--socket", sock]
        try:
            while subprocess.run([*ctl, "ping"], capture_output=True, cwd=ROOT).returncode:
                time.sleep(0.05)
            before = cpu(daemon.pid)
            subprocess.run([*ctl, "start", "--no-block", "flood"], check=True,
                           capture_output=True, cwd=ROOT)
            log = Path(tmp) / "run" / "logs" / "flood.log"
            while not log.exists() or not log.read_bytes().endswith(b"listening on 80\n"):
                time.sleep(0.05)
            used = cpu(daemon.pid) - before
            subprocess.run([*ctl, "shutdown"], capture_output=True, cwd=ROOT)
            daemon.wait(timeout=30)
        finally:
            if daemon.poll() is None:
                daemon.kill()
    return used / (lines + 1) * 1e6


def sink_alone(count: int = 200000) -> dict[str, float]:
    """The sink by itself, timed in-process: microseconds per line."""
    sys.path.insert(0, str(ROOT))
    from vigil.engine.logwatch import Watches
    from vigil.runtime.loop import Loop
    from vigil.runtime.output import Line
    from vigil.model.schema import build_unit
    from vigil.engine.states import Instance, State
    loop = Loop(lambda what, err: None)
    out = {}
    for name, rules in CASES.items():
        import tomllib
        doc = tomllib.loads('[service]\nexec = "x"\n' + rules)
        svc = build_unit("flood", doc, "flood.toml", {}).service
        assert svc is not None
        inst = Instance("flood", "flood", svc)
        inst.state = State.STARTING if "ready" in name else State.RUNNING
        sink = Watches(loop, lambda i, e, d: None).sink(inst)
        line = Line(0.0, "flood", "flood", "stdout", "GET /index.html 200 1532 0.004s")
        began = time.perf_counter()
        if sink is not None:
            for _ in range(count):
                sink(line)
        out[name] = (time.perf_counter() - began) / count * 1e6
    loop.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--lines", type=int, default=200000)
    p.add_argument("--runs", type=int, default=3)
    opts = p.parse_args()
    results = {name: [one(opts.lines, rules) for _ in range(opts.runs)]
               for name, rules in CASES.items()}
    alone = sink_alone()
    print("| rules | daemon CPU per line (us) | min-max | the sink alone (us) |\n"
          "|---|---|---|---|")
    for name, runs in results.items():
        median = statistics.median(runs)
        sink = "none added" if name == "no rules" else f"{alone[name]:.2f}"
        print(f"| {name} | {median:.2f} | {min(runs):.2f}-{max(runs):.2f} | {sink} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
