"""`vigilctl logs` reading the store's files (vigilctl/logs.py): its options
against a real daemon, with the daemon down, on a store written here (time
ranges, boots, another machine's disk), and files it must not trust."""

from __future__ import annotations

import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemon import ROOT, Daemon, wait_for

SUBREAPER = pytest.mark.parametrize("mode", ["subreaper"], indirect=True)
UNITS = {
    "web.toml": '[service]\nexec = ["sh", "-c", "echo web-up; echo web-warn >&2; '
                'exec sleep 1000"]\n',
    "worker.toml": '[service]\nexec = ["sh", "-c", "echo worker-up; exec sleep 1000"]\n',
    "db.toml": '[service]\nexec = ["sh", "-c", "echo db-up; exec sleep 1000"]\n',
}


def ctl(*args: str, socket: str | None = None) -> subprocess.CompletedProcess[str]:
    where = ["--socket", socket] if socket else []
    return subprocess.run([sys.executable, "-m", "vigilctl", *where, "logs", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def texts(out: str) -> list[str]:
    return [line.split(": ", 1)[1] for line in out.splitlines()]


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t))) + \
        f".{int((t - int(t)) * 1e6):06d}Z"


def write_store(root: Path, files: dict[str, list[tuple[float, str]]], boot: str = "b0") -> None:
    """A store as the daemon writes it: {file name: [(time, text)]}."""
    root.mkdir(parents=True, exist_ok=True, mode=0o750)
    (root / "boot_id").write_text(f"{boot} {stamp(0)}\n")
    for name, lines in files.items():
        base = re.sub(r"\.log(\.\d+)?$", "", name)
        (root / name).write_text("".join(
            f"{stamp(t)} {t:.6f} {base} {base} stdout 7 {text}\n" for t, text in lines))


@SUBREAPER
def test_query_options_against_a_daemon(daemon):
    # breaks: vigilctl/logs.py:Query.keeps returning True (every unit, stream
    # and line would show, whatever -u, --stderr or -g say).
    d = daemon(UNITS)
    wait_for(lambda: "db-up" in ctl(socket=d.socket).stdout and
             "worker-up" in ctl(socket=d.socket).stdout, what="every unit's line")
    assert texts(ctl("web", socket=d.socket).stdout) == ["web-up", "web-warn"]
    assert sorted(texts(ctl("-u", "w*", socket=d.socket).stdout)) == \
        ["web-up", "web-warn", "worker-up"]
    assert sorted(texts(ctl("-u", "db", "-u", "worker", socket=d.socket).stdout)) == \
        ["db-up", "worker-up"]
    assert texts(ctl("-u", "web", "--stderr", socket=d.socket).stdout) == ["web-warn"]
    assert texts(ctl("-u", "web", "--stdout", socket=d.socket).stdout) == ["web-up"]
    assert sorted(texts(ctl("-g", "^w.*-up$", socket=d.socket).stdout)) == \
        ["web-up", "worker-up"]
    assert ctl("-u", "web", "-o", "cat", socket=d.socket).stdout == "web-up\nweb-warn\n"
    assert ctl("-u", "web", "-n", "1", "-o", "cat", socket=d.socket).stdout == "web-warn\n"
    record = json.loads(ctl("-u", "web", "-n", "1", "-o", "json", socket=d.socket).stdout)
    assert record["unit"] == "web" and record["stream"] == "stderr"
    assert record["pid"] == d.inst("web")["pid"] and abs(record["time"] - time.time()) < 60
    mixed = ctl("-u", "web", "--events", "-o", "json", socket=d.socket).stdout.splitlines()
    kinds = [json.loads(x)["stream"] for x in mixed]
    assert "event" in kinds and "stdout" in kinds
    times = [json.loads(x)["time"] for x in mixed]
    assert times == sorted(times), "events and lines interleave in time order"
    assert ctl("--since=+1h", "web", socket=d.socket).stdout == ""
    assert ctl("--until", "-1h", "web", socket=d.socket).stdout == ""  # as journalctl takes it
    assert texts(ctl("--since", "-2w", "web", socket=d.socket).stdout) == ["web-up", "web-warn"]
    assert texts(ctl("--since", "yesterday", "web", socket=d.socket).stdout) == \
        ["web-up", "web-warn"]


