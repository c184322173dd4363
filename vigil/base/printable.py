"""Text vigil did not write (a service's output, a health check's answer, a
file name, a value from a converted file), made safe to show on a terminal
or in a comment: every control character is written as `\\xNN`, as `less`
and `journalctl` show them. So such text cannot move the cursor, erase a
line, set the clipboard (OSC 52), retitle the window or begin a line of its
own: on the console a service's line always begins with vigil's prefix, and
vigil's own `[  OK  ]` lines cannot be forged. A TOML comment made of it
cannot end early (TOML forbids control characters in comments anyway).

Only what terminals act on is escaped: C0 (a tab is kept, it only moves
right), DEL, C1 (some terminals take U+009B as CSI), the Unicode line and
paragraph separators, and the bidirectional overrides that reorder what is
shown. No imports: PID 1 and vigilctl both use it on every line.
"""

from __future__ import annotations

_ESCAPES: dict[int, str] = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))
                            if c != 0x09}
_ESCAPES.update({c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0x202A, 0x202F),
                                             *range(0x2066, 0x206A))})


def printable(text: str) -> str:
    """text with each control character (newline and carriage return too,
    not tab) written as an escape; text without any is returned as it is."""
    if text.isprintable():  # the usual line: nothing to do
        return text
    return text.translate(_ESCAPES)


def printable_lines(text: str) -> str:
    """For vigil's own messages of several lines (a unit file's problems):
    each line made printable, the newlines between them kept."""
    return "\n".join(printable(line) for line in text.split("\n"))
