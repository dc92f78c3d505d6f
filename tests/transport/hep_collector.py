"""A HEPv3 collector for tests: a UDP socket on 127.0.0.1 and a decoder written from the spec
(independent of sip/hep.py, so an encoder bug cannot hide behind a matching decoder bug)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from dataclasses import dataclass, field


@dataclass
class HepMessage:
    family: int
    protocol: int
    src: tuple[str, int]
    dst: tuple[str, int]
    seconds: int
    micros: int
    proto_type: int
    capture_id: int
    payload: bytes
    auth_key: bytes | None = None
    chunk_types: list[int] = field(default_factory=list)


def decode_hep3(data: bytes) -> HepMessage:
    """Parse one HEPv3 packet; AssertionError on anything the spec does not allow."""
    assert data[:4] == b"HEP3", data[:4]
    (total,) = struct.unpack("!H", data[4:6])
    assert total == len(data), (total, len(data))
    chunks: dict[int, bytes] = {}
    order: list[int] = []
    offset = 6
    while offset < total:
        vendor, kind, length = struct.unpack("!HHH", data[offset:offset + 6])
        assert vendor == 0 and length >= 6 and offset + length <= total
        chunks[kind] = data[offset + 6:offset + length]
        order.append(kind)
        offset += length
    assert offset == total
    family = chunks[1][0]
    if family == 2:
        src_ip, dst_ip = (str(ipaddress.IPv4Address(chunks[k])) for k in (3, 4))
    else:
        assert family == 10
        src_ip, dst_ip = (str(ipaddress.IPv6Address(chunks[k])) for k in (5, 6))
    (src_port,), (dst_port,) = struct.unpack("!H", chunks[7]), struct.unpack("!H", chunks[8])
    return HepMessage(
        family=family, protocol=chunks[2][0], src=(src_ip, src_port), dst=(dst_ip, dst_port),
        seconds=struct.unpack("!I", chunks[9])[0], micros=struct.unpack("!I", chunks[10])[0],
        proto_type=chunks[11][0], capture_id=struct.unpack("!I", chunks[12])[0],
        payload=chunks[15], auth_key=chunks.get(14), chunk_types=order,
    )


class HepCollector:
    """Receives HEP datagrams on 127.0.0.1 (an ephemeral port) and decodes them."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.messages: list[HepMessage] = []

    async def collect_until(self, done: object, timeout: float = 5.0) -> list[HepMessage]:
        """Read packets until ``done(messages)`` is true (or the timeout: AssertionError)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done(self.messages):  # type: ignore[operator]
            left = deadline - loop.time()
            assert left > 0, f"collector got {len(self.messages)} packets"
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 65535), left)
            self.messages.append(decode_hep3(data))
        return self.messages

    def close(self) -> None:
        self.sock.close()
