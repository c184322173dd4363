"""Every fenced example in docs/*.md is run, so the docs cannot drift: unit
files are loaded by `vigil check`, shell sessions are run line by line
against a real project daemon (with stand-ins for postgres and friends),
the Dockerfile's entrypoint is run, and an error shown is reproduced.
An example with no runner here fails the coverage test, naming it."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon import ROOT

DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
PY = sys.executable


def examples() -> list[tuple[str, str, str]]:
    """(doc file name, language, body) of every fenced block in docs/."""
    found = []
    for doc in sorted(DOCS.glob("*.md")):
        for lang, body in FENCE.findall(doc.read_text()):
            found.append((doc.name, lang, body))
    return found


def example(doc: str, lang: str, first: str = "") -> str:
    """The body of the one block of `doc` in `lang` whose first line begins with `first`."""
    bodies = [b for d, lg, b in examples() if d == doc and lg == lang and b.startswith(first)]
    assert len(bodies) == 1, (doc, lang, first, len(bodies))
    return bodies[0]


def unit_files(body: str) -> dict[str, str]:
    """A TOML example split into files at its `# path/NAME.toml` comments."""
    files: dict[str, list[str]] = {}
    current = None
    for line in body.splitlines():
        header = re.match(r"#\s*(\S+\.toml)\b", line)
        if header:
            current = os.path.basename(header.group(1).rstrip(":"))
            files[current] = []
        elif current is not None:
            files[current].append(line)
    return {name: "\n".join(lines) + "\n" for name, lines in files.items()}


def write_units(folder: Path, files: dict[str, str]) -> None:
    """The example's units, and an empty stand-in target for each unit they
    name but the example does not show (an example may refer to others)."""
    from vigil.model.loader import Loader
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    loaded = Loader([str(folder)]).load_all()
    named = {d for u in loaded.units.values() for d in (*u.requires, *u.wants, *u.after)}
    for missing in named - set(loaded.units):
        (folder / f"{missing}.toml").write_text('[unit]\ndescription = "stand-in"\n')


def check(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "vigil.cli", "check", str(folder)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


# -- runners: one per kind of example -----------------------------------------
def run_toml(doc: str, body: str, tmp: Path) -> None:
    files = unit_files(body)
    assert files, f"{doc}: a TOML example should say which file it is (# units/NAME.toml)"
    write_units(tmp / "units", files)
    done = check(tmp / "units")
    assert done.returncode == 0, f"{doc}: {done.stdout}"


def run_error_line(doc: str, body: str, tmp: Path) -> None:
    """units.md shows the error for a bad restart value on line 8: made again."""
    path, line, _ = body.strip().split(":", 2)
    lines = ['[unit]', 'description = "x"', '', '', '', '', '[service]']
    bad = re.search(r"(\w+)\.(\S+): '([^']*)'", body)
    assert bad is not None and int(line) == len(lines) + 1
    lines += [f'{bad.group(2)} = "{bad.group(3)}"', 'exec = "true"']
    (tmp / os.path.dirname(path)).mkdir(parents=True)
    (tmp / path).write_text("\n".join(lines) + "\n")
    done = subprocess.run([PY, "-m", "vigil.cli", "check", os.path.dirname(path)],
                          capture_output=True, text=True, cwd=tmp, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert body.strip() in done.stdout.splitlines(), done.stdout


def run_layout(doc: str, body: str, tmp: Path) -> None:
    """The tree of projects.md names the unit files its TOML example gives."""
    shown = set(re.findall(r"(\w+\.toml)", body))
    assert shown == set(unit_files(example(doc, "toml")))


def run_dockerfile(doc: str, body: str, tmp: Path) -> None:
    entry = json.loads(re.search(r"^ENTRYPOINT (.*)$", body, re.M).group(1))  # type: ignore
    cmd = json.loads(re.search(r"^CMD (.*)$", body, re.M).group(1))  # type: ignore
    bin_dir = stand_ins(tmp)
    argv = [PY, "-m", "vigil.cli", *entry[1:], *cmd] if entry[0] == "vigil" else entry + cmd
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                               "STAND_IN_EXIT": "1"})
    assert done.returncode == 0, done.stderr
    assert "my-server --port 8000" in done.stdout


SERVE = """#!{py}
# A stand-in for a server: listens on the port its arguments name, until killed.
import os, re, socket, sys, time
print(os.path.basename(sys.argv[0]), *sys.argv[1:], flush=True)
if os.environ.get("STAND_IN_EXIT"):
    sys.exit(0)
args = " ".join(sys.argv[1:])
port = re.search(r"(?:-p |--port |:)(\\d+)", args)
if port:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(port.group(1))))
    s.listen()
while True:
    time.sleep(1000)
