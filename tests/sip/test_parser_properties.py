"""Property tests over generated SIP messages and their mutations.

* A generated valid message parses, and serialising the result gives back the same bytes.
* A mutation of one — truncated, a header duplicated or stripped, random bytes in a value,
  a wrong or negative Content-Length, folded lines — goes through the whole receive path
  (parse_message, the stateless answer, TransactionLayer.receive, the B2BUA): the only
  exception anywhere is a SipParseError that becomes a 4xx/5xx answer or a silent drop;
  nothing else escapes, the B2BUA never has to catch a fault, and whatever the node sends
  parses (fuzz/fuzz_parser.py ReceivePath checks each of these).

Example counts are kept small (the suite's CI budget); fuzz/fuzz_parser.py runs the same
receive path for minutes.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_rfc4475 import fuzz_parser

from municipality_map import default_table_dir, load_snapshot
from sip.errors import SipParseError
from sip.message import Request, Response
from sip.parser import parse_message

PROPERTIES = settings(max_examples=100)
STREAMS = settings(max_examples=40)  # each example is up to four messages

# --------------------------------------------------------------------------- generation

_ALPHA = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TOKEN_CHARS = _ALPHA + "0123456789-.!%*_+`'~"
_UNRESERVED = _ALPHA + "0123456789-_.!~*'()"

token = st.text(_TOKEN_CHARS, min_size=1, max_size=12)
word = st.text(_ALPHA + "0123456789", min_size=1, max_size=10)
host = st.one_of(
    st.lists(word, min_size=1, max_size=3).map(lambda parts: ".".join(parts).lower()),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda ip: ".".join(map(str, ip))),
    st.just("[2001:db8::10]"),
)
port = st.one_of(st.none(), st.integers(1, 65535))
user = st.text(_UNRESERVED + "%;&=+$,?/", min_size=1, max_size=12).filter(
    lambda u: "%" not in u and not u.startswith(";"))


@st.composite
def sip_uri(draw: st.DrawFn) -> str:
    p = draw(port)
    params = draw(st.lists(st.sampled_from([";lr", ";transport=udp", ";user=phone", ";x=1"]),
                           max_size=2, unique=True))
    return (f"sip:{draw(user)}@{draw(host)}" + (f":{p}" if p is not None else "")
            + "".join(params))


display = st.text(_ALPHA + " 0123456789æøåÆØÅ", max_size=16).map(lambda d: d.strip())
quoted_display = st.text(_ALPHA + ' 0123456789\\"æøå', min_size=1, max_size=16).map(
    lambda d: '"' + d.replace("\\", "\\\\").replace('"', '\\"') + '" ')


@st.composite
def name_addr(draw: st.DrawFn, tag: bool) -> str:
    shown = draw(st.one_of(st.just(""), quoted_display))
    value = f"{shown}<{draw(sip_uri())}>"
    return value + (f";tag={draw(token)}" if tag else "")


@st.composite
def via(draw: st.DrawFn) -> str:
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP"]))
    p = draw(port)
    sent_by = draw(host) + (f":{p}" if p is not None else "")
    extra = draw(st.sampled_from(["", ";rport", ";received=192.0.2.1", ";maddr=192.0.2.2"]))
    return f"SIP/2.0/{transport} {sent_by};branch=z9hG4bK{draw(token)}{extra}"


header_value = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x2FF, blacklist_characters=","),
    min_size=1, max_size=30,
).flatmap(lambda head: st.text(" " + _ALPHA, max_size=8).map(
    lambda tail: (head + tail).rstrip()))

METHODS = ["INVITE", "OPTIONS", "BYE", "CANCEL", "REGISTER", "MESSAGE", "INFO", "UPDATE"]


@st.composite
def common_headers(draw: st.DrawFn, method: str, response: bool) -> list[str]:
    lines = [f"Via: {v}" for v in draw(st.lists(via(), min_size=1, max_size=3))]
    lines += [
        f"Max-Forwards: {draw(st.integers(0, 255))}",
        f"From: {draw(name_addr(True))}",
        f"To: {draw(name_addr(response))}",
        f"Call-ID: {draw(token)}@{draw(host)}",
        f"CSeq: {draw(st.integers(0, 2**31 - 1))} {method}",
    ]
    if draw(st.booleans()):
        lines.append(f"Contact: {draw(name_addr(False))}")
    for name, value in draw(st.lists(st.tuples(token, header_value), max_size=4)):
        lines.append(f"X-{name}: {value}")
    return lines


def _wire(start: str, lines: list[str], body: bytes) -> bytes:
    if body:
        lines = [*lines, "Content-Type: application/sdp"]
    return ("\r\n".join([start, *lines, f"Content-Length: {len(body)}", "", ""]).encode()
            + body)


bodies = st.one_of(st.just(b""), st.binary(min_size=1, max_size=200))


@st.composite
def valid_request(draw: st.DrawFn) -> bytes:
    method = draw(st.one_of(st.sampled_from(METHODS), token.map(str.upper)))
    return _wire(f"{method} {draw(sip_uri())} SIP/2.0",
                 draw(common_headers(method, response=False)), draw(bodies))


@st.composite
def valid_response(draw: st.DrawFn) -> bytes:
    status = draw(st.integers(100, 699))
    reason = draw(st.text(_ALPHA + " 0123456789æøå", max_size=20))
    method = draw(st.sampled_from(METHODS))
    return _wire(f"SIP/2.0 {status} {reason}", draw(common_headers(method, response=True)),
                 draw(bodies))


valid_message = st.one_of(valid_request(), valid_response())


@PROPERTIES
@given(valid_message)
def test_valid_messages_round_trip(wire: bytes) -> None:
    message = parse_message(wire)
    assert isinstance(message, Request if not wire.startswith(b"SIP/") else Response)
    assert message.to_bytes() == wire
    # and over a stream transport, framed by Content-Length
    assert parse_message(wire, stream=True).to_bytes() == wire


# ---------------------------------------------------------------------------- mutation


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    wire = draw(valid_message)
    head, _, body = wire.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    kind = draw(st.sampled_from(["truncate", "duplicate", "strip", "bytes", "length", "fold",
                                 "crlf"]))
    if kind == "truncate":
        return wire[:draw(st.integers(0, len(wire)))]
    i = draw(st.integers(1, max(1, len(lines) - 1))) if len(lines) > 1 else 0
    if kind == "duplicate":
        lines.insert(i, lines[i])
    elif kind == "strip":
        del lines[i]
    elif kind == "bytes":
        line = lines[i]
        at = draw(st.integers(0, len(line)))
        lines[i] = line[:at] + draw(st.binary(min_size=1, max_size=8)) + line[at:]
    elif kind == "length":
        value = draw(st.sampled_from([b"-1", b"99999", b"0", b"1", b"x", b"", b" 5 ", b"1e3",
                                      b"4294967296", b"00000000000000000001"]))
        lines = [b"Content-Length: " + value if line.startswith(b"Content-Length")
                 else line for line in lines]
    elif kind == "fold":
        line = lines[i]
        at = draw(st.integers(0, len(line)))
        lines[i] = line[:at] + draw(st.sampled_from([b"\r\n ", b"\r\n\t", b"\r\n", b"\n "])) \
            + line[at:]
    else:
        lines[i] = lines[i].replace(b"\r\n", b"") + draw(st.sampled_from([b"\r", b"\n", b"\x00"]))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


_PATH: list[object] = []


def _path() -> object:
    """One receive path for the whole module: state carries over as in service."""
    if not _PATH:
        _PATH.append(fuzz_parser.ReceivePath(load_snapshot(default_table_dir())))
    return _PATH[0]


@PROPERTIES
@given(mutated(), st.sampled_from(["UDP", "TCP"]))
def test_mutations_only_ever_raise_sip_parse_error(data: bytes, transport: str) -> None:
    path = _path()
    # parse_message on its own: a message or a SipParseError with an answerable status
    try:
        parse_message(data, stream=transport == "TCP")
    except SipParseError as err:
        assert 400 <= err.status < 600 and err.reason.isprintable()
    # and the node's whole receive path; ReceivePath raises on anything else
    path.receive(data, transport)  # type: ignore[attr-defined]
    path.advance(0.05)  # type: ignore[attr-defined]
    assert path.b2bua.counters["internal_errors"] == 0  # type: ignore[attr-defined]


@STREAMS
@given(st.lists(mutated(), min_size=1, max_size=4), st.lists(st.integers(1, 300), max_size=6))
def test_mutations_over_a_tcp_stream(messages: list[bytes], cuts: list[int]) -> None:
    # arbitrary segmenting of a stream of mutated messages through StreamFramer
    path = _path()
    stream = b"".join(messages)
    at = 0
    for cut in [*cuts, len(stream)]:
        path._stream(stream[at:at + cut])  # type: ignore[attr-defined]
        at += cut
    path.advance(0.05)  # type: ignore[attr-defined]
