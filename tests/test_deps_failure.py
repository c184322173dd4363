"""Dependencies against a real daemon, with nothing to mask a broken order:
`restart = "never"` everywhere, so a unit started too early fails for good
instead of being retried into the right order."""

from __future__ import annotations

from tests.daemon import wait_for


def test_a_unit_whose_requirement_failed_does_not_start_and_says_why(daemon, tmp_path):
    # breaks: vigil/engine/manager.py:Manager._drain_starts: `dep in unit.requires` -> `False`
    # (web and api start; the test sees web's marker). The transitive case (api) failed
    # before this commit: web left the goal and api then waited for nothing.
    ran = tmp_path / "ran"
    d = daemon({
        "db.toml": '[service]\nexec = "/nonexistent/db"\nrestart = "never"\n',
        "web.toml": f'[unit]\nrequires = ["db"]\n[service]\nexec = "sh -c \'echo web >> {ran}; '
                    f'exec sleep 1000\'"\nrestart = "never"\n',
        "api.toml": f'[unit]\nrequires = ["web"]\n[service]\nexec = "sh -c \'echo api >> {ran}; '
                    f'exec sleep 1000\'"\nrestart = "never"\n',
    })
    wait_for(lambda: d.status("api")["state"] == "failed", what="api failed")
    assert d.status("db")["state"] == "failed"
    assert d.status("web")["state"] == "failed"
    assert d.call("why", units=["web"]) == "not started: its requirement 'db' failed"
    assert d.call("why", units=["api"]) == "not started: its requirement 'web' failed"
    assert "web not started: its requirement 'db' failed" in d.output()
    assert not ran.exists(), ran.read_text()


def test_dependents_stop_when_a_required_unit_fails(daemon, tmp_path):
    # breaks: vigil/engine/manager.py:Manager._settled: `if dependents:` -> `if False:` (web runs on)
    trigger = tmp_path / "fail-now"
    d = daemon({
        "db.toml": f'[service]\nexec = "sh -c \'while [ ! -e {trigger} ]; do sleep 0.05; done; '
                   f'exit 1\'"\nrestart = "never"\n',
        "web.toml": '[unit]\nrequires = ["db"]\n[service]\nexec = "sleep 1000"\n'
                    'restart = "never"\n',
        "side.toml": '[unit]\nwants = ["db"]\n[service]\nexec = "sleep 1000"\nrestart = "never"\n',
    })
    wait_for(lambda: d.status("web")["state"] == "running" and
             d.status("side")["state"] == "running", what="web and side running")
    trigger.touch()
    wait_for(lambda: d.status("db")["state"] == "failed", what="db failed")
    wait_for(lambda: d.status("web")["state"] == "inactive", what="web stopped")
    assert d.inst("web")["last_exit"] == "killed by SIGTERM"
    assert "stopping web: required db failed" in d.output()
    assert d.status("side")["state"] == "running"  # wants does not bind failure


def test_a_dependent_waits_for_a_oneshot_to_finish(daemon, tmp_path):
    # breaks: vigil/engine/manager.py:Manager._drain_starts: `blocked = True` -> `blocked = False`
    # (app runs before the marker exists and fails for good: no retry masks it)
    marker = tmp_path / "prepared"
    d = daemon({
        "prep.toml": f'[service]\ntype = "oneshot"\nexec = "sh -c \'sleep 0.3; touch {marker}\'"\n'
                     'restart = "never"\n',
        "app.toml": f'[unit]\nrequires = ["prep"]\n[service]\ntype = "oneshot"\n'
                    f'exec = "test -e {marker}"\nrestart = "never"\n',
    })
    wait_for(lambda: d.status("app")["state"] in ("exited", "failed"), what="app to finish")
    assert d.status("app")["state"] == "exited", d.inst("app")["last_exit"]
    assert d.status("prep")["state"] == "exited"


def test_a_dependent_waits_for_its_requirement_to_be_ready(daemon, tmp_path):
    # The readiness probe is a command, not a fixed TCP port another test may hold.
    # breaks: vigil/engine/states.py:_exec_ok: `if ready is not None:` -> `if False:` (srv is
    # running at exec and client runs before srv is ready)
    ready, order = tmp_path / "ready", tmp_path / "order"
    d = daemon({
        "srv.toml": f'[service]\nexec = "sh -c \'sleep 0.5; echo ready >> {order}; touch {ready}; '
                    f'exec sleep 1000\'"\nrestart = "never"\n'
                    f'[service.ready]\nexec = "test -e {ready}"\ninterval = 0.05\n',
        "client.toml": f'[unit]\nrequires = ["srv"]\n[service]\ntype = "oneshot"\n'
                       f'exec = "sh -c \'echo client >> {order}\'"\nrestart = "never"\n',
    })
    wait_for(lambda: d.status("client")["state"] == "exited", what="client to run")
    assert order.read_text().split() == ["ready", "client"]
