"""What vigil's own start costs: modules imported, import time, resident set.

    python bench/startup.py [--units N] [--runs R]

Runs the daemon (project mode, a subreaper, not a namespace: what is
measured is the interpreter's work, not the workload) with `-X importtime`
on an empty unit directory and on N units, and `vigilctl status` against it.
Each figure is the median of R runs; the machines are shared, so only ratios
taken in one run mean much.
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

VENV_BIN = Path(sys.executable).parent
UNIT = ('[service]\nexec = ["sleep", "3601"]\nrestart = "always"\nrestart-delay = 0\n'
        'start-seconds = 0\nstdout = "null"\nstderr = "null"\n')


def imports(stderr: str) -> tuple[int, float]:
    """(modules, milliseconds): the `-X importtime` lines, self times summed."""
    count, micros = 0, 0
    for line in stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            count += 1
            micros += int(line.split(":", 1)[1].split("|")[0])
    return count, micros / 1000


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0


def _running(pid: int) -> int:
    """The daemon's `sleep` children."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0
    return sum(1 for k in kids if _comm(k) == "sleep")


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:  # gone meanwhile (the unit compiler, a child of the daemon)
        return ""


def daemon(n: int, compiled: bool = False) -> dict[str, float]:
    """One daemon on n units (compiled first: `vigil compile`): modules,
    import ms, ready ms, RSS; status ms."""
    with tempfile.TemporaryDirectory() as tmp:
        units = Path(tmp, "units")
        units.mkdir()
        for i in range(n):
            (units / f"s{i}.toml").write_text(UNIT)
        if compiled:
            subprocess.run([str(VENV_BIN / "vigil"), "compile", str(units)],
                           stdout=subprocess.DEVNULL, check=True, timeout=60)
        sock = str(Path(tmp, "run", "control.sock"))
        errf = Path(tmp, "stderr")
        env = {**os.environ, "VIGIL_SOCKET": sock}
        t0 = time.perf_counter()
        with errf.open("w") as err:
            proc = subprocess.Popen([str(VENV_BIN / "python"), "-X", "importtime", "-m",
                                     "vigil.cli", "--units", str(units), "--socket", sock,
                                     "--quiet", "--cgroup", "off"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err, env=env)
        try:
            deadline = time.monotonic() + 30
            while not (os.path.exists(sock) and _running(proc.pid) >= n):
                if time.monotonic() > deadline:
                    raise TimeoutError("daemon not ready")
                time.sleep(0.001)
            ready = time.perf_counter() - t0
            time.sleep(0.3)
            rss = _rss_kb(proc.pid) / 1024
            count, ms = imports(errf.read_text())
            t1 = time.perf_counter()
            ctl = subprocess.run([str(VENV_BIN / "python"), "-X", "importtime", "-m",
                                  "vigilctl", "--socket", sock, "status"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 check=False, timeout=30)
            ctl_ms = (time.perf_counter() - t1) * 1000
            t2 = time.perf_counter()
            subprocess.run([str(VENV_BIN / "vigilctl"), "--socket", sock, "status"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                           timeout=30)
            plain_ms = (time.perf_counter() - t2) * 1000
            ctl_count, ctl_imp = imports(ctl.stderr)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {"modules": count, "import_ms": ms, "ready_ms": ready * 1000, "rss_mb": rss,
            "ctl_modules": ctl_count, "ctl_import_ms": ctl_imp, "ctl_ms": plain_ms,
            "ctl_importtime_ms": ctl_ms}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--units", type=int, default=50)
    p.add_argument("--runs", type=int, default=5)
    opts = p.parse_args(argv)
    for n, compiled in ((0, False), (opts.units, False), (opts.units, True)):
        samples = [daemon(n, compiled) for _ in range(opts.runs + 1)][1:]  # the first warms up
        med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
        print(f"{n:3} units{' compiled' if compiled else ''}: "
              + " ".join(f"{k}={v:.4g}" for k, v in med.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
