"""The `vigil` command: the daemon, the container entrypoint, `check`.

Installed or linked under the name `tini` or `dumb-init`, it is the
container entrypoint with that tool's flags and defaults.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    name = os.path.basename(prog if prog is not None else sys.argv[0])
    if name in ("tini", "dumb-init"):
        from vigil.entry import main as run_main
        return run_main(args, name)
    if args[:1] == ["run"]:
        from vigil.entry import main as run_main
        return run_main(args[1:])
    if args[:1] == ["check"]:
        import argparse
        parser = argparse.ArgumentParser(prog="vigil check",
                                         description="Validate unit files offline.")
        parser.add_argument("dirs", nargs="*", metavar="DIR",
                            help="unit directories, earlier ones win (default: the system path)")
        parser.add_argument("--hostname", help="judge `hosts` against this name")
        opts = parser.parse_args(args[1:])
        from vigil.model.check import check
        return check(opts.dirs, hostname=opts.hostname)
    if args[:1] == ["compile"]:
        return compile_command(args[1:])
    from vigil.serve import main as daemon_main
    return daemon_main(args)


def compile_command(args: list[str]) -> int:
    """`vigil compile`: the unit database the daemon reads at start."""
    import argparse
    parser = argparse.ArgumentParser(
        prog="vigil compile", description="Compile unit directories into the database the "
        "daemon reads at start, so that PID 1 parses no TOML (it compiles afresh when the "
        "units changed since).")
    parser.add_argument("dirs", nargs="*", metavar="DIR",
                        help="unit directories, earlier ones win (default: the system path)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="where to write it (default: FIRST_DIR.compiled)")
    parser.add_argument("--as", dest="recorded", action="append", metavar="DIR",
                        help="the directories as the daemon will name them (repeatable; an "
                             "image built in a staging tree)")
    opts = parser.parse_args(args)
    from vigil.model.compiled import compile_to
    return compile_to(opts.dirs, opts.output, opts.recorded)


if __name__ == "__main__":
    sys.exit(main())
