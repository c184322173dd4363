"""Shell completion (bash, zsh, fish) and man pages, generated from the
parsers: the installed files are current, and bash completes commands,
options and unit names from a running daemon."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import ROOT, wait_for
from vigilctl import completion, manpage
from vigilctl.options import SUBCOMMANDS

SUBREAPER = pytest.mark.parametrize("mode", ["subreaper"], indirect=True)
REGENERATE = "regenerate: python -m vigilctl.completion && python -m vigilctl.manpage"


def test_the_installed_scripts_and_pages_are_what_the_parsers_give(tmp_path):
    completion.write_all(str(tmp_path / "completions"))
    manpage.write_all(str(tmp_path / "man"))
    for made in sorted(tmp_path.rglob("*")):
        if made.is_file():
            kept = ROOT / "share" / made.relative_to(tmp_path)
            assert kept.read_text() == made.read_text(), f"{kept} is stale; {REGENERATE}"


def complete(words: list[str], socket: str | None = None) -> list[str]:
    """What bash offers for the last word of `words`, with the script loaded."""
    script = ROOT / "share" / "completions" / "bash" / "vigilctl"
    if socket:
        words = [words[0], "--socket", socket, *words[1:]]
    program = (f"source {script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)})\n"
               f"COMP_CWORD={len(words) - 1}\n_vigilctl\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    return [w for w in done.stdout.splitlines() if w]


@SUBREAPER
def test_bash_completes_commands_options_and_unit_names(daemon):
    d = daemon({"web.toml": '[service]\nexec = "sleep 1000"\n',
                "worker.toml": '[service]\nexec = "sleep 1000"\n'})
    wait_for(lambda: d.status("web")["state"] == "running")
    assert complete(["vigilctl", "res"]) == ["restart", "reset-failed"]
    assert complete(["vigilctl", "is-"]) == ["is-active", "is-enabled", "is-failed"]
    assert complete(["vigilctl", "logs", "--"]) == [
        "--help", "--unit", "--lines", "--follow", "--since", "--until", "--json", "--grep",
        "--stdout", "--stderr", "--output", "--events", "--boot", "--list-boots", "--directory"]
    assert complete(["vigilctl", "--ver"]) == ["--version"]
    assert complete(["vigilctl", "start", "w"], d.socket) == ["web", "worker"]
    assert complete(["vigilctl", "tail", "-f", "wo"], d.socket) == ["worker"]
    assert complete(["vigilctl", "logs", "-n", "w"], d.socket) == []  # a count, not a unit
    assert complete(["vigilctl", "logs", "-u", "we"], d.socket) == ["web"]


def test_zsh_and_fish_scripts_name_every_command_and_load_where_installed():
    zsh = completion.zsh()
    fish = completion.fish()
    for name in SUBCOMMANDS:
        assert f"'{name}:" in zsh and f"-a {name} " in fish
    assert "'*:unit:_vigilctl_units'" in zsh and "(__vigilctl_units)" in fish
    if shutil.which("zsh"):
        assert subprocess.run(["zsh", "-n", "-c", zsh], timeout=60).returncode == 0
    if shutil.which("fish"):
        assert subprocess.run(["fish", "-n", "-c", fish], timeout=60).returncode == 0


@SUBREAPER
def test_fish_completes_options_and_unit_names(daemon):
    if not shutil.which("fish"):
        pytest.skip("no fish here")
    d = daemon({"web.toml": '[service]\nexec = "sleep 1000"\n'})
    script = ROOT / "share" / "completions" / "fish" / "vigilctl.fish"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def offers(line: str) -> list[str]:
        done = subprocess.run(["fish", "-c", f"source {script}; complete -C '{line}'"],
                              capture_output=True, text=True, env=env, timeout=60)
        return [w.split("\t")[0] for w in done.stdout.splitlines()]
    assert offers("vigilctl res") == ["reset-failed", "restart"]
    assert "--follow" in offers("vigilctl logs --")
    assert offers(f"vigilctl --socket {d.socket} start w") == ["web"]
    assert offers(f"vigilctl --socket {d.socket} logs -u w") == ["web"]


def test_man_pages_render_and_cover_every_command_and_unit_key():
    if not shutil.which("man"):
        pytest.skip("no man(1) here")
    rendered = {}
    for name in manpage.PAGES:
        page = ROOT / "share" / "man" / f"man{name.rsplit('.', 1)[1]}" / name
        done = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True,
                              env={**os.environ, "MANWIDTH": "100", "MANPAGER": "cat"},
                              timeout=60)
        assert done.returncode == 0 and "warning" not in done.stderr, done.stderr
        rendered[name] = done.stdout
    for command in SUBCOMMANDS:
        assert f"\n   {command}\n" in rendered["vigilctl.1"], command
    assert "--slow-report SECONDS" in rendered["vigil.8"]
    assert "start-seconds" in rendered["vigil.unit.5"]
