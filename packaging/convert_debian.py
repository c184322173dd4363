#!/usr/bin/python3 -I
"""Converts the services this Debian system starts into vigil units.

Run by the package's post-install (as /usr/lib/vigil/convert-debian), and by
hand after installing or enabling a service. Every unit systemd would pull
into the boot (the .wants directories of sysinit, sockets, timers, getty and
multi-user, the admin's in /etc first) is either converted with `vigilctl
convert` into /etc/vigil/units, or listed with the reason it is not: vigil
does that job itself, a shipped unit does it, or vigil has no such kind of
unit. The report is /etc/vigil/conversion.txt. An existing file in
/etc/vigil/units is the admin's and is never replaced; what this script
wrote is listed in /var/lib/vigil/converted so that a purge removes exactly
that.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ETC_UNITS = Path("/etc/vigil/units")
SHIPPED = Path("/usr/lib/vigil/units")
REPORT = Path("/etc/vigil/conversion.txt")
LEDGER = Path("/var/lib/vigil/converted")
WANTS_DIRS = [Path(f"{top}/{target}.target.wants")
              for top in ("/etc/systemd/system", "/lib/systemd/system")
              for target in ("sysinit", "sockets", "timers", "getty", "multi-user")]
# systemd's own services that vigil needs converted: the tmpfiles.d setup
# (/run, /var/log, /tmp entries the packages ask for).
# Shipped in units/debian and started at boot: devlog takes /dev/log (journald's job).
DEBIAN_WANTS = ["devlog"]
CONVERT_ALSO = {"systemd-tmpfiles-setup"}
REPLACED = {
    "systemd-journald": "vigil keeps every service's output itself (vigilctl logs); "
                        "the shipped devlog unit takes /dev/log (vigilctl logs devlog)",
    "systemd-journal-flush": "no journal (see systemd-journald)",
    "systemd-modules-load": "vigil's early boot loads /etc/modules-load.d/*.conf and /etc/modules",
    "systemd-sysctl": "vigil's early boot applies /etc/sysctl.d/*.conf and /etc/sysctl.conf",
    "systemd-tmpfiles-setup-dev": "devtmpfs makes /dev; the static nodes are not needed",
    "kmod-static-nodes": "devtmpfs makes /dev; the static nodes are not needed",
    "systemd-networkd": "vigil-net (the shipped network unit) sets up /etc/vigil/network.toml",
    "systemd-udevd": "the shipped udev and udev-trigger units run systemd-udevd",
    "systemd-udev-trigger": "the shipped udev-trigger unit (udevadm trigger, then settle)",
    "systemd-remount-fs": "vigil's early boot remounts / as the kernel command line asks",
    "getty@": "the shipped getty@ template runs `getty -L 115200 TTY` on /dev/TTY: the "
              "converted unit would need StandardInput=tty and $TERM, which it loses",
    "serial-getty@": "the shipped getty@ template (see getty@)",
    "getty-static": "default wants getty@tty1..6 and getty@ttyS0 directly",
}
KINDS = {
    ".timer": "vigil has no timer units: cron runs periodic jobs",
    ".socket": "vigil has no socket activation: the service itself is started at boot",
    ".path": "vigil has no path units",
    ".mount": "vigil mounts what /etc/fstab lists; add a line there",
    ".automount": "vigil has no automount; mount it from /etc/fstab",
    ".target": "a systemd target: vigil's default target plays multi-user's part",
}


def boot_units() -> dict[str, Path]:
    """Unit file name -> its file, for what systemd would start at boot."""
    found: dict[str, Path] = {}
    for wants in WANTS_DIRS:
        if not wants.is_dir():
            continue
        for link in sorted(wants.iterdir()):
            if link.name not in found:
                found[link.name] = link.resolve()
    return found


def why_not(name: str) -> str:
    """Why a unit is not converted, or "" to convert it."""
    stem, _, kind = name.rpartition(".")
    base = stem.split("@")[0] + "@" if "@" in stem else stem
    if f".{kind}" in KINDS:
        return KINDS[f".{kind}"]
    if base in REPLACED:
        return REPLACED[base]
    if stem.startswith("systemd-") and stem not in CONVERT_ALSO:
        return "systemd's own machinery (it needs systemd as PID 1, or its bus)"
    return ""


def convert(unit: Path, name: str) -> tuple[bool, str]:
    """`vigilctl convert UNIT -o /etc/vigil/units`; its notes are the report."""
    stem = name.rpartition(".")[0]
    if (ETC_UNITS / f"{stem}.toml").exists():
        return False, "kept: /etc/vigil/units already has it (the admin's)"
    done = subprocess.run(["vigilctl", "convert", str(unit), "-o", str(ETC_UNITS)],
                          capture_output=True, text=True, timeout=60, check=False)
    notes = "".join(f"\n    {line}" for line in done.stderr.splitlines())
    if done.returncode != 0 or not (ETC_UNITS / f"{stem}.toml").exists():
        return False, f"conversion failed (status {done.returncode}){notes}"
    drop = SHIPPED / f"{stem}.d"
    fixed = f"; fixed by the shipped drop-in {drop}/" if drop.is_dir() else ""
    return True, f"converted to /etc/vigil/units/{stem}.toml{fixed}{notes}"


def default_dropin(converted: list[str]) -> None:
    """default wants the converted services too, and the Debian flavour's own
    (a drop-in's list replaces the unit's, so it repeats the shipped ones)."""
    with open(SHIPPED / "default.toml", "rb") as f:
        wants = list(tomllib.load(f)["unit"]["wants"])
    wants += [name for name in [*DEBIAN_WANTS, *converted] if name not in wants]
    dropin = ETC_UNITS / "default.d" / "converted.toml"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    body = ", ".join(f'"{name}"' for name in wants)
    dropin.write_text("# Written by /usr/lib/vigil/convert-debian: the shipped wants of\n"
                      "# default plus the services converted from systemd.\n"
                      f"[unit]\nwants = [{body}]\n")
    _remember(dropin)


def _remember(path: Path) -> None:
    LEDGER.parent.mkdir(parents=True, exist_ok=True)
    known = set(LEDGER.read_text().split()) if LEDGER.exists() else set()
    if str(path) not in known:
        with open(LEDGER, "a") as f:
            f.write(f"{path}\n")


def main() -> int:
    ETC_UNITS.mkdir(parents=True, exist_ok=True)
    lines, converted = [], []
    for name, unit in sorted(boot_units().items()):
        reason = why_not(name)
        if reason:
            lines.append(f"{name}: not converted: {reason}")
            continue
        ok, text = convert(unit, name)
        lines.append(f"{name}: {text}")
        stem = name.rpartition(".")[0]
        if ok:
            _remember(ETC_UNITS / f"{stem}.toml")
        if ok or text.startswith("kept"):
            converted.append(stem)
    default_dropin(converted)
    REPORT.write_text("What vigil starts of this system's boot, written by "
                      "/usr/lib/vigil/convert-debian\n\n" + "\n".join(lines) + "\n")
    os.chmod(REPORT, 0o644)
    print(f"vigil: {len(converted)} services converted into {ETC_UNITS}; report: {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
