"""Valid SIP messages shared by the parser tests (as they would arrive in one UDP datagram).

Imported by the other test_parser* modules; its one test checks the corpus itself.
"""

from __future__ import annotations

SDP = (
    b"v=0\r\n"
    b"o=- 3912345678 3912345678 IN IP4 198.51.100.7\r\n"
    b"s=-\r\n"
    b"c=IN IP4 198.51.100.7\r\n"
    b"t=0 0\r\n"
    b"m=audio 40000 RTP/AVP 8 0 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)


def _crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


# A typical INVITE from a carrier SBC for 113 (~950 bytes): the performance yardstick.
INVITE = (
    _crlf(
        "INVITE sip:113@nodrute.example.no;user=phone SIP/2.0\n"
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-524287-1---8a3b2c1d;rport\n"
        "Max-Forwards: 69\n"
        "Record-Route: <sip:198.51.100.7;lr>\n"
        "Contact: <sip:4791234567@198.51.100.7:5060;transport=udp>\n"
        "To: <sip:113@nodrute.example.no;user=phone>\n"
        'From: "Ola Nordmann" <sip:+4791234567@carrier.example.no;user=phone>;tag=8a3b2c1d\n'
        "Call-ID: 1f9c2a7e-5b3d-4e8f-9a1b-2c3d4e5f6a7b@198.51.100.7\n"
        "CSeq: 1 INVITE\n"
        "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO\n"
        "Supported: timer, replaces, 100rel\n"
        "P-Asserted-Identity: <sip:+4791234567@carrier.example.no;user=phone>\n"
        "Privacy: none\n"
        "User-Agent: CarrierSBC/4.2\n"
        "Content-Type: application/sdp\n"
        f"Content-Length: {len(SDP)}\n"
        "\n"
    )
    + SDP
)

RINGING = _crlf(
    "SIP/2.0 180 Ringing\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnodrute1;received=192.0.2.10\n"
    "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-524287-1---8a3b2c1d;rport=5060\n"
    "Record-Route: <sip:192.0.2.10;lr>\n"
    "From: <sip:+4791234567@carrier.example.no>;tag=8a3b2c1d\n"
    "To: <sip:113@amk-oslo.example.no>;tag=as5f3\n"
    "Call-ID: 1f9c2a7e@198.51.100.7\n"
    "CSeq: 1 INVITE\n"
    "Contact: <sip:amk@192.0.2.20>\n"
    "Content-Length: 0\n"
    "\n"
)

OK_200 = (
    _crlf(
        "SIP/2.0 200 OK\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnodrute1\n"
        "From: <sip:+4791234567@carrier.example.no>;tag=8a3b2c1d\n"
        "To: <sip:113@amk-oslo.example.no>;tag=as5f3\n"
        "Call-ID: 1f9c2a7e@198.51.100.7\n"
        "CSeq: 1 INVITE\n"
        "Contact: <sip:amk@192.0.2.20>\n"
        "Content-Type: application/sdp\n"
        f"Content-Length: {len(SDP)}\n"
        "\n"
    )
    + SDP
)

# Compact forms everywhere (RFC 3261 §7.3.3), no Max-Forwards.
COMPACT = _crlf(
    "BYE sip:amk@192.0.2.20 SIP/2.0\n"
    "v: SIP/2.0/TCP 192.0.2.10;branch=z9hG4bKbye1\n"
    "f: <sip:+4791234567@carrier.example.no>;tag=8a3b2c1d\n"
    "t: <sip:113@amk-oslo.example.no>;tag=as5f3\n"
    "i: 1f9c2a7e@198.51.100.7\n"
    "CSeq: 2 BYE\n"
    "k: timer\n"
    "l: 0\n"
    "\n"
)

# Folding (RFC 3261 §7.3.1), multi-value Via on one line, display names with commas in quotes,
# several Contacts on one line, IPv6 Via.
FOLDED = _crlf(
    "OPTIONS sip:nodrute.example.no SIP/2.0\n"
    "Via: SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bKa1,\n"
    "  SIP/2.0/TCP proxy.example.no;branch=z9hG4bKa2 , SIP/2.0/UDP 192.0.2.1\n"
    "\t;branch=z9hG4bKa3\n"
    'From: "Nordmann, Ola" <sip:ola@example.no>\n'
    " ;tag=1928301774\n"
    'To: "Legevakt, Oslo (116117)" <sip:116117@nodrute.example.no>\n'
    'Contact: "A, B" <sip:a@192.0.2.1>, <sip:b,c@192.0.2.2;x=1>;q=0.5\n'
    "Call-ID: folded-1@example.no\n"
    "CSeq: 7\n"
    "  OPTIONS\n"
    "Max-Forwards: 70\n"
    "Subject: a long\n"
    "   subject line\n"
    "Content-Length: 0\n"
    "\n"
)

MESSAGES: dict[str, bytes] = {
    "invite": INVITE,
    "ringing": RINGING,
    "ok": OK_200,
    "compact": COMPACT,
    "folded": FOLDED,
}


def test_corpus_is_wire_format() -> None:
    """Every corpus message uses CRLF line ends and has a header terminator."""
    for name, data in MESSAGES.items():
        head = data.split(b"\r\n\r\n", 1)[0]
        assert b"\r\n\r\n" in data, name
        assert b"\n" not in head.replace(b"\r\n", b""), name
