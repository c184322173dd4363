"""The per-project daemon: found from the working directory, started on
first use, one per project and user.

A project is a directory holding `vigil.toml` (which may say
`units = "path"`; default `units`) or a `units/` directory of unit files,
found in the working directory or a parent; `vigilctl --units DIR` names one
directly. Its daemon's socket is in the user's runtime directory, named
after the project, so several projects run side by side.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from vigilctl.client import Client, ClientError


def find(units: str | None, start: Path | None = None) -> Path | None:
    """The project's unit directory, or None when this is not a project."""
    if units:
        return Path(units).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        marker = folder / "vigil.toml"
        if marker.is_file():
            import tomllib
            try:
                conf = tomllib.loads(marker.read_text())
            except (OSError, tomllib.TOMLDecodeError) as err:
                raise ClientError(f"{marker}: {err}") from None
            return (folder / str(conf.get("units", "units"))).resolve()
        if (folder / "units").is_dir() and any((folder / "units").glob("*.toml")):
            return (folder / "units").resolve()
    return None


def socket_for(units: Path) -> str:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "vigil" if runtime else Path(f"/tmp/vigil-{os.getuid()}")
    digest = hashlib.sha256(str(units).encode()).hexdigest()[:10]
    return str(base / "p" / f"{units.parent.name[:16] or 'root'}-{digest}" / "control.sock")


def start(units: Path, socket: str, timeout: float = 15.0) -> None:
    """Starts the project's daemon in a session of its own and waits until it answers."""
    directory = os.path.dirname(socket)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    log = open(os.path.join(directory, "daemon.log"), "ab")  # noqa: SIM115 - the child's
    daemon = subprocess.Popen([sys.executable, "-m", "vigil.cli", "--units", str(units),
                               "--socket", socket], stdin=subprocess.DEVNULL, stdout=log,
                              stderr=log, start_new_session=True, cwd=str(units.parent))
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            Client(socket, timeout=2).close()
            print(f"vigilctl: started vigil for {units} (pid {daemon.pid})", file=sys.stderr)
            return
        except ClientError:
            if daemon.poll() is not None:  # lost a race to another vigilctl: use that one
                try:
                    Client(socket, timeout=2).close()
                    return
                except ClientError:
                    raise ClientError(f"vigil for {units} did not start; see "
                                      f"{directory}/daemon.log") from None
            time.sleep(0.05)
    raise ClientError(f"vigil for {units} did not answer within {timeout:g}s")
