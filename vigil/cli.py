"""The `vigil` command: the daemon, the container entrypoint, `check`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["check"]:
        parser = argparse.ArgumentParser(prog="vigil check",
                                         description="Validate unit files offline.")
        parser.add_argument("dirs", nargs="*", metavar="DIR",
                            help="unit directories, earlier ones win (default: the system path)")
        parser.add_argument("--hostname", help="judge `hosts` against this name")
        opts = parser.parse_args(args[1:])
        from vigil.check import check
        return check(opts.dirs, hostname=opts.hostname)
    from vigil.daemon import main as daemon_main
    return daemon_main(args)


if __name__ == "__main__":
    sys.exit(main())
