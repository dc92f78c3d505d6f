"""sip.stateless: what is answered to a request that did not parse, and what is dropped."""

from __future__ import annotations

import pytest

from sip.errors import SipParseError
from sip.parser import parse_message
from sip.stateless import error_response_bytes

HEAD = [
    "OPTIONS sip:127.0.0.1 SIP/2.0",
    "Via: SIP/2.0/UDP 192.0.2.10:5080;branch=z9hG4bKst1",
    "From: <sip:a@carrier.example>;tag=f1",
    "To: <sip:127.0.0.1>",
    "Call-ID: st1@carrier.example",
    "CSeq: 3 OPTIONS",
    "Content-Length: 0",
]


def _answer(lines: list[str]) -> bytes | None:
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    return error_response_bytes(data, info.value)


def test_broken_header_line_answered_from_the_raw_bytes() -> None:
    answer = _answer([*HEAD[:2], "this line has no colon", *HEAD[2:]])
    assert answer is not None
    response = parse_message(answer)
    assert response.headers.get("Call-ID") == "st1@carrier.example"
    assert response.headers.get("CSeq") == "3 OPTIONS"


def test_folded_via_is_echoed_unfolded_not_emptied() -> None:
    folded = ["OPTIONS sip:127.0.0.1 SIP/2.0", "Via:", "  SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKf",
              "bad line", *HEAD[2:]]
    answer = _answer(folded)
    assert answer is not None
    assert b"\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKf\r\n" in answer


def test_control_characters_are_never_echoed() -> None:
    # a bare CR inside a value would split our own response into garbage: drop instead
    assert _answer([*HEAD[:2], "bad line", "From: <sip:a@b>;tag=x\r%", *HEAD[3:]]) is None


@pytest.mark.parametrize("missing", ["Via", "CSeq"])
def test_no_answer_without_via_or_cseq(missing: str) -> None:
    lines = [line for line in HEAD if not line.startswith(missing)]
    assert _answer([*lines[:2], "bad line", *lines[2:]]) is None


def test_missing_call_id_still_answered() -> None:
    # RFC 4475 §3.3.1: a request without Call-ID/From/To should get its 400
    lines = [line for line in HEAD if not line.startswith(("Call-ID", "From", "To"))]
    answer = _answer([*lines[:2], "bad line", *lines[2:]])
    assert answer is not None and answer.startswith(b"SIP/2.0 400 ")
    assert b"Call-ID" not in answer and b"CSeq: 3 OPTIONS" in answer
