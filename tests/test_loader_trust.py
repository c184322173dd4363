"""The loader reads only unit files and directories that root or the daemon's
uid owns and nobody else may write, checked on the descriptor it reads; files
it cannot use (FIFO, device, dangling symlink, nesting too deep) are reported."""

from __future__ import annotations

import io
import os
import threading

import pytest

from vigil.model.check import check
from vigil.base.errors import UnitError
from vigil.model.loader import Loader

SVC = '[service]\nexec = "sleep 1000"\n'
OTHER = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown to other uids")


def problems(root) -> str:
    out = io.StringIO()
    check([str(root)], out)
    return out.getvalue()


@needs_root
def test_a_unit_file_owned_by_another_uid_is_refused_and_the_rest_loads(unit_dir):
    root = unit_dir({"evil.toml": SVC, "good.toml": SVC})
    os.chown(root / "evil.toml", OTHER, OTHER)
    result = Loader([root]).load_all()
    assert sorted(result.units) == ["good"] and result.broken == {"evil"}
    assert f"evil.toml: refused: owned by uid {OTHER}, not by root" in problems(root)


@pytest.mark.parametrize("mode,who", [(0o664, "writable by its group"),
                                      (0o646, "writable by others")])
def test_a_unit_file_writable_by_group_or_others_is_refused(unit_dir, mode, who):
    root = unit_dir({"web.toml": SVC})
    os.chmod(root / "web.toml", mode)
    with pytest.raises(UnitError, match=f"web.toml: refused: {who}"):
        Loader([root]).load("web")


@needs_root
def test_a_unit_directory_owned_by_another_uid_is_refused(unit_dir):
    root = unit_dir({"web.toml": SVC})
    os.chown(root, OTHER, OTHER)
    result = Loader([root]).load_all()
    assert result.units == {}
    assert [str(p) for p in result.problems] == [
        f"{root}: refused: owned by uid {OTHER}, not by root"]
    with pytest.raises(UnitError, match="refused: owned by uid"):
        Loader([root]).load("web")


def test_a_world_writable_unit_directory_is_refused(unit_dir):
    root = unit_dir({"web.toml": SVC})
    os.chmod(root, 0o1777)
    assert "refused: writable by others (mode 1777)" in problems(root)


@needs_root
@pytest.mark.parametrize("foreign", ["web.d/user.toml", "web.d"])
def test_a_foreign_drop_in_breaks_its_unit_instead_of_being_skipped(unit_dir, foreign):
    """Loading the unit without its drop-in would run it without, say, its user."""
    root = unit_dir({"web.toml": SVC, "web.d/user.toml": '[service]\nuser = "nobody"\n'})
    os.chown(root / foreign, OTHER, OTHER)
    result = Loader([root]).load_all()
    assert "web" in result.broken and "web" not in result.units
    assert f"{foreign}: refused: owned by uid {OTHER}" in problems(root)


@needs_root
def test_a_symlink_to_a_foreign_file_is_refused(unit_dir, tmp_path):
    target = tmp_path / "elsewhere.toml"
    target.write_text(SVC)
    os.chown(target, OTHER, OTHER)
    root = unit_dir({})
    (root / "web.toml").symlink_to(target)
    with pytest.raises(UnitError, match=f"web.toml: refused: owned by uid {OTHER}"):
        Loader([root]).load("web")


def test_files_of_the_daemons_own_uid_are_trusted(unit_dir, monkeypatch):
    root = unit_dir({"mine.toml": SVC, "roots.toml": SVC})
    if os.geteuid() == 0:
        os.chown(root / "mine.toml", OTHER, OTHER)
        monkeypatch.setattr(os, "geteuid", lambda: OTHER)  # the daemon of user 65534
    assert sorted(Loader([root]).load_all().units) == ["mine", "roots"]


def _load_all_in_thread(loader: Loader):
    box: dict[str, object] = {}
    thread = threading.Thread(target=lambda: box.setdefault("r", loader.load_all()), daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "the loader blocked"
    return box["r"]


@pytest.mark.parametrize("where", ["fifo.toml", "web.d/fifo.toml"])
def test_a_fifo_is_reported_and_never_blocks(unit_dir, where):
    root = unit_dir({"web.toml": SVC})
    (root / "web.d").mkdir()
    os.mkfifo(root / where)
    result = _load_all_in_thread(Loader([root]))
    text = "\n".join(str(p) for p in result.problems)
    assert f"{where}: not a regular file (a FIFO)" in text
    assert ("web" in result.units) == (where == "fifo.toml")


def test_a_dangling_symlink_or_device_is_reported(unit_dir, tmp_path):
    root = unit_dir({"web.toml": SVC})
    (root / "dangling.toml").symlink_to(tmp_path / "missing.toml")
    (root / "zero.toml").symlink_to("/dev/zero")
    found = problems(root)
    assert "dangling.toml: a symlink to nothing" in found
    assert "zero.toml: not a regular file (a character device)" in found


@pytest.mark.parametrize("text", ["a = " + "[" * 5000 + "]" * 5000,
                                  "a = " + "{b=" * 5000 + "1" + "}" * 5000,
                                  "a = " + "[" * 40 + "]" * 40])
def test_deep_nesting_names_the_file_and_is_refused(unit_dir, text):
    root = unit_dir({"deep.toml": f"[unit]\n{text}\n"})
    with pytest.raises(UnitError) as info:
        Loader([root]).load("deep")
    assert [str(p) for p in info.value.problems] == [
        f"{root}/deep.toml: tables or arrays nested more than 16 deep"]


@needs_root
def test_reload_names_a_refused_file_keeps_its_running_config_and_adds_no_foreign_unit(
        daemon, tmp_path):
    d = daemon({"web.toml": SVC})
    from tests.daemon import wait_for
    pid = wait_for(lambda: d.inst("web")["pid"])
    units = tmp_path / "units"
    (units / "web.toml").write_text('[service]\nexec = "sleep 1001"\n')
    os.chown(units / "web.toml", OTHER, OTHER)
    (units / "evil.toml").write_text(SVC)
    os.chown(units / "evil.toml", OTHER, OTHER)
    result = d.call("reload")
    assert {c["unit"]: c["action"] for c in result["changes"]} == {"web": "keep-old"}
    assert sorted(result["problems"]) == [
        f"{units}/evil.toml: refused: owned by uid {OTHER}, not by root",
        f"{units}/web.toml: refused: owned by uid {OTHER}, not by root"]
    assert d.inst("web")["pid"] == pid and "evil" not in d.call("list")
