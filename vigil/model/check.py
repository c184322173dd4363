"""`vigil check`: validate unit directories offline, print every problem."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from typing import TextIO

from vigil.model.graph import Graph
from vigil.model.loader import SYSTEM_PATH, Loader


def check(directories: Sequence[str], out: TextIO = sys.stdout,
          hostname: str | None = None) -> int:
    """Returns 0 when every unit loads and the graph is sound, 1 otherwise.
    Without directories: the project of the working directory if it is in
    one (as vigilctl finds it), else the system's search path."""
    if not directories:
        from pathlib import Path

        from vigil.model.projectdir import ProjectError, find
        try:
            project = find(Path.cwd())
        except ProjectError as err:
            print(err, file=out)
            return 1
        if project is not None:
            print(f"checking the project's units in {project}", file=out)
            directories = [str(project)]
    loader = Loader(directories or SYSTEM_PATH)
    result = loader.load_all()
    graph = Graph.build(result.units)
    problems = sorted({str(p) for p in result.problems + graph.problems})
    # a directory named on the command line and not there is a typo, not "0 units ok"
    problems += [f"{d}: no such directory" for d in directories if not os.path.isdir(d)]
    for line in problems:
        print(line, file=out)
    host = hostname or socket.gethostname()
    skipped = sorted(n for n, u in result.units.items() if not u.runs_on(host))
    good = len(result.units) - len({n for n in graph.refused})
    summary = f"{good} unit(s) ok, {len(result.broken)} broken, {len(graph.refused)} refused"
    if skipped:
        summary += f"; not for host {host!r}: {', '.join(skipped)}"
    print(summary, file=out)
    return 1 if problems else 0
