"""The `vigilctl` command: drives a running vigil over its control socket.

Only what a command needs is imported: a status query must stay fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from vigil.printable import printable, printable_lines
from vigil.protocol import default_socket
from vigilctl import show
from vigilctl.client import Client, ClientError

TYPE_CHECKING = False  # typing costs the client ~10 ms to import; annotations are strings
if TYPE_CHECKING:
    from typing import Any


def _units(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("units", nargs="+" if required else "*")


def _change(p: argparse.ArgumentParser) -> None:
    _units(p, True)
    p.add_argument("--no-block", action="store_true", help="do not wait")


def _start(p: argparse.ArgumentParser) -> None:
    _change(p)
    p.add_argument("--scope", type=int, metavar="PID",
                   help="stop these units when that process (a shell: $$) exits")


def _status(p: argparse.ArgumentParser) -> None:
    _units(p)
    p.add_argument("--json", action="store_true")


def _stream(p: argparse.ArgumentParser) -> None:
    _units(p)
    p.add_argument("-n", "--lines", type=int, default=50)
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--since", help="10m, 2h, 14:05, an ISO time or epoch seconds")
    p.add_argument("--json", action="store_true")


def _one(p: argparse.ArgumentParser) -> None:
    p.add_argument("unit")


def _deps(p: argparse.ArgumentParser) -> None:
    _one(p)
    p.add_argument("--reverse", action="store_true", help="what depends on the unit")


def _attach(p: argparse.ArgumentParser) -> None:
    _one(p)
    p.add_argument("--escape", default="^]", help="detach key (default ^], Ctrl-])")


def _kill(p: argparse.ArgumentParser) -> None:
    _units(p, True)
    p.add_argument("-s", "--signal", default="TERM", help="name or number (default TERM)")
    p.add_argument("--all", action="store_true",
                   help="every process of the unit, not just the main one")


def _run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="the unit's name (default run-N)")
    p.add_argument("--restart", choices=["always", "on-failure", "never"], default="never")
    p.add_argument("--port", help="a port for $PORT, or auto for a free one")
    p.add_argument("--wait-port", metavar="PORT",
                   help="ready when this port (or `port`: its $PORT) accepts a connection")
    p.add_argument("--wait-http", metavar="URL", help="ready when a GET of URL answers 2xx")
    p.add_argument("--wait-cmd", metavar="CMD", help="ready when CMD (split as a shell "
                   "would, not run by one) exits 0")
    p.add_argument("--health-port", metavar="PORT", help="then keep checking this port "
                   "(or `port`)")
    p.add_argument("--health-http", metavar="URL", help="then keep checking URL")
    p.add_argument("--health-cmd", metavar="CMD", help="then keep running CMD")
    p.add_argument("--health-interval", type=float, default=10.0, metavar="SECONDS")
    p.add_argument("--health-retries", type=int, default=3, metavar="N",
                   help="failures in a row before a restart (default 3)")
    p.add_argument("--env", action="append", default=[], metavar="NAME",
                   help="pass this variable from here (PATH always is)")
    p.add_argument("--no-block", action="store_true", help="do not wait until it is ready")
    p.add_argument("--scope", type=int, metavar="PID",
                   help="stop the unit when that process (a shell: $$) exits")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")


def _convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("file")
    p.add_argument("-o", "--output-dir", help="write NAME.toml files here instead of printing")


def _up(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--procfile", default="Procfile", help="default ./Procfile")
    p.add_argument("-d", "--detach", action="store_true",
                   help="return at once; the services live as long as this shell")


def _none(p: argparse.ArgumentParser) -> None:
    pass


# name -> (help, how to set up its arguments). Only the parser of the command
# given is built: argparse costs ~0.8 ms per subparser, and status must be fast.
SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], object]]] = {
    "status": ("show units", _status),
    "start": ("start units and wait until they are ready", _start),
    "stop": ("stop units and wait until they are down", _change),
    "restart": ("restart units and wait until they are ready", _change),
    "reload": ("re-read unit files; restart only what changed",
               lambda p: p.add_argument("--dry-run", action="store_true")),
    "logs": ("show service output", _stream),
    "events": ("show the event stream", _stream),
    "why": ("why a unit is not running", _one),
    "kill": ("send a signal to units' processes (the restart policy decides what next)",
             _kill),
    "cat": ("print the effective unit as TOML", lambda p: _units(p, True)),
    "deps": ("draw the dependency tree", _deps),
    "timeline": ("when each unit started and became ready", _none),
    "attach": ("connect the terminal to a console = \"pty\" unit", _attach),
    "convert": ("turn a systemd unit, supervisord config or Procfile into TOML", _convert),
    "run": ("run a command as a unit without writing a file (like systemd-run)", _run),
    "up": ("run a Procfile's processes, showing their output; Ctrl-C stops them", _up),
    "reboot": ("reboot the machine (system mode)", _none),
    "halt": ("halt the machine (system mode)", _none),
    "poweroff": ("power the machine off (system mode)", _none),
    "shutdown": ("stop everything and exit the daemon", _none),
    "daemon-reexec": ("execute the daemon afresh; services keep running, same pids", _none),
    "ping": ("check the daemon answers", _none),
    "check": ("validate unit directories offline",
              lambda p: p.add_argument("dirs", nargs="*")),
}


class Formatter(argparse.HelpFormatter):
    """argparse's own asks shutil for the terminal width, and importing shutil
    (with bz2 and lzma) costs every `vigilctl status` ~2.5 ms."""

    def __init__(self, prog: str) -> None:
        try:
            width = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(1).columns
        except (ValueError, OSError):
            width = 80
        super().__init__(prog, width=max(width - 2, 40))


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vigilctl", formatter_class=Formatter,
                                description="Control a running vigil. "
                                "Without a command: an interactive shell.")
    p.add_argument("--socket", help="control socket (default: VIGIL_SOCKET or the usual place)")
    p.add_argument("--system", action="store_true", help="talk to the system instance")
    p.add_argument("--timeout", type=float, default=130.0, help="seconds to wait for answers")
    p.add_argument("--units", metavar="DIR", dest="project",
                   help="a project's units: its own daemon, started on first use")
    p.add_argument("--remote", metavar="HOST:PORT", help="a daemon's TCP endpoint (vigil --listen)")
    p.add_argument("--token-file", help="the remote token (or VIGIL_TOKEN)")
    p.add_argument("--tls", action="store_true", help="use TLS with --remote")
    p.add_argument("--ca", help="CA file to verify the remote certificate")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    chosen = _command_word(argv)
    for name, (what, setup) in SUBCOMMANDS.items():
        if chosen is None or chosen == name:
            setup(sub.add_parser(name, help=what, formatter_class=Formatter))
    return p


def _command_word(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv, if it is a known one before any -h."""
    args = iter(argv)
    for arg in args:
        if arg in ("--socket", "--timeout", "--remote", "--token-file", "--ca", "--units"):
            next(args, None)
        elif not arg.startswith("-"):
            return arg if arg in SUBCOMMANDS else None
        elif arg in ("-h", "--help"):
            return None
    return None


