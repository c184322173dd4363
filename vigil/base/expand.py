"""Variables in a unit's commands and working directory: `$NAME`,
`${NAME}`, `${NAME:-default}` from the environment the process gets, and
`$$` for a literal `$`.

Expanded at each start, in the daemon, with the process's own environment
(env, env-files, pass-env, `$PORT`, and `$MAINPID` for the commands that run
beside a main process). Each word stays one word: no splitting, no globbing.
The script of a shell (`sh -c SCRIPT`) is left to that shell, which gets the
same environment and expands the same syntax, and whose own `$i`, `$$` and
`$!` keep their meaning. `$` before anything else (`$(`, `$1`) is literal.

At load, `check_unit` refuses a variable that can never be set, naming the
key. Plain string code: no `re` on the daemon's start path.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any

_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME = _FIRST | frozenset("0123456789")
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ash", "ksh", "mksh", "busybox"})
# set by vigil for every unit, or by the system (TZ, LANG, LC_*) in system mode
ALWAYS = frozenset({"PATH", "VIGIL_UNIT", "VIGIL_INSTANCE", "TZ", "LANG"})


class ExpandError(ValueError):
    """A malformed reference: `${` without `}`, or an empty name."""


def _tokens(text: str) -> Iterator[tuple[str, str | None]]:
    """(literal, None) and (name, default-or-None as "\\0" + text) pieces."""
    i, n, start = 0, len(text), 0
    while i < n:
        if text[i] != "$" or i + 1 >= n:
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            yield text[start:i + 1], None  # up to and with one "$"
            i = start = i + 2
        elif nxt == "{":
            end = text.find("}", i + 2)
            if end < 0:
                raise ExpandError(f"{text!r}: '${{' without '}}' (write $$ for a literal $)")
            name, sep, default = text[i + 2:end].partition(":-")
            if not name or name[0] not in _FIRST or not set(name) <= _NAME:
                raise ExpandError(f"{text!r}: '{text[i:end + 1]}' is not ${{NAME}} or "
                                  "${NAME:-default}")
            yield text[start:i], None
            yield name, ("\0" + default) if sep else ""
            i = start = end + 1
        elif nxt in _FIRST:
            j = i + 1
            while j < n and text[j] in _NAME:
                j += 1
            yield text[start:i], None
            yield text[i + 1:j], ""
            i = start = j
        else:
            i += 1  # "$(" or "$1": literal
    yield text[start:], None


def expand(text: str, env: Mapping[str, str]) -> str:
    """The text with its variables replaced; an unset one is empty."""
    if "$" not in text:
        return text
    out = []
    for piece, ref in _tokens(text):
        if ref is None:
            out.append(piece)
        elif ref.startswith("\0"):
            value = env.get(piece, "")
            out.append(value if value else ref[1:])
        else:
            out.append(env.get(piece, ""))
    return "".join(out)


def shell_script(argv: tuple[str, ...] | list[str]) -> int:
    """The index of a shell's `-c` script in argv, or -1."""
    if argv[0].rpartition("/")[2] not in SHELLS:
        return -1
    for i in range(1, len(argv) - 1):
        word = argv[i]
        if not word.startswith("-") or word == "--":
            return -1
        if not word.startswith("--") and "c" in word[1:]:
            return i + 1
    return -1


def expand_argv(argv: tuple[str, ...] | list[str], env: Mapping[str, str]) -> list[str]:
    """Each word expanded, except a shell's script (the shell does that)."""
    script = shell_script(argv)
    return [w if i == script else expand(w, env) for i, w in enumerate(argv)]


def names(text: str) -> list[tuple[str, bool]]:
    """The variables a text refers to, each with whether it has a default."""
    if "$" not in text:
        return []
    return [(piece, ref.startswith("\0")) for piece, ref in _tokens(text) if ref is not None]


def settable(fields: Mapping[str, Any]) -> set[str] | None:
    """The names a unit's processes may have; None when anything may be
    (an env-file can set any name)."""
    if fields.get("env_file"):
        return None
    known = set(ALWAYS) | {k for k, _ in fields.get("env", ())} | set(fields.get("pass_env", ()))
    if fields.get("port") is not None:
        known.add("PORT")
    if fields.get("user") is not None:
        known |= {"HOME", "USER", "LOGNAME"}
    if fields.get("watchdog") is not None:
        known.add("WATCHDOG_USEC")
    return known


_KEYS = (("exec", "exec"), ("exec_pre", "exec-pre"), ("exec_post", "exec-post"),
         ("exec_stop", "exec-stop"), ("exec_reload", "exec-reload"))
_MAINPID = frozenset({"exec_post", "exec_stop", "exec_reload"})  # a main process runs then


def check_unit(fields: Mapping[str, Any], notify: bool = False) -> list[tuple[str, str]]:
    """(key, message) for each reference that is malformed or can never be set."""
    known = settable(fields)
    problems = []
    for field, key in _KEYS:
        value = fields.get(field)
        if not value:
            continue
        cmds = [value] if field == "exec" else value
        here = None if known is None else set(known)
        if here is not None and field in _MAINPID:
            here.add("MAINPID")
        if here is not None and field == "exec" and notify:
            here.add("NOTIFY_SOCKET")
        if here is not None and field == "exec_pre" and fields.get("port") == "auto":
            here.discard("PORT")  # chosen as the main process starts, after exec-pre
        for cmd in cmds:
            script = shell_script(cmd)
            for i, word in enumerate(cmd):
                if i != script:
                    problems += _check(f"service.{key}", word, here)
    if fields.get("cwd"):
        problems += _check("service.cwd", fields["cwd"], known)
    return problems


def _check(key: str, text: str, known: set[str] | None) -> list[tuple[str, str]]:
    try:
        refs = names(text)
    except ExpandError as err:
        return [(key, str(err))]
    for name, has_default in refs:
        if has_default or known is None or name in known \
                or name.startswith(("VIGIL_", "LC_")):
            continue
        why = ("port = \"auto\" is chosen after exec-pre" if name == "PORT" else
               "not in env, pass-env or vigil's own")
        return [(key, f"${name} can never be set ({why}; write ${{{name}:-default}}, "
                      "or $$ for a literal $)")]
    return []
