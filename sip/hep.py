"""HEPv3 encapsulation of captured SIP messages (sans-IO: bytes in, bytes out).

HEP ("Homer Encapsulation Protocol", EEP) version 3 is what Homer, sngrep, Kamailio's
``siptrace`` and FreeSWITCH send to a capture server: a ``HEP3`` header, the packet's total
length, then chunks, each ``vendor id (u16) | type id (u16) | length (u16, header included) |
value``, all big-endian. Generic chunk types (vendor 0x0000) used here::

    0x0001 IP family (u8: 2 = IPv4, 10 = IPv6)     0x0007 source port (u16)
    0x0002 IP protocol (u8: 17 = UDP, 6 = TCP)     0x0008 destination port (u16)
    0x0003/0x0004 IPv4 source/destination          0x0009 timestamp, seconds (u32)
    0x0005/0x0006 IPv6 source/destination          0x000a timestamp, microseconds (u32)
    0x000b protocol type (u8: 1 = SIP)             0x000c capture agent id (u32)
    0x000e authentication key (octets)             0x000f captured payload (octets)

The total length is a u16: a message that does not fit (~65 KB) cannot be encapsulated and
raises :class:`HepTooLarge` (the sender counts it and goes on).
"""

from __future__ import annotations

import functools
import ipaddress
import struct

HEP3_MAGIC = b"HEP3"
PROTO_TYPE_SIP = 1

CHUNK_IP_FAMILY = 0x0001
CHUNK_IP_PROTO = 0x0002
CHUNK_IPV4_SRC = 0x0003
CHUNK_IPV4_DST = 0x0004
CHUNK_IPV6_SRC = 0x0005
CHUNK_IPV6_DST = 0x0006
CHUNK_SRC_PORT = 0x0007
CHUNK_DST_PORT = 0x0008
CHUNK_TIME_SEC = 0x0009
CHUNK_TIME_USEC = 0x000A
CHUNK_PROTO_TYPE = 0x000B
CHUNK_CAPTURE_ID = 0x000C
CHUNK_AUTH_KEY = 0x000E
CHUNK_PAYLOAD = 0x000F

AF_INET = 2
AF_INET6 = 10
IPPROTO_TCP = 6
IPPROTO_UDP = 17

_HEADER = struct.Struct("!4sH")
_CHUNK = struct.Struct("!HHH")
_MAX_TOTAL = 0xFFFF

Address = tuple[str, int]


class HepTooLarge(ValueError):
    """The message does not fit in one HEPv3 packet (total length is 16 bits)."""


def _chunk(type_id: int, value: bytes) -> bytes:
    return _CHUNK.pack(0, type_id, _CHUNK.size + len(value)) + value


_MIDDLE = struct.Struct("!HHHI HHHI HHHB HHHI")
"""Timestamp seconds, microseconds, protocol type and capture agent id: four chunks at once."""


@functools.lru_cache(maxsize=1024)  # a node talks to a handful of peers
def _address_chunks(src: Address, dst: Address, transport: str) -> bytes:
    """IP family, protocol, addresses and ports (chunks 0x0001-0x0008) of one flow.

    A mix of IPv4 and IPv6 is sent as IPv6 (the IPv4 side v4-mapped)."""
    source, dest = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    if source.version == dest.version == 4:
        family, src_kind, dst_kind = AF_INET, CHUNK_IPV4_SRC, CHUNK_IPV4_DST
        src_ip, dst_ip = source.packed, dest.packed
    else:
        family, src_kind, dst_kind = AF_INET6, CHUNK_IPV6_SRC, CHUNK_IPV6_DST
        src_ip, dst_ip = (ipaddress.IPv6Address(f"::ffff:{a}").packed if a.version == 4
                          else a.packed for a in (source, dest))
    protocol = IPPROTO_UDP if transport.upper() == "UDP" else IPPROTO_TCP
    return b"".join([
        _chunk(CHUNK_IP_FAMILY, bytes((family,))),
        _chunk(CHUNK_IP_PROTO, bytes((protocol,))),
        _chunk(src_kind, src_ip),
        _chunk(dst_kind, dst_ip),
        _chunk(CHUNK_SRC_PORT, struct.pack("!H", src[1])),
        _chunk(CHUNK_DST_PORT, struct.pack("!H", dst[1])),
    ])


def encode_hep3(payload: bytes, src: Address, dst: Address, *, transport: str,
                timestamp: float, node_id: int, auth_key: str = "",
                proto_type: int = PROTO_TYPE_SIP) -> bytes:
    """One HEPv3 packet carrying ``payload`` as seen going from ``src`` to ``dst``.

    ``transport``: ``UDP``, ``TCP`` or ``TLS`` (TLS is TCP on the wire); ``timestamp``: wall
    clock seconds (``time.time()``) of the capture."""
    if len(payload) > _MAX_TOTAL:
        raise HepTooLarge(f"{len(payload)} bytes of payload do not fit in a HEPv3 packet")
    seconds = int(timestamp)
    micros = min(round((timestamp - seconds) * 1_000_000), 999_999)
    parts = [
        b"",  # the header, once the length is known
        _address_chunks(src, dst, transport),
        _MIDDLE.pack(0, CHUNK_TIME_SEC, 10, seconds, 0, CHUNK_TIME_USEC, 10, micros,
                     0, CHUNK_PROTO_TYPE, 7, proto_type, 0, CHUNK_CAPTURE_ID, 10, node_id),
        _chunk(CHUNK_AUTH_KEY, auth_key.encode()) if auth_key else b"",
        _CHUNK.pack(0, CHUNK_PAYLOAD, _CHUNK.size + len(payload)),
        payload,
    ]
    total = _HEADER.size + sum(len(part) for part in parts)
    if total > _MAX_TOTAL:
        raise HepTooLarge(f"{len(payload)} bytes of payload do not fit in a HEPv3 packet")
    parts[0] = _HEADER.pack(HEP3_MAGIC, total)
    return b"".join(parts)
