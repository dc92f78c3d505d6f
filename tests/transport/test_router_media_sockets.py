"""Anchored media through a real in-process router on 127.0.0.1: the caller hears the 113
announcement as paced RTP while the centre rings, then caller and centre hear each other.

Raw UDP sockets play the carrier (SIP + RTP) and the AMK centre (SIP + RTP); timing is only
checked loosely (a lower bound on the pacing), never as a speed figure.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator

import pytest

from ivr.config import IvrFlow, IvrSettings, MediaSettings, PlayStep
from ivr.engine import AsyncioMediaEngine
from ivr.rtp import RtpPacket
from router.app import RunningRouter, start_router
from router.config import NodruteSettings, SipSettings
from sip.message import Request, Response
from sip.parser import parse_message
from sip.sdp import SessionDescription

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

AMK_OSLO_SIP = ("127.0.0.1", 5110)  # AMK-OSLO's URI in the sample table
RTP_FIRST = 46000


def media_settings(**media: object) -> NodruteSettings:
    fields: dict[str, object] = {"enabled": True, "address": "127.0.0.1",
                                 "rtp_port_first": RTP_FIRST, "rtp_port_last": RTP_FIRST + 99}
    return NodruteSettings(sip=SipSettings(host="127.0.0.1", port=0),
                           media=MediaSettings.model_validate({**fields, **media}))


@pytest.fixture
async def router() -> AsyncIterator[RunningRouter]:
    running = await start_router(media_settings())
    yield running
    await running.close()


class Udp:
    """A non-blocking UDP socket on 127.0.0.1 read through the loop."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    async def recv(self, timeout: float = 3.0) -> tuple[bytes, tuple[str, int]]:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.sock_recvfrom(self.sock, 65535), timeout)

    def send(self, data: bytes, dest: tuple[str, int]) -> None:
        self.sock.sendto(data, dest)

    def close(self) -> None:
        self.sock.close()


async def recv_sip(udp: Udp, want: str | int) -> tuple[Request | Response, tuple[str, int]]:
    """The next SIP message that is request ``want`` or response status ``want``."""
    while True:
        data, source = await udp.recv()
        message = parse_message(data)
        if isinstance(want, int) and isinstance(message, Response) and message.status == want:
            return message, source
        if isinstance(want, str) and isinstance(message, Request) and message.method == want:
            return message, source


async def recv_rtp_with_payload(udp: Udp, payload: bytes) -> RtpPacket:
    while True:
        data, _ = await udp.recv()
        packet = RtpPacket.parse(data)
        if packet.payload == payload:
            return packet


def sdp(rtp_port: int) -> bytes:
    return (
        f"v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
    ).encode()


