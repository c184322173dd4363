"""The `vigilctl` command: drives a running vigil over its control socket.

Only what a command needs is imported: a status query must stay fast.
"""

from __future__ import annotations

import os
import sys

from vigil.base import jsonc
from vigil.base.printable import printable, printable_lines
from vigil.wire.protocol import default_socket
from vigilctl import show
from vigilctl.client import Client, ClientError

TYPE_CHECKING = False  # typing costs the client ~10 ms to import; annotations are strings
if TYPE_CHECKING:  # and collections.abc ~2.5 ms
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any


def pretty(value: Any) -> str:
    """--json output, indented: json is imported only here (its `re` costs
    every other command ~15 ms)."""
    import json
    return json.dumps(value, indent=2)


def cmd_status(client: Client, opts: argparse.Namespace) -> int:
    units = client.call("status", units=opts.units)
    if opts.json:
        print(pretty(units))
    else:
        show.status(units, color(sys.stdout))
        show.next_runs(units)
        for unit in units:  # the units named: their last lines (vigilctl logs -u UNIT: more)
            if unit.get("recent"):
                print(f"\n{printable(unit['unit'])}: the last lines")
                for line in unit["recent"]:
                    print("  " + show.log_line(line, color(sys.stdout)))
    return 0 if all(show.good(u["state"]) for u in units) else 3


def cmd_timers(client: Client, opts: argparse.Namespace) -> int:
    rows = client.call("timers")
    if opts.json:
        print(pretty(rows))
    else:
        show.timers(rows)
    return 0


def cmd_change(client: Client, opts: argparse.Namespace) -> int:
    """start, stop, restart: waits (showing the daemon's reports) until the
    units are ready and stable, or down; a failure is exit 1 with its reason."""
    names = expand_all(client, opts.cmd, opts.units)
    args = {"scope": opts.scope} if getattr(opts, "scope", None) is not None else {}
    if opts.no_block or not names:
        result = client.call(opts.cmd, units=names, no_block=True, **args) if names else {}
    else:
        result = _waiting(client, opts.cmd, names, "stopping" if opts.cmd == "stop" else
                          "starting", units=names, **args)
        if result is None:
            return 130
    for name, state in sorted(result.items()):
        print(f"{name}: {state}")
    return 0


def _waiting(client: Client, cmd: str, names: list[str], doing: str, **args: Any) -> Any:
    """A waiting request with its progress shown; None if Ctrl-C ended the wait."""
    from vigilctl.progress import Progress, interrupted
    progress = Progress(names, doing)
    try:
        return client.call_reporting(cmd, progress.report, progress.draw, progress=True,
                                     **args)
    except KeyboardInterrupt:
        progress.done()
        say(interrupted(cmd, names))
        return None
    finally:
        progress.done()


def expand_all(client: Client, cmd: str, names: list[str]) -> list[str]:
    """supervisorctl's `all` (when no unit is named so): `stop all` every
    unit, `restart all` every active one, `start all` every enabled one."""
    if names != ["all"]:
        return names
    units = client.call("status")
    if any(u["unit"] == "all" for u in units):
        return names
    if cmd == "stop":
        return [u["unit"] for u in units if u["state"] not in ("inactive", "broken")]
    if cmd == "restart":
        return [u["unit"] for u in units if u["state"] not in ("inactive", "broken", "skipped")]
    return [u["unit"] for u in units if u["state"] != "broken" and u.get("enabled", True)]


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
    since = opts.since or 0  # checked and read by values.since
    count = 50 if opts.lines is None else opts.lines  # logs --remote: the daemon's tail
    lines = client.call(opts.cmd, units=opts.units + opts.more_units, lines=count,
                        follow=opts.follow, since=since)

    def line(x: dict[str, Any]) -> str:
        if opts.json:
            return jsonc.dumps(x)
        return show.stream_line(x, opts.cmd, colored)
    colored = color(sys.stdout)
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


def cmd_reload_unit(client: Client, opts: argparse.Namespace) -> int:
    """systemctl reload: the services reload themselves; `reload` is daemon-reload."""
    results = client.call("reload-unit", units=opts.units)
    for _name, result in sorted(results.items()):
        print(printable(result["message"]), file=sys.stdout if result["ok"] else sys.stderr)
    return 0 if results and all(r["ok"] for r in results.values()) else 1


