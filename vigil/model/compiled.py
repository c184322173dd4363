"""Compiled units, as s6-rc compiles its service database.

The compiler is the loader, the schema and the graph (`vigil compile`, or a
child process of the daemon). Its output is one marshal of plain tuples,
dicts and strings that PID 1 reads with what it already imports: PID 1
never imports the TOML parser, the schema or the validators.

Records are written generically, every field of every record class of
`vigil.model.unit` (and `vigil.base.errors`), so a field added to a record needs no
change here; a database written by a vigil whose records differ is stale.

The daemon reads a database only when it is trusted as a unit file is
(a regular file, owned by root or the daemon's uid, writable by neither its
group nor others, in such a directory; docs/security.md), and fresh: the
fingerprint of the unit directories it was compiled from (names, sizes,
modes, owners and each file's bytes) is taken again and must be the
same. Otherwise the units are compiled afresh, in a child process, as a
reload always does: errors come back as data, naming file and key.
"""

from __future__ import annotations

import enum
import marshal
import os
import stat
import sys

from vigil.base import errors
from vigil.model import unit
from vigil.base.errors import Problem, UnitError
from vigil.base.records import dataclass, field
from vigil.model.unitfiles import MAX_FILE_SIZE, untrusted

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

SYSTEM_PATH = ("/etc/vigil/units", "/usr/lib/vigil/units")
FORMAT = 1
TIMEOUT = 30.0  # seconds the compiler may take before the daemon gives up on it
MAX_DB_SIZE = 64 << 20


@dataclass
class LoadResult:
    units: dict[str, unit.Unit] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)


class Incomplete(UnitError):
    """A reload could not read the whole unit set: applying it would remove or
    change units that are only unreadable, so nothing is applied."""


# -- records as plain data ----------------------------------------------------
def _classes() -> dict[str, Any]:
    """Every record and enum class a compiled database may hold, by name."""
    found: dict[str, Any] = {"LoadResult": LoadResult}
    for module in (unit, errors):
        for name, value in vars(module).items():
            if isinstance(value, type) and value.__module__ == module.__name__ and (
                    hasattr(value, "__record_fields__") or issubclass(value, enum.Enum)):
                found[name] = value
    return found


CLASSES = _classes()
# what the records look like: a database written by other records is stale
SIGNATURE = tuple(sorted(
    (name, tuple(cls.__record_fields__) if hasattr(cls, "__record_fields__")
     else tuple(m.value for m in cls)) for name, cls in CLASSES.items()))
_PLAIN = (str, int, float, bool, type(None), bytes)
_RECORD, _ENUM, _TUPLE, _TEXT, _SET = "\0R", "\0E", "\0T", "\0S", "\0s"


