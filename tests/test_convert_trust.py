"""`vigilctl convert` on input it should not trust: names that are paths,
values and file names that try to end a comment and add TOML, malformed
files. Attacks first, then hypothesis on arbitrary input: never a traceback,
the output is exactly the document convert meant, and files appear only
inside -o."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.daemon import ROOT
from vigilctl import convert as conv


def run(src: Path, out: Path | None) -> subprocess.CompletedProcess[str]:
    args = [str(src), "-o", str(out)] if out else [str(src)]
    return subprocess.run([sys.executable, "-m", "vigilctl", "convert", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def files_under(top: Path) -> set[Path]:
    return {Path(d) / f for d, _, names in os.walk(top) for f in names}


def test_program_names_that_are_paths_are_refused(tmp_path):
    """[program:/abs/path] and [program:../x] wrote wherever they pointed."""
    (tmp_path / "elsewhere").mkdir()
    src = tmp_path / "supervisord.conf"
    src.write_text(f"[program:{tmp_path}/elsewhere/abs]\ncommand=true\n\n"
                   "[program:../escaped]\ncommand=true\n\n"
                   "[program:.hidden]\ncommand=true\n\n"
                   "[program:ok]\ncommand=true\n\n"
                   "[group:g]\nprograms=ok,../escaped\n")
    out = tmp_path / "out"
    out.mkdir()
    before = files_under(tmp_path)
    done = run(src, out)
    assert done.returncode == 1, done.stderr
    assert files_under(tmp_path) - before == {out / "ok.toml", out / "g.toml"}
    assert (f"[program:{tmp_path}/elsewhere/abs]: '{tmp_path}/elsewhere/abs' is not a valid "
            "unit name") in done.stderr
    assert "[program:../escaped]: '../escaped' is not a valid unit name" in done.stderr
    assert "[program:.hidden]: '.hidden' is not a valid unit name" in done.stderr
    assert tomllib.loads((out / "g.toml").read_text())["unit"]["wants"] == ["ok"]
    assert "Traceback" not in done.stderr


INJECTED = '[service.env]\nLD_PRELOAD = "/tmp/evil.so"\n[service.health]\nexec = "touch /tmp/pwned"'


def test_a_value_cannot_end_its_note_and_add_toml(tmp_path):
    """A multi-line value of an unknown key, copied into a `# NOTE:`, added
    [service.env] and a health exec that pass `vigil check`."""
    src = tmp_path / "supervisord.conf"
    src.write_text("[program:web]\ncommand=sleep 1\nunknown=x\n"
                   + "".join(f"  {line}\n" for line in INJECTED.splitlines()))
    out = tmp_path / "out"
    out.mkdir()
    done = run(src, out)
    assert done.returncode == 0, done.stderr
    text = (out / "web.toml").read_text()
    assert tomllib.loads(text) == {"service": {"exec": ["sleep", "1"]}}
    assert "# NOTE: unknown=x\\x0a[service.env]\\x0aLD_PRELOAD" in text
    assert "\x1b" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_a_file_name_cannot_end_the_header_and_add_toml(tmp_path):
    folder = tmp_path / "d\n{}\n#".format(INJECTED.replace("/", ""))
    folder.mkdir()
    src = folder / "web.service"
    src.write_text("[Service]\nExecStart=/bin/sleep 1\n")
    done = run(src, None)
    assert done.returncode == 0, done.stderr
    assert tomllib.loads(done.stdout) == {"service": {"exec": ["/bin/sleep", "1"]}}
    assert done.stdout.count("\n[") == 1  # the one table tomli-w wrote


def one_line_error(src: Path) -> str:
    done = run(src, None)
    assert done.returncode == 2 and done.stdout == "", done
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


def test_malformed_input_is_a_one_line_error(tmp_path):
    conf = tmp_path / "supervisord.conf"
    conf.write_text("command=true\n[program:web]\n")
    assert "line 1: 'command=true' comes before the first [section]" in one_line_error(conf)
    conf.write_text("[program:web]\ncommand=true\ngarbage\n")
    assert "line 3: 'garbage" in one_line_error(conf)
    unit = tmp_path / "web.service"
    unit.write_text("ExecStart=/bin/true\n[Service]\n")
    assert "line 1: 'ExecStart=/bin/true' comes before the first [section]" in one_line_error(
        unit)
    unit.write_bytes(b"[Service]\nExecStart=/bin/\xff\n")
    assert f"{unit}: 'utf-8' codec can't decode" in one_line_error(unit)
    named = tmp_path / "x\x1b]52;c;cm0gLXJmIH4K\x07.service"  # sets the clipboard
    named.write_text("[Service]\nExecStart=/bin/true\n")
    done = run(named, None)
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done
    assert "x\\x1b]52;c;cm0gLXJmIH4K\\x07' is not a valid unit name" in done.stderr


def test_a_bad_value_is_noted_not_a_traceback(tmp_path):
    unit = tmp_path / "web.service"
    unit.write_text("[Service]\nExecStart=/bin/true\nKillSignal=FOO\nRestartSec=1e999\n"
                    "ExecStartPost='unbalanced\n")
    conf = tmp_path / "supervisord.conf"
    conf.write_text("[program:web]\ncommand='unbalanced\nstopsignal=NOPE\nstartsecs=nan\n"
                    "numprocs=many\n")
    for src in (unit, conf):
        out = tmp_path / f"out-{src.suffix[1:]}"
        out.mkdir()
        done = run(src, out)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        service = tomllib.loads((out / "web.toml").read_text()).get("service", {})
        assert not {"stop-signal", "restart-delay", "start-seconds", "instances"} & set(service)
        assert "is not a signal name" in done.stderr


def test_an_existing_file_or_symlink_at_the_destination_is_not_followed(tmp_path):
    """Also refused before (open with "x"); kept so that it stays so."""
    src = tmp_path / "web.service"
    src.write_text("[Service]\nExecStart=/bin/true\n")
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    (out / "web.toml").symlink_to(victim)
    done = run(src, out)
    assert done.returncode == 2 and "web.toml: File exists" in done.stderr
    assert not victim.exists()
    victim.write_text("precious")
    assert run(src, out).returncode == 2 and victim.read_text() == "precious"


# -- hypothesis: arbitrary input ------------------------------------------------------

CHARS = st.sampled_from(list("aZ09 _-./@:=[]#;,'\"\\%()$~!+\t\n\r\x00\x1b\x0b\x85\u2028é"))
WORD = st.text(CHARS, max_size=12)
NAME = st.one_of(st.sampled_from(["web", "db", "../x", "/tmp/abs", "a/b", ".h", "ok@", "t@i",
                                  "", "a b", "x\ny", "%(p)s"]), WORD)
KEY = st.sampled_from(["ExecStart", "Type", "Restart", "RestartSec", "TimeoutSec", "KillSignal",
                       "Environment", "LimitNOFILE", "After", "Wants", "WantedBy",
                       "SuccessExitStatus", "StartLimitBurst", "StandardOutput", "Description",
                       "command", "environment", "numprocs", "startsecs", "stopsignal",
                       "exitcodes", "programs", "autorestart", "priority", "stdout_logfile",
                       "unknown"])
LINE = st.one_of(
    st.sampled_from(["[Unit]", "[Service]", "[Install]", "[supervisord]", "[X-Other]", ""]),
    st.builds(lambda kind, name: f"[{kind}:{name}]", st.sampled_from(["program", "group", "x"]),
              NAME),
    st.builds(lambda k, v: f"{k}={v}", st.one_of(KEY, WORD), WORD),
    st.builds(lambda k, v: f"{k}: {v}", NAME, WORD),  # a Procfile line
    WORD.map(lambda w: "  " + w),  # a configparser continuation
    WORD,
)
SOURCE = st.sampled_from(["web.service", "t.target", "supervisord.conf", "x.ini", "Procfile",
                          "Procfile.dev", "d\n[service]\n#/web.service"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SOURCE, st.lists(LINE, max_size=12).map("\n".join), st.booleans())
def test_any_input_converts_to_exactly_its_document_inside_o(source, text, to_dir):
    with tempfile.TemporaryDirectory() as top:
        src = Path(top, "in", source)
        src.parent.mkdir(parents=True)
        src.write_text(text, encoding="utf-8")
        out = Path(top, "out")
        out.mkdir()
        before = files_under(Path(top))
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
                conv.main(str(src), str(out) if to_dir else None)
        except ValueError as err:  # vigilctl prints it as one line: no traceback
            assert "\n" not in str(err) and "\r" not in str(err)
        new = files_under(Path(top)) - before
        assert all(path.parent == out for path in new), new
        try:
            units = conv.convert(str(src), src.read_text(encoding="utf-8"))
        except ValueError:
            assert not new, "bad input: nothing written"
            return
        meant = {}
        for unit in units:
            assert tomllib.loads(conv.render(unit, str(src))) == unit.doc
            if unit.doc and not unit.refused:
                meant.setdefault(f"{unit.name}.toml", unit.doc)
        for path in new:
            assert tomllib.loads(path.read_text()) == meant[path.name]
