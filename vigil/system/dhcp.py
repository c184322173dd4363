"""DHCPv4 for vigil-net: the wire format and the lease's life on one interface.

Runs as the service `dhcp@IFACE` (units/system/dhcp@.toml), in its own
process like the rest of vigil-net, so PID 1 never holds its socket or
pyroute2. RFC 2131's common path: DISCOVER, OFFER, REQUEST, ACK or NAK;
renew at T1 (to the server), rebind at T2 (broadcast), start over when the
lease runs out or a NAK comes. Every reply is hostile until parsed: any
bytes give a `Reply` or None, never an exception.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import time

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK = 1, 2, 3, 4, 5, 6
COOKIE = b"\x63\x82\x53\x63"
# subnet mask, router, DNS servers, domain name, MTU, lease time, T1, T2
WANTED = bytes([1, 3, 6, 15, 26, 51, 58, 59])
HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # 236 bytes, then the cookie


class Reply:
    """What a server offered or acknowledged, with the options vigil-net uses."""

    __slots__ = ("address", "kind", "options", "xid")

    def __init__(self, kind: int, xid: int, address: str, options: dict[int, bytes]) -> None:
        self.kind, self.xid, self.address, self.options = kind, xid, address, options

    def ip(self, code: int) -> str | None:
        value = self.options.get(code, b"")
        return socket.inet_ntoa(value[:4]) if len(value) >= 4 else None

    def ips(self, code: int) -> list[str]:
        value = self.options.get(code, b"")
        return [socket.inet_ntoa(value[i:i + 4]) for i in range(0, len(value) - 3, 4)]

    def seconds(self, code: int) -> int | None:
        value = self.options.get(code, b"")
        return int.from_bytes(value[:4], "big") if len(value) >= 4 else None

    def prefix(self) -> int:
        mask = self.options.get(1, b"")
        bits = int.from_bytes(mask[:4], "big") if len(mask) >= 4 else 0xFFFFFF00
        return bin(bits).count("1")


def packet(kind: int, xid: int, mac: bytes, requested: str | None = None,
           server: str | None = None, client: str = "0.0.0.0") -> bytes:
    """A client message; replies are asked to come as broadcasts until we hold an address."""
    flags = 0x8000 if client == "0.0.0.0" else 0
    head = HEADER.pack(1, 1, 6, 0, xid, 0, flags, socket.inet_aton(client), bytes(4), bytes(4),
                       bytes(4), mac.ljust(16, b"\0"), bytes(64), bytes(128))
    options = bytes([53, 1, kind, 61, 7, 1]) + mac + bytes([55, len(WANTED)]) + WANTED
    if requested:
        options += bytes([50, 4]) + socket.inet_aton(requested)
    if server:
        options += bytes([54, 4]) + socket.inet_aton(server)
    return head + COOKIE + options + b"\xff"


def parse(data: bytes, xid: int, mac: bytes) -> Reply | None:
    """A reply to our transaction from our hardware address, or None for anything else."""
    if len(data) < HEADER.size + 4 or data[HEADER.size:HEADER.size + 4] != COOKIE:
        return None
    op, _, _, _, got_xid, _, _, _, yiaddr, _, _, chaddr, _, _ = HEADER.unpack_from(data)
    if op != 2 or got_xid != xid or chaddr[:6] != mac:
        return None
    options: dict[int, bytes] = {}
    at = HEADER.size + 4
    while at < len(data):
        code = data[at]
        if code == 255:
            break
        if code == 0:
            at += 1
            continue
        if at + 1 >= len(data) or at + 2 + data[at + 1] > len(data):
            return None
        options[code] = options.get(code, b"") + data[at + 2:at + 2 + data[at + 1]]
        at += 2 + data[at + 1]
    kind = (options.get(53) or b"\0")[0]
    if kind not in (OFFER, ACK, NAK):
        return None
    return Reply(kind, xid, socket.inet_ntoa(yiaddr), options)


class Client:
    """One interface's socket and transactions; the caller applies what comes back."""

    def __init__(self, ifname: str, mac: bytes) -> None:
        self.ifname, self.mac = ifname, mac
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        self.sock.bind(("", 68))

    def close(self) -> None:
        self.sock.close()

    def exchange(self, message: bytes, xid: int, want: int, until: float,
                 to: str = "255.255.255.255") -> Reply | None:
        """Sends and resends (4, 8, 16... s, RFC 2131 4.1) until `want` or a NAK, or `until`."""
        wait = 4.0
        while time.monotonic() < until:
            self.sock.sendto(message, (to, 67))
            resend = min(until, time.monotonic() + wait * random.uniform(0.9, 1.1))
            while (left := resend - time.monotonic()) > 0:
                self.sock.settimeout(left)
                try:
                    data = self.sock.recv(4096)
                except TimeoutError:
                    break
                reply = parse(data, xid, self.mac)
                if reply is not None and reply.kind in (want, NAK):
                    return reply
            wait = min(wait * 2, 64.0)
        return None

    def acquire(self, until: float) -> Reply | None:
        """DISCOVER then REQUEST the first offer: a lease, or None (NAK or silence)."""
        xid = int.from_bytes(os.urandom(4), "big")
        offer = self.exchange(packet(DISCOVER, xid, self.mac), xid, OFFER, until)
        if offer is None or offer.kind != OFFER:
            return None
        ack = self.exchange(packet(REQUEST, xid, self.mac, requested=offer.address,
                                   server=offer.ip(54)), xid, ACK, until)
        return ack if ack is not None and ack.kind == ACK else None

    def renew(self, lease: Reply, until: float, broadcast: bool) -> Reply | None:
        """REQUEST in RENEWING (to the server) or REBINDING (broadcast) state."""
        xid = int.from_bytes(os.urandom(4), "big")
        server = lease.ip(54)
        to = "255.255.255.255" if broadcast or server is None else server
        return self.exchange(packet(REQUEST, xid, self.mac, client=lease.address), xid, ACK,
                             until, to)