def caller_invite(router_port: int, sip_port: int, rtp_port: int) -> bytes:
    body = sdp(rtp_port)
    return (
        f"INVITE sip:113@127.0.0.1:{router_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{sip_port};branch=z9hG4bKmedia1;rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:4790000001@carrier.example>;tag=c1\r\n"
        "To: <sip:113@127.0.0.1>\r\nCall-ID: media1@carrier.example\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:caller@127.0.0.1:{sip_port}>\r\nX-Kommunenummer: 0301\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def centre_response(invite: Request, status: int, body: bytes = b"") -> bytes:
    lines = [f"SIP/2.0 {status} X"]
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in invite.headers.get_all(name):
            if name == "To":
                value = f"{value};tag=amk1"
            lines.append(f"{name}: {value}")
    lines.append(f"Contact: <sip:amk@{AMK_OSLO_SIP[0]}:{AMK_OSLO_SIP[1]}>")
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def caller_ack(ok: Response, router_port: int, sip_port: int) -> bytes:
    return (
        f"ACK sip:nodrute@127.0.0.1:{router_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{sip_port};branch=z9hG4bKmedia1ack;rport\r\n"
        f"Max-Forwards: 70\r\nFrom: {ok.headers.get('From')}\r\nTo: {ok.headers.get('To')}\r\n"
        f"Call-ID: {ok.headers.get('Call-ID')}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def caller_bye(ok: Response, router_port: int, sip_port: int) -> bytes:
    return (
        f"BYE sip:nodrute@127.0.0.1:{router_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{sip_port};branch=z9hG4bKmedia1bye;rport\r\n"
        f"Max-Forwards: 70\r\nFrom: {ok.headers.get('From')}\r\nTo: {ok.headers.get('To')}\r\n"
        f"Call-ID: {ok.headers.get('Call-ID')}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def audio_address(body: bytes) -> tuple[str, int]:
    description = SessionDescription.parse(body)
    [m] = description.media
    address = description.media_address(m)
    assert address is not None
    return address, m.port


async def test_caller_hears_paced_announcement_then_talks_to_the_centre(
        router: RunningRouter) -> None:
    caller_sip, caller_rtp = Udp(), Udp()
    centre_sip, centre_rtp = Udp(AMK_OSLO_SIP[1]), Udp()
    router_sip = ("127.0.0.1", router.port)
    try:
        caller_sip.send(caller_invite(router.port, caller_sip.port, caller_rtp.port), router_sip)
        invite, invite_source = await recv_sip(centre_sip, "INVITE")
        assert isinstance(invite, Request)
        centre_leg = audio_address(invite.body)  # the router's centre-side RTP address
        assert centre_leg[0] == "127.0.0.1" and RTP_FIRST <= centre_leg[1] < RTP_FIRST + 100
        progress, _ = await recv_sip(caller_sip, 183)
        caller_leg = audio_address(progress.body)
        assert RTP_FIRST <= caller_leg[1] < RTP_FIRST + 100 and caller_leg != centre_leg

        # the announcement: PCMA frames of 160 samples, one stream, paced by the clock
        loop = asyncio.get_running_loop()
        packets: list[RtpPacket] = []
        started = loop.time()
        while len(packets) < 10:
            data, source = await caller_rtp.recv()
            assert source == caller_leg  # symmetric RTP: from the port we were told
            packets.append(RtpPacket.parse(data))
        elapsed = loop.time() - started
        assert {p.payload_type for p in packets} == {8}
        assert {len(p.payload) for p in packets} == {160}
        assert len({p.ssrc for p in packets}) == 1
        pairs = list(itertools.pairwise(packets))
        assert [(b.sequence - a.sequence) % 65536 for a, b in pairs] == [1] * 9
        assert [(b.timestamp - a.timestamp) % 2**32 for a, b in pairs] == [160] * 9
        assert elapsed >= 9 * 0.020 * 0.5  # paced, not sent in a burst

        # the centre rings, then answers mid-announcement with its own RTP address
        centre_sip.send(centre_response(invite, 180), invite_source)
        centre_sip.send(centre_response(invite, 200, sdp(centre_rtp.port)), invite_source)
        ok, _ = await recv_sip(caller_sip, 200)
        assert isinstance(ok, Response)
        assert ok.body == progress.body  # the same answer: no re-INVITE at the switch
        caller_sip.send(caller_ack(ok, router.port, caller_sip.port), router_sip)

        from_caller, from_centre = b"\x22" * 160, b"\x11" * 160
        for seq in range(5):
            caller_rtp.send(RtpPacket(8, 100 + seq, 1600 + 160 * seq, 0xCA11E2, from_caller)
                            .pack(), caller_leg)
            centre_rtp.send(RtpPacket(8, 500 + seq, 8000 + 160 * seq, 0xCE27E2, from_centre)
                            .pack(), centre_leg)
            await asyncio.sleep(0.02)
        heard_by_centre = await recv_rtp_with_payload(centre_rtp, from_caller)
        heard_by_caller = await recv_rtp_with_payload(caller_rtp, from_centre)
        # the caller's stream goes on under the SSRC it already knew (one stream, no gap)
        assert heard_by_caller.ssrc == packets[0].ssrc
        assert heard_by_centre.payload_type == 8

        # the caller hangs up: the centre gets the BYE and both RTP legs are freed
        caller_sip.send(caller_bye(ok, router.port, caller_sip.port), router_sip)
        await recv_sip(caller_sip, 200)
        bye, bye_source = await recv_sip(centre_sip, "BYE")
        assert isinstance(bye, Request)
        centre_sip.send(centre_response(bye, 200), bye_source)
        engine = router.media_engine
        assert isinstance(engine, AsyncioMediaEngine)
        assert engine.leg_count == 0
    finally:
        for udp in (caller_sip, caller_rtp, centre_sip, centre_rtp):
            udp.close()


async def test_start_refuses_flows_naming_missing_prompts() -> None:
    ivr = IvrSettings(flows={"x": IvrFlow(steps=(PlayStep(prompt="no_such_prompt"),))},
                      services={"113": "x"})
    settings = media_settings().model_copy(update={"ivr": ivr})
    with pytest.raises(SystemExit, match="no_such_prompt"):
        await start_router(settings)


async def test_start_refuses_rtp_ports_it_cannot_bind() -> None:
    # every port of a two-pair range is taken by someone else: no call could get media
    first = RTP_FIRST + 200
    squatters = [Udp(port) for port in range(first, first + 4)]
    try:
        with pytest.raises(SystemExit, match="cannot bind RTP ports"):
            await start_router(media_settings(rtp_port_first=first, rtp_port_last=first + 3))
    finally:
        for udp in squatters:
            udp.close()


def answer_in_dialog(request: Request, contact_port: int, body: bytes) -> bytes:
    """200 to a re-INVITE the router sent inside an established dialog."""
    lines = ["SIP/2.0 200 OK"]
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        lines += [f"{name}: {value}" for value in request.headers.get_all(name)]
    lines += [f"Contact: <sip:peer@127.0.0.1:{contact_port}>", "Content-Type: application/sdp",
              f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_release_mode_hands_the_rtp_to_caller_and_centre() -> None:
    running = await start_router(media_settings(mode="release"))
    caller_sip, caller_rtp = Udp(), Udp()
    centre_sip, centre_rtp = Udp(AMK_OSLO_SIP[1]), Udp()
    router_sip = ("127.0.0.1", running.port)
    try:
        caller_sip.send(caller_invite(running.port, caller_sip.port, caller_rtp.port),
                        router_sip)
        invite, invite_source = await recv_sip(centre_sip, "INVITE")
        assert isinstance(invite, Request)
        centre_sip.send(centre_response(invite, 200, sdp(centre_rtp.port)), invite_source)
        ok, _ = await recv_sip(caller_sip, 200)
        assert isinstance(ok, Response)
        assert audio_address(ok.body)[1] != centre_rtp.port  # answered anchored first
        caller_sip.send(caller_ack(ok, running.port, caller_sip.port), router_sip)
        await recv_sip(centre_sip, "ACK")

        # the caller is offered the centre's RTP address, the centre then the caller's
        to_caller, source = await recv_sip(caller_sip, "INVITE")
        assert isinstance(to_caller, Request)
        assert audio_address(to_caller.body) == ("127.0.0.1", centre_rtp.port)
        caller_sip.send(answer_in_dialog(to_caller, caller_sip.port, sdp(caller_rtp.port)),
                        source)
        await recv_sip(caller_sip, "ACK")
        to_centre, source = await recv_sip(centre_sip, "INVITE")
        assert isinstance(to_centre, Request)
        assert audio_address(to_centre.body) == ("127.0.0.1", caller_rtp.port)
        centre_sip.send(answer_in_dialog(to_centre, AMK_OSLO_SIP[1], sdp(centre_rtp.port)),
                        source)
        await recv_sip(centre_sip, "ACK")
        engine = running.media_engine
        assert isinstance(engine, AsyncioMediaEngine)
        for _ in range(100):  # the engine frees the legs once the centre's 200 is in
            if engine.leg_count == 0:
                break
            await asyncio.sleep(0.01)
        assert engine.leg_count == 0
    finally:
        for udp in (caller_sip, caller_rtp, centre_sip, centre_rtp):
            udp.close()
        await running.close()
