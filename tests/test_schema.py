"""Every key of the unit format: accepted values and every error message."""

from __future__ import annotations

import signal

import pytest

from vigil.base.errors import UnitError
from vigil.model.loader import Loader
from vigil.model.unit import (Limit, Output, OutputKind, ProbeKind, RestartPolicy, ServiceType,
                        Unit)


def load(unit_dir, text: str, name: str = "svc") -> Unit:
    return Loader([unit_dir({f"{name}.toml": text})]).load(name)


def errors(unit_dir, text: str) -> list[str]:
    with pytest.raises(UnitError) as info:
        load(unit_dir, text)
    return [str(p) for p in info.value.problems]


GOOD = [
    ('[unit]\ndescription = "Web"', lambda u: u.description == "Web"),
    ('[unit]\nrequires = ["a", "b"]', lambda u: u.requires == ("a", "b")),
    ('[unit]\nrequires = "a"', lambda u: u.requires == ("a",)),
    ('[unit]\nwants = ["a"]', lambda u: u.wants == ("a",)),
    ('[unit]\nafter = ["a"]', lambda u: u.after == ("a",)),
    ('[unit]\nbefore = ["a"]', lambda u: u.before == ("a",)),
    ('[unit]\nconflicts = ["a"]', lambda u: u.conflicts == ("a",)),
    ('[unit]\non-failure = ["alert@x"]', lambda u: u.on_failure == ("alert@x",)),
    ('[unit]\non-success = ["n"]', lambda u: u.on_success == ("n",)),
    ('[unit]\nenabled = false', lambda u: u.enabled is False),
    ('[unit]\nhosts = ["web*"]', lambda u: u.runs_on("web1") and not u.runs_on("db1")),
    ('[unit]\ncritical = true', lambda u: u.critical),
    ('[unit]', lambda u: u.is_target and u.enabled),
    ('[service]\nexec = "a \'b c\' d"', lambda u: u.service.exec == ("a", "b c", "d")),
    ('[service]\nexec = ["a", "b c"]', lambda u: u.service.exec == ("a", "b c")),
    ('[service]\nexec = "x"', lambda u: u.service.type is ServiceType.SIMPLE
     and u.service.restart is RestartPolicy.ON_FAILURE and u.service.stop_signal == 15),
    ('[service]\nexec = "x"\ntype = "oneshot"', lambda u: u.service.type is ServiceType.ONESHOT),
    ('[service]\nexec = "x"\ntype = "notify"',
     lambda u: u.service.ready.probe.kind is ProbeKind.NOTIFY),
    ('[service]\nexec = "x"\ntype = "forking"\npid-file = "/run/x.pid"',
     lambda u: u.service.pid_file == "/run/x.pid"),
    ('[service]\nexec = "x"\ninstances = 4', lambda u: u.service.instances == 4),
    ('[service]\nexec = "x"\nport = "auto"\n[service.health]\nhttp = "http://127.0.0.1:$PORT/h"',
     lambda u: u.service.health.probe.url == "http://127.0.0.1:$PORT/h"),
    ('[service]\nexec = "x"\nrestart = "always"', lambda u: u.service.restart is RestartPolicy.ALWAYS),
    ('[service]\nexec = "x"\nsuccess-exit-codes = [0, 2]',
     lambda u: u.service.success_exit_codes == frozenset({0, 2})),
    ('[service]\nexec = "x"\nstart-seconds = 0.5', lambda u: u.service.start_seconds == 0.5),
    ('[service]\nexec = "x"\nstart-retries = 7', lambda u: u.service.start_retries == 7),
    ('[service]\nexec = "x"\nrestart-delay = 2', lambda u: u.service.restart_delay == 2.0),
    ('[service]\nexec = "x"\nrestart-delay-max = 9', lambda u: u.service.restart_delay_max == 9),
    ('[service]\nexec = "x"\nstable-seconds = 5', lambda u: u.service.stable_seconds == 5),
    ('[service]\nexec = "x"\nretry-after-fatal = 600', lambda u: u.service.retry_after_fatal == 600),
    ('[service]\nexec = "x"\nstop-signal = "INT"', lambda u: u.service.stop_signal == signal.SIGINT),
    ('[service]\nexec = "x"\nstop-signal = "SIGQUIT"', lambda u: u.service.stop_signal == 3),
    ('[service]\nexec = "x"\nstop-signal = 10', lambda u: u.service.stop_signal == 10),
    ('[service]\nexec = "x"\nstop-timeout = 1.5', lambda u: u.service.stop_timeout == 1.5),
    ('[service]\nexec = "x"\nuser = "nobody"\ngroup = "nogroup"',
     lambda u: (u.service.user, u.service.group) == ("nobody", "nogroup")),
    ('[service]\nexec = "x"\nuser = 65534', lambda u: u.service.user == "65534"),
    ('[service]\nexec = "x"\nsupplementary-groups = ["a", 5]',
     lambda u: u.service.supplementary_groups == ("a", "5")),
    ('[service]\nexec = "x"\numask = "027"', lambda u: u.service.umask == 0o27),
    ('[service]\nexec = "x"\numask = 18', lambda u: u.service.umask == 18),
    ('[service]\nexec = "x"\ncwd = "/srv"', lambda u: u.service.cwd == "/srv"),
    ('[service]\nexec = "x"\nenv = { A = "1", B = 2 }',
     lambda u: dict(u.service.env) == {"A": "1", "B": "2"}),
    ('[service]\nexec = "x"\nenv-file = "/etc/x.env"', lambda u: u.service.env_file == ("/etc/x.env",)),
    ('[service]\nexec = "x"\npass-env = ["HOME"]', lambda u: u.service.pass_env == ("HOME",)),
    ('[service]\nexec = "x"\nstdout = "null"\nstderr = "console"',
     lambda u: u.service.stdout == Output(OutputKind.NULL)
     and u.service.stderr == Output(OutputKind.CONSOLE)),
    ('[service]\nexec = "x"\nstdout = "/var/log/x.log"',
     lambda u: u.service.stdout == Output(OutputKind.FILE, "/var/log/x.log")),
    ('[service]\nexec = "x"\nstdout = "inherit"', lambda u: u.service.stdout.kind is OutputKind.INHERIT),
    ('[service]\nexec = "x"\nno-new-privileges = true', lambda u: u.service.no_new_privileges),
    ('[service]\nexec = "x"\ncapability-bounding-set = ["CAP_NET_BIND_SERVICE"]',
     lambda u: u.service.capability_bounding_set == ("net_bind_service",)),
    ('[service]\nexec = "x"\nlog-max-size = 65536\nlog-keep = 2',
     lambda u: (u.service.log_max_size, u.service.log_keep) == (65536, 2)),
    ('[service]\nexec = "x"\n[service.ready]\ntcp = 8080\ntimeout = 5',
     lambda u: (u.service.ready.probe.port, u.service.ready.timeout) == (8080, 5)),
    ('[service]\nexec = "x"\n[service.ready]\ntcp = "[::1]:81"',
     lambda u: (u.service.ready.probe.host, u.service.ready.probe.port) == ("::1", 81)),
    ('[service]\nexec = "x"\n[service.ready]\nhttp = "http://127.0.0.1:1/h"',
     lambda u: u.service.ready.probe.url == "http://127.0.0.1:1/h"),
    ('[service]\nexec = "x"\n[service.ready]\nexec = "test -e /tmp/x"',
     lambda u: u.service.ready.probe.argv == ("test", "-e", "/tmp/x")),
    ('[service]\nexec = "x"\n[service.ready]\nnotify = true',
     lambda u: u.service.ready.probe.kind is ProbeKind.NOTIFY),
    ('[service]\nexec = "x"\n[service.ready]\nfd = 3\ninterval = 0.5',
     lambda u: (u.service.ready.probe.fd, u.service.ready.interval) == (3, 0.5)),
    ('[service]\nexec = "x"\n[service.health]\ntcp = 80\ninterval = 2\ntimeout = 1\nretries = 4',
     lambda u: (u.service.health.interval, u.service.health.timeout,
                u.service.health.retries) == (2, 1, 4)),
    ('[service]\nexec = "x"\n[service.limits]\nnofile = 1024\ncore = "infinity"\nnproc = [10, 20]',
     lambda u: set(u.service.limits) == {Limit("nofile", 1024, 1024), Limit("core", -1, -1),
                                         Limit("nproc", 10, 20)}),
]


