"""Finds unit files on the search path, merges drop-ins, fills templates.

One loader serves the daemon, `vigil check` and `vigilctl`: whatever it
reads, it returns Units or raises UnitError, never anything else.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from vigil.errors import Problem, UnitError
from vigil.schema import build_unit, valid_name
from vigil.tomlpos import key_lines
from vigil.unit import Unit

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any

SYSTEM_PATH = ("/etc/vigil/units", "/usr/lib/vigil/units")
SUFFIX = ".toml"
MAX_FILE_SIZE = 1 << 20  # a unit file is a few hundred bytes; refuse megabytes


@dataclass
class LoadResult:
    units: dict[str, Unit] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)


def split_name(name: str) -> tuple[str, str | None]:
    """`getty@tty1` -> ("getty", "tty1"); `web` -> ("web", None)."""
    prefix, at, instance = name.partition("@")
    return prefix, (instance if at else None)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Drop-in semantics: tables merge key by key, any other value replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def substitute(value: Any, specifiers: dict[str, str]) -> Any:
    """Replaces %i, %p, %n and %% in every string value, recursively."""
    if isinstance(value, str):
        if "%" not in value:
            return value
        out, i = [], 0
        while i < len(value):
            ch = value[i]
            if ch == "%" and i + 1 < len(value) and value[i + 1] in specifiers:
                out.append(specifiers[value[i + 1]])
                i += 2
            else:
                out.append(ch)
                i += 1
        return "".join(out)
    if isinstance(value, list):
        return [substitute(v, specifiers) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, specifiers) for k, v in value.items()}
    return value


def read_toml(path: str) -> tuple[dict[str, Any], dict[str, int]]:
    """Parses one file into (document, key lines) or raises UnitError."""
    where = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as err:
        raise UnitError.single(where, f"cannot open: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnitError.single(where, "not a regular file")
        if info.st_size > MAX_FILE_SIZE:
            raise UnitError.single(
                where, f"too large ({info.st_size} bytes, at most {MAX_FILE_SIZE})")
        data = os.read(fd, MAX_FILE_SIZE + 1)
    except OSError as err:
        raise UnitError.single(where, f"cannot read: {err.strerror}") from None
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UnitError.single(where, f"not UTF-8 text (byte {err.start})") from None
    import tomllib  # here: a container with no side services never needs it
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        line = None
        if "(at line " in message:
            message, _, tail = message.partition(" (at line ")
            line = int(tail.split(",")[0]) if tail.split(",")[0].isdigit() else None
        raise UnitError.single(where, f"TOML syntax error: {message}", line=line) from None
    return doc, key_lines(text)


class Loader:
    """Reads units from a search path; earlier directories win by file name."""

    def __init__(self, search_path: Sequence[str | os.PathLike[str]]) -> None:
        self.search_path = [os.fspath(p) for p in search_path]  # no pathlib in PID 1

    def find(self, filename: str) -> str | None:
        for directory in self.search_path:
            candidate = os.path.join(directory, filename)
            if os.path.isfile(candidate):
                return candidate
        return None

    def names(self) -> list[str]:
        """Every unit with a file of its own (templates need an instance)."""
        seen: set[str] = set()
        for directory in self.search_path:
            try:
                entries = sorted(os.listdir(directory))
            except OSError:
                continue
            for entry in entries:
                if not entry.endswith(SUFFIX) or not os.path.isfile(
                        os.path.join(directory, entry)):
                    continue
                name = entry[: -len(SUFFIX)]
                if not name.endswith("@"):
                    seen.add(name)
        return sorted(seen)

    def dropins(self, name: str) -> list[str]:
        """`NAME.d/*.toml` from every directory, by file name; earlier dirs win."""
        chosen: dict[str, str] = {}
        for directory in self.search_path:
            folder = os.path.join(directory, f"{name}.d")
            try:
                entries = os.listdir(folder)
            except OSError:
                continue
            for entry in entries:
                path = os.path.join(folder, entry)
                if entry.endswith(SUFFIX) and entry not in chosen and os.path.isfile(path):
                    chosen[entry] = path
        return [chosen[k] for k in sorted(chosen)]

    def load(self, name: str) -> Unit:
        """Loads one unit by name, or raises UnitError naming file and key."""
        try:
            return self._load(name)
        except UnitError:
            raise
        except Exception as err:
            raise UnitError.single(name, f"internal error while loading: {err!r}") from None

    def _load(self, name: str) -> Unit:
        prefix, instance = split_name(name)
        if not valid_name(name):
            raise UnitError.single(name, f"'{name}' is not a valid unit name")
        if instance == "":
            raise UnitError.single(
                name, f"'{name}' is a template; use an instance such as {name}NAME")
        path = self.find(name + SUFFIX)
        layers: list[str] = []
        if path is None and instance is not None:
            path = self.find(prefix + "@" + SUFFIX)
            if path is not None:
                layers = self.dropins(prefix + "@")
        if path is None:
            raise UnitError.single(name, f"no such unit '{name}' (no {name}{SUFFIX} in "
                                   f"{', '.join(self.search_path)})")
        layers += self.dropins(name)
        doc, lines = read_toml(path)
        where = {key: (path, line) for key, line in lines.items()}
        for layer in layers:
            over, over_lines = read_toml(layer)
            doc = merge(doc, over)
            where.update({key: (layer, line) for key, line in over_lines.items()})
        doc = substitute(doc, {"i": instance or "", "p": prefix, "n": name, "%": "%"})
        return build_unit(name, doc, path, where)

    def load_all(self, extra: Iterable[str] = ()) -> LoadResult:
        """Every unit on the path plus the template instances they refer to."""
        result = LoadResult()
        pending = list(self.names()) + list(extra)
        while pending:
            name = pending.pop()
            if name in result.units or name in result.broken:
                continue
            try:
                unit = self.load(name)
            except UnitError as err:
                result.problems.extend(err.problems)
                result.broken.add(name)
                continue
            result.units[name] = unit
            for dep in (*unit.requires, *unit.wants, *unit.on_failure, *unit.on_success):
                prefix, instance = split_name(dep)
                if instance and self.find(prefix + "@" + SUFFIX):
                    pending.append(dep)
        return result
