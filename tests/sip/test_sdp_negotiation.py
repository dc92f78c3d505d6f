"""SDP parse/serialise and RFC 3264 offer/answer transcripts."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip.sdp import (
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    OfferRejected,
    SdpError,
    SessionDescription,
    answer_offer,
    make_offer,
    negotiated_audio,
    with_connection,
)

CARRIER_OFFER = (
    "v=0\r\n"
    "o=carrier 1234 5678 IN IP4 127.0.0.9\r\n"
    "s=call\r\n"
    "c=IN IP4 127.0.0.9\r\n"
    "b=AS:64\r\n"
    "t=0 0\r\n"
    "m=audio 40000 RTP/AVP 18 0 8 101\r\n"
    "a=rtpmap:18 G729/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
)


def test_parse_and_serialise_round_trip() -> None:
    sdp = SessionDescription.parse(CARRIER_OFFER.encode())
    assert sdp.origin_username == "carrier" and sdp.session_id == 1234
    assert sdp.connection == "127.0.0.9"
    (audio,) = sdp.media
    assert audio.formats == ["18", "0", "8", "101"]
    assert audio.rtpmap()[101] == TELEPHONE_EVENT
    assert audio.fmtp(101) == "0-16"
    assert audio.ptime_ms == 20 and audio.direction == "sendrecv"
    assert sdp.serialise().decode() == CARRIER_OFFER
    assert SessionDescription.parse(sdp.serialise()) == sdp


def test_answer_takes_the_offers_first_supported_codec_and_keeps_its_event_type() -> None:
    offer = SessionDescription.parse(CARRIER_OFFER)
    answer, audio = answer_offer(offer, "127.0.0.1", 20000, session_id=7)
    # G.729 unsupported; PCMU is the offerer's next preference (RFC 3264 §6.1) even though
    # our own list prefers PCMA.
    assert (audio.codec, audio.payload_type, audio.event_payload_type) == (PCMU, 0, 101)
    assert (audio.remote_address, audio.remote_port) == ("127.0.0.9", 40000)
    assert answer.serialise().decode() == (
        "v=0\r\n"
        "o=- 7 7 IN IP4 127.0.0.1\r\n"
        "s=nodrute\r\n"
        "c=IN IP4 127.0.0.1\r\n"
        "t=0 0\r\n"
        "m=audio 20000 RTP/AVP 0 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-15\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    )


def test_static_payload_types_without_rtpmap_and_media_level_connection() -> None:
    offer = SessionDescription.parse(
        "v=0\no=- 1 1 IN IP4 127.0.0.2\ns=-\nt=0 0\n"
        "m=video 5000 RTP/AVP 96\na=rtpmap:96 H264/90000\n"
        "m=audio 6000 RTP/AVP 8\nc=IN IP4 127.0.0.3\na=sendonly\n")
    answer, audio = answer_offer(offer, "127.0.0.1", 20002, supported=(PCMA, PCMU))
    assert [(m.media, m.port) for m in answer.media] == [("video", 0), ("audio", 20002)]
    assert audio.codec == PCMA and audio.event_payload_type is None
    assert audio.remote_address == "127.0.0.3"
    assert answer.media[1].direction == "recvonly"  # RFC 3264 §6.1


def test_offer_without_a_common_codec_is_rejected_with_488() -> None:
    offer = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 18 101\r\na=rtpmap:18 G729/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n")
    with pytest.raises(OfferRejected) as info:
        answer_offer(offer, "127.0.0.1", 20000)
    assert info.value.status == 488


@pytest.mark.parametrize("body", ["", "o=- 1 1 IN IP4 a\r\n", "v=1\r\n",
                                  "v=0\r\nc=IN IP4\r\n", "v=0\r\nm=audio x RTP/AVP 0\r\n",
                                  "v=0\r\ngarbage\r\n"])
def test_malformed_sdp_raises(body: str) -> None:
    with pytest.raises(SdpError):
        SessionDescription.parse(body)


def test_offer_answer_transcript_towards_a_centre() -> None:
    """The router offers the centre A-law first; the centre answers µ-law with event type 96."""
    offer = make_offer("127.0.0.1", 20004, codecs=(PCMA, PCMU), event_payload_type=101,
                       session_id=3)
    assert offer.serialise().decode().splitlines()[5:] == [
        "m=audio 20004 RTP/AVP 8 0 101",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
    ]
    centre_answer = SessionDescription.parse(
        "v=0\r\no=centre 9 9 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\n"
        "m=audio 7000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:30\r\n")
    audio = negotiated_audio(offer, centre_answer)
    assert (audio.codec, audio.payload_type, audio.event_payload_type) == (PCMU, 0, 101)
    assert (audio.remote_address, audio.remote_port, audio.ptime_ms) == ("127.0.0.5", 7000, 30)
    refused = SessionDescription.parse(
        "v=0\r\no=c 1 1 IN IP4 127.0.0.5\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 8\r\n")
    with pytest.raises(OfferRejected):
        negotiated_audio(offer, refused)


def test_with_connection_rewrites_only_the_audio_address() -> None:
    offer = SessionDescription.parse(CARRIER_OFFER)
    anchored = with_connection(offer, "127.0.0.1", 20010)
    assert anchored.connection == "127.0.0.1" and anchored.media[0].port == 20010
    assert anchored.media[0].formats == offer.media[0].formats
    assert offer.media[0].port == 40000  # the original is untouched


def test_session_level_direction_applies_to_the_stream() -> None:
    """A held caller (session-level a=sendonly, RFC 4566 §6) gets a recvonly answer."""
    offer = SessionDescription.parse(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\na=sendonly\r\n"
        "m=audio 4000 RTP/AVP 8\r\n")
    answer, audio = answer_offer(offer, "127.0.0.1", 20000)
    assert audio.direction == "recvonly" and answer.media[0].direction == "recvonly"
    # and the offerer's view: the answerer said sendonly, so we only receive
    ours = make_offer("127.0.0.1", 20000)
    theirs = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\n"
        "m=audio 7000 RTP/AVP 8\r\na=sendonly\r\n")
    assert negotiated_audio(ours, theirs).direction == "recvonly"


SDP_LINE = st.one_of(
    st.sampled_from(CARRIER_OFFER.splitlines()),
    st.builds(lambda kind, value: f"{kind}={value}", st.sampled_from("vosctmab"),
              st.text(max_size=30)),
    st.text(max_size=30),
)


@given(st.lists(SDP_LINE, max_size=20))
@settings(max_examples=300, deadline=None)
def test_any_body_parses_or_raises_sdp_error_and_answering_never_crashes(
    lines: list[str],
) -> None:
    """Peer SDP is untrusted: only SdpError/OfferRejected may come out, never a crash."""
    try:
        sdp = SessionDescription.parse("\r\n".join(lines))
    except SdpError:
        return
    with contextlib.suppress(OfferRejected):
        answer_offer(sdp, "127.0.0.1", 20000)
    SessionDescription.parse(sdp.serialise())
