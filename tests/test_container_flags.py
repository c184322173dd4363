"""`vigil run`'s documented flags and statuses (docs/container.md) that
test_container.py does not hold: 126 for a CMD that cannot be executed,
128+N when signalled while side services start, `-g`, `--all`, `-w`, `-v`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.daemon import ROOT, wait_for

PY = sys.executable


def vigil_run(args: list[str], tmp: Path) -> subprocess.Popen[str]:
    cmd = [PY, "-m", "vigil.cli", "run", "--socket", str(tmp / "run" / "c.sock"), *args]
    return subprocess.Popen(cmd, cwd=ROOT, text=True, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_cmd_that_cannot_be_executed_is_126(tmp_path):
    # breaks: vigil/container.py:Container (exec report): EACCES mapped to 127.
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    code, _, err = finish(vigil_run(["--", str(script)], tmp_path))
    assert code == 126, err
    assert f"cannot run {script}: executing failed: Permission denied" in err


def test_signalled_while_side_services_start_is_128_plus_n(tmp_path, unit_dir):
    # The side service never gets ready; TERM then ends the container as TERM
    # would have ended CMD: 143, and CMD never runs.
    # breaks: vigil/container.py:Container.forward: `self.status = 128 + sig` -> `0`.
    ran = tmp_path / "ran"
    units = unit_dir({"slow.toml": '[service]\nexec = "sleep 1000"\n'
                                   '[service.ready]\nexec = "false"\ntimeout = 60\n'})
    proc = vigil_run(["--units", str(units), "--", "touch", str(ran)], tmp_path)
    wait_for(lambda: list(Path(f"/proc/{proc.pid}/task/{proc.pid}").glob("children"))
             and Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split(),
             what="the side service started")
    os.kill(proc.pid, signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == 128 + signal.SIGTERM, err
    assert not ran.exists()


FAMILY = ("echo $$ > {cmd}; trap 'echo got >> {got}' TERM; sleep 1000 & echo $! > {child}; "
          "setsid sleep 1000 & echo $! > {loner}; while :; do sleep 0.05; done")


def _family(tmp: Path, flags: list[str]) -> tuple[subprocess.Popen[str], list[int], Path]:
    """CMD (a shell with a TERM trap), a child in its group, one in a session of its own."""
    got, files = tmp / "got", [tmp / "cmd", tmp / "child", tmp / "loner"]
    proc = vigil_run([*flags, "--kill-timeout", "1", "--", "sh", "-c",
                      FAMILY.format(got=got, cmd=files[0], child=files[1], loner=files[2])], tmp)
    wait_for(lambda: all(f.exists() and f.read_text().strip() for f in files),
             what="the family")
    return proc, [int(f.read_text()) for f in files], got


def test_g_sends_to_the_group_and_all_to_every_descendant(tmp_path):
    # breaks: vigil/container.py:Container.forward: `or self.opts.all_descendants`
    # dropped; `if self.opts.group:` -> `if False:` (each: CMD alone).
    for flags, child_dies, loner_dies in (([], False, False), (["-g"], True, False),
                                          (["--all"], True, True)):
        tmp = tmp_path / (flags[0].strip("-") if flags else "plain")
        tmp.mkdir()
        proc, family, got = _family(tmp, flags)
        child, loner = family[1], family[2]
        try:
            os.kill(proc.pid, signal.SIGTERM)
            wait_for(lambda g=got: g.exists(), what=f"CMD's trap ({flags})")
            if child_dies:
                wait_for(lambda c=child: not alive(c), what=f"the child gone ({flags})")
            if loner_dies:
                wait_for(lambda lo=loner: not alive(lo), what=f"the loner gone ({flags})")
            assert alive(child) is not child_dies, flags
            assert alive(loner) is not loner_dies, flags
        finally:
            for pid in (proc.pid, *family):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.communicate(timeout=30)


def test_w_warns_on_each_reaped_zombie_and_v_shows_events(tmp_path, unit_dir):
    # breaks: vigil/container.py:Container.__init__: -w not raising the orphan
    # severity (no warning); the console level fixed at "warning" whatever -v says.
    orphans = "for i in 1 2 3; do (sleep 0.05 &); done; sleep 0.5"
    def output(args: list[str]) -> str:
        _, out, err = finish(vigil_run(args, tmp_path))
        return out + err
    units = unit_dir({"side.toml": '[service]\nexec = "sleep 1000"\n'})
    assert "reaped" not in output(["--", "sh", "-c", orphans])
    # Without side services the tini path speaks tini's words; with them, the engine's.
    warned = output(["-w", "--", "sh", "-c", orphans])
    assert warned.count("reaped zombie process with pid=") == 3, warned
    assert "reaped orphan" not in output(["--units", str(units), "--", "sh", "-c", orphans])
    warned = output(["-w", "--units", str(units), "--", "sh", "-c", orphans])
    assert warned.count("[ WARN ] reaped orphan") == 3, warned
    plain = output(["--units", str(units), "--", "true"])
    verbose = output(["-v", "--units", str(units), "--", "true"])
    assert "Started side" not in plain
    assert "Started side" in verbose
