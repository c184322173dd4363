"""The log store (vigil/runtime/logstore.py) as a real daemon writes it: every line
stamped, the events in the same store, limits by size and age, boots, and
a failure's last lines in its event."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemon import ROOT, Daemon, wait_for

SUBREAPER = pytest.mark.parametrize("mode", ["subreaper"], indirect=True)
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \d+\.\d{6} (\S+) (\S+) (\S+) (\S+) (.*)$")


def test_every_line_is_stamped_and_events_share_the_store(daemon, tmp_path):
    # breaks: vigil/engine/streams.py:_writer writing `line.text + "\n"` (no stamp), or
    # vigil/runtime/events.py:Events.emit without its `self.store.write(...)`.
    d = daemon({"web.toml": '[service]\nexec = ["sh", "-c", "echo hello; echo oops >&2; '
                            'exec sleep 1000"]\n'})
    logs = tmp_path / "run" / "logs"
    pid = wait_for(lambda: d.inst("web")["pid"])
    lines = wait_for(lambda: len(t := (logs / "web.log").read_text().splitlines()) == 2 and t)
    parsed = [STAMP.match(line) for line in lines]
    assert all(parsed), lines
    assert [m.groups() for m in parsed if m] == [("web", "web", "stdout", str(pid), "hello"),
                                                 ("web", "web", "stderr", str(pid), "oops")]
    events = (logs / "@events.log").read_text().splitlines()
    ready = [STAMP.match(x) for x in events if " unit.ready " in x]
    assert ready and ready[0] and ready[0].group(1) == "web" and ready[0].group(3) == "event"
    stamps = [line[:27] for line in lines + events]
    assert all(STAMP.match(x) for x in events)
    assert sorted(stamps) == sorted(stamps, key=lambda s: s)  # text order is time order


@SUBREAPER
def test_total_limit_drops_the_oldest_rotated_files(daemon, tmp_path):
    # breaks: vigil/runtime/logstore.py:Store.prune returning at once (every rotated
    # file is kept: 10 x 4 KiB, past the 16 KiB bound).
    d = daemon({"chatty.toml": '[service]\ntype = "oneshot"\nlog-max-size = 4096\nlog-keep = 10\n'
                               'exec = ["sh", "-c", "i=0; while [ $i -lt 1200 ]; do '
                               'echo line-$i-padding-padding; i=$((i+1)); done"]\n'},
               extra=["--log-max-total", "16K"])
    wait_for(lambda: d.status("chatty")["state"] == "exited")
    logs = tmp_path / "run" / "logs"
    wait_for(lambda: "line-1199-" in (logs / "chatty.log").read_text(), what="the last line")
    rotated = sorted(logs.glob("chatty.log.*"), key=lambda p: int(p.suffix[1:]))
    total = sum(p.stat().st_size for p in logs.iterdir() if p.is_file())
    assert total <= 16 * 1024, (total, [p.name for p in logs.iterdir()])
    assert rotated and rotated[0].name == "chatty.log.1", "the newest rotated file is kept"
    assert len(rotated) < 10, "the oldest went first"


@SUBREAPER
def test_age_limit_drops_old_rotated_files(daemon, tmp_path):
    # breaks: vigil/runtime/logstore.py:Store.prune without its `too_old` test.
    go = tmp_path / "go"
    burst = ('i=0; while [ $i -lt 300 ]; do echo {0}-$i-padding-padding; i=$((i+1)); done')
    daemon({"chatty.toml": '[service]\nlog-max-size = 4096\nlog-keep = 10\n'
                               f'exec = ["sh", "-c", "{burst.format("line")}; while [ ! -e {go} ]; do sleep 0.05; '
                               f'done; {burst.format("again")}; exec sleep 1000"]\n'},
               extra=["--log-max-age", "1h"])
    logs = tmp_path / "run" / "logs"
    wait_for(lambda: len(list(logs.glob("chatty.log.*"))) >= 2, what="rotated files")
    day_ago = time.time() - 86400
    for path in logs.glob("chatty.log.*"):
        os.utime(path, (day_ago, day_ago))
    go.touch()
    wait_for(lambda: "again-299-" in (logs / "chatty.log").read_text(), what="the second burst")
    old = [p.name for p in logs.glob("chatty.log.*") if p.stat().st_mtime < day_ago + 60]
    assert old == [], f"files older than --log-max-age kept: {old}"
    assert list(logs.glob("chatty.log.*")), "the fresh rotated files stay"


def test_an_earlier_boot_moves_under_boots(unit_dir, tmp_path):
    # breaks: vigil/runtime/logstore.py:Store._claim returning early whatever the id
    # (the old boot's lines would stay mixed with the new one's).
    units = unit_dir({"web.toml": '[service]\nexec = ["sh", "-c", "echo hi; exec sleep 1000"]\n'})
    d = Daemon(units, tmp_path)
    logs = tmp_path / "run" / "logs"
    try:
        wait_for(lambda: "hi" in (logs / "web.log").read_text())
    finally:
        d.stop()
    (logs / "boot_id").write_text("0123456789abcdef 2020-01-01T00:00:00.000000Z\n")
    d = Daemon(units, tmp_path)
    try:
        wait_for(lambda: (logs / "web.log").exists())
        archived = logs / "boots" / "20200101T000000Z-0123456789abcdef"
        assert (archived / "web.log").read_text().count(" hi\n") == 1
        assert (archived / "@events.log").exists()
        assert (logs / "boot_id").read_text().split()[0] != "0123456789abcdef"
    finally:
        d.stop()


@SUBREAPER
def test_failure_event_and_status_carry_the_last_lines(daemon):
    # breaks: vigil/runtime/events.py:Events.emit without the `extra["lines"] = ...` context;
    # vigil/commands.py:Commands.status without its `recent` lines.
    d = daemon({"crash.toml": '[service]\nrestart = "never"\nexec = ["sh", "-c", '
                              '"for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo step-$i; done; '
                              'echo dying >&2; exit 4"]\n'})
    wait_for(lambda: d.status("crash")["state"] == "failed")
    failed = [e for e in d.call("events", lines=200) if e["code"] == "unit.failed"]
    assert failed and failed[-1]["lines"] == [f"step-{i}" for i in range(4, 13)] + ["dying"]
    shown = subprocess.run([sys.executable, "-m", "vigilctl", "--socket", d.socket, "status",
                            "crash"], capture_output=True, text=True, cwd=ROOT, timeout=60).stdout
    assert "crash: the last lines" in shown and shown.rstrip().endswith("crash: dying")
    assert "step-3\n" not in shown and "crash: step-4" in shown


def test_an_ended_instance_s_pipe_is_read_to_the_end_before_its_exit_counts(tmp_path):
    """Its exit and its last output can be ready together; the failure event
    quotes the tail, so `drain` (called by the supervisor before it sends
    EXIT) reads what the pipe holds, with no loop turn in between."""
    # breaks: vigil/engine/streams.py:Streams.drain doing nothing (the lines stay in
    # the pipe; the supervisor's _ended calls it before the EXIT event).
    from vigil.runtime.events import Events
    from vigil.runtime.loop import Loop
    from vigil.runtime.output import Console, Tail
    from vigil.engine.states import Instance
    from vigil.engine.streams import Streams
    from vigil.model.unit import Service
    events = Events(None)
    tail = Tail()
    streams = Streams(Loop(events.error), events, Console(os.open(os.devnull, os.O_WRONLY)),
                      tail, str(tmp_path / "logs"))
    read, write = os.pipe()
    os.set_blocking(read, False)
    streams.capture(Instance("loud", "loud", Service(exec=("prog",))), "stdout", read)
    os.write(write, b"".join(b"line-%05d\n" % i for i in range(3000)))  # 30 KB, one pipe
    os.close(write)
    streams.drain("loud")
    assert tail.last("loud", 3) == ["line-02997", "line-02998",
                                     "line-02999"]
    assert streams.fds_of("loud") == [], "at end of file the pipe is closed"


def test_the_store_moves_to_disk_carrying_what_was_logged(tmp_path):
    # breaks: vigil/runtime/logstore.py:Store.relocate without its `_append` (what was
    # logged on tmpfs before /var/log was writable would be lost), or without
    # `_claim(target)` (the previous boot's lines would mix with this one's).
    from vigil.runtime.logstore import Store, record
    run, disk = tmp_path / "run-logs", tmp_path / "var-log-vigil"
    disk.mkdir()
    (disk / "boot_id").write_text("0ldboot 2020-01-01T00:00:00.000000Z\n")
    (disk / "web.log").write_text("from the boot before\n")
    store = Store(str(run))
    store.open()
    web = store.file("web", 1 << 20, 3)
    assert web.write(record(1.0, 1.0, "web", "web", "stdout", 7, "early"))
    store.relocate(str(disk))
    assert web.write(record(2.0, 2.0, "web", "web", "stdout", 7, "later"))
    assert (disk / "boots" / "20200101T000000Z-0ldboot" / "web.log").read_text() == \
        "from the boot before\n"
    assert [x.split(" ", 6)[6] for x in (disk / "web.log").read_text().splitlines()] == \
        ["early", "later"]
    assert not (run / "web.log").exists()
    again = Store(str(run))  # after a daemon-reexec, at the first path again
    again.open()
    assert again.directory == str(disk)


@SUBREAPER
def test_lines_forwarded_to_syslog_over_udp(daemon):
    # breaks: vigil/engine/streams.py:Streams.capture without its `forward` sink.
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(30)
    port = receiver.getsockname()[1]
    try:
        d = daemon({"web.toml": '[service]\nexec = ["sh", "-c", "echo to-syslog; echo bad >&2; '
                                'exec sleep 1000"]\n',
                    "other.toml": '[service]\nexec = ["sh", "-c", "echo not-me; '
                                  'exec sleep 1000"]\n'},
                   extra=["--syslog", f"udp:127.0.0.1:{port}", "--syslog-unit", "w*"])
        got = sorted(receiver.recv(8192).decode() for _ in range(2))
    finally:
        receiver.close()
    pid = d.inst("web")["pid"]
    host = socket.gethostname()
    assert re.fullmatch(rf"<28>1 \S+Z {re.escape(host)} web {pid} stderr - bad", got[0]), got
    assert re.fullmatch(rf"<30>1 \S+Z {re.escape(host)} web {pid} stdout - to-syslog", got[1])
    other = Path(d.socket).parent / "logs" / "other.log"  # other is logged, not forwarded
    wait_for(lambda: other.exists() and "not-me" in other.read_text(), what="other's line")


@SUBREAPER
def test_a_stuck_syslog_receiver_never_blocks_the_daemon(daemon, tmp_path):
    # breaks: vigil/runtime/syslog.py:Forwarder._open making a blocking socket (the
    # daemon would wait on a full TCP buffer and stop answering).
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepted by the kernel, never read
    port = listener.getsockname()[1]
    try:
        d = daemon({"flood.toml": '[service]\ntype = "oneshot"\nlog-max-size = 67108864\n'
                                  'exec = ["python3", "-c", "import sys\\nfor i in range(60000): '
                                  'sys.stdout.write(str(i) + \' \' + \'x\' * 500 + chr(10))"]\n'},
                   extra=["--syslog", f"tcp:127.0.0.1:{port}"])
        wait_for(lambda: d.status("flood")["state"] == "exited", 60, "the flood to end")
        started = time.monotonic()
        assert d.call("ping") == "pong" and time.monotonic() - started < 5
        logged = (tmp_path / "run" / "logs" / "flood.log").read_text().count("\n")
        assert logged == 60000, "every line is in the store, whatever syslog does"
        dropping = [e for e in d.call("events", lines=500) if e["code"] == "log.forwarding"]
        assert dropping and "drops lines" in dropping[0]["message"]
    finally:
        listener.close()