def cmd_kill(client: Client, opts: argparse.Namespace) -> int:
    signal = int(opts.signal) if opts.signal.isdigit() else opts.signal
    sent = client.call("kill", units=expand_all(client, "stop", opts.units), signal=signal,
                       all=opts.all)
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
        args["port"] = opts.port
    ready = _probe(opts.wait_port, opts.wait_http, opts.wait_cmd)
    if ready:
        args["ready"] = ready
    health = _probe(opts.health_port, opts.health_http, opts.health_cmd)
    if health:
        args["health"] = {**health, "interval": opts.health_interval,
                          "retries": opts.health_retries}
    if opts.no_block:
        result = client.call("run", **args)
    else:
        result = _waiting(client, "run", [opts.name or "run"], "starting", **args)
        if result is None:
            return 130
    for name, state in result.items():
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
    if opts.cmd == "shutdown" and not client.wait_closed(opts.timeout):
        say(f"the daemon has not exited after {opts.timeout:g} s")
        return 1
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
    "reload-unit": cmd_reload_unit,
    "deps": cmd_deps, "why": cmd_simple, "timeline": cmd_simple, "shutdown": cmd_simple,
    "reboot": cmd_simple, "halt": cmd_simple, "poweroff": cmd_simple, "ping": cmd_ping,
    "daemon-reexec": cmd_simple, "run": cmd_run,
    "attach": cmd_attach, "kill": cmd_kill, "signal": cmd_kill, "timers": cmd_timers,
    "completion": lambda client, opts: print("\n".join(client.call("list"))) or 0,
}


def color(stream: Any) -> bool:
    return bool(stream.isatty()) and not os.environ.get("NO_COLOR")


def socket_path(opts: argparse.Namespace) -> str:
    return str(opts.socket or default_socket(opts.system, say))


def say(text: str) -> None:
    print(f"vigilctl: {text}", file=sys.stderr)


# The commands that may start a project's daemon on first use. Any other
# (a look, a stop, a shutdown) has nothing to do where none runs, and a look
# must never run a project's unit files.
STARTS = frozenset({"start", "restart", "run"})


def connect(opts: argparse.Namespace) -> Client:
    """The daemon to talk to: --remote; else --socket, a project named with
    --units, VIGIL_SOCKET (a container's services get it), the working
    directory's project, the daemon of its Procfile (`up -d`), and last the
    system's or the user's default."""
    if not opts.remote:
        from_env = os.environ.get("VIGIL_SOCKET") and not opts.project
        if opts.socket or opts.system or from_env:
            return Client(socket_path(opts), timeout=opts.timeout)
        from vigilctl import project
        units = project.find(opts.project)
        if units is None:
            procfile = project.find_procfile()  # a directory where `vigilctl up -d` ran
            if procfile is not None and os.path.exists(project.socket_for(procfile)):
                return project.connect_procfile(procfile, opts.timeout)
            return Client(socket_path(opts), timeout=opts.timeout)
        return project.connect(units, opts.timeout, may_start=opts.cmd in STARTS,
                               hold_it=opts.cmd != "shutdown")
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
        from vigil.model.check import check
        return check(opts.dirs)
    if opts.cmd == "convert":
        from vigilctl.convert import main as convert
        return convert(opts.file, opts.output_dir)
    if opts.cmd == "completion" and opts.shell != "units":
        from vigilctl.completion import SCRIPTS
        print(SCRIPTS[opts.shell][2](), end="")
        return 0
    if opts.cmd == "up":
        from vigilctl.project import up
        return up(opts.procfile, opts.detach, opts.timeout)
    if opts.cmd == "logs" and not opts.remote:
        from vigilctl.logs import run as logs
        from vigilctl.logshow import store_of
        where = store_of(opts, lambda: socket_path(opts))
        return logs(opts, where, color(sys.stdout))
    client = connect(opts)
    try:
        command = COMMANDS.get(opts.cmd)
        if command is None:
            from vigilctl.verbs import COMMANDS as VERBS
            command = VERBS[opts.cmd]
        return command(client, opts)
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
        called = os.path.basename(sys.argv[0])
        if called in ("reboot", "halt", "poweroff"):  # linked under those names
            argv = ["--system", *argv, called]
    from vigilctl import quick
    opts = quick.parse(argv)  # the common commands, without argparse
    if opts is None:
        from vigilctl.options import build_parser, resolve
        argv = resolve(argv)
        try:
            opts = build_parser(argv).parse_args(argv)
        except SystemExit as exit:
            return int(exit.code or 0)
    try:
        if opts.cmd is None:
            from vigilctl.options import build_parser
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


