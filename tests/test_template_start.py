"""`vigilctl start tp@foo` loads the instance from tp@.toml (issue 14.7: it
answered "no such unit"); reload keeps it while its template exists."""

from __future__ import annotations

import pytest

from tests.daemon import wait_for
from vigilctl.client import RequestFailed

TEMPLATE = '[unit]\ndescription = "instance %i"\nenabled = false\n' \
           '[service]\nexec = ["sleep", "100%i"]\n'


def changes(result) -> dict[str, str]:
    return {c["unit"]: c["action"] for c in result["changes"]}


def test_start_status_stop_of_a_template_instance_by_name(daemon):
    d = daemon({"tp@.toml": TEMPLATE.replace("100%i", "1000"), "other.toml": "[unit]\n"})
    assert d.call("start", units=["tp@foo"]) == {"tp@foo": "running"}
    status = d.status("tp@foo")
    assert status["description"] == "instance foo" and status["state"] == "running"
    assert status["instances"][0]["pid"]
    assert "tp@foo" in d.call("list")
    d.call("stop", units=["tp@foo"])
    assert d.status("tp@foo")["state"] in ("inactive", "failed")
    d.call("restart", units=["tp@bar"])
    wait_for(lambda: d.status("tp@bar")["state"] == "running")


def test_reload_keeps_a_started_instance_and_follows_its_template(daemon, tmp_path):
    d = daemon({"tp@.toml": TEMPLATE.replace("100%i", "1000")})
    d.call("start", units=["tp@foo"])
    pid = d.inst("tp@foo")["pid"]
    assert changes(d.call("reload")) == {}
    assert d.inst("tp@foo")["pid"] == pid
    template = tmp_path / "units" / "tp@.toml"
    template.write_text(TEMPLATE.replace("100%i", "1001"))
    assert changes(d.call("reload")) == {"tp@foo": "restart"}
    wait_for(lambda: d.inst("tp@foo")["pid"] not in (None, pid))
    template.unlink()
    assert changes(d.call("reload")) == {"tp@foo": "remove"}
    wait_for(lambda: "tp@foo" not in d.call("list"))
    template.write_text(TEMPLATE)  # back: the instance is not brought back with it
    assert changes(d.call("reload")) == {}


@pytest.mark.parametrize("name,why", [("tp@", "no such unit 'tp@'"),
                                      ("nope@x", "no such unit 'nope@x'"),
                                      ("bad@x", "bad@.toml:2: service.restart:")])
def test_start_of_what_is_no_loadable_instance_says_why(daemon, name, why):
    d = daemon({"tp@.toml": TEMPLATE,
                "bad@.toml": '[service]\nrestart = "sometimes"\nexec = "x"\n'})
    with pytest.raises(RequestFailed) as info:
        d.call("start", units=[name])
    assert info.value.code == "no-such-unit" and why in str(info.value)
    assert name not in d.call("list")


def test_status_does_not_load_an_instance(daemon):
    d = daemon({"tp@.toml": TEMPLATE})
    with pytest.raises(RequestFailed, match="no such unit"):
        d.call("status", units=["tp@foo"])
    assert d.call("list") == []
