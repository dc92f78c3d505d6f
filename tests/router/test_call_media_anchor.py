"""Anchored media and the IVR in the call path (``[media] enabled``), on a fake clock and a fake
media engine: what the caller and the centre are sent, and what the engine is asked to do."""

from __future__ import annotations

from b2bua_harness import (
    CARRIER,
    SDP_ANSWER,
    SDP_OFFER,
    Harness,
    caller_invite,
    in_dialog_request,
    make_harness,
    response_to,
)

from ivr.config import IvrSettings, MediaSettings
from ivr.engine import LocalMedia, MediaEngine, MediaEngineError, PromptFinished
from ivr.prompts import Prompt, PromptCatalogue
from municipality_map import RoutingSnapshot
from router.call_record import TerminatedReason
from router.config import NodruteSettings
from router.media import MediaContext
from sip.message import Request, Response
from sip.multipart import sdp_of
from sip.sdp import NegotiatedAudio, SessionDescription

LVS_OSLO = ("127.0.0.1", 5201)
AMK_OSLO = ("127.0.0.1", 5110)
MEDIA_ADDRESS = "127.0.0.1"


class FakeEngine(MediaEngine):
    """Records what the router asks; allocates ports 30000, 30002, … or raises when full."""

    def __init__(self, free_legs: int = 100) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.remotes: dict[str, NegotiatedAudio] = {}
        self.legs: dict[str, int] = {}
        self.free_legs = free_legs
        self._next_port = 30000

    def allocate(self, leg_id: str) -> LocalMedia:
        if len(self.legs) >= self.free_legs:
            raise MediaEngineError("no free RTP port in the configured range")
        assert leg_id not in self.legs
        self.legs[leg_id] = self._next_port
        self._next_port += 2
        self.calls.append(("allocate", leg_id))
        return LocalMedia(MEDIA_ADDRESS, self.legs[leg_id])

    def set_remote(self, leg_id: str, audio: NegotiatedAudio) -> None:
        assert leg_id in self.legs
        self.remotes[leg_id] = audio
        self.calls.append(("set_remote", leg_id))

    def play(self, leg_id: str, prompt: Prompt, *, repeat: bool = False) -> None:
        assert leg_id in self.legs
        self.calls.append(("play", leg_id, f"{prompt.language}/{prompt.name}", str(repeat)))

    def stop(self, leg_id: str) -> None:
        assert leg_id in self.legs
        self.calls.append(("stop", leg_id))

    def bridge(self, leg_a: str, leg_b: str) -> None:
        assert leg_a in self.legs and leg_b in self.legs
        self.calls.append(("bridge", leg_a, leg_b))

    def release(self, leg_id: str) -> None:
        self.legs.pop(leg_id, None)
        self.calls.append(("release", leg_id))

    def close(self) -> None:
        self.legs.clear()

    def kinds(self, kind: str) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[0] == kind]


def media_harness(snapshot: RoutingSnapshot, engine: FakeEngine,
                  settings: NodruteSettings | None = None,
                  prompt_names: tuple[str, ...] = ("greeting_116117", "please_wait_113"),
                  ) -> Harness:
    """The harness with a fake engine and one-frame prompts (media on, anchor by default)."""
    settings = settings or NodruteSettings(media=MediaSettings(enabled=True))
    frame = (b"\xd5" * 160,)
    prompts = PromptCatalogue(Prompt("nb", name, frame, frame) for name in prompt_names)
    h = make_harness(snapshot, settings)
    h.b2bua.media = MediaContext(engine, prompts, IvrSettings())
    return h


def invite_116117(n: int, body: bytes = SDP_OFFER) -> bytes:
    return caller_invite(n, "sip:116117@127.0.0.1", body=body)


