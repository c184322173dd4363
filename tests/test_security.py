"""Paths the daemon creates are never followed through a symlink."""

from __future__ import annotations

import subprocess
import sys

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
