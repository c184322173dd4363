"""vigil-net: static network configuration from /etc/vigil/network.toml.

Run as a oneshot unit, so pyroute2 (~25 MB resident) lives in this short
process and never in PID 1. Loopback is always brought up. Example:

    [interfaces.eth0]
    addresses = ["10.0.2.15/24"]
    gateway = "10.0.2.2"
    routes = [{ to = "10.9.0.0/16", via = "10.0.2.1" }]
    mtu = 1500
    wait = 10            # seconds for the link to appear

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
import time
import tomllib
from collections.abc import Sequence
from vigil.records import dataclass, field
from typing import Any


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
        extra = set(conf) - {"addresses", "gateway", "routes", "mtu", "wait"}
        if extra:
            raise ConfigError(f"{where}.{sorted(extra)[0]}: unknown key")
        iface = Interface(name)
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


def _wait_for_link(ipr: Any, name: str, seconds: float) -> int | None:
    deadline = time.monotonic() + seconds
    while True:
        found = ipr.link_lookup(ifname=name)
        if found:
            return int(found[0])
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def _ignore_exists(action: Any, *args: Any, **kw: Any) -> None:
    from pyroute2 import NetlinkError
    try:
        action(*args, **kw)
    except NetlinkError as err:
        if err.code != errno.EEXIST:
            raise


def apply(config: Config) -> list[str]:
    """Configures the links; returns the problems (empty when all went well)."""
    from pyroute2 import IPRoute, NetlinkError
    problems = []
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
        lines = [f"nameserver {s}" for s in config.dns_servers]
        if config.dns_search:
            lines.append("search " + " ".join(config.dns_search))
        try:
            tmp = config.resolv_conf + ".vigil-net"
            with open(tmp, "w") as f:
                f.write("# written by vigil-net\n" + "\n".join(lines) + "\n")
            os.replace(tmp, config.resolv_conf)
        except OSError as err:
            problems.append(f"dns.file {config.resolv_conf}: {err.strerror}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vigil-net", description="Static network setup.")
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
    problems = apply(config)
    for problem in problems:
        print(f"vigil-net: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
