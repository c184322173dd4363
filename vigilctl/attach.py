"""`vigilctl attach UNIT`: the terminal talks to a console = "pty" unit
until the escape key (Ctrl-] by default) detaches, leaving it running."""

from __future__ import annotations

import base64
import os
import select
import signal
import sys

from vigilctl.client import Client, ClientError


def escape_byte(spec: str) -> int:
    """`^]` or `^A` style, or a single character."""
    if len(spec) == 2 and spec[0] == "^":
        return ord(spec[1].upper()) ^ 0x40
    if len(spec) == 1:
        return ord(spec)
    raise ValueError(f"--escape: {spec!r} is not a key such as ^] or ^A")


def attach(client: Client, unit: str, escape: str) -> int:
    key = escape_byte(escape)
    first = client.call("attach", unit=unit)
    name = first["instance"]
    out = sys.stdout.fileno()
    os.write(out, base64.b64decode(first["data"]))
    stdin = sys.stdin.fileno()
    saved = None
    if os.isatty(stdin):
        import termios
        import tty
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
        print(f"[attached to {name}; {escape} detaches]\r", file=sys.stderr)

    def resize(*_: object) -> None:
        if os.isatty(stdin):
            size = os.get_terminal_size(stdin)
            if size.lines and size.columns:
                client.send("resize", unit=name, rows=size.lines, cols=size.columns)
    old_winch = signal.signal(signal.SIGWINCH, resize)
    resize()
    status = 0
    try:
        client.sock.settimeout(None)
        while True:
            ready = [client.sock] if client.pending() else select.select(
                [stdin, client.sock], [], [])[0]
            if stdin in ready:
                data = os.read(stdin, 4096)
                if not data or key in data:
                    data = data.split(bytes([key]))[0]
                    if data:
                        client.send("input", unit=name, data=base64.b64encode(data).decode())
                    break
                client.send("input", unit=name, data=base64.b64encode(data).decode())
            if client.sock in ready:
                reply = client.reply()
                if not reply.get("ok"):
                    raise ClientError(reply.get("error", {}).get("message", "attach failed"))
                if not reply.get("stream"):
                    continue  # the answer to an input or resize
                frame = reply["result"]
                if frame.get("eof"):
                    status = 1
                    print(f"\r\n[{name} hung up]\r", file=sys.stderr)
                    break
                os.write(out, base64.b64decode(frame["data"]))
    finally:
        signal.signal(signal.SIGWINCH, old_winch)
        if saved is not None:
            import termios
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
            print(f"\n[detached from {name}]", file=sys.stderr)
    return status
