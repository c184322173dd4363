"""`vigilctl` with no command: a shell in the spirit of supervisorctl, with
line editing, persistent history and completion of commands and units."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from vigil.base.printable import printable_lines
from vigilctl.client import ClientError

EXTRA = ("help", "quit", "exit")


def history_path() -> str:
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(state, "vigil", "vigilctl_history")


class Shell:
    def __init__(self, parser: argparse.ArgumentParser, base: argparse.Namespace) -> None:
        """base: the options vigilctl was started with (socket, remote, timeout...)."""
        self.parser, self.base = parser, base
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        self.subparsers: dict[str, argparse.ArgumentParser] = dict(sub.choices)
        from vigilctl.options import ALIASES
        self.commands = sorted([*self.subparsers, *ALIASES, *EXTRA])
        self._units: list[str] | None = None

    def units(self) -> list[str]:
        if self._units is None:
            try:
                from vigilctl.main import connect
                client = connect(self.base)
                try:
                    self._units = list(client.call("list"))
                finally:
                    client.close()
            except ClientError:
                return []
        return self._units

    def complete(self, text: str, state: int) -> str | None:
        import readline
        before = readline.get_line_buffer()[:readline.get_begidx()]
        words = before.split()
        if not words:
            options = [c for c in self.commands if c.startswith(text)]
        elif words[0] in ("help",):
            options = [c for c in self.subparsers if c.startswith(text)]
        else:
            options = [u for u in self.units() if u.startswith(text)]
        return options[state] + " " if state < len(options) else None

    def setup_readline(self) -> str | None:
        try:
            import readline
        except ImportError:
            return None
        path = history_path()
        try:
            readline.read_history_file(path)
        except OSError:
            pass
        readline.set_history_length(1000)
        readline.set_completer(self.complete)
        readline.set_completer_delims(" \t")
        readline.parse_and_bind("tab: complete")
        return path

    def one(self, line: str) -> int:
        from vigilctl.main import run
        try:
            words = shlex.split(line)
        except ValueError as err:
            print(f"vigilctl: {err}")
            return 2
        if not words:
            return 0
        from vigilctl.options import ALIASES, resolve
        words = resolve(words)  # list-units, tail
        if words[0] == "help":
            name = ALIASES.get(words[1], words[1]) if len(words) > 1 else ""
            target = self.subparsers.get(name)
            (target or self.parser).print_help()
            return 0
        try:
            opts = self.parser.parse_args(words)
        except SystemExit as exit:
            return int(exit.code or 0)
        for name in ("socket", "system", "timeout", "remote", "token_file", "tls", "ca",
                     "project"):
            setattr(opts, name, getattr(self.base, name))
        self._units = None  # units may change with reload
        try:
            return run(opts)
        except ClientError as err:
            print(f"vigilctl: {printable_lines(str(err))}")
            return 1
        except ValueError as err:
            print(f"vigilctl: {printable_lines(str(err))}")
            return 2
        except KeyboardInterrupt:
            print()
            return 130

    def loop(self) -> int:
        interactive = sys.stdin.isatty()
        history = self.setup_readline() if interactive else None
        if interactive:
            where = self.base.remote or self.base.socket or "the default socket"
            print(f"vigil shell on {where}: `help` lists commands, Tab completes, "
                  "Ctrl-D leaves.")
        status = 0
        try:
            while True:
                try:
                    line = input("vigil> " if interactive else "")
                except EOFError:
                    break
                except KeyboardInterrupt:
                    print()
                    continue
                if line.strip() in ("quit", "exit"):
                    break
                status = self.one(line)
        finally:
            if history:
                import readline
                os.makedirs(os.path.dirname(history), exist_ok=True)
                readline.write_history_file(history)
        if interactive:
            print()
        return status
