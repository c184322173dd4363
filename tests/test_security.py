"""Paths the daemon creates are never followed through a symlink."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.daemon import ROOT, Daemon, wait_for


def start(tmp_path, socket_path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vigil.cli", "--units", str(tmp_path),
                           "--socket", str(socket_path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def test_a_symlinked_socket_directory_is_refused(tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir()
    (tmp_path / "run").symlink_to(real)
    out = start(tmp_path, tmp_path / "run" / "control.sock")
    assert out.returncode == 1
    assert "is not a directory (a symlink is refused)" in out.stderr
    assert list(real.iterdir()) == []


@pytest.mark.parametrize("mode", [0o1777, 0o755, 0o770])
def test_a_socket_in_a_directory_open_to_others_changes_nothing(tmp_path, mode):
    """`--socket /tmp/x.sock` made the daemon chmod /tmp to 0700 (every user of
    the machine lost /tmp); a directory vigil did not make is never changed."""
    import os
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, mode)
    out = start(tmp_path, shared / "control.sock")
    assert out.returncode == 1, out.stderr
    assert f"{shared} is open to others (mode {mode:04o})" in out.stderr
    assert os.stat(shared).st_mode & 0o7777 == mode
    assert list(shared.iterdir()) == []


def test_a_socket_directory_of_its_own_is_made_private(tmp_path):
    import os
    d = Daemon(tmp_path, tmp_path)
    try:
        assert os.stat(tmp_path / "run").st_mode & 0o777 == 0o700
    finally:
        d.stop()


def test_a_symlink_in_place_of_the_socket_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    target = tmp_path / "victim"
    target.write_text("keep me")
    (run / "control.sock").symlink_to(target)
    out = start(tmp_path, run / "control.sock")
    assert out.returncode == 1 and "is a symlink; refusing to use it" in out.stderr
    assert target.read_text() == "keep me"


def test_a_symlinked_log_file_is_not_written_through(unit_dir, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    (logs / "talker.log").symlink_to(victim)
    units = unit_dir({"talker.toml": '[service]\nexec = ["sh", "-c", "echo secret; '
                                     'exec sleep 1000"]\n'})
    d = Daemon(units, tmp_path, extra=["--log-dir", str(logs)])
    try:
        wait_for(lambda: d.inst("talker")["log_dropped"] >= 1, what="the line to be refused")
        assert victim.read_text() == "keep me\n"
        assert "log of talker: Too many levels of symbolic links" in d.output()
        assert [x["text"] for x in d.call("logs", units=["talker"])] == ["secret"]
    finally:
        d.stop()