@pytest.mark.parametrize("text,check", GOOD, ids=[g[0].replace("\n", " ")[:60] for g in GOOD])
def test_key_accepted(unit_dir, text, check):
    assert check(load(unit_dir, text))


BAD = [
    ('[unit]\nwantz = ["a"]', "svc.toml:2: unit.wantz: unknown key 'wantz' (did you mean 'wants'?)"),
    ('[unti]\n', "svc.toml:1: unti: unknown table 'unti' (did you mean 'unit'?)"),
    ('[unit]\ndescription = 3', "unit.description: expected a string, got an integer"),
    ('[unit]\nrequires = [1]', "unit.requires: expected a string, got an integer"),
    ('[unit]\nrequires = ["bad name"]', "unit.requires: 'bad name' is not a valid unit name"),
    ('[unit]\nenabled = "yes"', "unit.enabled: expected true or false, got a string"),
    ('[unit]\ncritical = 1', "unit.critical: expected true or false, got an integer"),
    ('[unit]\nhosts = {}', "unit.hosts: expected a list of strings, got a table"),
    ('unit = 3', "unit: expected a table, got an integer"),
    ('service = 3', "service: expected a table"),
    ('[service]\ntype = "simple"', "service: a [service] needs exec (the command to run)"),
    ('[service]\nexec = []', "service.exec: the command is empty"),
    ('[service]\nexec = "a \'b"', "service.exec: cannot split the command: No closing quotation"),
    ('[service]\nexec = "x"\ntype = "daemon"',
     "service.type: 'daemon' is not one of simple, oneshot, notify, forking"),
    ('[service]\nexec = "x"\ntype = "forking"', 'service.type: type = "forking" needs pid-file'),
    ('[service]\nexec = "x"\ntype = "forking"\npid-file = "/p"\ninstances = 2',
     "service.instances: a forking service cannot have instances"),
    ('[service]\nexec = "x"\ntype = "oneshot"\nrestart = "always"',
     'service.restart: restart = "always" makes no sense for a oneshot'),
    ('[service]\nexec = "x"\ninstances = 0', "service.instances: 0 is out of range (1 to 1000)"),
    ('[service]\nexec = "x"\ninstances = 1.5', "service.instances: expected an integer, got a number"),
    ('[service]\nexec = "x"\nrestart = "sometimes"',
     "service.restart: 'sometimes' is not one of always, on-failure, never"),
    ('[service]\nexec = "x"\nsuccess-exit-codes = [256]',
     "service.success-exit-codes: 256 is out of range (0 to 255)"),
    ('[service]\nexec = "x"\nstart-seconds = -1', "service.start-seconds: -1 is out of range"),
    ('[service]\nexec = "x"\nstart-seconds = "1s"',
     "service.start-seconds: expected a number of seconds, got a string"),
    ('[service]\nexec = "x"\nstop-timeout = 0', "service.stop-timeout: 0 is out of range"),
    ('[service]\nexec = "x"\nstop-signal = "TERMINATE"',
     "service.stop-signal: 'TERMINATE' is not a signal name"),
    ('[service]\nexec = "x"\nstop-signal = 99', "service.stop-signal: 99 is not a signal number"),
    ('[service]\nexec = "x"\numask = "999"', "service.umask: '999' is not an octal umask"),
    ('[service]\nexec = "x"\numask = 1024', "service.umask: 1024 is out of range (0 to 511)"),
    ('[service]\nexec = "x"\nuser = ""', "service.user: empty name"),
    ('[service]\nexec = "x"\nenv = ["A=1"]', "service.env: expected a table of NAME"),
    ('[service]\nexec = "x"\nenv = { A = [1] }', "service.env: A: expected a string, got a list"),
    ('[service]\nexec = "x"\nstdout = "file.log"',
     "service.stdout: 'file.log' is not log, null, console, inherit or an absolute path"),
    ('[service]\nexec = "x"\ncapability-bounding-set = ["CAP_FLY"]',
     "service.capability-bounding-set: 'CAP_FLY' is not a capability name"),
    ('[service]\nexec = "x"\nlog-max-size = 10', "service.log-max-size: 10 is out of range"),
    ('[service]\nexec = "x"\nready = 5', "service.ready: expected a table, got an integer"),
    ('[service]\nexec = "x"\n[service.ready]\ntimeout = 3',
     "service.ready: needs exactly one of tcp, http, exec, notify, fd, log"),
    ('[service]\nexec = "x"\n[service.ready]\ntcp = 1\nhttp = "http://x"',
     "service.ready: needs exactly one of tcp, http, exec, notify, fd, log, got tcp, http"),
    ('[service]\nexec = "x"\n[service.ready]\ntcp = 70000',
     "service.ready.tcp: 70000 is not a port (1-65535)"),
    ('[service]\nexec = "x"\n[service.ready]\ntcp = "host:port"',
     "service.ready.tcp: 'host:port' is not a port"),
    ('[service]\nexec = "x"\n[service.ready]\nhttp = "https://x"',
     "service.ready.http: expected a URL starting with http://"),
    ('[service]\nexec = "x"\n[service.ready]\nhttp = "http://x:y/"',
     "service.ready.http: 'http://x:y/': Port could not be cast to integer value as 'y'"),
    ('[service]\nexec = "x"\n[service.ready]\nhttp = "http:///health"',
     "service.ready.http: 'http:///health' names no host"),
    ('[service]\nexec = "x"\n[service.ready]\nhttp = "http://127.0.0.1:$PORT/"',
     "service.ready: tcp = \"port\" and $PORT in a URL need a [service] port"),
    ('[service]\nexec = "x"\n[service.health]\ntcp = "port"',
     "service.health: tcp = \"port\" and $PORT in a URL need a [service] port"),
    ('[service]\nexec = "x"\n[service.ready]\nnotify = false',
     "service.ready.notify: notify = false means nothing; remove it"),
    ('[service]\nexec = "x"\n[service.ready]\nfd = 1', "service.ready.fd: 1 is out of range (3 to 1023)"),
    ('[service]\nexec = "x"\n[service.ready]\ntcp = 1\ntimout = 3',
     "service.ready.timout: unknown key 'timout' (did you mean 'timeout'?)"),
    ('[service]\nexec = "x"\ntype = "oneshot"\n[service.ready]\nnotify = true',
     "service.ready: a oneshot is ready when it exits; notify does not apply"),
    ('[service]\nexec = "x"\n[service.health]\nnotify = true',
     "service.health.notify: unknown key 'notify'"),
    ('[service]\nexec = "x"\n[service.health]\nexec = "true"\nretries = 0',
     "service.health.retries: 0 is out of range (1 to 1000)"),
    ('[service]\nexec = "x"\n[service.limits]\nfiles = 3', "service.limits.files: unknown key 'files'"),
    ('[service]\nexec = "x"\n[service.limits]\nnofile = [20, 10]',
     "service.limits.nofile: the soft limit is above the hard limit"),
    ('[service]\nexec = "x"\n[service.limits]\nnofile = [1]', "service.limits.nofile: expected [soft, hard]"),
    ('[service]\nexec = "x"\n[service.limits]\nnofile = -1', "service.limits.nofile: -1 is out of range"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[b[1][:60] for b in BAD])
def test_key_rejected_with_message(unit_dir, text, message):
    found = errors(unit_dir, text)
    assert any(message in line for line in found), found


def test_every_problem_names_file_and_line(unit_dir):
    found = errors(unit_dir, '[unit]\ndescription = 1\n\n[service]\nexec = "x"\nrestart = "no"\n')
    assert len(found) == 2
    assert found[0].split(":")[0].endswith("/svc.toml") and ":2: unit.description:" in found[0]
    assert ".toml:6: service.restart" in found[1]


def test_syntax_error_names_line(unit_dir):
    found = errors(unit_dir, '[unit]\ndescription = "x"\nwants = [\n')
    assert len(found) == 1 and "TOML syntax error" in found[0] and "svc.toml:" in found[0]


def test_not_utf8(unit_dir, tmp_path):
    root = unit_dir({})
    (root / "svc.toml").write_bytes(b'[unit]\ndescription = "\xff"\n')
    with pytest.raises(UnitError, match="not UTF-8"):
        Loader([root]).load("svc")


def test_too_large(unit_dir):
    root = unit_dir({})
    (root / "svc.toml").write_text("# x\n" * 300000)
    with pytest.raises(UnitError, match="too large"):
        Loader([root]).load("svc")


def test_values_compare_equal_for_reload(unit_dir):
    a = load(unit_dir, '[service]\nexec = ["sleep", "1"]\n')
    b = load(unit_dir, '[service]\nexec = "sleep 1"  # same argv\n')
    c = load(unit_dir, '[service]\nexec = "sleep 2"\n')
    assert a == b and a != c
