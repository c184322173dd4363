"""Hypothesis against a live daemon: any request shape, any arguments, for
every command; the daemon answers each with a reply or an error and serves on."""

from __future__ import annotations

import json
import socket

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.daemon import Daemon, wait_for

COMMANDS = ["ping", "list", "status", "start", "stop", "restart", "reload", "logs", "events",
            "why", "cat", "deps", "timeline", "attach", "input", "resize", "kill", "reboot",
            "halt", "poweroff", "auth", "nope", ""]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True), st.text(max_size=20))
VALUES = st.recursive(SCALARS, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
    max_leaves=12)
UNITS = st.sampled_from([["a"], ["b"], ["a", "b"], ["zz"], [], "a"]) | VALUES
ARGS = st.fixed_dictionaries({}, optional={"units": UNITS, "unit": st.sampled_from(["a", "b"])
                                           | VALUES}) | st.dictionaries(
    st.sampled_from(["units", "lines", "follow", "since", "signal", "all", "no_block",
                     "timeout", "dry_run", "data", "rows", "cols", "token"])
    | st.text(max_size=6), VALUES, max_size=5)
ARGS = st.builds(lambda base, more: {**more, **base}, ARGS, st.dictionaries(
    st.sampled_from(["lines", "follow", "since", "signal", "all", "no_block", "timeout",
                     "dry_run", "data", "rows", "cols"]), VALUES, max_size=4))
REQUESTS = st.fixed_dictionaries({"v": st.sampled_from([1, 1, 1, 2, "1", None]),
                                  "id": VALUES, "cmd": st.sampled_from(COMMANDS) | VALUES,
                                  "args": ARGS | VALUES})


def test_any_request_gets_an_answer_and_the_daemon_serves_on(unit_dir, tmp_path):
    d = Daemon(unit_dir({"a.toml": '[service]\nexec = "sleep 1000"\n',
                         "witness-9z.toml": '[service]\nexec = "sleep 1000"\n',
                         "b.toml": '[unit]\nenabled = false\n[service]\nexec = "sleep 1000"\n'}),
               tmp_path)
    try:
        pid = wait_for(lambda: d.inst("witness-9z")["pid"])

        @settings(max_examples=300, deadline=None, phases=[Phase.explicit, Phase.reuse,
                                                           Phase.generate],
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow])
        @given(REQUESTS)
        @example({"v": 1, "id": 1, "cmd": "restart", "args": {"units": ["a"], "timeout": "x"}})
        @example({"v": 1, "id": 2, "cmd": "start", "args": {"units": ["b"], "timeout": None}})
        def one(request: dict) -> None:
            if request.get("cmd") in ("reboot", "halt", "poweroff", "stop", "kill") and \
                    request.get("v") == 1 and isinstance(request.get("args"), dict):
                request["args"].pop("units", None)  # no stopping or killing: units run on
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(10)
            s.connect(d.socket)
            try:
                s.sendall(json.dumps(request).encode() + b"\n")
                line = s.makefile("rb").readline()
            finally:
                s.close()
            assert line, f"no answer to {request!r}:\n{d.output()[-3000:]}"
            reply = json.loads(line)
            assert isinstance(reply, dict) and ("result" in reply or "error" in reply)
        one()
        assert d.call("ping") == "pong"
        assert d.inst("witness-9z")["pid"] == pid, "a unit no request named ran on"
        assert "daemon.bug" not in d.output() and "error in command" not in d.output()
    finally:
        d.stop()