def cmd_status(client: Client, opts: argparse.Namespace) -> int:
    units = client.call("status", units=opts.units)
    if opts.json:
        print(json.dumps(units, indent=2))
    else:
        show.status(units, color(sys.stdout))
    return 0 if all(u["state"] in show.GOOD for u in units) else 3


def cmd_change(client: Client, opts: argparse.Namespace) -> int:
    args = {"scope": opts.scope} if getattr(opts, "scope", None) is not None else {}
    result = client.call(opts.cmd, units=opts.units, no_block=opts.no_block, **args)
    for name, state in sorted(result.items()):
        print(f"{name}: {state}")
    return 0


def cmd_reload(client: Client, opts: argparse.Namespace) -> int:
    result = client.call("reload", dry_run=opts.dry_run)
    for change in result["changes"]:
        print(printable(f"{change['action']:9} {change['unit']}: {change['why']}"))
    for problem in result["problems"]:
        print(f"problem: {printable_lines(problem)}", file=sys.stderr)
    if not result["changes"]:
        print("nothing changed")
    return 1 if result["problems"] else 0


def cmd_stream(client: Client, opts: argparse.Namespace) -> int:
    """logs and events: the recent lines, then (-f) everything new."""
    since = show.parse_since(opts.since) if opts.since else 0
    lines = client.call(opts.cmd, units=opts.units, lines=opts.lines, follow=opts.follow,
                        since=since)

    def line(x: dict[str, Any]) -> str:
        return json.dumps(x) if opts.json else show.stream_line(x, opts.cmd)
    for x in lines:
        print(line(x))
    if opts.follow:
        sys.stdout.flush()
        for x in client.stream():
            print(line(x), flush=True)
    return 0


def cmd_cat(client: Client, opts: argparse.Namespace) -> int:
    import tomli_w
    for n, unit in enumerate(client.call("cat", units=opts.units)):
        if n:
            print()
        print(f"# {unit['unit']}: " + ", ".join(unit["files"]))
        print(tomli_w.dumps(unit["toml"]), end="")
    return 0


def cmd_kill(client: Client, opts: argparse.Namespace) -> int:
    signal = int(opts.signal) if opts.signal.isdigit() else opts.signal
    sent = client.call("kill", units=opts.units, signal=signal, all=opts.all)
    for name, pid in sorted(sent.items()):
        print(f"{name}: signalled {pid}")
    return 0 if sent else 1


