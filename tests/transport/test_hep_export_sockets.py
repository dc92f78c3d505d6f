"""SIP tracing through a real in-process router on 127.0.0.1: with ``[hep] enabled`` every SIP
message of a call — both legs, both directions — reaches a HEPv3 collector with the right
addresses, ports and bytes; and a full queue drops copies without holding anything up.

Raw UDP sockets play the carrier and the AMK centre (the sample table copied with AMK-OSLO
pointed at an ephemeral port, so no fixed port is needed).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hep_collector import HepCollector, HepMessage

from municipality_map import default_table_dir
from router.app import RunningRouter, start_router
from router.config import (
    DatabaseSettings,
    HepSettings,
    NodruteSettings,
    RoutingSettings,
    SipSettings,
)
from router.hep import HepSender
from sip.message import Request, Response
from sip.parser import parse_message

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

LOOPBACK = "127.0.0.1"
NODE_ID = 4242
PASSWORD = "s3cret"


class Peer:
    """A UDP socket on 127.0.0.1 that keeps every datagram it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setblocking(False)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.received: list[bytes] = []
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    async def expect(self, want: str | int) -> Request | Response:
        """The next message that is request ``want`` or response status ``want``."""
        loop = asyncio.get_running_loop()
        while True:
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 65535), 3.0)
            self.received.append(data)
            message = parse_message(data)
            if isinstance(message, Response) and message.status == want:
                return message
            if isinstance(message, Request) and message.method == want:
                return message

    def send(self, data: bytes, dest: tuple[str, int]) -> None:
        self.sent.append((data, dest))
        self.sock.sendto(data, dest)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
async def collector() -> AsyncIterator[HepCollector]:
    hep = HepCollector()
    yield hep
    hep.close()


@pytest.fixture
async def centre() -> AsyncIterator[Peer]:
    peer = Peer()
    yield peer
    peer.close()


@pytest.fixture
async def router(tmp_path: Path, collector: HepCollector,
                 centre: Peer) -> AsyncIterator[RunningRouter]:
    table = shutil.copytree(default_table_dir(), tmp_path / "table")
    centres = table / "centres.csv"
    text = centres.read_text(encoding="utf-8")
    assert "@127.0.0.1:5110" in text  # AMK-OSLO
    centres.write_text(text.replace("@127.0.0.1:5110", f"@127.0.0.1:{centre.address[1]}"),
                       encoding="utf-8")
    settings = NodruteSettings.model_validate({
        "sip": SipSettings(host=LOOPBACK, port=0, transports=["udp"]),
        "routing": RoutingSettings(table_dir=table),
        "database": DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'nodrute.db'}"),
        "metrics": {"enabled": False}, "media": {"enabled": False},
        "health": {"enabled": False}, "records": {"enabled": False},
        "hep": HepSettings(enabled=True, host=LOOPBACK, port=collector.port, node_id=NODE_ID,
                           password=PASSWORD),
    })
    running = await start_router(settings)
    yield running
    await running.close()


def caller_invite(router_port: int, caller: tuple[str, int]) -> bytes:
    body = (b"v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            b"m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n")
    return (
        f"INVITE sip:113@127.0.0.1:{router_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{caller[1]};branch=z9hG4bKhep1;rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:4790000001@carrier.example>;tag=c1\r\n"
        "To: <sip:113@127.0.0.1>\r\nCall-ID: hep1@carrier.example\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:caller@127.0.0.1:{caller[1]}>\r\nX-Kommunenummer: 0301\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def response_to(request: Request, status: int, contact: tuple[str, int]) -> bytes:
    lines = [f"SIP/2.0 {status} X"]
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in request.headers.get_all(name):
            if name == "To" and "tag=" not in value:
                value = f"{value};tag=amk1"
            lines.append(f"{name}: {value}")
    lines.append(f"Contact: <sip:amk@{contact[0]}:{contact[1]}>")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def in_dialog(method: str, ok: Response, router_port: int, caller: tuple[str, int],
              cseq: int) -> bytes:
    return (
        f"{method} sip:nodrute@127.0.0.1:{router_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{caller[1]};branch=z9hG4bKhep{method.lower()};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: {ok.headers.get('From')}\r\nTo: {ok.headers.get('To')}\r\n"
        f"Call-ID: {ok.headers.get('Call-ID')}\r\nCSeq: {cseq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def traced(messages: list[HepMessage], src: tuple[str, int], dst: tuple[str, int],
           payload: bytes) -> bool:
    return any(m.src == src and m.dst == dst and m.payload == payload for m in messages)


async def test_every_sip_message_of_a_call_reaches_the_collector(
        router: RunningRouter, collector: HepCollector, centre: Peer) -> None:
    caller = Peer()
    node = (LOOPBACK, router.port)
    started = time.time()
    try:
        caller.send(caller_invite(router.port, caller.address), node)
        await caller.expect(100)
        invite = await centre.expect("INVITE")
        assert isinstance(invite, Request)
        for status in (100, 180, 200):
            centre.send(response_to(invite, status, centre.address), node)
        await caller.expect(180)
        ok = await caller.expect(200)
        assert isinstance(ok, Response)
        caller.send(in_dialog("ACK", ok, router.port, caller.address, 1), node)
        await centre.expect("ACK")
        caller.send(in_dialog("BYE", ok, router.port, caller.address, 2), node)
        bye = await centre.expect("BYE")
        assert isinstance(bye, Request)
        centre.send(response_to(bye, 200, centre.address), node)
        bye_ok = await caller.expect(200)
        assert bye_ok.headers.get("CSeq") == "2 BYE"

        # Every datagram either peer sent or received, with the node on the other side.
        wanted = ([(data, peer.address, node) for peer in (caller, centre)
                   for data, _ in peer.sent]
                  + [(data, node, peer.address) for peer in (caller, centre)
                     for data in peer.received])
        messages = await collector.collect_until(
            lambda got: all(traced(got, src, dst, data) for data, src, dst in wanted))
    finally:
        caller.close()
    # caller: INVITE, ACK, BYE out; 100, 180, 200, 200 in. centre: INVITE, ACK, BYE in;
    # 100, 180, 200, 200 out.
    assert len(wanted) == 14
    ended = time.time()
    for message in messages:
        assert (message.family, message.protocol, message.proto_type) == (2, 17, 1)
        assert message.capture_id == NODE_ID and message.auth_key == PASSWORD.encode()
        assert started - 1 <= message.seconds + message.micros / 1e6 <= ended + 1
        assert message.chunk_types[-1] == 15  # the payload comes last
    sender = router.hep
    assert sender is not None and sender.dropped == 0 and sender.sent >= len(wanted)


async def test_a_full_queue_drops_copies_and_counts_them(collector: HepCollector) -> None:
    sender = HepSender.open(HepSettings(enabled=True, host=LOOPBACK, port=collector.port,
                                        node_id=7, queue_size=3))
    try:
        for n in range(5):  # no loop turn in between: the flush has not run yet
            sender.capture(f"OPTIONS {n}".encode(), (LOOPBACK, 5060), (LOOPBACK, 5070), "UDP")
        assert sender.queued == 3 and sender.dropped == 2
        messages = await collector.collect_until(lambda got: len(got) >= 3)
    finally:
        sender.close()
    assert [m.payload for m in messages] == [b"OPTIONS 0", b"OPTIONS 1", b"OPTIONS 2"]
    assert sender.sent == 3 and sender.queued == 0
