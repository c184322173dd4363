"""The `vigilctl` command."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["check"]:
        from vigil.check import check
        return check(args[1:])
    print("vigilctl: the control socket is not there yet; only `check DIR...` works",
          file=sys.stderr)
    return 2
