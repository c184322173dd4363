"""Lifecycle commands (vigil/engine/lifecycle.py, the table's cells in
vigil/engine/lifecycle_states.py) against a real daemon, as a subreaper and as
PID 1: exec-pre, exec-post, exec-stop, exec-reload / reload-signal and
`vigilctl reload-unit`, in systemd's order."""

from __future__ import annotations

import json
from pathlib import Path

from tests.daemon import wait_for


def sh(script: str) -> str:
    return json.dumps(["sh", "-c", script])


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def messages(d, unit: str, code: str) -> list[str]:
    return [e["message"] for e in d.call("events", units=[unit], lines=2000)
            if e["code"] == code]


def test_exec_pre_runs_each_in_order_before_the_main_process(daemon, tmp_path: Path):
    log = tmp_path / "log"
    d = daemon({"svc.toml": f'[service]\nexec = {sh(f"echo main >> {log}; exec sleep 1000")}\n'
                            f'exec-pre = ["sh -c \'echo pre1 >> {log}\'", "-false", '
                            f'"sh -c \'sleep 0.3; echo pre2 >> {log}\'"]\n'})
    wait_for(lambda: d.inst("svc")["state"] == "running", what="running")
    wait_for(lambda: lines(log) == ["pre1", "pre2", "main"], what="the order")
    assert any("'false' failed: exit 1; ignored (-)" in m
               for m in messages(d, "svc", "unit.command-failed"))


def test_a_failing_exec_pre_fails_the_start_and_the_main_never_runs(daemon, tmp_path: Path):
    ran = tmp_path / "ran"
    d = daemon({
        "never.toml": f'[service]\nexec = "touch {ran}"\nexec-pre = "false"\n'
                      'restart = "never"\n',
        "retry.toml": '[service]\nexec = "sleep 1000"\nexec-pre = ["true", "sh -c \'exit 3\'"]\n'
                      'start-retries = 1\nrestart-delay = 0\n',
        "slow.toml": '[service]\nexec = "sleep 1000"\nexec-pre = "sleep 100"\n'
                     'exec-timeout = 0.5\nrestart = "never"\n'})
    wait_for(lambda: d.inst("never")["state"] == "failed", what="never failed")
    assert "exec-pre command 'false' failed: exit 1" in d.inst("never")["reason"]
    assert not ran.exists()
    wait_for(lambda: d.inst("retry")["state"] == "fatal", what="retry gave up")
    assert "failed: exit 3; gave up after 1 retries" in d.inst("retry")["reason"]
    wait_for(lambda: d.inst("slow")["state"] == "failed", what="slow failed")
    assert "timed out after 0.5s (exec-timeout)" in d.inst("slow")["reason"]
    assert d.inst("slow")["pid"] is None


def test_exec_post_runs_once_ready_and_before_dependents(daemon, tmp_path: Path):
    log = tmp_path / "log"
    d = daemon({
        "svc.toml": f'[service]\nexec = {sh(f"echo main >> {log}; exec sleep 1000")}\n'
                    f'exec-post = "sh -c \'sleep 0.5; echo post $MAINPID >> {log}\'"\n',
        "dep.toml": '[unit]\nrequires = ["svc"]\nafter = ["svc"]\n'
                    f'[service]\nexec = {sh(f"echo dep >> {log}; exec sleep 1000")}\n'})
    wait_for(lambda: d.inst("dep")["state"] == "running", what="the dependent")
    pid = d.inst("svc")["pid"]
    assert lines(log) == ["main", "post", str(pid), "dep"]


def test_a_failing_exec_post_stops_the_service_as_a_failed_start(daemon, tmp_path: Path):
    d = daemon({"svc.toml": '[service]\nexec = "sleep 1000"\nexec-post = "false"\n'
                            'restart = "never"\n'})
    wait_for(lambda: d.inst("svc")["state"] == "failed", what="failed")
    assert d.inst("svc")["reason"] == "exec-post command 'false' failed: exit 1"
    assert d.inst("svc")["pid"] is None


def test_exec_stop_runs_instead_of_the_stop_signal(daemon, tmp_path: Path):
    """exec-stop asks it to go (with its $MAINPID); no SIGTERM is sent. One
    that does not make it go gets the stop signal at stop-timeout."""
    log, log2 = tmp_path / "log", tmp_path / "log2"
    main = "trap 'echo {what} >> {log}; exit 0' {sig}; while :; do sleep 0.05; done"
    d = daemon({
        "polite.toml": "[service]\nexec = " + sh(
            main.format(what="usr1", log=log, sig="USR1") + f"; echo never >> {log}")
        + f"\nexec-stop = \"sh -c 'echo stop $MAINPID >> {log}; kill -USR1 $MAINPID'\"\n",
        "deaf.toml": "[service]\nexec = " + sh(main.format(what="term", log=log2, sig="TERM"))
        + f"\nexec-stop = \"sh -c 'echo stop >> {log2}'\"\nstop-timeout = 0.5\n"})
    pid = wait_for(lambda: d.inst("polite")["state"] == "running" and d.inst("polite")["pid"])
    wait_for(lambda: d.inst("deaf")["state"] == "running", what="deaf running")
    d.call("stop", units=["polite", "deaf"])
    assert lines(log) == ["stop", str(pid), "usr1"]
    assert lines(log2) == ["stop", "term"]
    assert d.inst("polite")["state"] == d.inst("deaf")["state"] == "inactive"