def cmd_run(client: Client, opts: argparse.Namespace) -> int:
    command = opts.command[1:] if opts.command[:1] == ["--"] else opts.command
    if not command:
        raise ValueError("name the command: vigilctl run [OPTIONS] -- CMD [ARGS...]")
    env = {"PATH": os.environ.get("PATH", "")}
    env.update({name: os.environ[name] for name in opts.env if name in os.environ})
    args: dict[str, Any] = {"exec": command, "env": env, "cwd": os.getcwd(),
                            "restart": opts.restart, "no_block": opts.no_block}
    if opts.name:
        args["name"] = opts.name
    if opts.scope is not None:
        args["scope"] = opts.scope
    if opts.port:
        args["port"] = opts.port if opts.port == "auto" else int(opts.port)
    ready = _probe(opts.wait_port, opts.wait_http, opts.wait_cmd)
    if ready:
        args["ready"] = ready
    health = _probe(opts.health_port, opts.health_http, opts.health_cmd)
    if health:
        args["health"] = {**health, "interval": opts.health_interval,
                          "retries": opts.health_retries}
    for name, state in client.call("run", **args).items():
        print(f"{name}: {state}")
    return 0


def _probe(port: str | None, url: str | None, cmd: str | None) -> dict[str, Any]:
    """A [service.ready] or [service.health] table from run's flags; the
    daemon validates it as it would a unit file (and refuses two at once)."""
    table: dict[str, Any] = {}
    if port:
        table["tcp"] = port if port == "port" or not port.isdigit() else int(port)
    if url:
        table["http"] = url
    if cmd:
        table["exec"] = cmd  # a string: split as a shell would
    return table


def cmd_deps(client: Client, opts: argparse.Namespace) -> int:
    client.call("status", units=[opts.unit])  # a clear error for an unknown unit
    show.deps(client.call("deps"), opts.unit, color(sys.stdout), opts.reverse)
    return 0


def cmd_simple(client: Client, opts: argparse.Namespace) -> int:
    """Commands whose answer is printed as it comes: why, shutdown, reboot..."""
    args = {"units": [opts.unit]} if opts.cmd == "why" else {}
    result = client.call(opts.cmd, **args)
    if opts.cmd == "timeline":
        show.timeline(result)
    else:
        print(printable(str(result)))
    return 0


def cmd_ping(client: Client, opts: argparse.Namespace) -> int:
    import time
    began = time.perf_counter()
    client.call("ping")
    print(f"pong in {(time.perf_counter() - began) * 1000:.1f} ms")
    return 0


def cmd_attach(client: Client, opts: argparse.Namespace) -> int:
    from vigilctl.attach import attach
    return attach(client, opts.unit, opts.escape)


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "status": cmd_status, "start": cmd_change, "stop": cmd_change, "restart": cmd_change,
    "reload": cmd_reload, "logs": cmd_stream, "events": cmd_stream, "cat": cmd_cat,
    "deps": cmd_deps, "why": cmd_simple, "timeline": cmd_simple, "shutdown": cmd_simple,
    "reboot": cmd_simple, "halt": cmd_simple, "poweroff": cmd_simple, "ping": cmd_ping,
    "daemon-reexec": cmd_simple, "run": cmd_run,
    "attach": cmd_attach, "kill": cmd_kill,
}


def color(stream: Any) -> bool:
    return bool(stream.isatty()) and not os.environ.get("NO_COLOR")


def socket_path(opts: argparse.Namespace) -> str:
    return str(opts.socket or default_socket(opts.system))


def connect(opts: argparse.Namespace) -> Client:
    if not opts.remote:
        if opts.socket or opts.system:
            return Client(socket_path(opts), timeout=opts.timeout)
        from vigilctl import project
        units = project.find(opts.project)
        if units is None:
            return Client(socket_path(opts), timeout=opts.timeout)
        path = project.socket_for(units)
        try:
            client = Client(path, timeout=opts.timeout)
        except ClientError:
            if opts.cmd in ("shutdown", "ping"):
                raise
            project.start(units, path, project.holder())
            return Client(path, timeout=opts.timeout)
        if opts.cmd != "shutdown":
            project.hold(client, project.holder())
        return client
    token = os.environ.get("VIGIL_TOKEN")
    if opts.token_file:
        try:
            with open(opts.token_file) as f:
                token = f.read().strip()
        except OSError as err:
            raise ClientError(f"--token-file {opts.token_file}: {err.strerror}") from None
    return Client("", opts.timeout, remote=opts.remote, token=token, tls=opts.tls, ca=opts.ca)


def run(opts: argparse.Namespace) -> int:
    if opts.cmd == "check":
        from vigil.check import check
        return check(opts.dirs)
    if opts.cmd == "convert":
        from vigilctl.convert import main as convert
        return convert(opts.file, opts.output_dir)
    if opts.cmd == "up":
        from vigilctl.project import up
        return up(opts.procfile, opts.detach, opts.timeout)
    client = connect(opts)
    try:
        return COMMANDS[opts.cmd](client, opts)
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
        called = os.path.basename(sys.argv[0])
        if called in ("reboot", "halt", "poweroff"):  # linked under those names
            argv = ["--system", *argv, called]
    parser = build_parser(argv)
    try:
        opts = parser.parse_args(argv)
    except SystemExit as exit:
        return int(exit.code or 0)
    try:
        if opts.cmd is None:
            from vigilctl.shell import Shell
            return Shell(build_parser(), opts).loop()
        return run(opts)
    except ClientError as err:  # RequestFailed included
        print(f"vigilctl: {printable_lines(str(err))}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"vigilctl: {printable_lines(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


