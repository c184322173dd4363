"""The service watchdog and what a service may say over sd_notify
(vigil/engine/notices.py): WATCHDOG=1, MAINPID=, RELOADING=1, STOPPING=1,
EXTEND_TIMEOUT_USEC= and STATUS=, against a real daemon as a subreaper and
as PID 1; and the hardware watchdog's calls (vigil/system/hwwatchdog.py) on a fake
device."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.daemon import wait_for

# A service that follows a script of steps given as arguments:
#   send:FIELDS (\n as "|"), sleep:S, wait:FILE, ping-until:FILE (WATCHDOG=1
#   every 0.1 s until FILE exists), env:FILE (writes its WATCHDOG_USEC and WATCHDOG_PID),
#   hand-over (forks a child in its group, names it MAINPID=, exits 0), forever
NOTIFIER = r'''
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def send(text): s.sendto(text.replace("|", "\n").encode(), os.environ["NOTIFY_SOCKET"])
for step in sys.argv[1:]:
    what, _, arg = step.partition(":")
    if what == "send": send(arg)
    elif what == "sleep": time.sleep(float(arg))
    elif what == "wait":
        while not os.path.exists(arg): time.sleep(0.05)
    elif what == "ping-until":
        while not os.path.exists(arg): send("WATCHDOG=1"); time.sleep(0.1)
    elif what == "env": open(arg, "w").write(os.environ.get("WATCHDOG_USEC", "-") + " " +
                                             os.environ.get("WATCHDOG_PID", "-"))
    elif what == "hand-over":
        child = os.fork()
        if child == 0:
            time.sleep(1000); os._exit(0)
        send(f"MAINPID={child}"); time.sleep(0.5); os._exit(0)
    elif what == "forever":
        while True: time.sleep(1000)
'''


def unit(tmp: Path, *steps: str, extra: str = "") -> str:
    script = tmp / "notifier.py"
    script.write_text(NOTIFIER)
    return (f'[service]\ntype = "notify"\nexec = {json.dumps([sys.executable, str(script), *steps])}'
            f'\nrestart-delay = 0\n{extra}')


def events(d, unit: str, code: str) -> list[str]:
    return [e["message"] for e in d.call("events", units=[unit], lines=2000)
            if e["code"] == code]


def test_a_service_that_stops_pinging_is_killed_with_sigabrt(daemon, tmp_path: Path):
    hang, env = tmp_path / "hang", tmp_path / "env"
    d = daemon({
        "svc.toml": unit(tmp_path, f"env:{env}", "send:READY=1|STATUS=serving",
                         f"ping-until:{hang}", "forever", extra='watchdog = "1s"\n'),
        "once.toml": unit(tmp_path, "send:READY=1", "forever",
                          extra='watchdog = "0.5s"\nrestart = "never"\n')})
    pid = wait_for(lambda: d.inst("svc")["state"] == "running" and d.inst("svc")["pid"])
    # breaks: vigil/_sys_build.py:own_pid (WATCHDOG_PID left as ten spaces)
    assert env.read_text() == f"1000000 {pid}"
    assert d.inst("svc")["status"] == "serving"
    wait_for(lambda: d.inst("once")["state"] == "failed", what="once failed")
    assert d.inst("once")["reason"] == "watchdog: no WATCHDOG=1 within 0.5s"
    assert d.inst("once")["last_exit"] == "killed by SIGABRT (core dumped)" or \
        d.inst("once")["last_exit"] == "killed by SIGABRT"
    # pinging keeps it alive well past its watchdog period
    wait_for(lambda: len(d.call("events", units=["svc"], lines=2000)) and
             d.inst("svc")["uptime"] > 2.5, what="two and a half periods")
    assert d.inst("svc")["pid"] == pid and d.inst("svc")["restarts"] == 0
    hang.touch()
    wait_for(lambda: d.inst("svc")["restarts"] == 1, what="the watchdog restart")
    assert any("svc: watchdog: no WATCHDOG=1 within 1s; sending SIGABRT" in m
               for m in events(d, "svc", "unit.watchdog"))


def test_extend_timeout_usec_moves_the_start_deadline(daemon, tmp_path: Path):
    d = daemon({
        "slow.toml": unit(tmp_path, "send:EXTEND_TIMEOUT_USEC=4000000", "sleep:1.5",
                          "send:READY=1", "forever",
                          extra='start-retries = 0\n[service.ready]\nnotify = true\n'
                                'timeout = 0.7\n'),
        "plain.toml": unit(tmp_path, "sleep:1.5", "send:READY=1", "forever",
                           extra='start-retries = 0\n[service.ready]\nnotify = true\n'
                                 'timeout = 0.7\n')})
    wait_for(lambda: d.inst("plain")["state"] == "fatal", what="plain timed out")
    assert "not ready within 0.7s" in d.inst("plain")["reason"]
    wait_for(lambda: d.inst("slow")["state"] == "running", what="slow up in its extended time")
    assert d.inst("slow")["restarts"] == 0


def test_stopping_and_reloading_and_mainpid(daemon, tmp_path: Path):
    go, reload, hand = tmp_path / "go", tmp_path / "reload", tmp_path / "hand"
    d = daemon({
        "quits.toml": unit(tmp_path, "send:READY=1", f"wait:{go}", "send:STOPPING=1",
                           "sleep:0.6", extra='restart = "on-failure"\n'),
        "reloads.toml": unit(tmp_path, "send:READY=1", f"wait:{reload}",
                             "send:RELOADING=1", "sleep:0.2", "send:READY=1", "forever"),
        "hands.toml": unit(tmp_path, "send:READY=1", f"wait:{hand}", "hand-over"),
        "liar.toml": unit(tmp_path, "send:READY=1|MAINPID=1", "forever")})
    wait_for(lambda: d.inst("quits")["state"] == "running", what="quits up")
    go.touch()
    wait_for(lambda: d.inst("quits")["state"] == "stopping", what="STOPPING=1 seen")
    wait_for(lambda: d.inst("quits")["state"] == "exited", what="its clean exit")
    assert d.inst("quits")["restarts"] == 0
    wait_for(lambda: d.inst("reloads")["state"] == "running", what="reloads up")
    reload.touch()
    wait_for(lambda: any("reloads reloaded (READY=1)" in m
                         for m in events(d, "reloads", "unit.lifecycle")), what="reloaded")
    first = wait_for(lambda: d.inst("hands")["state"] == "running" and d.inst("hands")["pid"])
    hand.touch()
    wait_for(lambda: d.inst("hands")["pid"] != first, what="the new main pid")
    assert any(f"main process {first} -> " in m for m in events(d, "hands", "unit.main-pid"))
    wait_for(lambda: any(f"former main process {first} exit 0" in e["message"]
                         for e in d.call("events", units=["hands"], lines=2000)),
             what="the old main's exit")
    assert d.inst("hands")["state"] == "running" and d.inst("hands")["restarts"] == 0
    wait_for(lambda: events(d, "liar", "unit.notify-refused"), what="MAINPID=1 refused")
    assert d.inst("liar")["state"] == "running"


# -- the hardware watchdog's calls, on a FIFO standing in for /dev/watchdog -----
def test_hardware_watchdog_pings_and_closes_by_what_the_end_is(tmp_path: Path):
    import os

    from vigil.system import hwwatchdog
    from vigil.runtime.loop import Loop
    assert hwwatchdog.requested("console=ttyS0 vigil.watchdog=10 quiet") == 10
    assert hwwatchdog.requested("quiet") is None
    assert hwwatchdog.requested("vigil.watchdog=0") == hwwatchdog.requested(
        "vigil.watchdog=x") == -1
    said: list[tuple[str, str]] = []

    def log(level: str, text: str) -> None:
        said.append((level, text))
    loop = Loop(lambda where, err: None)
    assert hwwatchdog.from_cmdline("vigil.watchdog=abc", loop, log) is None
    assert hwwatchdog.from_cmdline("quiet", loop, log) is None
    ends = {}
    for end in ("poweroff", "reboot"):
        fifo = tmp_path / end
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        dog = hwwatchdog.from_cmdline("vigil.watchdog=6", loop, log, device=str(fifo))
        assert dog is not None and dog.seconds == 6
        assert dog.timer is not None and abs(dog.timer.when - loop.clock() - 2.0) < 0.5
        dog.ping()  # what the loop's timer does
        dog.at_end(end, 40.0)
        ends[end] = os.read(reader, 100)
        os.close(reader)
    assert ends["poweroff"] == b"\0\0V"  # the magic close
    assert ends["reboot"] == b"\0\0\0"   # armed: a last ping, no "V"
    assert ("info", "watchdog: disarmed (magic close)") in said
    assert any("cannot set the timeout to 70 s" in text for _, text in said)
