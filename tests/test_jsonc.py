"""vigil.base.jsonc stands in for json on the protocol's path (issue 17): it
must encode and decode as json does, fail where json fails, and keep `re`
out of the processes that use it."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from vigil.base import jsonc

VALUES = [
    {"v": 1, "id": 7, "cmd": "status", "args": {"units": ["web", "db:1"]}},
    [1, -2, 3.5, 1e300, -0.0, 10**30, True, False, None, "", "\u00e9\u4e2d\U0001f600"],
    {"nested": [[[{"a": [{}]}]]], "ctl\n\t\x00\x1f": "\\\"/", "nan": float("nan")},
    "a plain string", 42, 3.14159, float("inf"), float("-inf"), [], {},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_encodes_and_decodes_as_json_does(value):
    mine = jsonc.dumps(value, separators=(",", ":"))
    assert mine == json.dumps(value, separators=(",", ":"))
    assert jsonc.dumps(value) == json.dumps(value)
    assert repr(jsonc.loads(mine)) == repr(json.loads(mine))
    assert repr(jsonc.loads(mine.encode())) == repr(json.loads(mine.encode()))


def test_default_and_unserializable():
    assert jsonc.dumps({"x": frozenset([3])}, default=sorted) == json.dumps(
        {"x": frozenset([3])}, default=sorted) == '{"x": [3]}'
    with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
        jsonc.dumps({"x": {1}})
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        jsonc.dumps(loop)


MALFORMED = ["", " ", "{", "}", "[1,]", '{"a":1,}', '{"a" 1}', "nul", "tru", "01",
             '"unterminated', '"bad \\x escape"', '"ctl \x01 in string"', "1 2", "[] x",
             '{"a":1}{"b":2}', "\ufeff{}", "+1", ".5", "[1e]", "{1: 2}", "\x0b1"]


@pytest.mark.parametrize("text", MALFORMED)
def test_fails_where_json_fails(text):
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as mine:
        jsonc.loads(text)
    assert (mine.value.msg, mine.value.pos) == (theirs.value.msg, theirs.value.pos)


def test_random_documents_round_trip_alike():
    """Documents mutated at random (a byte dropped, doubled or changed):
    both accept the same ones, with the same result."""
    rng = random.Random(17)
    base = json.dumps(VALUES[:3])
    for _ in range(2000):
        chars = list(base)
        at = rng.randrange(len(chars))
        kind = rng.randrange(3)
        if kind == 0:
            del chars[at]
        elif kind == 1:
            chars.insert(at, chars[at])
        else:
            chars[at] = rng.choice(' \t\n\r{}[],:"\\0123456789.eE+-atrufnl\x01\u00e9')
        text = "".join(chars)
        try:
            theirs = repr(json.loads(text))
        except ValueError:
            theirs = "error"
        try:
            mine = repr(jsonc.loads(text))
        except ValueError:
            mine = "error"
        assert mine == theirs, text


def test_deep_nesting_is_an_error_not_a_crash():
    with pytest.raises(RecursionError):
        jsonc.loads("[" * 100_000 + "]" * 100_000)


def test_utf8_bytes_with_a_bom_read_as_json_reads_them():
    assert jsonc.loads(b"\xef\xbb\xbf{\"a\": 1}") == json.loads(b"\xef\xbb\xbf{\"a\": 1}") == {"a": 1}
    with pytest.raises(UnicodeDecodeError):
        jsonc.loads(b"\"\xff\"")


@pytest.mark.parametrize("text", ['{', '{"a" 1}', '"abc', "[1 2]", '"\\x"', '"\x01"'])
def test_malformed_without_json_imported(text):
    """In a process that never imported json (PID 1), a malformed document
    raises json's own error, not 3.11's bare SystemError, and the protocol
    answers bad-json."""
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    code = ("import sys\nfrom vigil.base import jsonc\nfrom vigil.wire import protocol\n"
            "assert 'json' not in sys.modules\n"
            f"try:\n    jsonc.loads({text!r})\n"
            "except ValueError as err:\n    print(type(err).__name__, err.msg, err.pos)\n"
            f"try:\n    protocol.parse_request({text.encode()!r})\n"
            "except protocol.ProtocolError as err:\n    print(err.code)\n")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.splitlines() == [
        f"JSONDecodeError {theirs.value.msg} {theirs.value.pos}", "bad-json"], out.stderr
