"""Property tests: whatever the bytes, the parser and the request checks raise nothing but
SipParseError, and whatever they accept re-serialises to a message that parses the same."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_parser_corpus import MESSAGES

from sip.dialog import Dialog
from sip.errors import SipParseError
from sip.headers import NameAddr, Via, parse_cseq
from sip.message import Request, Response
from sip.parser import (
    StreamFramer,
    check_max_forwards,
    check_require,
    make_error_response,
    parse_message,
    validate_request,
)
from sip.uri import parse_uri

DATA = Path(__file__).resolve().parent.parent / "data"
SEEDS = [*MESSAGES.values(),
         *(p.read_bytes() for p in sorted((DATA / "rfc4475").glob("*.dat"))),
         *(p.read_bytes() for p in sorted((DATA / "rfc5118" / "wire").glob("*.dat")))]

FUZZ = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Bytes that matter to the grammar, to make mutations bite.
_INTERESTING = [b"\r\n", b"\r\n ", b"\r\n\r\n", b":", b",", b";", b'"', b"<", b">", b"\\",
                b"%", b" ", b"\t", b"\x00", b"\xff", b"\xc2\xb2", b"=", b"@", b"[", b"]",
                b"SIP/2.0", b"Content-Length: 99999", b"l: -1", b"Via: ", b"9" * 30]


def _exercise(data: bytes) -> None:
    """Everything a UAS does with untrusted bytes; only SipParseError may escape."""
    try:
        message = parse_message(data)
    except SipParseError as err:
        assert 400 <= err.status < 600 and err.reason.isprintable()
        make_error_response(err)
        return
    _exercise_message(message)
    # a message we accepted re-serialises to one that parses to the same thing
    wire = message.to_bytes()
    again = parse_message(wire)
    assert again.to_bytes() == wire


def _exercise_message(message: Request | Response) -> None:
    headers = message.headers
    for value in headers.get_all("Via"):
        with contextlib.suppress(SipParseError):
            Via.parse(value).to_str()
    for name in ("From", "To", "Contact", "Route", "Record-Route"):
        for value in headers.get_all(name):
            with contextlib.suppress(SipParseError):
                parse_uri(NameAddr.parse(value, name).uri)
    parse_cseq(headers.get("CSeq") or "")  # the parser checked it
    if isinstance(message, Request):
        for check in (validate_request, check_max_forwards,
                      lambda r: check_require(r, {"timer"}, proxy=True)):
            try:
                check(message)
            except SipParseError as err:
                make_error_response(err)
        with contextlib.suppress(SipParseError):
            Dialog.as_uas(message, "ourtag", "<sip:nodrute@192.0.2.1>").next_hop()


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    _exercise(data)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "delete", "insert", "duplicate", "truncate"]))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 20))]
        elif op == "insert":
            data[at:at] = draw(st.sampled_from(_INTERESTING) | st.binary(min_size=1, max_size=8))
        elif op == "duplicate":
            end = min(len(data), at + draw(st.integers(1, 200)))
            data[at:at] = data[at:end]
        else:
            del data[at:]
    return bytes(data)


@FUZZ
@given(_mutated())
def test_mutated_real_messages(data: bytes) -> None:
    _exercise(data)


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(st.integers(1, 50), max_size=30))
def test_framer_any_chunking_yields_the_same_messages(seed: bytes, cuts: list[int]) -> None:
    stream = seed if b"Content-Length" in seed or b"\nl:" in seed.lower() else b""
    stream = (stream + b"\r\n\r\n") * 2
    whole = StreamFramer().feed(stream)
    framer = StreamFramer()
    pieces: list[bytes | SipParseError] = []
    pos = 0
    for cut in [*cuts, len(stream)]:
        if framer.broken:
            break
        pieces += framer.feed(stream[pos:pos + cut])
        pos += cut
    assert [p for p in pieces if isinstance(p, bytes)] == \
        [p for p in whole if isinstance(p, bytes)]


@FUZZ
@given(st.lists(st.sampled_from(SEEDS) | st.binary(max_size=100), max_size=5),
       st.integers(1, 300))
def test_framer_never_raises_on_garbage(chunks: list[bytes], size: int) -> None:
    framer = StreamFramer()
    stream = b"".join(chunks)
    for i in range(0, len(stream), size):
        if framer.broken:
            break
        for item in framer.feed(stream[i:i + size]):
            if isinstance(item, bytes):
                _exercise(item)
