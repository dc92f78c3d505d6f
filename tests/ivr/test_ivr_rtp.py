"""RTP/RTCP packets and RFC 4733 DTMF detection."""

import struct

import pytest

from ivr.rtp import (
    DtmfDetector,
    RtpError,
    RtpPacket,
    TelephoneEvent,
    is_rtcp,
    parse_rtcp,
)


def test_rtp_round_trip_and_wire_layout() -> None:
    packet = RtpPacket(8, 65535, 0xFFFFFFF0, 0x11223344, b"\xd5" * 160, marker=True)
    wire = packet.pack()
    assert wire[:12] == bytes.fromhex("8088ffff fffffff0 11223344".replace(" ", ""))
    assert RtpPacket.parse(wire) == packet


def test_parse_skips_csrc_extension_and_padding() -> None:
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 0, 7, 160, 1)
    csrcs = struct.pack("!II", 5, 6)
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\x00" * 4
    padding = b"\x00\x00\x03"
    packet = RtpPacket.parse(header + csrcs + extension + b"abc" + padding)
    assert packet.payload == b"abc"
    assert (packet.sequence, packet.timestamp, packet.ssrc) == (7, 160, 1)


@pytest.mark.parametrize("data", [b"", b"\x80" * 11, b"\x40" + b"\x00" * 11,
                                  struct.pack("!BBHII", 0x8F, 0, 0, 0, 0)])
def test_malformed_rtp_is_rejected(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


def test_rtcp_sr_and_bye_are_summarised() -> None:
    sr = struct.pack("!BBHI", 0x80, 200, 6, 42) + b"\x00" * 20
    bye = struct.pack("!BBHI", 0x81, 203, 1, 42)
    assert is_rtcp(sr) and not is_rtcp(RtpPacket(8, 1, 1, 1, b"").pack())
    summary = parse_rtcp(sr + bye)
    assert summary.packet_types == (200, 203)
    assert summary.ssrc == 42 and summary.has_bye
    with pytest.raises(RtpError):
        parse_rtcp(sr[:-4])


def test_telephone_event_payload() -> None:
    event = TelephoneEvent.parse(bytes([11, 0x80 | 10, 0x03, 0x20]))
    assert event == TelephoneEvent(event=11, end=True, volume=10, duration=800)
    assert event.pack() == bytes([11, 0x8A, 0x03, 0x20])


def event_packets(digit_event: int, timestamp: int, seq: int, pt: int = 101) -> list[RtpPacket]:
    """What a sender emits for one key press (RFC 4733 §2.5.1): updates, then three ends."""
    packets = [RtpPacket(pt, seq, timestamp, 9, TelephoneEvent(digit_event, False, 10, d).pack(),
                         marker=(d == 160)) for d in (160, 320, 480)]
    packets += [RtpPacket(pt, seq + 3 + i, timestamp, 9,
                          TelephoneEvent(digit_event, True, 10, 640).pack()) for i in range(3)]
    return packets


def test_dtmf_detector_reports_each_key_press_once() -> None:
    detector = DtmfDetector(101)
    stream = [*event_packets(1, 1000, 1), *event_packets(1, 3000, 10), *event_packets(11, 5000, 20)]
    stream.insert(2, RtpPacket(8, 3, 1160, 9, b"\xd5" * 160))  # audio in between is ignored
    digits = [d.digit for p in stream if (d := detector.feed(p)) is not None]
    assert digits == ["1", "1", "#"]  # the same digit twice is two presses (new timestamps)


def test_dtmf_detector_survives_a_lost_start_and_ignores_other_payload_types() -> None:
    detector = DtmfDetector(101)
    only_ends = event_packets(5, 800, 1)[3:]
    assert [d.digit for p in only_ends if (d := detector.feed(p))] == ["5"]
    assert detector.feed(event_packets(7, 9000, 9, pt=100)[0]) is None
    assert detector.feed(RtpPacket(101, 1, 99, 9, b"\x01")) is None  # truncated payload
