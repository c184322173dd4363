"""`vigilctl convert` of systemd .timer files and crontab lines: the units
it writes load (vigil check), and their calendars mean what the source
meant."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from tests.daemon import ROOT
from vigil.model.calendar import next_elapse, parse


def convert(src: Path, out_dir: Path) -> subprocess.CompletedProcess[str]:
    out_dir.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "vigilctl", "convert", str(src), "-o",
                           str(out_dir)], capture_output=True, text=True, cwd=ROOT, timeout=60)


def check(directory: Path) -> str:
    return subprocess.run([sys.executable, "-m", "vigil.cli", "check", str(directory)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60).stdout


def test_a_timer_and_its_service_become_one_unit(tmp_path: Path) -> None:
    (tmp_path / "backup.service").write_text(
        "[Unit]\nDescription=the backup\n[Service]\nType=oneshot\nExecStart=/usr/bin/backup -a\n")
    (tmp_path / "backup.timer").write_text(
        "[Unit]\nDescription=nightly\n[Timer]\nOnCalendar=Mon..Fri 02:00\nOnCalendar=weekly\n"
        "OnBootSec=5min\nOnUnitActiveSec=1h 30min\nRandomizedDelaySec=30\nPersistent=true\n"
        "AccuracySec=1h\nWakeSystem=true\n[Install]\nWantedBy=timers.target\n")
    out = convert(tmp_path / "backup.timer", tmp_path / "out")
    assert out.returncode == 0, out.stderr
    unit = tomllib.loads((tmp_path / "out" / "backup.toml").read_text())
    assert unit == {
        "unit": {"description": "the backup"},
        "service": {"type": "oneshot", "exec": ["/usr/bin/backup", "-a"]},
        "timer": {"calendar": ["Mon..Fri 02:00", "weekly"], "after-boot": 300.0,
                  "every": 5400.0, "randomize": 30.0, "persistent": True}}
    assert "AccuracySec=1h: vigil's timers are exact" in out.stderr
    assert "WakeSystem=true has no vigil equivalent" in out.stderr
    assert "1 unit(s) ok" in check(tmp_path / "out")


def test_a_timer_names_its_unit_and_notes_a_missing_service(tmp_path: Path) -> None:
    (tmp_path / "t.timer").write_text("[Timer]\nUnit=job.service\nOnCalendar=*-*-32\n"
                                      "OnCalendar=hourly\n")
    out = convert(tmp_path / "t.timer", tmp_path / "out")
    unit = tomllib.loads((tmp_path / "out" / "job.toml").read_text())
    assert unit["timer"] == {"calendar": ["hourly"]}
    assert "OnCalendar=*-*-32: '32' is not a day (1-31); dropped" in out.stderr
    assert "job.service is not beside the timer" in out.stderr


def test_crontab_lines_become_timer_units(tmp_path: Path) -> None:
    src = tmp_path / "jobs.crontab"
    src.write_text("# m h dom mon dow\nPATH=/usr/bin:/bin\nMAILTO=root\n"
                   "*/15 * * * * /usr/bin/poll --fast\n"
                   "30 9 * jan-mar 1-5 report.sh\n"
                   "@reboot /bin/hello\n@daily /bin/rotate\n"
                   "61 * * * * never\n* * *\n")
    out = convert(src, tmp_path / "out")
    assert out.returncode == 0, out.stderr
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["cron-4-poll.toml", "cron-5-report.sh.toml", "cron-6-hello.toml",
                       "cron-7-rotate.toml"]
    poll = tomllib.loads((tmp_path / "out" / "cron-4-poll.toml").read_text())
    assert poll["service"] == {"type": "oneshot", "exec": ["sh", "-c", "/usr/bin/poll --fast"],
                               "env": {"PATH": "/usr/bin:/bin"}}
    assert poll["timer"] == {"calendar": ["*-*-* *:*/15:00"]}
    report = tomllib.loads((tmp_path / "out" / "cron-5-report.sh.toml").read_text())
    assert report["timer"] == {"calendar": ["Mon,Tue,Wed,Thu,Fri *-01..03-* 09:30:00"]}
    hello = tomllib.loads((tmp_path / "out" / "cron-6-hello.toml").read_text())
    assert "timer" not in hello, "@reboot: an ordinary unit, started at boot"
    assert "line 3: MAILTO has no vigil equivalent" in out.stderr
    assert "line 8: '61' is not a number from 0 to 59; not converted" in out.stderr
    assert "line 9: not MINUTE HOUR DAY MONTH WEEKDAY COMMAND" in out.stderr
    assert "4 unit(s) ok" in check(tmp_path / "out")


def test_cron_day_of_month_or_weekday_is_either(tmp_path: Path) -> None:
    """cron runs `0 0 13 * 5` on every 13th and every Friday, not only on
    Friday the 13th: two calendars."""
    src = tmp_path / "cron.d" / "jobs"
    src.parent.mkdir()
    src.write_text("0 0 13 * fri backup /usr/bin/thirteen\n")
    out = convert(src, tmp_path / "out")
    assert out.returncode == 0, out.stderr
    unit = tomllib.loads((tmp_path / "out" / "cron-1-thirteen.toml").read_text())
    assert unit["service"]["user"] == "backup"
    calendars = [parse(c + " UTC") for c in unit["timer"]["calendar"]]
    moment, seen = datetime(2026, 1, 1, tzinfo=UTC), []
    for _ in range(4):
        moment = min(m for c in calendars if (m := next_elapse(c, moment)) is not None)
        seen.append(moment.date().isoformat())
    assert seen == ["2026-01-02", "2026-01-09", "2026-01-13", "2026-01-16"]


def test_a_crontab_command_cannot_name_a_file_outside_o(tmp_path: Path) -> None:
    src = tmp_path / "evil.crontab"
    src.write_text("* * * * * ../../../etc/x;touch /tmp/owned\n"
                   "* * * * * .hidden\n")
    out = convert(src, tmp_path / "out")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "cron-1-xtouch.toml", "cron-2-.hidden.toml"]
    assert not (tmp_path / "etc").exists()
