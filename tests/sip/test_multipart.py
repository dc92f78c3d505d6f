"""Multipart bodies: finding the SDP, swapping it, keeping the other parts byte for byte."""

from __future__ import annotations

from sip.multipart import BodyPart, part_headers, replace_sdp, sdp_of, split_multipart

SDP = b"v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" \
      b"m=audio 4000 RTP/AVP 8\r\n"
OURS = SDP.replace(b"192.0.2.1", b"127.0.0.1").replace(b"4000", b"20000")
PIDF_PART = (b"Content-Type: application/pidf+xml\r\nContent-ID: <loc1@carrier>\r\n\r\n"
             b"<presence>...</presence>")
BODY = (b"--xyz\r\nContent-Type: application/sdp\r\n\r\n" + SDP +
        b"\r\n--xyz\r\n" + PIDF_PART + b"\r\n--xyz--\r\n")
MIXED = "multipart/mixed; boundary=xyz"


def test_sdp_of_plain_and_multipart_bodies() -> None:
    assert sdp_of("application/sdp", SDP) == SDP
    assert sdp_of(MIXED, BODY) == SDP
    assert sdp_of("application/pidf+xml", b"<presence/>") is None
    assert sdp_of(MIXED, b"") is None
    assert sdp_of("multipart/mixed; boundary=other", BODY) is None
    assert sdp_of('multipart/mixed; boundary="', BODY) is None  # malformed: no crash


def test_replace_sdp_keeps_the_location_part_byte_for_byte() -> None:
    content_type, body = replace_sdp(MIXED, BODY, OURS)
    assert content_type.startswith("multipart/mixed;boundary=nodrute-")
    boundary = content_type.split("boundary=", 1)[1].encode()
    parts = split_multipart(body, boundary, 10)
    assert len(parts) == 2
    headers, content = part_headers(parts[0])
    assert headers == {"content-type": "application/sdp"} and content == OURS
    assert parts[1] == PIDF_PART
    assert sdp_of(content_type, body) == OURS


def test_replace_sdp_of_a_plain_body_is_plain() -> None:
    assert replace_sdp("application/sdp", SDP, OURS) == ("application/sdp", OURS)


def test_part_without_content_type_is_text_plain() -> None:
    assert BodyPart(b"", {}, b"").content_type == "text/plain"