"""


def stand_ins(tmp: Path) -> Path:
    """postgres, gunicorn, npm and my-server: one stand-in server each."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("postgres", "gunicorn", "npm", "my-server"):
        (bin_dir / name).write_text(SERVE.format(py=PY))
        (bin_dir / name).chmod(0o755)
    return bin_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Session:
    """A shell session of a doc: one shell (a project's daemon started from
    it is bound to it, as to a person's), fed the lines one by one."""

    def __init__(self, tmp: Path) -> None:
        self.xdg = Path(tempfile.mkdtemp(prefix="x", dir="/tmp"))  # short socket paths
        bin_dir = stand_ins(tmp)
        self.env = {**os.environ, "XDG_RUNTIME_DIR": str(self.xdg),
                    "PATH": f"{bin_dir}:{Path(PY).parent}:{os.environ['PATH']}",
                    "DATABASE_URL": "postgres://127.0.0.1/app"}
        self.env.pop("VIGIL_SOCKET", None)
        self.shell: subprocess.Popen[str] | None = None

    def start(self, cwd: Path) -> None:
        self.shell = subprocess.Popen(["sh"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, cwd=cwd,
                                      env=self.env)

    def line(self, command: str) -> str:
        """Runs one line; its output. A following one (-f, up without -d)
        runs for 3 s, then gets Ctrl-C, and must have shown a service's line."""
        assert self.shell is not None and self.shell.stdin and self.shell.stdout
        words = command.split("#")[0].split()
        follows = "-f" in words or (words[1:2] == ["up"] and "-d" not in words)
        run = f"timeout -s INT --preserve-status 3 {command.split('#')[0]}" if follows \
            else command.split("#")[0]
        self.shell.stdin.write(f"{run} < /dev/null\necho __rc=$?\n")
        self.shell.stdin.flush()
        shown = ""
        while not (line := self.shell.stdout.readline()).startswith("__rc="):
            assert line, f"the shell ended: {shown}"
            shown += line
        status = int(line[5:])
        assert status in ((0, 130) if follows else (0,)), f"{command}: exit {status}: {shown}"
        if follows:
            assert any(not x.startswith("vigilctl:") for x in shown.splitlines()), shown
        return shown

    def close(self, cwd: Path) -> None:
        subprocess.run([PY, "-m", "vigilctl", "shutdown"], capture_output=True, cwd=cwd,
                       env=self.env, timeout=120)
        if self.shell is not None:
            self.shell.communicate(timeout=60)
        shutil.rmtree(self.xdg, ignore_errors=True)


def run_project_session(doc: str, body: str, tmp: Path) -> None:
    """projects.md: the myapp project of its TOML example, then its session."""
    app = tmp / "myapp"
    port = str(free_port())
    files = {n: t.replace("5433", port) for n, t in unit_files(example(doc, "toml")).items()}
    write_units(app / "units", files)
    session = Session(tmp)
    for name in files:  # units get a fixed PATH: where the stand-ins are, as a drop-in
        dropin = app / "units" / f"{name[:-5]}.d" / "zz-test-path.toml"
        dropin.parent.mkdir()
        dropin.write_text(f'[service]\nenv = {{ PATH = "{session.env["PATH"]}" }}\n')
    (app / "src").mkdir()
    (app / "worker.py").write_text("import time\nwhile True:\n    time.sleep(1000)\n")
    (app / "src" / "manage.py").write_text("import sys\nprint('migrated', sys.argv[1:])\n")
    session.start(app / "src")
    try:
        for command in body.strip().splitlines():
            session.line(command)
    finally:
        session.close(app / "src")


def run_procfile_session(doc: str, body: str, tmp: Path) -> None:
    """projects.md: `vigilctl up`, with a Procfile of one server on $PORT."""
    app = tmp / "procapp"
    app.mkdir()
    (app / "Procfile").write_text("web: exec gunicorn app:wsgi --bind 127.0.0.1:$PORT\n")
    session = Session(tmp)
    session.start(app)
    try:
        for command in body.strip().splitlines():
            session.line(command)
    finally:
        session.close(app)


# (doc, language, how its first line begins) -> runner; "" matches any block
RUNNERS: dict[tuple[str, str, str], Callable[[str, str, Path], None]] = {
    ("*", "toml", ""): run_toml,
    ("units.md", "", "units/web.toml:8:"): run_error_line,
    ("projects.md", "", "myapp/"): run_layout,
    ("projects.md", "sh", "vigilctl start web"): run_project_session,
    ("projects.md", "sh", "vigilctl up"): run_procfile_session,
    ("container.md", "dockerfile", ""): run_dockerfile,
}


def runner(doc: str, lang: str, body: str) -> Callable[[str, str, Path], None] | None:
    for (where, language, first), run in RUNNERS.items():
        if where in ("*", doc) and language == lang and body.startswith(first):
            return run
    return None


def test_every_example_in_the_docs_has_a_runner():
    missing = [f"{doc}: ```{lang} {body.splitlines()[0]!r}" for doc, lang, body in examples()
               if runner(doc, lang, body) is None]
    assert not missing, "examples no test runs (add a runner in tests/test_docs_examples.py):" \
        + "\n".join(missing)


@pytest.mark.parametrize("doc,lang,body", examples(),
                         ids=[f"{d}:{lg or 'text'}:{b.splitlines()[0][:30]}"
                              for d, lg, b in examples()])
def test_the_example_runs(doc, lang, body, tmp_path):
    run = runner(doc, lang, body)
    if run is None:
        pytest.fail(f"no runner for {doc}: {body.splitlines()[0]}")
    run(doc, body, tmp_path)
