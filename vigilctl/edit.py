"""`vigilctl edit UNIT`, as systemctl edit: $EDITOR on the unit's drop-in
`NAME.d/override.toml`; what is saved is first loaded offline with the
unit's file and its other drop-ins (the daemon's loader), so a mistake is
shown and never reaches the daemon; then the daemon reloads."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

from vigil.base.errors import UnitError
from vigil.model.loader import Loader
from vigil.base.printable import printable, printable_lines
from vigilctl.client import Client, ClientError

TEMPLATE = ("# Drop-in for {name}: keys here override {path}.\n"
            "# Only what you set changes; e.g.\n# [service]\n# stop-timeout = 30\n")


def validate(name: str, path: str, files: list[str], override: str, text: str) -> str | None:
    """Loads the unit from a copy of its files with `text` as the override;
    the problems, in the daemon's words, or None."""
    with tempfile.TemporaryDirectory(prefix="vigilctl-edit-") as scratch:
        for source in files:
            if source == override:
                continue
            if source == path:
                target = os.path.join(scratch, os.path.basename(source))
            else:
                folder = os.path.join(scratch, os.path.basename(os.path.dirname(source)))
                os.makedirs(folder, exist_ok=True)
                target = os.path.join(folder, os.path.basename(source))
            shutil.copyfile(source, target)
        folder = os.path.join(scratch, f"{name}.d")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "override.toml"), "w", encoding="utf-8") as f:
            f.write(text)
        try:
            Loader([scratch]).load(name)
        except UnitError as err:
            return "; ".join(str(p).replace(scratch + "/", "") for p in err.problems)
    return None


def run_editor(text: str) -> str:
    """The text after $VISUAL or $EDITOR (default vi) has edited it."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".toml", prefix="vigilctl-edit-",
                                     delete=False, encoding="utf-8") as f:
        f.write(text)
    try:
        done = subprocess.run([*shlex.split(editor), f.name], check=False)
        if done.returncode != 0:
            raise ClientError(f"the editor ({editor}) exited with {done.returncode}; "
                              "nothing saved")
        with open(f.name, encoding="utf-8") as edited:
            return edited.read()
    finally:
        os.unlink(f.name)


def save(override: str, text: str) -> None:
    """Writes the drop-in whole (renamed into place), never through a symlink."""
    from vigil.model.dropins import write_dropin
    try:
        write_dropin(os.path.dirname(override), os.path.basename(override), text)
    except OSError as err:
        raise ClientError(f"cannot write {override}: {err.strerror or err}") from None


def edit(client: Client, opts: argparse.Namespace) -> int:
    unit = client.call("cat", units=[opts.unit])[0]
    name, path = unit["unit"], unit["path"]
    if not path or path.startswith("<"):
        raise ClientError(f"{name} has no unit file to edit (made by vigilctl run)")
    override = os.path.join(os.path.dirname(path), f"{name}.d", "override.toml")
    try:
        with open(override, encoding="utf-8") as f:
            text = before = f.read()
    except FileNotFoundError:
        text = before = TEMPLATE.format(name=name, path=path)
    while True:
        text = run_editor(text)
        if text == before:
            print(f"vigilctl: {override} unchanged", file=sys.stderr)
            return 0
        problem = validate(name, path, unit["files"], override, text)
        if problem is None:
            break
        print(f"vigilctl: not saved: {printable_lines(problem)}", file=sys.stderr)
        if not (sys.stdin.isatty() and input("edit again? [Y/n] ").strip().lower() in ("", "y")):
            return 1
    save(override, text)
    print(f"{name}: saved {override}")
    result = client.call("reload")
    for change in result["changes"]:
        print(printable(f"{change['action']:9} {change['unit']}: {change['why']}"))
    return 1 if result["problems"] else 0
