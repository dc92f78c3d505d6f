"""HEPv3 encoding (sip/hep.py) against packets laid out by hand from the HEP3 specification:
``HEP3``, total length (u16), then chunks of vendor id, type id, length (header included)."""

from __future__ import annotations

import struct

import pytest

from sip.hep import HepTooLarge, encode_hep3

INVITE = b"INVITE sip:113@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n"


def chunk(kind: int, value: bytes) -> bytes:
    return struct.pack("!HHH", 0, kind, 6 + len(value)) + value


def test_an_ipv4_udp_packet_has_every_chunk_in_spec_layout() -> None:
    packet = encode_hep3(INVITE, ("192.0.2.1", 5070), ("127.0.0.1", 5060), transport="UDP",
                         timestamp=1_700_000_000.25, node_id=2001, auth_key="key")
    body = b"".join([
        chunk(0x01, b"\x02"),                                  # IPv4
        chunk(0x02, b"\x11"),                                  # UDP
        chunk(0x03, bytes([192, 0, 2, 1])),
        chunk(0x04, bytes([127, 0, 0, 1])),
        chunk(0x07, struct.pack("!H", 5070)),
        chunk(0x08, struct.pack("!H", 5060)),
        chunk(0x09, struct.pack("!I", 1_700_000_000)),
        chunk(0x0A, struct.pack("!I", 250_000)),
        chunk(0x0B, b"\x01"),                                  # SIP
        chunk(0x0C, struct.pack("!I", 2001)),
        chunk(0x0E, b"key"),
        chunk(0x0F, INVITE),
    ])
    assert packet == b"HEP3" + struct.pack("!H", 6 + len(body)) + body


def test_ipv6_and_tcp_use_their_own_chunks_and_no_key_means_no_auth_chunk() -> None:
    packet = encode_hep3(INVITE, ("2001:db8::1", 5061), ("::1", 5060), transport="TLS",
                         timestamp=10.0, node_id=0xFFFFFFFF)
    assert chunk(0x01, b"\x0a") in packet and chunk(0x02, b"\x06") in packet
    assert chunk(0x05, bytes.fromhex("20010db8" + "0" * 23 + "1")) in packet
    assert chunk(0x06, bytes(15) + b"\x01") in packet
    assert chunk(0x0C, b"\xff\xff\xff\xff") in packet
    assert struct.pack("!HH", 0, 0x0E) not in packet
    assert packet.endswith(chunk(0x0F, INVITE))


def test_a_mix_of_ipv4_and_ipv6_is_sent_as_ipv6_with_a_mapped_address() -> None:
    packet = encode_hep3(b"x", ("127.0.0.1", 1), ("::1", 2), transport="UDP", timestamp=0.0,
                         node_id=1)
    assert chunk(0x01, b"\x0a") in packet
    assert chunk(0x05, bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])) in packet


def test_microseconds_never_reach_a_full_second() -> None:
    packet = encode_hep3(b"x", ("127.0.0.1", 1), ("127.0.0.1", 2), transport="UDP",
                         timestamp=5.9999999, node_id=1)
    assert chunk(0x09, struct.pack("!I", 5)) in packet
    assert chunk(0x0A, struct.pack("!I", 999_999)) in packet


def test_a_message_too_large_for_the_16_bit_length_is_refused() -> None:
    encode_hep3(b"x" * 65_000, ("127.0.0.1", 1), ("127.0.0.1", 2), transport="UDP",
                timestamp=0.0, node_id=1)
    for size in (65_500, 70_000):
        with pytest.raises(HepTooLarge):
            encode_hep3(b"x" * size, ("127.0.0.1", 1), ("127.0.0.1", 2), transport="UDP",
                        timestamp=0.0, node_id=1)
