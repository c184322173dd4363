"""A reload that cannot read the whole unit set applies nothing (issue 14.4):
`mv units units.gone; vigilctl reload` used to remove every unit."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.daemon import wait_for
from vigil.model.loader import Incomplete, Loader
from vigilctl.client import RequestFailed

SLEEPER = '[service]\nexec = "sleep 1000"\n'


def _gone(units):
    units.rename(units.with_name("units.gone"))


def _a_file(units):
    shutil.rmtree(units)
    units.write_text("not a directory\n")


def _foreign(units):
    os.chown(units, 65534, 65534)


def _world_writable(units):
    os.chmod(units, 0o777)


BREAKS = [_gone, _a_file, _world_writable] + ([_foreign] if os.geteuid() == 0 else [])


@pytest.mark.parametrize("damage", BREAKS, ids=lambda f: f.__name__.strip("_"))
def test_a_reload_that_cannot_read_a_directory_applies_nothing(daemon, tmp_path, damage):
    d = daemon({"a.toml": SLEEPER, "b.toml": SLEEPER})
    pids = {u: wait_for(lambda u=u: d.inst(u)["pid"]) for u in ("a", "b")}
    wait_for(lambda: [d.status(u)["state"] for u in ("a", "b")] == ["running", "running"])
    units = tmp_path / "units"
    damage(units)
    for dry_run in (True, False):
        with pytest.raises(RequestFailed) as info:
            d.call("reload", dry_run=dry_run)
        message = str(info.value)
        assert str(units) in message and "nothing was applied" in message, message
    assert sorted(d.call("list")) == ["a", "b"]
    assert {u: d.inst(u)["pid"] for u in ("a", "b")} == pids
    assert [d.status(u)["state"] for u in ("a", "b")] == ["running", "running"]


def test_a_missing_directory_never_read_is_not_an_error(unit_dir, tmp_path):
    loader = Loader([unit_dir({"a.toml": SLEEPER}), tmp_path / "absent"])
    assert sorted(loader.load_all().units) == ["a"]
    assert sorted(loader.load_all().units) == ["a"]


def test_a_directory_gone_after_a_load_makes_the_next_load_incomplete(unit_dir):
    units = unit_dir({"a.toml": SLEEPER})
    loader = Loader([units])
    assert sorted(loader.load_all().units) == ["a"]
    _gone(units)
    with pytest.raises(Incomplete, match=f"{units}: the directory is gone"):
        loader.load_all()


def test_at_the_first_load_an_unreadable_directory_is_a_problem(unit_dir, tmp_path):
    other = unit_dir({"b.toml": SLEEPER}, "other")
    os.chmod(other, 0o777)
    result = Loader([unit_dir({"a.toml": SLEEPER}), other]).load_all()
    assert sorted(result.units) == ["a"]
    assert [str(p) for p in result.problems] == [
        f"{other}: refused: writable by others (mode 0777)"]


def test_check_of_a_directory_that_is_not_there_is_a_problem(unit_dir, tmp_path):
    import io

    from vigil.model.check import check
    out = io.StringIO()
    assert check([str(unit_dir({"a.toml": SLEEPER})), str(tmp_path / "typo")], out) == 1
    assert f"{tmp_path}/typo: no such directory" in out.getvalue()
