"""vigil-net: network configuration from /etc/vigil/network.toml.

Run as a notify unit, so pyroute2 (~25 MB resident) lives in this process
and never in PID 1: it configures every interface, then exits 0 (done, as a
oneshot), or, when an interface uses DHCP, says READY=1 and stays to keep
its leases (vigil/system/dhcp.py).
Loopback is always brought up. Example:

    [interfaces.eth0]
    addresses = ["10.0.2.15/24"]
    gateway = "10.0.2.2"
    routes = [{ to = "10.9.0.0/16", via = "10.0.2.1" }]
    mtu = 1500
    wait = 10            # seconds for the link to appear

    [interfaces.eth1]
    dhcp = true          # address, router, DNS and MTU from a DHCP server
    dhcp-timeout = 30    # seconds to get a lease before giving up

    [dns]
    servers = ["10.0.2.3"]
    search = ["example.org"]
    file = "/etc/resolv.conf"

Every error names the key; a link that does not appear in time is reported
and the other interfaces are still configured; the exit status is 1 if
anything failed.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import sys
import threading
import time
import tomllib
from collections.abc import Sequence
from vigil.base.records import dataclass, field
from typing import Any

from vigil.system.dhcp import ACK, Client, Reply
from vigil.base import sdnotify


class ConfigError(ValueError):
    pass


@dataclass
class Route:
    to: str
    via: str


@dataclass
class Interface:
    name: str
    addresses: list[tuple[str, int]] = field(default_factory=list)
    gateway: str | None = None
    routes: list[Route] = field(default_factory=list)
    mtu: int | None = None
    wait: float = 10.0
    dhcp: bool = False
    dhcp_timeout: float = 30.0


@dataclass
class Config:
    interfaces: list[Interface]
    dns_servers: list[str]
    dns_search: list[str]
    resolv_conf: str


def _ip(value: Any, key: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ConfigError(f"{key}: {value!r} is not an IP address") from None


def parse(doc: dict[str, Any], path: str) -> Config:
    unknown = set(doc) - {"interfaces", "dns"}
    if unknown:
        raise ConfigError(f"{path}: unknown table '{sorted(unknown)[0]}' "
                          "(expected interfaces, dns)")
    interfaces = []
    for name, conf in doc.get("interfaces", {}).items():
        where = f"{path}: interfaces.{name}"
        if not isinstance(conf, dict):
            raise ConfigError(f"{where}: expected a table")
        extra = set(conf) - {"addresses", "gateway", "routes", "mtu", "wait", "dhcp",
                             "dhcp-timeout"}
        if extra:
            raise ConfigError(f"{where}.{sorted(extra)[0]}: unknown key")
        iface = Interface(name)
        _parse_dhcp(iface, conf, where)
        for text in conf.get("addresses", []):
            try:
                net = ipaddress.ip_interface(text)
            except ValueError:
                raise ConfigError(f"{where}.addresses: {text!r} is not ADDRESS/PREFIX") from None
            if "/" not in str(text):
                raise ConfigError(f"{where}.addresses: {text!r} needs a /prefix")
            iface.addresses.append((str(net.ip), net.network.prefixlen))
        if "gateway" in conf:
            iface.gateway = _ip(conf["gateway"], f"{where}.gateway")
        for n, route in enumerate(conf.get("routes", [])):
            if not isinstance(route, dict) or set(route) != {"to", "via"}:
                raise ConfigError(f"{where}.routes[{n}]: expected {{ to = NET, via = ADDRESS }}")
            try:
                ipaddress.ip_network(route["to"], strict=False)
            except ValueError:
                raise ConfigError(f"{where}.routes[{n}].to: {route['to']!r} is not a "
                                  "network") from None
            iface.routes.append(Route(str(route["to"]),
                                      _ip(route["via"], f"{where}.routes[{n}].via")))
        mtu = conf.get("mtu")
        if mtu is not None and (not isinstance(mtu, int) or not 68 <= mtu <= 65535):
            raise ConfigError(f"{where}.mtu: {mtu!r} is not 68..65535")
        iface.mtu = mtu
        wait = conf.get("wait", 10.0)
        if not isinstance(wait, (int, float)) or not 0 <= wait <= 3600:
            raise ConfigError(f"{where}.wait: {wait!r} is not a number of seconds")
        iface.wait = float(wait)
        interfaces.append(iface)
    dns = doc.get("dns", {})
    servers = [_ip(s, f"{path}: dns.servers") for s in dns.get("servers", [])]
    return Config(interfaces, servers, [str(s) for s in dns.get("search", [])],
                  str(dns.get("file", "/etc/resolv.conf")))


def _parse_dhcp(iface: Interface, conf: dict[str, Any], where: str) -> None:
    dhcp = conf.get("dhcp", False)
    if not isinstance(dhcp, bool):
        raise ConfigError(f"{where}.dhcp: {dhcp!r} is not true or false")
    if dhcp and ("addresses" in conf or "gateway" in conf):
        raise ConfigError(f"{where}.dhcp: the lease brings the address and gateway; "
                          "drop addresses and gateway, or dhcp")
    timeout = conf.get("dhcp-timeout", 30.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not 1 <= timeout <= 3600:
        raise ConfigError(f"{where}.dhcp-timeout: {timeout!r} is not 1..3600 seconds")
    iface.dhcp, iface.dhcp_timeout = dhcp, float(timeout)


def _wait_for_link(ipr: Any, name: str, seconds: float) -> int | None:
    deadline = time.monotonic() + seconds
    while True:
        found = ipr.link_lookup(ifname=name)
        if found:
            return int(found[0])
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def netlink() -> tuple[Any, Any]:
    """pyroute2's IPRoute and NetlinkError, without running pyroute2's
    `__init__`: that imports every one of its ~70 APIs (sqlite3 for NDB,
    ctypes, asyncio's subprocess support...), 0.28 s here against 0.14 s for
    these two, and seconds of a boot under QEMU's TCG. The package is entered
    as a bare namespace (its path only); the image ships only the modules
    these two import (initramfs/build.py)."""
    if "pyroute2" not in sys.modules:
        import importlib.util
        import types
        spec = importlib.util.find_spec("pyroute2")
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError("pyroute2 is not installed")
        package = types.ModuleType("pyroute2")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["pyroute2"] = package
    from pyroute2.iproute.linux import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    return IPRoute, NetlinkError


def _ignore_exists(action: Any, *args: Any, **kw: Any) -> None:
    _, NetlinkError = netlink()
    try:
        action(*args, **kw)
    except NetlinkError as err:
        if err.code != errno.EEXIST:
            raise


def apply(config: Config) -> tuple[list[str], dict[str, tuple[int, bytes]]]:
    """Configures the links; returns the problems (empty when all went well) and,
    for each DHCP interface that is up, its index and hardware address."""
    IPRoute, NetlinkError = netlink()
    problems, dynamic = [], {}
    with IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")
        if lo:
            ipr.link("set", index=lo[0], state="up")
        for iface in config.interfaces:
            index = _wait_for_link(ipr, iface.name, iface.wait)
            if index is None:
                problems.append(f"interfaces.{iface.name}: no such link after {iface.wait:g}s")
                continue
            try:
                if iface.mtu:
                    ipr.link("set", index=index, mtu=iface.mtu)
                ipr.link("set", index=index, state="up")
                if iface.dhcp:
                    mac = ipr.get_links(index)[0].get_attr("IFLA_ADDRESS") or ""
                    dynamic[iface.name] = (index, bytes.fromhex(mac.replace(":", "")))
                    continue
                for address, prefix in iface.addresses:
                    _ignore_exists(ipr.addr, "add", index=index, address=address, mask=prefix)
                if iface.gateway:
                    family = 10 if ":" in iface.gateway else 2
                    _ignore_exists(ipr.route, "add", dst="::/0" if family == 10 else "0.0.0.0/0",
                                   gateway=iface.gateway, oif=index, family=family)
                for route in iface.routes:
                    _ignore_exists(ipr.route, "add", dst=route.to, gateway=route.via, oif=index)
            except NetlinkError as err:
                problems.append(f"interfaces.{iface.name}: {os.strerror(err.code)}")
            else:
                print(f"vigil-net: {iface.name} up " + " ".join(
                    f"{a}/{p}" for a, p in iface.addresses))
    if config.dns_servers:
        problem = write_resolv(config.resolv_conf, config.dns_servers, config.dns_search)
        if problem:
            problems.append(problem)
    return problems, dynamic


def write_resolv(path: str, servers: list[str], search: list[str]) -> str | None:
    """Replaces the resolver file in one rename; returns the problem, if any."""
    lines = [f"nameserver {s}" for s in servers]
    if search:
        lines.append("search " + " ".join(search))
    try:
        tmp = path + ".vigil-net"
        with open(tmp, "w") as f:
            f.write("# written by vigil-net\n" + "\n".join(lines) + "\n")
        os.replace(tmp, path)
    except OSError as err:
        return f"dns.file {path}: {err.strerror}"
    return None


class Keeper(threading.Thread):
    """One DHCP interface: the first lease (then `first` is set), then renewals
    for as long as the server grants them. `problem` says why it stopped."""

    def __init__(self, iface: Interface, index: int, mac: bytes, config: Config) -> None:
        super().__init__(name=f"dhcp-{iface.name}", daemon=True)
        self.iface, self.index, self.mac, self.config = iface, index, mac, config
        self.first = threading.Event()
        self.problem = ""

    def run(self) -> None:
        client = Client(self.iface.name, self.mac)
        try:
            self.problem = self._hold(client)
        except Exception as err:
            self.problem = f"DHCP: {err}"
        finally:
            client.close()
            self.first.set()

    def _hold(self, client: Client) -> str:
        lease = client.acquire(time.monotonic() + self.iface.dhcp_timeout)
        if lease is None:
            return f"no DHCP lease after {self.iface.dhcp_timeout:g}s"
        while True:
            got = time.monotonic()
            self._apply(lease)
            self.first.set()
            length = lease.seconds(51) or 3600
            time.sleep(max(0.0, got + (lease.seconds(58) or length // 2) - time.monotonic()))
            renewed = client.renew(lease, got + (lease.seconds(59) or length * 7 // 8), False)
            if renewed is None:
                renewed = client.renew(lease, got + length, True)
            if renewed is None or renewed.kind != ACK or renewed.address != lease.address:
                self._drop(lease)
                print(f"vigil-net: {self.iface.name}: lease of {lease.address} lost; "
                      "asking again", file=sys.stderr, flush=True)
                lease = client.acquire(time.monotonic() + self.iface.dhcp_timeout)
                if lease is None:
                    return f"no DHCP lease after {self.iface.dhcp_timeout:g}s"
                continue
            lease = renewed

    def _apply(self, lease: Reply) -> None:
        IPRoute, _ = netlink()
        with IPRoute() as ipr:
            _ignore_exists(ipr.addr, "add", index=self.index, address=lease.address,
                           mask=lease.prefix())
            mtu = lease.options.get(26, b"")
            if len(mtu) == 2 and int.from_bytes(mtu, "big") >= 68 and not self.iface.mtu:
                ipr.link("set", index=self.index, mtu=int.from_bytes(mtu, "big"))
            if lease.ip(3):
                _ignore_exists(ipr.route, "add", dst="0.0.0.0/0", gateway=lease.ip(3),
                               oif=self.index)
        servers = lease.ips(6)
        if servers and not self.config.dns_servers:
            search = lease.options.get(15, b"").decode("ascii", "replace").split()
            problem = write_resolv(self.config.resolv_conf, servers, search)
            if problem:
                print(f"vigil-net: {problem}", file=sys.stderr, flush=True)
        print(f"vigil-net: {self.iface.name} up {lease.address}/{lease.prefix()} (DHCP, "
              f"{lease.seconds(51) or 3600}s)", flush=True)

    def _drop(self, lease: Reply) -> None:
        IPRoute, NetlinkError = netlink()
        with IPRoute() as ipr:
            try:
                ipr.addr("del", index=self.index, address=lease.address, mask=lease.prefix())
            except NetlinkError:
                pass


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vigil-net", description="Network setup.")
    p.add_argument("--config", default="/etc/vigil/network.toml")
    p.add_argument("--check", action="store_true", help="validate the file and stop")
    opts = p.parse_args(argv)
    try:
        with open(opts.config, "rb") as f:
            config = parse(tomllib.load(f), opts.config)
    except OSError as err:
        print(f"vigil-net: {opts.config}: {err.strerror}", file=sys.stderr)
        return 1
    except (tomllib.TOMLDecodeError, ConfigError) as err:
        print(f"vigil-net: {err}" if isinstance(err, ConfigError) else
              f"vigil-net: {opts.config}: {err}", file=sys.stderr)
        return 1
    if opts.check:
        return 0
    problems, dynamic = apply(config)
    keepers = [Keeper(iface, *dynamic[iface.name], config) for iface in config.interfaces
               if iface.name in dynamic]
    for keeper in keepers:
        keeper.start()
    for keeper in keepers:
        keeper.first.wait()
    problems += [f"interfaces.{k.iface.name}: {k.problem}" for k in keepers if k.problem]
    for problem in problems:
        print(f"vigil-net: {problem}", file=sys.stderr, flush=True)
    if problems:
        return 1
    if not keepers:
        return 0  # done, as a oneshot: the unit shows exited, never running meanwhile
    sdnotify.notify()
    for keeper in keepers:
        keeper.join()
        print(f"vigil-net: interfaces.{keeper.iface.name}: {keeper.problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
