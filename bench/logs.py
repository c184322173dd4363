"""The log store's benchmark (docs/logs.md, docs/benchmarks.md).

1. Ingest: one unit floods its stdout; how many lines per second reach the
   store (stamped, written), and the daemon's CPU time for them.
2. Query: a synthetic store of --size bytes (many units, rotated files, a
   month of lines) is written, then `vigilctl logs` is timed for a unit and
   a time range, the last lines of everything, and a regex over one unit.

Usage: python bench/logs.py [--lines N] [--size 1G] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vigil.runtime.logstore import record  # noqa: E402 - after the path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def ingest(lines: int, work: Path) -> dict[str, float]:
    """A daemon, one unit writing `lines` lines of ~100 bytes as fast as it can."""
    units = work / "units"
    units.mkdir(parents=True)
    program = (f"import sys\nw = sys.stdout.write\nfor i in range({lines}): "
               "w('flood line %09d ' % i + 'x' * 80 + chr(10))\n")
    (units / "flood.toml").write_text(
        '[service]\ntype = "oneshot"\nlog-max-size = 1099511627776\n'
        f'exec = ["{sys.executable}", "-c", {json.dumps(program)}]\n')
    sock = work / "run" / "control.sock"
    daemon = subprocess.Popen([sys.executable, "-m", "vigil.cli", "--units", str(units),
                               "--socket", str(sock), "--quiet", "--no-autostart"],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    log = work / "run" / "logs" / "flood.log"
    try:
        _until(lambda: sock.exists(), 30)
        cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
        subprocess.run([sys.executable, "-m", "vigilctl", "--socket", str(sock), "start",
                        "--no-block", "flood"], cwd=ROOT, check=True, capture_output=True)
        _until(lambda: log.exists() and _last_is(log, f"flood line {lines - 1:09d} "), 600)
        elapsed, cpu = time.monotonic() - t0, cpu_seconds(daemon.pid) - cpu0
    finally:
        daemon.terminate()
        daemon.wait(60)
    return {"lines": lines, "seconds": round(elapsed, 3), "lines_per_s": round(lines / elapsed),
            "daemon_cpu_s": round(cpu, 3), "daemon_cpu_us_per_line": round(cpu / lines * 1e6, 2),
            "bytes": log.stat().st_size}


def _last_is(path: Path, text: str) -> bool:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 400))
        return text.encode() in f.read()


def _until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit("bench/logs.py: timed out")
        time.sleep(0.05)


def synthetic(store: Path, size: int, units: int = 40, segment: int = 16 << 20) -> dict[str, float]:
    """A month of lines from `units` units, in rotated files of `segment`
    bytes, written as the daemon writes them; returns its time span."""
    store.mkdir(parents=True)
    (store / "boot_id").write_text("bench 2026-01-01T00:00:00.000000Z\n")
    per_unit = size // units
    start = 1_780_000_000.0
    span = 30 * 86400.0
    line_bytes = len(record(start, 1.0, "unit-00", "unit-00", "stdout", 4242, "x" * 90))
    count = per_unit // line_bytes
    step = span / count
    for u in range(units):
        name = f"unit-{u:02d}"
        files: list[Path] = []
        out, written, t = None, 0, start + u * 0.001
        chunk: list[bytes] = []
        for i in range(count):
            if out is None or written >= segment:
                if out is not None:
                    out.write(b"".join(chunk))
                    chunk = []
                    out.close()
                files.append(store / f"{name}.log.part{len(files)}")
                out = open(files[-1], "wb")  # noqa: SIM115 - closed above and below
                written = 0
            text = f"request {i} {'ok' if i % 1000 else 'rare-marker'} " + "x" * 70
            data = record(t, t - start, name, name, "stdout" if i % 7 else "stderr", 4242, text)
            chunk.append(data)
            written += len(data)
            t += step
            if len(chunk) >= 4096:
                out.write(b"".join(chunk))
                chunk = []
        assert out is not None
        out.write(b"".join(chunk))
        out.close()
        for n, path in enumerate(files):  # the newest is NAME.log, the oldest the highest
            rank = len(files) - 1 - n
            path.rename(store / (f"{name}.log" + (f".{rank}" if rank else "")))
    return {"start": start, "end": start + span, "units": units, "lines": count * units}


def timed(*args: str) -> tuple[float, int]:
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "vigilctl", "logs", *args], cwd=ROOT,
                         capture_output=True, check=True).stdout
    return round(time.monotonic() - t0, 3), out.count(b"\n")


def query(size: int, work: Path) -> dict[str, object]:
    store = work / "store"
    t0 = time.monotonic()
    shape = synthetic(store, size)
    made = time.monotonic() - t0
    total = sum(p.stat().st_size for p in store.iterdir())
    middle = shape["start"] + 15 * 86400
    d = ["--directory", str(store), "-o", "cat"]
    results = {
        "store_bytes": total, "files": len(list(store.iterdir())), "lines": shape["lines"],
        "generated_s": round(made, 1),
        "unit_and_1h_range": timed(*d, "-u", "unit-07", "--since", str(middle),
                                   "--until", str(middle + 3600)),
        "unit_glob_and_10min_range": timed(*d, "-u", "unit-1*", "--since", str(middle),
                                           "--until", str(middle + 600)),
        "last_50_of_everything": timed(*d, "-n", "50"),
        "last_50_of_one_unit": timed(*d, "-u", "unit-07", "-n", "50"),
        "regex_over_one_unit_whole": timed(*d, "-u", "unit-07", "-g", "rare-marker"),
        "startup_no_match": timed(*d, "-u", "nothing-here"),
    }
    return results


BEGIN, END = "<!-- bench/logs.py -->", "<!-- /bench/logs.py -->"


def section(f: dict[str, Any], size: str) -> str:
    """The figures as docs/benchmarks.md's section on the log store."""
    i, q = f["ingest"], f["query"]
    rows = [("a unit and a 1-hour range", "unit_and_1h_range"),
            ("a glob of 10 units and a 10-minute range", "unit_glob_and_10min_range"),
            ("the last 50 lines of everything", "last_50_of_everything"),
            ("the last 50 lines of one unit", "last_50_of_one_unit"),
            ("a regex over one unit's whole history", "regex_over_one_unit_whole"),
            ("a unit with no files (start-up and listing)", "startup_no_match")]
    table = "\n".join(f"| {label} | {q[key][0]} | {q[key][1]} |"
                       for label, key in rows)
    return f"""{BEGIN}
## The log store: ingest and query

`python bench/logs.py --lines {i['lines']} --size {size}` (run by `make bench`, after the
table above). Ingest: one unit writes {i['lines']:,} lines of ~100 bytes as fast as it can;
from `start` to the last line in the store, stamped: **{i['lines_per_s']:,} lines/s**,
the daemon's CPU {i['daemon_cpu_s']} s in all, **{i['daemon_cpu_us_per_line']} us per
line** (read, split, stamped, written, tail kept).

Query: a synthetic store of {int(q['store_bytes']) / 1e9:.2f} GB ({q['files']} files,
{int(q['lines']):,} lines over 30 days, 40 units in rotated files of 16 MiB),
`vigilctl logs --directory STORE -o cat ...` timed whole (the Python start-up of
the client, ~50 ms, included). Measured {time.strftime("%Y-%m-%d")} on a shared
2-core machine while other test suites ran:

| query | seconds | lines out |
|---|---|---|
{table}

A range is a binary search in each file of the units chosen, `-n` reads files
backwards from their end, and a unit's files are passed over by their name:
a query reads what it shows, not the store. A regex reads the whole history
of the units chosen (here 27 MB), at ~50 MB/s.
{END}
"""


def write_section(text: str) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    old = doc.read_text()
    if BEGIN in old:
        old = old[:old.index(BEGIN)] + old[old.index(END) + len(END) + 1:]
    doc.write_text(old.rstrip("\n") + "\n\n" + text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lines", type=int, default=1_000_000, help="lines the flooding unit writes")
    p.add_argument("--size", default="1G", help="the synthetic store's size (K, M, G)")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--markdown", action="store_true",
                   help="write the figures into docs/benchmarks.md (its log store section)")
    opts = p.parse_args()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(opts.size[-1:].upper(), 1)
    size = int(opts.size.rstrip("KMGkmg")) * scale
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-logs-"))
    try:
        figures: dict[str, Any] = {"ingest": ingest(opts.lines, work / "ingest"),
                                   "query": query(size, work)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures, indent=2))
    if opts.json:
        Path(opts.json).write_text(json.dumps(figures, indent=2) + "\n")
    if opts.markdown:
        write_section(section(figures, opts.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