def test_reload_unit_reloads_without_a_restart(daemon, tmp_path: Path):
    log = tmp_path / "log"
    main = ("trap 'echo {what} >> " + str(log) + "' {sig}; echo up >> " + str(log)
            + "; while :; do sleep 0.05; done")
    d = daemon({
        "cmd.toml": "[service]\nexec = " + sh(main.format(what="hup", sig="HUP"))
        + '\nexec-reload = "kill -HUP $MAINPID"\n',
        "sig.toml": "[service]\nexec = " + sh(main.format(what="usr2", sig="USR2"))
        + '\nreload-signal = "USR2"\n',
        "bad.toml": '[service]\nexec = "sleep 1000"\nexec-reload = "false"\n',
        "none.toml": '[service]\nexec = "sleep 1000"\n'})
    pids = {u: wait_for(lambda u=u: d.inst(u)["state"] == "running" and d.inst(u)["pid"])
            for u in ("cmd", "sig", "bad", "none")}
    wait_for(lambda: lines(log).count("up") == 2, what="both traps set")
    result = d.call("reload-unit", units=["cmd", "sig", "bad", "none"])
    assert result["cmd"] == {"ok": True, "message": "cmd reloaded (exec-reload)"}
    assert result["sig"] == {"ok": True, "message": "sig: reload signal sent"}
    assert not result["bad"]["ok"] and "reload failed" in result["bad"]["message"]
    assert result["none"] == {"ok": False, "message": "none has no exec-reload or reload-signal"}
    wait_for(lambda: {"hup", "usr2"} <= set(lines(log)), what="both reloaded")
    for unit, pid in pids.items():
        assert d.inst(unit)["state"] == "running" and d.inst(unit)["pid"] == pid
        assert d.inst(unit)["restarts"] == 0
    d.call("stop", units=["none"])
    assert d.call("reload-unit", units=["none"])["none"]["ok"] is False



def test_a_reexec_during_exec_pre_kills_the_old_command_and_runs_it_again(daemon, tmp_path):
    pids = tmp_path / "pids"
    d = daemon({"svc.toml": '[service]\nexec = "sleep 1000"\nexec-timeout = 300\n'
                            f'exec-pre = "sh -c \'echo $$ >> {pids}; exec sleep 1000\'"\n'})
    wait_for(lambda: len(lines(pids)) == 1, what="the first exec-pre")
    first = lines(pids)[0]

    def alive(ns_pid: str) -> bool:
        try:
            return Path(f"/proc/{d.host_pid(int(ns_pid))}/stat").read_text().split()[2] != "Z"
        except (KeyError, OSError):
            return False
    assert alive(first)
    d.call("daemon-reexec")
    wait_for(lambda: len(lines(pids)) == 2, what="exec-pre again after the re-exec")
    wait_for(lambda: not alive(first), what="the old exec-pre killed")
    assert d.inst("svc")["state"] == "starting"



def test_convert_maps_systemds_lifecycle_commands_and_watchdog():
    from vigil.model.schema import build_unit
    from vigilctl.systemd import from_systemd
    text = ("[Service]\nType=notify\nExecStartPre=/bin/mkdir -p /run/app\n"
            "ExecStartPre=-/usr/bin/cleanup --old\nExecStart=/usr/bin/app\n"
            "ExecStartPost=/usr/bin/app-ctl warm\nExecStop=/usr/bin/app-ctl stop $MAINPID\n"
            "ExecReload=/bin/kill -HUP $MAINPID\nWatchdogSec=30s\n")
    [out] = from_systemd("/etc/systemd/system/app.service", text)
    svc = out.doc["service"]
    assert svc["exec-pre"] == ["/bin/mkdir -p /run/app", "-/usr/bin/cleanup --old"]
    assert svc["exec-post"] == ["/usr/bin/app-ctl warm"]
    assert svc["exec-stop"] == ["/usr/bin/app-ctl stop $MAINPID"]
    assert svc["exec-reload"] == ["/bin/kill -HUP $MAINPID"]
    assert svc["watchdog"] == 30.0
    unit = build_unit("app", out.doc, "app.toml", {})  # and vigil loads what it wrote
    assert unit.service is not None and unit.service.exec_pre[1] == ("-/usr/bin/cleanup",
                                                                     "--old")
    assert unit.service.watchdog == 30.0
