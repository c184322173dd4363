"""vigil beside the peers, each as PID 1 of a fresh PID namespace, on the
same workload in the same run: `make bench` (or `make bench-quick`).

    python bench/measure.py [--runs N] [--quick] [--only SCENARIO,...]

Each figure is the median of N runs after a warm-up; peers alternate run by
run, so ratios are taken pair by pair (these machines are shared and noisy).
Results go to bench/results/latest.json; bench/report.py writes
docs/benchmarks.md and the chart from them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers

RESULTS = Path(__file__).resolve().parent / "results"
N = 50


class Namespace:
    """One peer as PID 1 of a fresh PID (and mount, for /proc) namespace."""

    def __init__(self, cmd: list[str], cwd: Path) -> None:
        self.began = time.perf_counter()
        self.proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", *cmd],
                                     cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self._pid1: int | None = None

    def pid1(self) -> int:
        """The namespace's init as the host sees it: unshare's child."""
        if self._pid1 is None:
            path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            while True:
                kids = path.read_text().split() if path.exists() else []
                if kids:
                    self._pid1 = int(kids[0])
                    break
                time.sleep(0.0005)
        return self._pid1

    def tree(self) -> list[int]:
        """Every process below the namespace's init."""
        found: list[int] = []
        todo = [self.pid1()]
        while todo:
            pid = todo.pop()
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    kids = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
                except OSError:
                    continue
                found += map(int, kids)
                todo += map(int, kids)
        return found

    def workers(self) -> set[int]:
        """The workload's `sleep 3601` processes (not zombies)."""
        return {pid for pid in self.tree() if _is_worker(pid)}

    def zombies(self) -> int:
        return sum(1 for pid in self.tree() if _state(pid) == "Z")

    def wait_until(self, test: Callable[[], bool], timeout: float, poll: float = 0.001) -> float:
        """Seconds from `self.began` until test() holds; raises at the timeout."""
        deadline = time.perf_counter() + timeout
        while not test():
            if time.perf_counter() > deadline:
                raise TimeoutError
            time.sleep(poll)
        return time.perf_counter() - self.began

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self._pid1:
            try:
                os.kill(self._pid1, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, pgrp, ..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ["?", "0"]


def _state(pid: int) -> str:
    return _stat(pid)[0]


def _is_worker(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x003601\x00" and \
            _state(pid) != "Z"
    except OSError:
        return False


def _pss_kb(pid: int) -> int:
    """Proportional set size: shared pages split among their users, so 50
    copies of one small supervisor program are not counted 50 times."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _switches(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches"):
            return int(line.split()[1])
    return 0


# -- scenarios ---------------------------------------------------------------
def start50(name: str, quick: bool) -> dict[str, float]:
    """Launch to 50 running; then the resident sets, restart latency, ctl and idle."""
    with tempfile.TemporaryDirectory() as tmp:
        peer = peers.SUPERVISORS[name](Path(tmp), N)
        ns = Namespace(peer.cmd, Path(tmp))
        try:
            start = ns.wait_until(lambda: len(ns.workers()) >= N, timeout=60)
            time.sleep(0.5)
            tree = [p for p in ns.tree() if p not in ns.workers()]
            result = {"start50_s": start, "rss_pid1_mb": _rss_kb(ns.pid1()) / 1024,
                      "pss_tree_mb": (_pss_kb(ns.pid1()) + sum(map(_pss_kb, tree))) / 1024}
            result["restart_ms"] = _restart(ns) * 1000
            if peer.status:
                result["ctl_ms"] = _ctl(peer.status, 5 if quick else 20) * 1000
            result["idle_wakeups_per_s"] = _idle(ns, 2.0 if quick else 10.0)
            return result
        finally:
            ns.kill()


def _restart(ns: Namespace) -> float:
    """SIGKILL one worker; seconds until a replacement runs. Only the victim's
    parent (every peer restarts from the same supervising process) is
    watched: a scan of the whole tree takes ~2 ms, coarser than what is
    measured."""
    before = ns.workers()
    victim = min(before)
    parent = int(_stat(victim)[1])
    children = f"/proc/{parent}/task/{parent}/children"
    t0 = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    deadline = t0 + 10
    while time.perf_counter() < deadline:
        for pid in map(int, Path(children).read_text().split()):
            if pid not in before and _is_worker(pid):
                return time.perf_counter() - t0
        time.sleep(0.0001)
    return float("nan")


def _ctl(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def _idle(ns: Namespace, seconds: float) -> float:
    pid = ns.pid1()
    time.sleep(1.0)
    before = _switches(pid)
    time.sleep(seconds)
    return (_switches(pid) - before) / seconds


def stop50(name: str, quick: bool) -> dict[str, float]:
    """All 50 running, one ignoring SIGTERM (1 s stop timeout): stop all and exit."""
    with tempfile.TemporaryDirectory() as tmp:
        peer = peers.SUPERVISORS[name](Path(tmp), N, stubborn=True)
        ns = Namespace(peer.cmd, Path(tmp))
        try:
            ns.wait_until(lambda: len(ns.workers()) >= N, timeout=60)
            time.sleep(0.5)
            t0 = time.perf_counter()
            if peer.pre_stop:
                subprocess.run(peer.pre_stop, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=False, timeout=30)
            os.kill(ns.pid1(), peer.stop_signal)
            # Not proc.wait(timeout): it polls with sleeps of up to 50 ms,
            # which showed as a 50 ms step in the figures. A pidfd wakes at once.
            pidfd = os.pidfd_open(ns.proc.pid)
            try:
                if not select.select([pidfd], [], [], 60)[0]:
                    return {"stop50_s": float("nan")}
            finally:
                os.close(pidfd)
            took = time.perf_counter() - t0
            ns.proc.wait()
            return {"stop50_s": took}
        finally:
            ns.kill()


def chain50(name: str, quick: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        peer = peers.vigil_chain(Path(tmp), N)
        ns = Namespace(peer.cmd, Path(tmp))
        try:
            return {"chain50_s": ns.wait_until(lambda: len(ns.workers()) >= N, timeout=60)}
        finally:
            ns.kill()


GENERATOR = ("i=0; while [ $i -lt {n} ]; do (sleep 0 &); i=$((i+1)); done; "
             "touch {done}")


def reap(name: str, quick: bool) -> dict[str, float]:
    """Orphans made as fast as a shell can; seconds until the generator is done
    and no zombie is left, and the zombies left when it finished."""
    n = 1000 if quick else 5000
    with tempfile.TemporaryDirectory() as tmp:
        done = Path(tmp) / "done"
        gen = ["sh", "-c", GENERATOR.format(n=n, done=done) + "; exec sleep 3601"]
        ns = Namespace(peers.reaper_cmds(gen, Path(tmp))[name], Path(tmp))
        try:
            ns.wait_until(done.exists, timeout=300, poll=0.01)
            left = ns.zombies()
            try:
                end = ns.wait_until(lambda: ns.zombies() == 0, timeout=60, poll=0.01)
            except TimeoutError:
                end = float("nan")
            return {"reap_s": end, "zombies_at_end": float(left), "orphans": float(n)}
        finally:
            ns.kill()


def run_startup(name: str, quick: bool) -> dict[str, float]:
    """Container entrypoint: launch to CMD running, and the init's resident set then."""
    with tempfile.TemporaryDirectory() as tmp:
        marker = Path(tmp) / "running"
        cmd = ["sh", "-c", f"touch {marker}; exec sleep 3601"]
        ns = Namespace(peers.reaper_cmds(cmd, Path(tmp))[name], Path(tmp))
        try:
            took = ns.wait_until(marker.exists, timeout=60, poll=0.0002)
            time.sleep(0.3)
            return {"startup_ms": took * 1000, "rss_init_mb": _rss_kb(ns.pid1()) / 1024}
        finally:
            ns.kill()


def entry_exit(name: str, quick: bool) -> dict[str, float]:
    """`ENTRYPOINT -- true`, launch to exit, not in a namespace (as in a CI
    wrapper), each launch followed by one of the bare interpreter vigil runs
    on (`python -I -c pass`, the floor for anything written in it): the
    medians, and the first over the second taken launch by launch, so a
    load that comes and goes on a shared machine weighs on both alike."""
    cmds = peers.entry_cmds(["true"])
    mine, floor = [], []
    for _ in range(10 if quick else 40):
        mine.append(_launch(cmds[name]))
        floor.append(_launch(cmds["python"]))
    return {"exit_ms": statistics.median(mine) * 1000,
            "x_python": statistics.median(mine) / statistics.median(floor)}


def _launch(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def boot(name: str, quick: bool) -> dict[str, float]:
    """QEMU (TCG), same kernel, to the work done: vigil, systemd and BusyBox
    init each mount the API filesystems, load the same modules and print a
    line; vigil-demo is the shipped image to its default target with every
    demo unit ready."""
    qemu = _load(peers.ROOT / "qemu" / "run.py", "vigil_qemu_run")
    VM = qemu.VM
    qemu.ensure_built()
    if name == "vigil-demo":
        vm = VM("initramfs", timeout=300).start()
        marker = "Reached target default"
    elif name == "vigil":
        vm = VM("initramfs", timeout=300, image=_vigil_image(qemu.BUILD),
                append="vigil.unit=bench-ready").start()
        marker = "Finished bench-ready"
    elif name == "systemd":
        vm = VM("initramfs", timeout=300, image=_systemd_image()).start()
        marker = "SYSTEMD-READY"
    else:
        vm = VM("initramfs", timeout=300, image=_busybox_image()).start()
        marker = "BUSYBOX-READY"
    began = time.perf_counter()
    try:
        vm.wait_for(marker, timeout=240)
        result = {"boot_s": time.perf_counter() - began}
        rss = [line.split("PID1-RSS", 1)[1].split()[1:2] for line in vm.console().splitlines()
               if "PID1-RSS VmRSS:" in line]
        if rss and rss[0] and rss[0][0].isdigit():  # the guest PID 1 VmRSS, work done
            result["rss_pid1_mb"] = int(rss[0][0]) / 1024
        return result
    finally:
        vm.kill()


def _load(path: Path, name: str) -> Any:
    """One of the project's scripts (qemu/run.py, initramfs/build.py) as a module."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vigil_image(build: Path) -> Path:
    """The shipped image with one more unit, booted alone (vigil.unit=), its
    units compiled again (boot parses no TOML), compressed as shipped."""
    builder = _load(peers.ROOT / "initramfs" / "build.py", "vigil_image_build")
    tree = builder.build(build, builder.kernel_version())
    tree.file("/etc/vigil/units/bench-ready.toml",
              b'[service]\ntype = "oneshot"\nstdout = "console"\n'
              b'exec = ["/bin/sh", "-c", "' + RSS_LINE.encode() + b'; echo VIGIL-READY"]\n')
    # No remote control endpoint (TLS) and no data disk to mount from the
    # demo's fstab: the others do neither.
    tree.file("/sbin/init", builder.launcher(
        "vigil.cli", '["--units", "/etc/vigil/units", *sys.argv[1:]]'), 0o755)
    tree.file("/etc/fstab", b"")
    tree.file(builder.UNITS + ".compiled", builder.compiled_units(tree))
    target = build / "vigil-bench.cpio"
    target.write_bytes(builder.compress(tree.cpio()))
    return target


def _peer_image(name: str, dirs: tuple[str, ...], init: Callable[[Any, str], None]) -> Path:
    """An initramfs with BusyBox, the same modules as vigil's and /dev/console;
    `init(tree, loads)` adds the init and its configuration, `loads` being the
    shell line that loads the modules."""
    target = peers.ROOT / "build" / f"{name}.cpio.gz"
    if target.exists():
        return target
    import gzip
    builder = _load(peers.ROOT / "initramfs" / "build.py", "vigil_image_build")
    tree = builder.Tree()
    builder.add_busybox(tree)
    modules = builder.add_modules(tree, builder.kernel_version())
    for path in dirs:
        tree.dir(path)
    tree.device("/dev/console", 5, 1)
    init(tree, "; ".join(f"modprobe {m}" for m in modules))
    target.write_bytes(gzip.compress(tree.cpio(), mtime=0))
    return target


def _busybox_image() -> Path:
    """/init is BusyBox init; its sysinit lines do the work."""
    def init(tree: Any, loads: str) -> None:
        tree.symlink("/init", "/bin/busybox")
        tree.file("/etc/inittab", (
            "::sysinit:/bin/mount -t proc proc /proc\n"
            "::sysinit:/bin/mount -t sysfs sys /sys\n"
            "::sysinit:/bin/mount -t devtmpfs dev /dev\n"
            f"::sysinit:/bin/sh -c '{loads}'\n"
            "::sysinit:/bin/sh -c \"" + RSS_LINE + "\"\n"
            "::sysinit:/bin/echo BUSYBOX-READY\n").encode())
    return _peer_image("busybox-init", ("/proc", "/sys", "/dev", "/tmp"), init)


# the guest's PID 1 resident set, printed on the console by the ready step
RSS_LINE = "echo PID1-RSS $(grep VmRSS /proc/1/status | tr -s [:space:] ' ')"
SYSTEMD = "/lib/systemd/systemd"
SYSTEMD_UNITS = {
    # DefaultDependencies=no: the image has none of sysinit.target and the
    # rest; the work is BusyBox init's (modprobe, then a line on the console).
    "default.target": "[Unit]\nDefaultDependencies=no\nRequires=bench-ready.service\n"
                      "After=bench-ready.service\n",
    "bench-modules.service": "[Unit]\nDefaultDependencies=no\n[Service]\nType=oneshot\n"
                             "ExecStart=/bin/sh -c '{loads}'\n",
    "bench-ready.service": "[Unit]\nDefaultDependencies=no\nRequires=bench-modules.service\n"
                           "After=bench-modules.service\n[Service]\nType=oneshot\n"
                           "ExecStart=/bin/sh -c \"" + RSS_LINE.replace("$", "$$")
                           + "; echo SYSTEMD-READY\"\n"
                           "StandardOutput=tty\n",
}


def _systemd_image() -> Path:
    """/init is the host's systemd with its libraries; three units do the work."""
    def init(tree: Any, loads: str) -> None:
        builder = _load(peers.ROOT / "initramfs" / "build.py", "vigil_image_build")
        tree.copy(SYSTEMD, SYSTEMD, 0o755)
        for lib in sorted(builder.shared_libraries([SYSTEMD])):
            tree.copy(lib, lib)
        tree.symlink("/init", SYSTEMD)
        tree.file("/etc/os-release", b'NAME="bench"\nID=bench\n')
        tree.file("/etc/machine-id", b"")
        for name, text in SYSTEMD_UNITS.items():
            tree.file(f"/etc/systemd/system/{name}", text.format(loads=loads).encode())
    return _peer_image("systemd-init", ("/proc", "/sys", "/dev", "/run", "/tmp", "/var"), init)


def boot_debian(name: str, quick: bool) -> dict[str, float]:
    """bench/debian.py: the stock Debian image under vigil and its own systemd."""
    qemu = _load(peers.ROOT / "qemu" / "run.py", "vigil_qemu_run")
    debian = _load(peers.ROOT / "bench" / "debian.py", "vigil_bench_debian")
    result: dict[str, float] = debian.boot_debian(qemu, name)
    return result


SCENARIOS: dict[str, tuple[Callable[[str, bool], dict[str, float]], list[str]]] = {
    "start50": (start50, ["vigil", "supervisord", "runit", "s6"]),
    "stop50": (stop50, ["vigil", "supervisord", "runit", "s6"]),
    "chain50": (chain50, ["vigil"]),
    "reap": (reap, ["vigil", "tini", "dumb-init", "catatonit"]),
    "run": (run_startup, ["vigil", "tini", "dumb-init", "catatonit"]),
    "entry": (entry_exit, ["vigil", "python", "tini", "dumb-init", "catatonit"]),
    "boot": (boot, ["vigil", "systemd", "busybox-init", "vigil-demo"]),
    "boot-debian": (boot_debian, ["vigil", "systemd"]),
}
# Minutes of TCG boots: left out of --quick unless named with --only.
SLOW = ("boot-debian",)


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    return {"cpu": cpu, "cores": str(os.cpu_count()), "kernel": platform.release(),
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def _merged(old: dict[str, Any], new: dict[str, Any], chosen: list[str]) -> dict[str, Any]:
    """--only: the scenarios re-run replace theirs in latest.json, the rest
    stays, and the report says which were re-run when (and under what load)."""
    old["scenarios"].update(new["scenarios"])
    old["versions"].update(new["versions"])
    when = f"{new['machine']['date']}, load average {os.getloadavg()[0]:.1f}"
    old.setdefault("reruns", {}).update({scenario: when for scenario in chosen})
    return old


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="one run of each, shorter waits")
    p.add_argument("--only", help="comma-separated scenarios")
    opts = p.parse_args(argv)
    runs = 1 if opts.quick else opts.runs
    chosen = opts.only.split(",") if opts.only else [
        s for s in SCENARIOS if not (opts.quick and s in SLOW)]
    results: dict[str, object] = {"machine": machine(), "runs": runs, "quick": opts.quick,
                                  "versions": {}, "scenarios": {}}
    began = time.perf_counter()
    for scenario in chosen:
        func, names = SCENARIOS[scenario]
        names = [n for n in names if peers.available(n)]
        for name in names:
            results["versions"][name] = peers.version(name)  # type: ignore[index]
        samples: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        for run in range(runs + (0 if opts.quick else 1)):  # the first run warms up
            for name in names:
                try:
                    sample = func(name, opts.quick)
                except (TimeoutError, subprocess.TimeoutExpired, OSError) as err:
                    print(f"{scenario} {name}: {err!r}", file=sys.stderr)
                    sample = {}
                if run or opts.quick:
                    samples[name].append(sample)
                print(f"{scenario:8} run {run} {name:12} " + " ".join(
                    f"{k}={v:.4g}" for k, v in sample.items()), flush=True)
        results["scenarios"][scenario] = samples  # type: ignore[index]
    results["seconds"] = round(time.perf_counter() - began, 1)
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / ("quick.json" if opts.quick else "latest.json")
    if opts.only and not opts.quick and target.exists():
        results = _merged(json.loads(target.read_text()), results, chosen)
    target.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {target} after {results['seconds']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