def cancel_for(invite: bytes) -> bytes:
    """The carrier's CANCEL for ``invite`` (same Via branch, Call-ID, From, To; §9.1)."""
    head = invite.decode().split("\r\n\r\n")[0].split("\r\n")
    ruri = head[0].split()[1]
    keep = [line for line in head[1:]
            if line.split(":")[0] in ("Via", "Max-Forwards", "From", "To", "Call-ID")]
    lines = [f"CANCEL {ruri} SIP/2.0", *keep, "CSeq: 1 CANCEL", "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def audio_port(body: bytes) -> int:
    [m] = [m for m in SessionDescription.parse(body).media if m.media == "audio"]
    return m.port


def caller_leg(engine: FakeEngine) -> str:
    [leg] = [c[1] for c in engine.kinds("allocate") if c[1].endswith(":caller")]
    return leg


def response(h: Harness, status: int) -> Response:
    message = h.take_one(status, CARRIER).message
    assert isinstance(message, Response)
    return message


def centre_invite(h: Harness, dest: tuple[str, int]) -> Request:
    message = h.take_one("INVITE", dest).message
    assert isinstance(message, Request)
    return message


def test_116117_greeting_as_early_media_then_the_centre_is_rung(
        snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine()
    h = media_harness(snapshot, engine)
    h.feed(invite_116117(1))
    response(h, 100)
    progress = response(h, 183)
    assert progress.headers.get("Content-Type") == "application/sdp"
    # the caller is answered with OUR media address, in its preferred codec (PCMA)
    answer = SessionDescription.parse(progress.body)
    assert answer.connection == MEDIA_ADDRESS
    leg = caller_leg(engine)
    assert audio_port(progress.body) == engine.legs[leg]
    assert answer.media[0].rtpmap()[8].name == "PCMA"
    assert engine.remotes[leg].remote_address == "192.0.2.10"
    assert engine.remotes[leg].remote_port == 40000
    assert engine.kinds("play") == [("play", leg, "nb/greeting_116117", "False")]
    assert h.take() == []  # no centre INVITE while the greeting plays

    h.now += 6.0
    h.b2bua.handle_media_event(PromptFinished(leg, "greeting_116117"), h.now)
    h._pump()
    invite = centre_invite(h, LVS_OSLO)
    assert h.take() == []
    # the centre is offered the router's SDP (the caller's codec first), not the caller's
    offer = SessionDescription.parse(invite.body)
    centre_leg = leg.replace(":caller", ":centre")
    assert offer.connection == MEDIA_ADDRESS
    assert audio_port(invite.body) == engine.legs[centre_leg]
    assert offer.media[0].formats[:2] == ["8", "0"]
    assert b"192.0.2.10" not in invite.body

    h.feed(response_to(invite, 180), source=LVS_OSLO)
    assert response(h, 180).body == progress.body
    h.feed(response_to(invite, 200, body=SDP_ANSWER), source=LVS_OSLO)
    h.take_one("ACK", LVS_OSLO)
    ok = response(h, 200)
    assert ok.body == progress.body  # the same answer as the 183 (RFC 3261 §13.2.1)
    assert engine.remotes[centre_leg].remote_port == 41000
    assert engine.calls[-1] == ("bridge", leg, centre_leg)
    assert h.records == []


def test_113_rings_the_centre_at_once_and_announces_while_it_rings(
        snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine()
    h = media_harness(snapshot, engine)
    h.feed(caller_invite(2))
    kinds = [(s.message.method if isinstance(s.message, Request) else s.message.status)
             for s in h.outbox]
    # the centre INVITE is queued before the announcement starts: the prompt never delays it
    assert kinds == [100, "INVITE", 183]
    invite = centre_invite(h, AMK_OSLO)
    progress = response(h, 183)
    response(h, 100)
    leg = caller_leg(engine)
    assert engine.kinds("play") == [("play", leg, "nb/please_wait_113", "True")]
    assert SessionDescription.parse(invite.body).connection == MEDIA_ADDRESS

    h.now += 0.5
    h.feed(response_to(invite, 180), source=AMK_OSLO)
    assert response(h, 180).body == progress.body
    assert engine.kinds("stop") == []  # ringing does not stop the announcement


def test_centre_answering_mid_prompt_stops_it_then_bridges(snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine()
    h = media_harness(snapshot, engine)
    h.feed(caller_invite(3))
    invite = centre_invite(h, AMK_OSLO)
    progress = response(h, 183)
    h.take()
    leg = caller_leg(engine)
    centre_leg = leg.replace(":caller", ":centre")
    h.now += 1.3  # mid-prompt
    h.feed(response_to(invite, 183, body=SDP_ANSWER), source=AMK_OSLO)
    assert response(h, 183).body == progress.body
    assert engine.kinds("stop") == [] and engine.kinds("bridge") == []  # prompt still wins
    h.feed(response_to(invite, 200, body=SDP_ANSWER), source=AMK_OSLO)
    ok = response(h, 200)
    assert ok.body == progress.body
    assert ok.headers.get("Content-Type") == "application/sdp"
    assert engine.calls[-2:] == [("stop", leg), ("bridge", leg, centre_leg)]
    assert set(engine.legs) == {leg, centre_leg}


def test_cancel_during_the_greeting_releases_media_and_never_rings(
        snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine()
    h = media_harness(snapshot, engine)
    invite = invite_116117(4)
    h.feed(invite)
    response(h, 183)
    h.take()
    leg = caller_leg(engine)
    h.now += 2.0
    h.feed(cancel_for(invite))
    response(h, 200)
    response(h, 487)
    assert h.take() == []
    assert ("stop", leg) in engine.calls
    assert engine.legs == {}
    # a late engine event for the released leg does nothing
    h.b2bua.handle_media_event(PromptFinished(leg, "greeting_116117"), h.now)
    h._pump()
    assert h.take() == []
    [record] = h.records
    assert record.end_reason is TerminatedReason.CALLER_CANCEL
    assert h.b2bua.active_calls == 0


def test_cancel_during_113_announcement_cancels_the_centre_and_frees_both_legs(
        snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine()
    h = media_harness(snapshot, engine)
    invite = caller_invite(5)
    h.feed(invite)
    centre = centre_invite(h, AMK_OSLO)
    h.feed(response_to(centre, 180), source=AMK_OSLO)  # §9.1: CANCEL only once it rings
    h.take()
    h.feed(cancel_for(invite))
    assert h.take_one("CANCEL", AMK_OSLO)
    response(h, 487)
    assert engine.legs == {}
    assert len(engine.kinds("release")) == 2


def test_bye_releases_both_media_legs(snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine()
    h = media_harness(snapshot, engine)
    h.feed(caller_invite(6))
    invite = centre_invite(h, AMK_OSLO)
    h.take()
    h.feed(response_to(invite, 200, body=SDP_ANSWER), source=AMK_OSLO)
    ok = response(h, 200)
    h.take()
    h.feed(in_dialog_request("ACK", ok, 6, 1))
    assert len(engine.legs) == 2
    h.feed(in_dialog_request("BYE", ok, 6, 2))
    response(h, 200)
    assert h.take_one("BYE", AMK_OSLO)
    assert engine.legs == {}
    [record] = h.records
    assert record.end_reason is TerminatedReason.CALLER_BYE


def test_no_common_codec_is_rejected_488_before_routing(snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine()
    h = media_harness(snapshot, engine)
    g729_only = SDP_OFFER.replace(b"RTP/AVP 8 0 101", b"RTP/AVP 18").replace(
        b"a=rtpmap:8 PCMA/8000", b"a=rtpmap:18 G729/8000")
    h.feed(caller_invite(7, body=g729_only))
    response(h, 100)
    response(h, 488)
    assert h.take() == []  # no centre leg, no prompt
    assert engine.kinds("play") == [] and engine.legs == {}
    assert h.records[0].final_status == 488
    assert h.b2bua.counters["rejected:media_488"] == 1


def test_no_free_rtp_port_is_503_and_nothing_is_rung(snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine(free_legs=0)
    h = media_harness(snapshot, engine)
    h.feed(caller_invite(8))
    response(h, 100)
    unavailable = response(h, 503)
    assert "media" in (unavailable.headers.get("Reason") or "").lower()
    assert h.take() == []
    assert h.b2bua.active_calls == 0


def test_no_port_for_the_centre_leg_is_503_and_frees_the_caller_leg(
        snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine(free_legs=1)
    h = media_harness(snapshot, engine)
    h.feed(caller_invite(9))
    response(h, 100)
    response(h, 503)
    assert h.take() == []
    assert engine.legs == {}


def test_with_media_off_the_sdp_is_relayed_end_to_end(snapshot: RoutingSnapshot) -> None:
    assert NodruteSettings().media.enabled is True  # anchored is the default
    h = make_harness(snapshot, NodruteSettings(media=MediaSettings(enabled=False)))
    assert h.b2bua.media is None
    h.feed(caller_invite(10))
    assert centre_invite(h, AMK_OSLO).body == SDP_OFFER


def test_a_greeting_that_never_ends_still_routes_after_max_total(
        snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine()
    h = media_harness(snapshot, engine)
    h.feed(invite_116117(11))
    h.take()
    h.advance(59.0)
    assert h.take() == []
    h.advance(1.2)  # IvrFlow.max_total_s = 60: the flow never strands a caller
    invite = centre_invite(h, LVS_OSLO)
    assert SessionDescription.parse(invite.body).connection == MEDIA_ADDRESS


def test_menu_digit_1_transfers_to_the_amk_of_the_same_municipality(
        snapshot: RoutingSnapshot) -> None:
    from ivr.engine import DtmfReceived

    engine = FakeEngine()
    h = media_harness(snapshot, engine)
    assert h.b2bua.media is not None
    frame = (b"\xd5" * 160,)
    prompts = PromptCatalogue(Prompt("nb", name, frame, frame)
                              for name in ("greeting_116117", "press1_for_113"))
    h.b2bua.media = MediaContext(engine, prompts,
                                 IvrSettings(services={"116117": "menu_116117"}))
    h.feed(invite_116117(12))
    h.take()
    leg = caller_leg(engine)
    h.b2bua.handle_media_event(PromptFinished(leg, "greeting_116117"), h.now)
    h._pump()
    assert engine.kinds("play")[-1] == ("play", leg, "nb/press1_for_113", "False")
    h.b2bua.handle_media_event(DtmfReceived(leg, "1"), h.now)
    h._pump()
    invite = centre_invite(h, AMK_OSLO)  # 0301's AMK, not its legevakt
    assert invite.headers.get("X-Kommunenummer") == "0301"
    assert h.take() == []


def answered_media_call(h: Harness, engine: FakeEngine, n: int) -> tuple[Response, Response]:
    """A 113 call answered and ACKed; the caller's 183 and 200."""
    h.feed(caller_invite(n))
    invite = centre_invite(h, AMK_OSLO)
    progress = response(h, 183)
    h.take()
    h.feed(response_to(invite, 200, body=SDP_ANSWER), source=AMK_OSLO)
    ok = response(h, 200)
    h.take()
    h.feed(in_dialog_request("ACK", ok, n, 1))
    return progress, ok


def test_caller_reinvite_is_answered_by_the_router_and_not_relayed(
        snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine()
    h = media_harness(snapshot, engine)
    progress, ok = answered_media_call(h, engine, 13)
    leg = caller_leg(engine)
    moved = SDP_OFFER.replace(b"m=audio 40000", b"m=audio 40100") + b"a=sendonly\r\n"
    h.feed(in_dialog_request("INVITE", ok, 13, 2, body=moved))
    reanswer = response(h, 200)
    assert h.take() == []  # the centre hears nothing of it: its media peer is the router
    assert audio_port(reanswer.body) == audio_port(progress.body)  # same anchored port
    assert b"a=recvonly" in reanswer.body  # the answer to sendonly (RFC 3264 §6.1)
    new_o = SessionDescription.parse(reanswer.body).session_version
    assert new_o > SessionDescription.parse(progress.body).session_version
    assert engine.remotes[leg].remote_port == 40100
    assert engine.kinds("release") == []

    h.feed(in_dialog_request("INVITE", ok, 13, 3))  # no SDP: our current SDP is the offer
    assert response(h, 200).body == reanswer.body

    g729_only = SDP_OFFER.replace(b"RTP/AVP 8 0 101", b"RTP/AVP 18").replace(
        b"a=rtpmap:8 PCMA/8000", b"a=rtpmap:18 G729/8000")
    h.feed(in_dialog_request("INVITE", ok, 13, 4, body=g729_only))
    response(h, 488)
    assert engine.remotes[leg].remote_port == 40100  # the call goes on as it was
    assert h.take() == []


def test_late_offer_invite_is_not_anchored_and_relays_as_before(
        snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine()
    h = media_harness(snapshot, engine)
    h.feed(caller_invite(14, body=b""))
    response(h, 100)
    invite = centre_invite(h, AMK_OSLO)
    assert invite.body == b""  # the offer will come in the centre's 200, the answer in the ACK
    assert h.take() == [] and engine.calls == []


def test_without_a_flow_ringing_stays_local_until_the_centre_sends_early_media(
        snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine()
    h = media_harness(snapshot, engine)
    assert h.b2bua.media is not None
    h.b2bua.media = MediaContext(engine, h.b2bua.media.catalogue, IvrSettings(services={}))
    h.feed(caller_invite(15))
    invite = centre_invite(h, AMK_OSLO)
    response(h, 100)
    assert h.take() == []  # no flow: no 183 of our own
    h.feed(response_to(invite, 180), source=AMK_OSLO)
    assert response(h, 180).body == b""  # the caller's phone plays ringback itself
    assert engine.kinds("bridge") == []
    h.feed(response_to(invite, 183, body=SDP_ANSWER), source=AMK_OSLO)
    early = response(h, 183)
    assert SessionDescription.parse(early.body).connection == MEDIA_ADDRESS
    leg = caller_leg(engine)
    assert engine.kinds("bridge") == [("bridge", leg, leg.replace(":caller", ":centre"))]
    h.feed(response_to(invite, 200, body=SDP_ANSWER), source=AMK_OSLO)
    assert response(h, 200).body == early.body
    assert len(engine.kinds("bridge")) == 1


def test_pidf_lo_beside_the_sdp_is_kept_when_the_media_is_anchored(
        snapshot: RoutingSnapshot) -> None:
    # RFC 6442: the centre must still find the location part the Geolocation header names.
    engine = FakeEngine()
    h = media_harness(snapshot, engine)
    pidf_part = (b"Content-Type: application/pidf+xml\r\nContent-ID: <loc7@carrier.example>"
                 b"\r\n\r\n<presence>position</presence>")
    body = (b"--b1\r\nContent-Type: application/sdp\r\n\r\n" + SDP_OFFER +
            b"\r\n--b1\r\n" + pidf_part + b"\r\n--b1--\r\n")
    raw = caller_invite(7, extra="Geolocation: <cid:loc7@carrier.example>", body=b"")
    raw = raw.replace(b"Content-Length: 0\r\n",
                      b"Content-Type: multipart/mixed;boundary=b1\r\n"
                      + f"Content-Length: {len(body)}\r\n".encode()) + body
    h.feed(raw)
    invite = centre_invite(h, AMK_OSLO)
    assert response(h, 183)  # the caller's SDP was found in its multipart body
    content_type = invite.headers.get("Content-Type") or ""
    assert content_type.startswith("multipart/mixed")
    assert invite.headers.get("Geolocation") == "<cid:loc7@carrier.example>"
    assert pidf_part in invite.body
    assert SDP_OFFER not in invite.body  # the centre gets the router's SDP, not the caller's
    centre_sdp = sdp_of(content_type, invite.body)
    assert centre_sdp is not None and audio_port(centre_sdp) in engine.legs.values()