def encode(value: Any) -> Any:
    """A value as marshal can write it: records and enums become tagged tuples."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is tuple:
        out = tuple(encode(v) for v in value)
        return (_TUPLE, out) if out and type(out[0]) is str and out[0][:1] == "\0" else out
    if kind is list:
        return [encode(v) for v in value]
    if kind is dict:
        return {k: encode(v) for k, v in value.items()}
    if kind is set or kind is frozenset:  # sorted: the same units, the same bytes
        items = [encode(v) for v in value]
        try:
            items.sort()
        except TypeError:  # mixed kinds: in their own order
            pass
        return (_SET, kind is frozenset, tuple(items))
    if CLASSES.get(kind.__name__) is kind:
        if isinstance(value, enum.Enum):
            return (_ENUM, kind.__name__, value.value)
        return (_RECORD, kind.__name__,
                {name: encode(getattr(value, name)) for name in kind.__record_fields__})
    if hasattr(kind, "__record_fields__") or isinstance(value, enum.Enum):
        raise ValueError(f"{kind.__module__}.{kind.__name__} is not in "
                         "vigil.model.compiled.CLASSES")
    return (_TEXT, str(value))  # a TOML date in `raw`: shown as its text


def decode(value: Any) -> Any:
    """What encode() was given."""
    kind = type(value)
    if kind is tuple:
        if value and type(value[0]) is str and value[0][:1] == "\0":
            tag = value[0]
            if tag == _RECORD:
                return CLASSES[value[1]](**{k: decode(v) for k, v in value[2].items()})
            if tag == _ENUM:
                return CLASSES[value[1]](value[2])
            if tag == _TEXT:
                return value[1]
            if tag == _SET:
                return (frozenset if value[1] else set)(decode(v) for v in value[2])
            value = value[1]  # _TUPLE
        return tuple(decode(v) for v in value)
    if kind is list:
        return [decode(v) for v in value]
    if kind is dict:
        return {k: decode(v) for k, v in value.items()}
    return value


def rebase(value: Any, old: str, new: str) -> Any:
    """Encoded data with the directory `old` named `new` (a database compiled
    in a staging tree, for the path the daemon will read it from)."""
    if type(value) is str:
        return new + value[len(old):] if value == old or value.startswith(old + "/") else value
    if type(value) in (tuple, list):
        return type(value)(rebase(v, old, new) for v in value)
    if type(value) is dict:
        return {k: rebase(v, old, new) for k, v in value.items()}
    return value


# -- freshness ----------------------------------------------------------------
def fingerprint(search_path: Sequence[str]) -> list[Any]:
    """What the loader would read: every entry of each directory and of its
    NAME.d drop-in folders, with mode, owner and bytes
    (not times or inode numbers: an image unpacked elsewhere is still fresh)."""
    out: list[Any] = []
    for index, directory in enumerate(search_path):
        out.append((index, "", _entry(directory)))
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            info = _entry(path)
            out.append((index, name, info))
            if name.endswith(".d") and info is not None and info[0] == "d":
                try:
                    inner = sorted(os.listdir(path))
                except OSError:
                    continue
                out.extend((index, f"{name}/{n}", _entry(os.path.join(path, n))) for n in inner)
    return out


def _entry(path: str) -> tuple[Any, ...] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    owner = (info.st_mode, info.st_uid, info.st_gid)
    if stat.S_ISDIR(info.st_mode):
        return ("d", *owner)
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_SIZE:
        return ("o", info.st_size, *owner)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return ("u", *owner)
    try:
        return ("f", os.read(fd, MAX_FILE_SIZE + 1), *owner)
    except OSError:
        return ("u", *owner)
    finally:
        os.close(fd)


def default_path(search_path: Sequence[str]) -> str:
    """UNITS.compiled beside the first unit directory (/etc/vigil/units.compiled)."""
    return search_path[0].rstrip("/") + ".compiled"


def read_db(path: str, search_path: Sequence[str]) -> tuple[dict[str, Any] | None, str]:
    """The database at `path` if it is trusted and fresh; else None and why
    not ("" when there is none, or it is merely out of date)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
                     | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None, ""
    except OSError as err:
        return None, f"cannot open: {err.strerror}"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, "not a regular file"
        why = untrusted(info)
        folder = untrusted(os.stat(os.path.dirname(path) or "."))
        why = why or (f"its directory is {folder}" if folder else None)
        if why:
            return None, f"refused: {why}"
        if info.st_size > MAX_DB_SIZE:
            return None, f"too large ({info.st_size} bytes)"
        data = b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
    except OSError as err:
        return None, f"cannot read: {err.strerror}"
    finally:
        os.close(fd)
    try:
        db = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None, "not a compiled unit database"
    if not isinstance(db, dict) or db.get("format") != FORMAT \
            or db.get("signature") != SIGNATURE or db.get("search_path") != list(search_path):
        return None, ""  # written by another vigil, or for other directories
    if db.get("fingerprint") != fingerprint(search_path):
        return None, ""  # the units changed since
    return db, ""


# -- the compiler -------------------------------------------------------------
def compile_units(search_path: Sequence[str], listed: list[str] | None = None,
                  requested: Sequence[str] = (), instance: str | None = None) -> dict[str, Any]:
    """Runs the loader (TOML, schema, validators) and returns its answer as
    plain data: what the daemon's child process and `vigil compile` write."""
    from vigil.model.loader import Loader
    fp = fingerprint(search_path)  # before reading: a change while reading makes it stale
    loader = Loader(search_path)
    loader.listed = None if listed is None else set(listed)
    loader.requested = set(requested)
    try:
        result = loader.load_all() if instance is None else loader.load_instance(instance)
    except Incomplete as err:
        return {"incomplete": [encode(p) for p in err.problems]}
    return {"format": FORMAT, "signature": SIGNATURE, "search_path": list(search_path),
            "fingerprint": fp, "result": None if result is None else encode(result),
            "listed": sorted(loader.listed or ()), "requested": sorted(loader.requested)}


def compile_to(dirs: Sequence[str], output: str | None = None,
               recorded: Sequence[str] | None = None) -> int:
    """`vigil compile`: writes the database, says what did not load; 1 if anything."""
    search_path = list(dirs or SYSTEM_PATH)
    if recorded and len(recorded) != len(search_path):
        print("vigil compile: give one --as per directory", file=sys.stderr)
        return 2
    db = compile_units(search_path)
    for old, new in zip(search_path, recorded or (), strict=False):
        db = rebase(db, old, new)
    path = output or default_path(search_path)
    result: LoadResult = decode(db["result"])
    for problem in result.problems:
        print(problem)
    try:
        write_db(path, db)
    except OSError as err:
        print(f"vigil compile: cannot write {path}: {err.strerror}", file=sys.stderr)
        return 1
    print(f"{len(result.units)} unit(s), {len(result.broken)} broken: {path}")
    return 1 if result.problems else 0


def write_db(path: str, db: dict[str, Any]) -> None:
    """Whole or not at all: a temporary file renamed over the old one."""
    folder, name = os.path.split(os.path.abspath(path))
    temp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(marshal.dumps(db))
            f.flush()
            os.fsync(f.fileno())
        os.rename(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
