"""Admission on real loopback sockets: strangers are refused before a transaction exists.

The trunk is 127.0.0.1/32; a socket bound to 127.0.0.2 plays the stranger (a scanner)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from router.app import RunningRouter, start_router
from router.config import NodruteSettings, SecuritySettings, SipSettings, TrunkSettings

pytestmark = pytest.mark.asyncio

TRUNK_HOST = "127.0.0.1"
STRANGER_HOST = "127.0.0.2"


async def started(unknown_source: str) -> RunningRouter:
    return await start_router(NodruteSettings(
        sip=SipSettings(host="127.0.0.1", port=0, transports=["udp", "tcp"]),
        trunks=[TrunkSettings(name="carrier", sources=["127.0.0.1/32"])],
        security=SecuritySettings(unknown_source=unknown_source),  # type: ignore[arg-type]
        metrics={"enabled": False},  # type: ignore[arg-type]
    ))


@pytest.fixture
async def dropping() -> AsyncIterator[RunningRouter]:
    router = await started("drop")
    yield router
    await router.close()


@pytest.fixture
async def refusing() -> AsyncIterator[RunningRouter]:
    router = await started("403")
    yield router
    await router.close()


def options(port: int, host: str, n: int) -> bytes:
    return (
        f"OPTIONS sip:100@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:5070;branch=z9hG4bKscan{n};rport\r\n"
        f'Max-Forwards: 70\r\nFrom: "sipvicious"<sip:100@{host}>;tag=s{n}\r\n'
        f"To: <sip:100@127.0.0.1>\r\nCall-ID: scan{n}\r\nCSeq: 1 OPTIONS\r\n"
        "User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def bound(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


async def trunk_round_trip(port: int, n: int) -> bytes:
    """An OPTIONS from the trunk and its answer: everything sent before it has been handled."""
    loop = asyncio.get_running_loop()
    with bound(TRUNK_HOST) as sock:
        await loop.sock_sendto(sock, options(port, TRUNK_HOST, n), (TRUNK_HOST, port))
        return await asyncio.wait_for(loop.sock_recv(sock, 65535), 5.0)


async def test_a_strangers_options_and_garbage_are_dropped_unparsed(
        dropping: RunningRouter) -> None:
    port = dropping.port
    with bound(STRANGER_HOST) as stranger:
        stranger.sendto(options(port, STRANGER_HOST, 1), (TRUNK_HOST, port))
        stranger.sendto(b"\x16\x03\x01 not SIP at all", (TRUNK_HOST, port))
        assert (await trunk_round_trip(port, 2)).startswith(b"SIP/2.0 200 ")
        with pytest.raises(BlockingIOError):
            stranger.recv(65535)  # no answer: a scanner learns nothing
    assert dropping.endpoint.dropped_malformed == 0  # the garbage was never parsed
    admission = dropping.endpoint.admission
    assert admission is not None
    assert admission.rejected["unknown_source"] == 2  # type: ignore[attr-defined]
    assert dropping.b2bua.counters["rejected:unknown_source"] == 0  # never reached the B2BUA


async def test_403_mode_answers_statelessly_and_keeps_no_transaction(
        refusing: RunningRouter) -> None:
    loop = asyncio.get_running_loop()
    port = refusing.port
    with bound(STRANGER_HOST) as stranger:
        await loop.sock_sendto(stranger, options(port, STRANGER_HOST, 3), (TRUNK_HOST, port))
        reply = await asyncio.wait_for(loop.sock_recv(stranger, 65535), 5.0)
    assert reply.startswith(b"SIP/2.0 403 ")
    assert b"Call-ID: scan3" in reply
    assert len(refusing.endpoint.layer) == 0  # answered without a server transaction


async def test_a_strangers_tcp_connection_is_closed_before_a_byte_is_read(
        dropping: RunningRouter) -> None:
    port = dropping.port
    reader, writer = await asyncio.open_connection(TRUNK_HOST, port, local_addr=(STRANGER_HOST, 0))
    writer.write(options(port, STRANGER_HOST, 5).replace(b"UDP", b"TCP"))
    assert await asyncio.wait_for(reader.read(), 5.0) == b""  # closed, nothing answered
    writer.close()
    reader, writer = await asyncio.open_connection(TRUNK_HOST, port)
    writer.write(options(port, TRUNK_HOST, 6).replace(b"UDP", b"TCP"))
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n"), 5.0)).startswith(b"SIP/2.0 200")
    writer.close()
    assert dropping.endpoint.dropped_malformed == 0
