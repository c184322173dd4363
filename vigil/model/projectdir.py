"""Where a project's unit files are: the nearest directory (the working one
or a parent) with `vigil.toml` (which may say `units = "path"`) or a
`units/` directory of unit files. One finder for `vigilctl` (which checks
trust at each step, before anything is read) and `vigil check`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

# check(folder, units, marker): raises if the project may not be used; called
# with the marker before it is read, then with the units directory found.
Check = Callable[[Path, "Path | None", "Path | None"], None]


class ProjectError(Exception):
    """A vigil.toml that cannot be read."""


def find(start: Path, check: Check | None = None) -> Path | None:
    """The project's unit directory, or None when `start` is in no project."""
    here = start.resolve()
    for folder in (here, *here.parents):
        marker = folder / "vigil.toml"
        if marker.is_file():
            if check:
                check(folder, None, marker)
            import tomllib
            try:
                conf = tomllib.loads(marker.read_text())
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
                raise ProjectError(f"{marker}: {err}") from None
            found = (folder / str(conf.get("units", "units"))).resolve()
        elif (folder / "units").is_dir() and any((folder / "units").glob("*.toml")):
            found = (folder / "units").resolve()
        else:
            continue
        if check:
            check(folder, found, None)
        return found
    return None
