"""Compiled units (issue 17): PID 1 reads the database `vigil compile`
wrote, with what it already imports, and only when the database is trusted
as a unit file is and fresh; else (and at every reload) the compiler runs
in a child process. Attacks: a database others could write, one owned by
another uid, one older than the units."""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from tests.daemon import ROOT, Daemon, can_unshare, wait_for
from vigil import unitdb
from vigil.model import compiled
from vigil.model.compiled import Incomplete, decode, encode
from vigil.model.loader import Loader

OTHER = 65534
WEB = '[service]\nexec = ["sleep", "600"]\nrestart = "always"\n'
MODES = ["subreaper", "pid1"]


def compile_dir(units) -> str:
    done = subprocess.run([sys.executable, "-m", "vigil.cli", "compile", str(units)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return f"{units}.compiled"


def forge(db_path: str, marker) -> None:
    """Rewrites the compiled `web` to touch `marker`: seen only if the
    daemon read the database rather than the TOML."""
    with open(db_path, "rb") as f:
        db = marshal.load(f)
    result = decode(db["result"])
    web = result.units["web"]
    argv = ("sh", "-c", f"touch {marker}; exec sleep 600")
    result.units["web"] = replace(web, service=replace(web.service, exec=argv))
    db["result"] = encode(result)
    os.unlink(db_path)
    compiled.write_db(db_path, db)


def start(mode, units, tmp_path) -> Daemon:
    if mode == "pid1" and not can_unshare():
        pytest.skip("needs root and unshare for a PID namespace")
    return Daemon(units, tmp_path, pid1=(mode == "pid1"), extra=["--cgroup", "off"])


@pytest.mark.parametrize("mode", MODES)
def test_the_daemon_runs_what_the_database_says(unit_dir, tmp_path, mode):
    units = unit_dir({"web.toml": WEB})
    forge(compile_dir(units), tmp_path / "from-db")
    d = start(mode, units, tmp_path)
    try:
        wait_for(lambda: (tmp_path / "from-db").exists(), what="the compiled exec")
    finally:
        d.stop()


@pytest.mark.parametrize("attack", ["others-write", "other-owner", "stale", "dir-writable"])
@pytest.mark.parametrize("mode", MODES)
def test_an_untrusted_or_stale_database_is_not_read(unit_dir, tmp_path, mode, attack):
    units = unit_dir({"web.toml": WEB})
    db = compile_dir(units)
    forge(db, tmp_path / "from-db")
    if attack == "others-write":
        os.chmod(db, 0o666)
    elif attack == "other-owner":
        os.chown(db, OTHER, OTHER)
    elif attack == "dir-writable":
        os.chmod(os.path.dirname(db), 0o777)
    else:  # the unit changed after it was compiled
        time.sleep(0.01)
        (units / "web.toml").write_text(WEB.replace("600", "601"))
    d = start(mode, units, tmp_path)
    try:
        wait_for(lambda: d.inst("web")["state"] == "running", what="web from its TOML")
        assert not (tmp_path / "from-db").exists()
        if attack != "stale":  # said why, naming the file
            assert "refused" in d.output() and "units.compiled" in d.output()
    finally:
        d.stop()
        os.chmod(os.path.dirname(db), 0o755)


@pytest.mark.parametrize("mode", MODES)
def test_reload_compiles_afresh_and_names_file_and_key(unit_dir, tmp_path, mode):
    units = unit_dir({"web.toml": WEB})
    compile_dir(units)
    d = start(mode, units, tmp_path)
    try:
        wait_for(lambda: d.inst("web")["state"] == "running", what="web")
        (units / "db.toml").write_text('[service]\nexec = ["sleep", "600"]\nbogus = 1\n')
        (units / "worker.toml").write_text(WEB)
        answer = d.call("reload")
        assert any("db.toml:3" in p and "service.bogus" in p for p in answer["problems"]), answer
        wait_for(lambda: d.status("worker"), what="the new unit")
    finally:
        d.stop()


def test_every_record_field_survives_the_database():
    """Generic over the records: units, enums, nested records, raw and where."""
    before = Loader([str(ROOT / "units" / "system"), str(ROOT / "units" / "demo")]).load_all()
    after = decode(marshal.loads(marshal.dumps(encode(before))))
    assert after.units == before.units and after.broken == before.broken
    for name, unit in before.units.items():
        assert (after.units[name].raw, after.units[name].where, after.units[name].path) == \
            (unit.raw, unit.where, unit.path)
    assert after.problems == before.problems


def test_a_compiler_that_overruns_is_killed_and_nothing_is_applied(unit_dir, monkeypatch):
    units = unit_dir({"web.toml": WEB})
    monkeypatch.setattr(unitdb, "compile_units", lambda **_job: time.sleep(60))
    source = unitdb.Units([str(units)], timeout=0.5)
    source.listed = [str(units)]  # a reload
    began = time.monotonic()
    with pytest.raises(Incomplete, match=r"did not finish in 0\.5 s"):
        source.load_all()
    assert time.monotonic() - began < 10


def test_a_database_compiled_elsewhere_is_fresh_where_it_is_read(unit_dir, tmp_path):
    """`vigil compile DIR --as /etc/...` (the image): the database names the
    daemon's path, and a copy of the units with the same bytes, modes and
    owners is fresh there."""
    import shutil
    units = unit_dir({"web.toml": WEB, "web.d/more.toml": '[unit]\ndescription = "x"\n'})
    there = tmp_path / "there"
    done = subprocess.run([sys.executable, "-m", "vigil.cli", "compile", str(units), "--as",
                           str(there), "-o", str(tmp_path / "there.compiled")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.copytree(units, there)
    db, why = compiled.read_db(str(tmp_path / "there.compiled"), [str(there)])
    assert db is not None, why
    web = decode(db["result"]).units["web"]
    assert web.path == str(there / "web.toml")
    assert web.where["unit.description"][0] == str(there / "web.d" / "more.toml")


def test_a_record_the_database_cannot_name_is_refused_not_flattened():
    """A record class outside vigil.model.unit/vigil.base.errors would decode as text:
    the compiler says so instead (the daemon reports it as a problem)."""
    from vigil.base.records import dataclass

    @dataclass(frozen=True)
    class Elsewhere:
        x: int = 0
    with pytest.raises(ValueError, match=r"not in vigil\.model\.compiled\.CLASSES"):
        encode({"a": (Elsewhere(),)})


def test_the_units_load_while_the_daemon_imports(unit_dir, tmp_path):
    """Outside system mode the compiler is forked before the daemon's own
    modules are imported (it parses while they load: start50 went from ~165
    to ~135 ms here), and the daemon then takes its answer."""
    units = unit_dir({"web.toml": WEB})
    probe = (
        "import sys\n"
        "from vigil.serve import early_units\n"
        "from vigil.wire.flags import parse_args\n"
        f"opts = parse_args(['--units', {str(units)!r}, '--socket', {str(tmp_path / 's')!r}])\n"
        "loader = early_units(opts)\n"
        "source, why, started = loader.begun\n"
        "assert 'vigil.daemon' not in sys.modules, 'the daemon was imported first'\n"
        "assert source == 'compiler' and isinstance(started, tuple), loader.begun\n"
        "result = loader.load_all()\n"
        "assert sorted(result.units) == ['web'] and loader.begun is None, result\n"
        "assert loader.source == 'compiler'\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_system_mode_does_not_begin_before_early_boot():
    """The units of PID 1 are on the root early boot mounts (or switches to)."""
    from vigil.serve import early_units
    from vigil.wire.flags import parse_args
    assert early_units(parse_args(["--system"])) is None


def test_a_daemon_that_will_not_start_leaves_no_compiler(unit_dir):
    units = unit_dir({"web.toml": WEB})
    source = unitdb.Units([str(units)])
    source.begin()
    assert source.begun is not None
    _, _, started = source.begun
    assert isinstance(started, tuple)
    pid = started[0]
    source.cancel()
    assert source.begun is None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left behind
