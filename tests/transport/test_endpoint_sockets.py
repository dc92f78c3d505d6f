"""The asyncio adapter on real loopback sockets: UDP, TCP framing, rport, bad input.

The router runs in-process on an ephemeral port; a raw socket plays the carrier.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from router.app import RunningRouter, start_router
from router.config import NodruteSettings, SipSettings

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def router() -> AsyncIterator[RunningRouter]:
    settings = NodruteSettings(sip=SipSettings(host="127.0.0.1", port=0))
    running = await start_router(settings)
    yield running
    await running.close()


def options(port: int, branch: str, via_port: int, transport: str = "UDP") -> bytes:
    return (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{via_port};branch=z9hG4bK{branch};rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:sbc@127.0.0.1>;tag=a1\r\nTo: <sip:127.0.0.1>\r\n"
        f"Call-ID: {branch}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def udp_exchange(port: int, data: bytes, timeout: float = 2.0) -> bytes:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        await loop.sock_sendto(sock, data, ("127.0.0.1", port))
        reply = await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout)
    finally:
        sock.close()
    return reply


async def test_udp_options_answered_to_source_port_via_rport(router: RunningRouter) -> None:
    # The Via names port 9 (discard): rport makes the answer come back to our real port.
    reply = await udp_exchange(router.port, options(router.port, "rp1", via_port=9))
    # Arriving here at all proves the answer went to the source port, not the Via's port 9.
    assert reply.startswith(b"SIP/2.0 200 ")
    assert b"rport=" in reply  # RFC 3581 §4: the port it came from is recorded
    assert b"Allow: " in reply


async def test_malformed_request_gets_400_and_router_keeps_serving(
        router: RunningRouter) -> None:
    bad = options(router.port, "bad1", via_port=9).replace(b"CSeq: 1 OPTIONS", b"CSeq: x OPTIONS")
    reply = await udp_exchange(router.port, bad)
    assert reply.startswith(b"SIP/2.0 400 ")
    wrong_version = options(router.port, "bad2", via_port=9).replace(
        b" SIP/2.0\r\n", b" SIP/7.0\r\n", 1)
    assert (await udp_exchange(router.port, wrong_version)).startswith(b"SIP/2.0 505 ")
    garbage = b"\x00\xff not sip at all \r\n\r\n"
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    await loop.sock_sendto(sock, garbage, ("127.0.0.1", router.port))
    sock.close()
    reply = await udp_exchange(router.port, options(router.port, "after", via_port=9))
    assert reply.startswith(b"SIP/2.0 200 ")


async def test_unknown_scheme_gets_416(router: RunningRouter) -> None:
    invite = (options(router.port, "sch1", via_port=9)
              .replace(f"OPTIONS sip:127.0.0.1:{router.port}".encode(),
                       b"INVITE http://example.com/113")
              .replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE"))
    assert (await udp_exchange(router.port, invite)).startswith(b"SIP/2.0 416 ")


async def test_tcp_messages_split_and_batched_are_framed(router: RunningRouter) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    local_port = writer.get_extra_info("sockname")[1]
    first = options(router.port, "tcp1", local_port, "TCP")
    second = options(router.port, "tcp2", local_port, "TCP")
    # first message byte-split across writes, the second glued to its tail
    writer.write(first[:10])
    await writer.drain()
    await asyncio.sleep(0.01)
    writer.write(first[10:] + second)
    await writer.drain()
    replies = b""
    while replies.count(b"SIP/2.0 200 ") < 2:
        replies += await asyncio.wait_for(reader.read(65535), 2.0)
    assert b"branch=z9hG4bKtcp1" in replies and b"branch=z9hG4bKtcp2" in replies
    writer.close()
    await writer.wait_closed()


async def test_tcp_without_content_length_gets_400_and_is_closed(router: RunningRouter) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    local_port = writer.get_extra_info("sockname")[1]
    msg = options(router.port, "tcp3", local_port, "TCP").replace(b"Content-Length: 0\r\n", b"")
    writer.write(msg)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 2.0)  # read() returns at EOF: closed by router
    assert data.startswith(b"SIP/2.0 400 ")
    writer.close()
