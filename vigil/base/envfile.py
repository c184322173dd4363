"""The KEY=VALUE format of env-files and of /etc/locale.conf: one parser for
the launcher (a unit's env-file, read as the unit's user) and early boot
(the system's locale, read as root), each of which reads its file itself."""

from __future__ import annotations


def parse(text: str) -> dict[str, str]:
    """KEY=VALUE lines; `#` comments; `export ` and quotes around a value are removed."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        env[key] = value
    return env
