"""JSON by CPython's C accelerator (`_json`), without the json package.

json.decoder compiles regular expressions when it is imported, so `import
json` brings `re` (and its parser and compiler) into every process that
speaks the protocol: ~0.3 MB that PID 1 keeps and ~4 ms of its start here
(~0.1 s under QEMU's TCG at boot), and ~15 ms of vigilctl's ~30. The
encoder and scanner that json itself uses are C objects that need none of
it. dumps and loads give what json.dumps (with the same separators) and
json.loads give, and raise what they raise, on UTF-8 (bytes in another
encoding json would guess are refused). The error class is json's own,
imported when the first malformed document comes: CPython 3.11's scanner
only looks json.decoder up in sys.modules, and without it raises a bare
SystemError (found by an independent attack: PID 1 left the line in the
connection's buffer and grew it without bound). vigil runs on CPython only
(cffi, its C spawn), which always has `_json`.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_C: Any = _json  # its stubs know only json's own use of it

WHITESPACE = " \t\n\r"  # JSON's four; str.strip() would take more


class _Options:
    """What the C scanner reads from its context: json.loads's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                      "NaN": float("nan")}.__getitem__


_scan = _C.make_scanner(_Options())


def _unserializable(obj: object) -> object:
    raise TypeError(f"Object of type {obj.__class__.__name__} is not JSON serializable")


def dumps(obj: Any, *, default: Callable[[Any], Any] | None = None,
          separators: tuple[str, str] = (", ", ": ")) -> str:
    """json.dumps(obj, separators=separators, default=default), json's
    defaults included."""
    item, key = separators
    encode = _C.make_encoder({}, default or _unserializable, _C.encode_basestring_ascii,
                             None, key, item, False, False, True)
    return "".join(encode(obj, 0))


def loads(text: str | bytes) -> Any:
    """json.loads(text): one JSON value with only whitespace around it."""
    if isinstance(text, (bytes, bytearray)):  # UTF-8, a leading BOM dropped, as json.loads
        text = bytes(text).removeprefix(b"\xef\xbb\xbf").decode()
    if text.startswith("\ufeff"):
        raise _error("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    start = _skip(text, 0)
    try:
        obj, end = _scan(text, start)
    except StopIteration as err:
        raise _error("Expecting value", text, err.value) from None
    except SystemError:  # 3.11: malformed, and json.decoder not yet imported
        import json.decoder  # noqa: F401 - the scanner finds its error class there
        obj, end = _scan(text, start)  # raises the JSONDecodeError json.loads would
    after = _skip(text, end)
    if after != len(text):
        raise _error("Extra data", text, after)
    return obj


def _skip(text: str, at: int) -> int:
    """Where the whitespace that starts at `at` ends."""
    rest = text[at:]
    return at + len(rest) - len(rest.lstrip(WHITESPACE))


def _error(message: str, text: str, at: int) -> ValueError:
    from json import JSONDecodeError  # malformed input only
    return JSONDecodeError(message, text, at)
