"""Rules on a service's output (vigil/engine/logwatch.py): ready on a line,
restart on a line or on silence, against a real daemon; and no sink at all
for a unit without rules."""

from __future__ import annotations

import json
from pathlib import Path

from tests.daemon import wait_for
from vigil.runtime.loop import Loop
from vigil.engine.logwatch import Watches
from vigil.model.schema import build_unit
from vigil.engine.states import Instance


def shell(script: str) -> str:
    return json.dumps(["sh", "-c", script])


def unhealthy(d, unit: str) -> list[str]:
    return [e["message"] for e in d.call("events", units=[unit], lines=2000)
            if e["code"] == "unit.unhealthy"]


def test_ready_when_a_line_matches(daemon, tmp_path: Path):
    """Not ready while it prints other lines; ready at "listening on", and
    only then does its dependent start."""
    go = tmp_path / "go"
    script = (f"echo starting; echo loading >&2; while [ ! -e {go} ]; do sleep 0.05; done; "
              "echo listening on 8080 >&2; exec sleep 1000")
    d = daemon({
        "server.toml": f'[service]\nexec = {shell(script)}\n'
                       '[service.ready]\nlog = "listening on [0-9]+"\n',
        "client.toml": '[unit]\nrequires = ["server"]\nafter = ["server"]\n'
                       '[service]\nexec = "sleep 1000"\n'})
    wait_for(lambda: any(x["text"] == "loading" for x in d.call("logs", units=["server"])),
             what="the first lines")
    assert d.status("server")["state"] == "starting"
    assert d.status("client")["state"] == "waiting"
    go.touch()
    wait_for(lambda: d.status("client")["state"] == "running", what="the dependent")
    assert d.status("server")["state"] == "running"


def test_a_line_matching_log_fails_restarts_it(daemon, tmp_path: Path):
    bad = tmp_path / "bad"
    script = (f"echo up; while [ ! -e {bad} ]; do sleep 0.05; done; rm {bad}; "
              "echo 'worker 3: DEADLOCK detected'; exec sleep 1000")
    d = daemon({"svc.toml": f'[service]\nexec = {shell(script)}\nrestart-delay = 0\n'
                            '[service.health]\nlog-fails = "DEADLOCK"\n'})
    first = wait_for(lambda: d.inst("svc")["state"] == "running" and d.inst("svc")["pid"])
    bad.touch()
    wait_for(lambda: d.inst("svc")["pid"] not in (None, first)
             and d.inst("svc")["state"] == "running", what="the restart")
    assert d.inst("svc")["restarts"] == 1
    assert any("a line matched log-fails: worker 3: DEADLOCK detected" in m
               for m in unhealthy(d, "svc"))


def test_silence_restarts_a_quiet_service_and_not_a_talkative_one(daemon, tmp_path: Path):
    d = daemon({
        "quiet.toml": f'[service]\nexec = {shell("echo hello; exec sleep 1000")}\n'
                      'restart-delay = 0\n[service.health]\nsilence = "1s"\n',
        "chatty.toml": f'[service]\nexec = {shell("while :; do echo tick; sleep 0.1; done")}\n'
                       '[service.health]\nsilence = "1s"\n'})
    wait_for(lambda: d.inst("quiet")["restarts"] >= 1, what="the quiet one restarted")
    assert any("no output for 1s (silence = 1s)" in m for m in unhealthy(d, "quiet"))
    wait_for(lambda: len(d.call("logs", units=["chatty"], lines=100)) >= 30,
             what="three seconds of ticks")
    assert d.inst("chatty")["restarts"] == 0
    assert unhealthy(d, "chatty") == []


def test_output_rules_need_output_that_vigil_reads(tmp_path: Path):
    import pytest

    from vigil.base.errors import UnitError
    with pytest.raises(UnitError, match="need stdout or stderr to be log or console"):
        build_unit("x", {"service": {"exec": "true", "stdout": "null", "stderr": "/tmp/x",
                                     "health": {"silence": "1m"}}}, "x.toml", {})
    with pytest.raises(UnitError, match="is not a regular expression"):
        build_unit("x", {"service": {"exec": "true", "ready": {"log": "(unclosed"}}},
                   "x.toml", {})


def test_a_unit_without_rules_gets_no_sink() -> None:
    """The cost for units that do not use rules: nothing is added to their
    lines' path (vigil/engine/streams.py appends no sink)."""
    loop = Loop(lambda what, err: None)
    watches = Watches(loop, lambda inst, event, detail: None)
    plain = build_unit("p", {"service": {"exec": "true"}}, "p.toml", {})
    ruled = build_unit("r", {"service": {"exec": "true", "health": {"log-fails": "x"}}},
                       "r.toml", {})
    assert plain.service is not None and ruled.service is not None
    assert watches.sink(Instance("p", "p", plain.service)) is None
    assert watches.sink(Instance("r", "r", ruled.service)) is not None
    loop.close()
