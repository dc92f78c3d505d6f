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


@functools.lru_cache(maxsize=1024)  # a node talks to a handful of peers
def _addresses(src: str, dst: str) -> tuple[int, bytes, bytes]:
    """Family and packed addresses; a mix of IPv4 and IPv6 is sent as IPv6 (v4-mapped)."""
    source, dest = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if source.version == dest.version == 4:
        return AF_INET, source.packed, dest.packed
    as_v6 = [ipaddress.IPv6Address(f"::ffff:{a}") if a.version == 4 else a
             for a in (source, dest)]
    return AF_INET6, as_v6[0].packed, as_v6[1].packed


def encode_hep3(payload: bytes, src: Address, dst: Address, *, transport: str,
                timestamp: float, node_id: int, auth_key: str = "",
                proto_type: int = PROTO_TYPE_SIP) -> bytes:
    """One HEPv3 packet carrying ``payload`` as seen going from ``src`` to ``dst``.

    ``transport``: ``UDP``, ``TCP`` or ``TLS`` (TLS is TCP on the wire); ``timestamp``: wall
    clock seconds (``time.time()``) of the capture."""
    family, src_ip, dst_ip = _addresses(src[0], dst[0])
    v4 = family == AF_INET
    seconds = int(timestamp)
    micros = min(round((timestamp - seconds) * 1_000_000), 999_999)
    parts = [
        _chunk(CHUNK_IP_FAMILY, bytes((family,))),
        _chunk(CHUNK_IP_PROTO, bytes((IPPROTO_UDP if transport.upper() == "UDP"
                                      else IPPROTO_TCP,))),
        _chunk(CHUNK_IPV4_SRC if v4 else CHUNK_IPV6_SRC, src_ip),
        _chunk(CHUNK_IPV4_DST if v4 else CHUNK_IPV6_DST, dst_ip),
        _chunk(CHUNK_SRC_PORT, struct.pack("!H", src[1])),
        _chunk(CHUNK_DST_PORT, struct.pack("!H", dst[1])),
        _chunk(CHUNK_TIME_SEC, struct.pack("!I", seconds)),
        _chunk(CHUNK_TIME_USEC, struct.pack("!I", micros)),
        _chunk(CHUNK_PROTO_TYPE, bytes((proto_type,))),
        _chunk(CHUNK_CAPTURE_ID, struct.pack("!I", node_id)),
    ]
    if auth_key:
        parts.append(_chunk(CHUNK_AUTH_KEY, auth_key.encode()))
    parts.append(_chunk(CHUNK_PAYLOAD, payload))
    body = b"".join(parts)
    total = _HEADER.size + len(body)
    if total > _MAX_TOTAL:
        raise HepTooLarge(f"{len(payload)} bytes of payload do not fit in a HEPv3 packet")
    return _HEADER.pack(HEP3_MAGIC, total) + body
