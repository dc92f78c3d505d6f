"""The media bench's RTP meter (loadtests/rtp_receiver.py): what it counts as a gap, a late
packet or a talkspurt start decides whether a bench step passes, so it is tested here with
made-up arrival times (no sockets, no clock)."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "loadtests"))

from rtp_receiver import RtpMeter

PORT = 41004
ROUTER_LEG = ("127.0.0.1", 20000)


def rtp(seq: int, *, ssrc: int = 0x1234, marker: bool = False, pt: int = 8) -> bytes:
    return struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), seq & 0xFFFF,
                       160 * seq, ssrc) + bytes(160)


def feed(meter: RtpMeter, packets: list[tuple[int, float]], **kwargs: object) -> None:
    for seq, at in packets:
        meter.packet(PORT, ROUTER_LEG, rtp(seq, **kwargs), at)  # type: ignore[arg-type]


def test_a_paced_stream_has_no_gaps_and_no_late_packets() -> None:
    meter = RtpMeter()
    feed(meter, [(100 + i, 1000.0 + 0.020 * i) for i in range(250)])
    summary = meter.summary(PORT)
    assert (summary["streams"], summary["packets"]) == (1, 250)
    assert (summary["seq_gaps"], summary["late"], summary["duplicates"]) == (0, 0, 0)
    assert 19.9 <= summary["max_gap_ms"] <= 20.1


def test_missing_packets_are_gaps_and_a_long_silence_is_late() -> None:
    meter = RtpMeter()
    # 10, 11, (12, 13, 14 lost), 15 arrives 80 ms after 11: three gaps, one late packet
    feed(meter, [(10, 0.0), (11, 0.020), (15, 0.100), (16, 0.120)])
    summary = meter.summary(PORT)
    assert summary["seq_gaps"] == 3
    assert summary["late"] == 1 and summary["streams_with_late"] == 1
    assert summary["max_gap_ms"] == 80.0
    assert meter.late_buckets == {(PORT, 1): 1}  # when it came: the 100-200 ms bucket


def test_a_talkspurt_start_after_silence_is_a_switch_not_a_late_packet() -> None:
    meter = RtpMeter()
    feed(meter, [(1, 0.0), (2, 0.020)])
    meter.packet(PORT, ROUTER_LEG, rtp(3, marker=True), 0.300)  # prompt -> centre audio
    feed(meter, [(4, 0.320)])
    summary = meter.summary(PORT)
    assert summary["late"] == 0 and summary["seq_gaps"] == 0
    assert summary["switch_gaps"] == 1 and summary["switch_gap_max_ms"] == 280.0


def test_sequence_wrap_duplicates_and_reordering_are_not_gaps() -> None:
    meter = RtpMeter()
    feed(meter, [(65534, 0.0), (65535, 0.020), (0, 0.040), (0, 0.041), (2, 0.060),
                 (1, 0.061), (3, 0.080)])
    summary = meter.summary(PORT)
    assert summary["duplicates"] == 1 and summary["reordered"] == 1
    # 1 arrived after 2: it was counted missing when 2 came, then came late (reordered)
    assert summary["seq_gaps"] == 1 and summary["late"] == 0


def test_streams_are_told_apart_by_source_and_ssrc() -> None:
    meter = RtpMeter()
    meter.packet(PORT, ("127.0.0.1", 20000), rtp(1, ssrc=1), 0.0)
    meter.packet(PORT, ("127.0.0.1", 20002), rtp(1, ssrc=1), 0.0)
    meter.packet(PORT, ("127.0.0.1", 20000), rtp(1, ssrc=2), 0.0)
    meter.packet(PORT, ("127.0.0.1", 20000), rtp(2, ssrc=1), 0.02)
    summary = meter.summary(PORT)
    assert summary["streams"] == 3 and summary["packets"] == 4 and summary["seq_gaps"] == 0
    assert meter.summary(PORT + 1)["streams"] == 0


def test_rtcp_and_garbage_are_not_counted_as_rtp() -> None:
    meter = RtpMeter()
    receiver_report = struct.pack("!BBHI", 0x80, 201, 1, 0x1234)  # an empty RR
    meter.packet(PORT, ROUTER_LEG, receiver_report + bytes(4), 0.0)
    meter.packet(PORT, ROUTER_LEG, b"hello", 0.0)
    meter.packet(PORT, ROUTER_LEG, rtp(1, pt=72), 0.0)  # PT 72-76 = RTCP on a muxed port
    assert meter.not_rtp == 3 and meter.summary(PORT)["packets"] == 0


def test_packets_between_counts_whole_buckets_of_the_window() -> None:
    meter = RtpMeter()
    feed(meter, [(i, 10.0 + 0.020 * i) for i in range(100)])  # 10.00 .. 11.98 s
    assert meter.packets_between(PORT, 10.0, 11.0) == 50
    assert meter.packets_between(PORT, 10.5, 11.5) == 50
    assert meter.packets_between(PORT + 1, 10.0, 11.0) == 0
