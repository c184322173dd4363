"""vigil-net on a veth pair in a network namespace the test creates."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.daemon import ROOT, can_unshare

pytestmark = pytest.mark.skipif(not can_unshare(), reason="needs root for a network namespace")

# Runs inside `unshare --net`: makes the veth pair, runs vigil-net, reports what the kernel has.
DRIVER = """
import json, subprocess, sys
from pyroute2 import IPRoute
with IPRoute() as ipr:
    ipr.link("add", ifname="v0", kind="veth", peer="v1")
    peer = ipr.link_lookup(ifname="v1")[0]
    ipr.link("set", index=peer, state="up")
done = subprocess.run([sys.executable, "-m", "vigil.system.net", "--config", sys.argv[1]],
                      capture_output=True, text=True, timeout=60)
with IPRoute() as ipr:
    links = {l.get_attr("IFLA_IFNAME"): (l.get_attr("IFLA_OPERSTATE"), l.get_attr("IFLA_MTU"))
             for l in ipr.get_links()}
    addrs = sorted(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr()
                   if a.get_attr("IFA_LABEL") == "v0")
    routes = sorted(f"{r.get_attr('RTA_DST') or 'default'}/{r['dst_len']} via "
                    f"{r.get_attr('RTA_GATEWAY')}" for r in ipr.get_routes(family=2)
                    if r.get_attr("RTA_GATEWAY"))
print(json.dumps({"code": done.returncode, "out": done.stdout, "err": done.stderr,
                  "links": links, "addrs": addrs, "routes": routes}))
"""


def run(tmp_path, config: str) -> dict:
    path = tmp_path / "network.toml"
    path.write_text(config)
    out = subprocess.run(["unshare", "--net", sys.executable, "-c", DRIVER, str(path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_static_addresses_routes_and_dns(tmp_path):
    resolv = tmp_path / "resolv.conf"
    got = run(tmp_path, f"""
[interfaces.v0]
addresses = ["10.77.0.2/24", "10.77.1.2/24"]
gateway = "10.77.0.1"
routes = [{{ to = "10.88.0.0/16", via = "10.77.1.1" }}]
mtu = 1400
wait = 2

[dns]
servers = ["10.77.0.53"]
search = ["test.example"]
file = "{resolv}"
""")
    assert got["code"] == 0, got["err"]
    assert got["links"]["lo"][0] in ("UNKNOWN", "UP")
    assert got["links"]["v0"] == ["UP", 1400]
    assert got["addrs"] == ["10.77.0.2/24", "10.77.1.2/24"]
    assert got["routes"] == ["10.88.0.0/16 via 10.77.1.1", "default/0 via 10.77.0.1"]
    assert resolv.read_text().splitlines()[1:] == ["nameserver 10.77.0.53",
                                                   "search test.example"]


def test_a_missing_link_is_reported_and_the_rest_configured(tmp_path):
    got = run(tmp_path, '[interfaces.nope]\nwait = 0.3\n'
                        '[interfaces.v0]\naddresses = ["10.66.0.2/24"]\n')
    assert got["code"] == 1
    assert "vigil-net: interfaces.nope: no such link after 0.3s" in got["err"]
    assert got["addrs"] == ["10.66.0.2/24"]


@pytest.mark.parametrize("text, error", [
    ('[interfaces.e]\naddresses = ["10.0.0.1"]', "interfaces.e.addresses: '10.0.0.1' needs a /prefix"),
    ('[interfaces.e]\ngateway = "x"', "interfaces.e.gateway: 'x' is not an IP address"),
    ('[interfaces.e]\nmtu = 9', "interfaces.e.mtu: 9 is not 68..65535"),
    ('[interfaces.e]\nroutes = [{ to = "1.2.3.0/24" }]', "interfaces.e.routes[0]: expected"),
    ('[interfaces.e]\nspeed = 1', "interfaces.e.speed: unknown key"),
    ('[dsn]\n', "unknown table 'dsn'"),
])
def test_errors_name_the_key(tmp_path, text, error):
    path = tmp_path / "n.toml"
    path.write_text(text)
    out = subprocess.run([sys.executable, "-m", "vigil.system.net", "--check", "--config", str(path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 1 and error in out.stderr, out.stderr
