"""Finds unit files on the search path, merges drop-ins, fills templates.

One loader serves the daemon, `vigil check` and `vigilctl`: whatever it
reads, it returns Units or raises UnitError, never anything else.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from vigil.model.compiled import SYSTEM_PATH as SYSTEM_PATH
from vigil.model.compiled import Incomplete as Incomplete  # where check, admin and tests find them
from vigil.model.compiled import LoadResult as LoadResult
from vigil.base.errors import Problem, UnitError
from vigil.base.numbers import parse_number
from vigil.model.checks import valid_name
from vigil.model.schema import build_unit
from vigil.base.tomlpos import key_lines
from vigil.model.unit import Unit
from vigil.model.unitfiles import MAX_DEPTH, find_in, list_dir, read_unit_file, too_deep

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any

SUFFIX = ".toml"


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
    data = read_unit_file(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UnitError.single(path, f"not UTF-8 text (byte {err.start})") from None
    import tomllib  # here: a container with no side services never needs it
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message, _, tail = str(err).partition(" (at line ")
        line = parse_number(tail.split(",")[0], 1, 1 << 30)
        raise UnitError.single(path, f"TOML syntax error: {message}", line=line) from None
    except RecursionError:  # tomllib recurses once per nested table or array
        doc = None
    if doc is None or too_deep(doc):
        raise UnitError.single(path, f"tables or arrays nested more than {MAX_DEPTH} deep")
    return doc, key_lines(text)


class Loader:
    """Reads units from a search path; earlier directories win by file name."""

    def __init__(self, search_path: Sequence[str | os.PathLike[str]]) -> None:
        self.search_path = [os.fspath(p) for p in search_path]  # no pathlib in PID 1
        self.listed: set[str] | None = None  # directories read at the last load_all
        self.requested: set[str] = set()  # instances named at run time (`start tp@x`)

    def find(self, filename: str) -> str | None:
        """The first search directory's `filename`; UnitError if one cannot be read."""
        for directory in self.search_path:
            if find_in(directory, filename):
                return os.path.join(directory, filename)
        return None

    def scan(self) -> tuple[list[str], list[Problem], set[str]]:
        """Every unit with a file of its own (templates need an instance), the
        directories that could not be read, and those that were."""
        seen: set[str] = set()
        problems: list[Problem] = []
        listed: set[str] = set()
        for directory in self.search_path:
            try:
                entries = list_dir(directory, SUFFIX)
            except UnitError as err:
                problems.extend(err.problems)
                continue
            if entries is None:
                if directory in (self.listed or ()):  # it was read at the last load
                    problems.append(Problem(directory, "the directory is gone"))
                continue
            listed.add(directory)
            seen.update(e[: -len(SUFFIX)] for e in entries if not e.endswith("@" + SUFFIX))
        return sorted(seen), problems, listed

    def names(self) -> list[str]:
        return self.scan()[0]

    def dropins(self, name: str) -> list[str]:
        """`NAME.d/*.toml` from every directory, by file name; earlier dirs win."""
        chosen: dict[str, str] = {}
        for directory in self.search_path:
            folder = os.path.join(directory, f"{name}.d")
            for entry in list_dir(folder, SUFFIX) or ():
                chosen.setdefault(entry, os.path.join(folder, entry))
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

    def has_template(self, name: str) -> bool:
        """Whether `name` is an instance whose template (or own file) exists."""
        prefix, instance = split_name(name)
        try:
            return bool(instance) and bool(self.find(prefix + "@" + SUFFIX)
                                           or self.find(name + SUFFIX))
        except UnitError:
            return True  # unreadable: loading it says why, and keeps the old one

    def load_all(self, extra: Iterable[str] = ()) -> LoadResult:
        """Every unit on the path plus the template instances they refer to.

        After the first load, a search directory that cannot be read raises
        Incomplete: the daemon's reload then applies nothing."""
        names, unreadable, listed = self.scan()
        if unreadable and self.listed is not None:
            raise Incomplete([*unreadable, Problem(
                "reload", "refused: the unit set could not be read completely, so "
                "nothing was applied (to remove a directory's units, leave it empty)")])
        self.listed = listed
        self.requested = {n for n in self.requested if self.has_template(n)}
        result = LoadResult(problems=unreadable)
        self.load_closure([*names, *extra, *sorted(self.requested)], result)
        return result

    def load_instance(self, name: str) -> LoadResult | None:
        """A template instance named at run time, with the instances it pulls
        in (None if `name` is no instance of a template); later load_alls keep
        it while its template exists."""
        if not valid_name(name) or not self.has_template(name):
            return None
        result = LoadResult()
        self.load_closure([name], result)
        if name in result.units:
            self.requested.add(name)
        return result

    def load_closure(self, pending: list[str], result: LoadResult) -> None:
        """Loads `pending` and every template instance their dependencies name."""
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
                if self.has_template(dep):
                    pending.append(dep)