@SUBREAPER
def test_logs_read_with_the_daemon_down(daemon):
    # breaks: vigilctl/main.py:run without its `logs` branch (the client would
    # ask the daemon, which is gone).
    d = daemon(UNITS)
    wait_for(lambda: "web-warn" in ctl("web", socket=d.socket).stdout)
    d.stop()
    down = ctl("web", "--events", socket=d.socket)
    assert down.returncode == 0, down.stderr
    assert "web-up" in down.stdout and "Stopped web" in down.stdout


@SUBREAPER
def test_follow_across_units_ends_cleanly_on_ctrl_c(daemon, tmp_path):
    # breaks: vigilctl/logshow.py:follow without `_rotated(...)` (the files
    # rotated between two polls would be skipped).
    go = tmp_path / "go"
    d = daemon({"a.toml": f'[service]\nlog-max-size = 4096\nlog-keep = 20\n'
                          f'exec = ["sh", "-c", "echo a-first; '
                          f'while [ ! -e {go} ]; do sleep 0.05; done; i=0; while [ $i -lt 200 ]; '
                          'do echo a-$i-padding-padding-padding; i=$((i+1)); done; '
                          'exec sleep 1000"]\n',
                "b.toml": '[unit]\nenabled = false\n[service]\nexec = ["sh", "-c", '
                          '"echo b-started; exec sleep 1000"]\n'})
    wait_for(lambda: "a-first" in ctl("a", socket=d.socket).stdout)
    follower = subprocess.Popen([sys.executable, "-m", "vigilctl", "--socket", d.socket, "logs",
                                 "-f", "-u", "a", "-u", "b", "-o", "cat"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        wait_for(lambda: os.path.exists(f"/proc/{follower.pid}"))
        time.sleep(0.5)  # not an assertion: lets the follower print what is there first
        d.call("start", units=["b"])
        go.touch()
        seen = [""]

        def read() -> bool:
            while select.select([follower.stdout], [], [], 0.1)[0]:
                chunk = os.read(follower.stdout.fileno(), 65536).decode()
                if not chunk:
                    break
                seen[0] += chunk
            return "a-199-" in seen[0]
        wait_for(read, what="the last line followed")
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    lines = (seen[0] + out.decode()).splitlines()
    assert lines[0] == "a-first" and "b-started" in lines
    assert [x for x in lines if x.startswith("a-") and x != "a-first"] == \
        [f"a-{i}-padding-padding-padding" for i in range(200)], "every line once, across rotations"
    assert follower.returncode == 130 and b"Traceback" not in err


def test_time_range_finds_the_same_lines_as_reading_everything(tmp_path):
    # breaks: vigilctl/logs.py:Segment.seek with `head > since` for `head >= since`
    # (a line stamped at the very start of the range is skipped).
    rng = random.Random(7)
    start, files = 1_700_000_000.0, {}
    every: list[tuple[float, str]] = []
    for n in range(4):  # app.log.3 (oldest) .. app.log
        t0 = start + n * 1000
        lines = [(t0 + i * 0.7 + rng.random() * 0.1, f"line-{n}-{i}" + "x" * rng.randrange(300))
                 for i in range(1200)]
        files["app.log" + (f".{3 - n}" if n < 3 else "")] = lines
        every += lines
    write_store(tmp_path / "store", files)
    exact = [tuple(sorted((rng.choice(every)[0], rng.choice(every)[0]))) for _ in range(3)]
    for a, b in [*exact, *(sorted(rng.uniform(start - 100, start + 4200) for _ in range(2))
                           for _ in range(3))]:
        out = ctl("--directory", str(tmp_path / "store"), "--since", str(a), "--until", str(b),
                  "-o", "cat").stdout.splitlines()
        assert out == [text for t, text in every if stamp(a) <= stamp(t) <= stamp(b)]
        before = ctl("--directory", str(tmp_path / "store"), "--until", str(b), "-n", "2",
                     "-o", "cat").stdout.splitlines()
        assert before == [text for t, text in every if stamp(t) <= stamp(b)][-2:]
    last = ctl("--directory", str(tmp_path / "store"), "-n", "3", "-o", "cat").stdout
    assert last.splitlines() == [text for _, text in every[-3:]]
    write_store(tmp_path / "dotted", {"x.log.log.1": [(start, "older")],  # a unit named x.log
                                      "x.log.log": [(start + 1, "newer")]})
    assert ctl("--directory", str(tmp_path / "dotted"), "-o", "cat", "x.log").stdout == \
        "older\nnewer\n"


def test_boots_previous_and_list(tmp_path):
    # breaks: vigilctl/logs.py:select taking -1 as the first boot
    # (`at = n - 1` for every n).
    store = tmp_path / "store"
    write_store(store, {"web.log": [(1_800_000_000.0, "now-line")]}, boot="cafe02")
    write_store(store / "boots" / "20260101T000000Z-cafe01",
                {"web.log": [(1_700_000_000.0, "before-crash")]}, boot="cafe01")
    write_store(store / "boots" / "20250101T000000Z-cafe00",
                {"web.log": [(1_600_000_000.0, "long-ago")]}, boot="cafe00")
    for path in (store / "boots").iterdir():
        (path / "boot_id").unlink()
    where = ["--directory", str(store), "-o", "cat"]
    assert ctl(*where, "-b", "-1").stdout == "before-crash\n"
    assert ctl(*where, "-b").stdout == "now-line\n"
    assert ctl(*where, "-b", "1").stdout == "long-ago\n"
    assert ctl(*where, "-b", "cafe01").stdout == "before-crash\n"
    assert ctl(*where).stdout == "long-ago\nbefore-crash\nnow-line\n"
    listed = ctl("--directory", str(store), "--list-boots").stdout.splitlines()
    assert [x.split()[:2] for x in listed] == [["-2", "cafe00"], ["-1", "cafe01"],
                                                ["0", "cafe02"]]
    bad = ctl(*where, "-b", "-5")
    assert bad.returncode == 2 and "3 boot(s)" in bad.stderr


@pytest.mark.parametrize("attack", ["group-writable", "other-owner", "symlink"])
def test_untrusted_store_files_are_refused(tmp_path, attack):
    # breaks: vigilctl/logs.py:Store.open without its trust.owned check (the
    # planted line would be shown as the unit's).
    store = tmp_path / "store"
    write_store(store, {"web.log": [(1_800_000_000.0, "real-line")],
                        "evil.log": [(1_800_000_001.0, "planted-line")]})
    evil = store / "evil.log"
    if attack == "group-writable":
        evil.chmod(0o664)
    elif attack == "other-owner":
        os.chown(evil, 65534, 65534)
    else:
        target = tmp_path / "elsewhere.log"
        evil.rename(target)
        evil.symlink_to(target)
    out = ctl("--directory", str(store), "-o", "cat")
    assert out.stdout == "real-line\n"
    assert "skipping evil.log" in out.stderr


def test_an_untrusted_store_directory_is_refused(tmp_path):
    # breaks: vigilctl/logs.py:Store.__init__ walking with a rule that passes all.
    store = tmp_path / "store"
    write_store(store, {"web.log": [(1_800_000_000.0, "line")]})
    store.chmod(0o777)
    out = ctl("--directory", str(store))
    assert out.returncode == 1 and "others may write" in out.stderr and out.stdout == ""


def test_a_restarted_daemon_of_a_new_boot_shows_the_last_boot_with_b_minus_1(unit_dir, tmp_path):
    # breaks: vigil/runtime/logstore.py:archive (the earlier boot's lines are not
    # kept apart, so -b -1 finds no boot before this one).
    units = unit_dir({"crash.toml": '[service]\nrestart = "never"\nexec = ["sh", "-c", '
                                    '"echo about-to-crash; exit 3"]\n'})
    d = Daemon(units, tmp_path)
    try:
        wait_for(lambda: d.status("crash")["state"] == "failed")
    finally:
        d.stop()
    logs = tmp_path / "run" / "logs"
    (logs / "boot_id").write_text("0ld 2020-01-01T00:00:00.000000Z\n")  # as after a reboot
    d = Daemon(units, tmp_path)
    try:
        wait_for(lambda: d.status("crash")["state"] == "failed")
        before = ctl("-b", "-1", "--events", socket=d.socket).stdout
        assert "about-to-crash" in before and "crash failed: exit 3" in before
        record = json.loads(ctl("-b", "-1", "-o", "json", "crash", socket=d.socket).stdout)
        assert record["boot"] == "0ld" and record["text"] == "about-to-crash"
        assert ctl("-b", "-o", "cat", "crash", socket=d.socket).stdout == "about-to-crash\n"
    finally:
        d.stop()
