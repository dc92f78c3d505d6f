"""Stateless error responses to requests that did not parse (RFC 3261 §8.2, §18.2.1).

A request the strict parser rejected still deserves its 400/505/416 so that the sender stops
retransmitting and a person reading a trace sees why. When the parser got as far as the header
section, :func:`sip.parser.make_error_response` answers from that partial message; when it did
not (a broken header line, say), this module reads the bytes leniently — only the headers a
response must echo (Via, From, To, Call-ID, CSeq). It gives up (returns ``None``) when Via or
CSeq is missing or an echoed value holds control characters, when the bytes are a response
(§18.1.2: malformed responses are dropped), or when the request is an ACK (never answered).
"""

from __future__ import annotations

import re

from .errors import SipParseError
from .ids import new_tag
from .message import COMPACT_FORMS, Headers, Response
from .parser import make_error_response

_ECHOED = ("via", "from", "to", "call-id", "cseq")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # CTL but HTAB (RFC 3261 §25.1)
_COMPACT = {short: full.lower() for short, full in COMPACT_FORMS.items()}


def error_response_bytes(data: bytes, err: SipParseError) -> bytes | None:
    """Bytes of the error response to send for malformed ``data``, or ``None`` to drop it."""
    if err.partial is not None:
        response = make_error_response(err)
        return response.to_bytes() if response is not None else None
    if data.startswith(b"SIP/") or not data:
        return None
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    text = head.decode("utf-8", errors="replace")
    lines = text.replace("\r\n", "\n").split("\n")
    method = lines[0].split(" ", 1)[0] if lines else ""
    if method == "ACK":
        return None
    found: dict[str, list[str]] = {}
    key = ""
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):  # a folded continuation (§7.3.1) of the header before it
            if key in found:
                found[key][-1] = f"{found[key][-1]} {line.strip()}".strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            key = ""
            continue
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        if key in _ECHOED:
            found.setdefault(key, []).append(value.strip())
    # Via says where the answer goes and, with CSeq, which client transaction it ends (§17.1.3):
    # without both nothing can use it. From, To and Call-ID are echoed when there (RFC 4475
    # §3.3.1 asks for a 400 even when they are missing).
    if not found.get("via") or not found.get("cseq") or not all(found["via"]):
        return None
    if any(_CONTROL.search(value) for values in found.values() for value in values):
        return None  # a bare CR or NUL would break our own framing: nothing safe to echo
    headers = Headers()
    for key in _ECHOED:
        for value in found.get(key, ()):
            if key == "to" and "tag=" not in value:
                value = f"{value};tag={new_tag()}"
            headers.add(key, value)
    for name, value in err.extra_headers:
        headers.add(name, value)
    return Response(err.status, err.reason, headers).to_bytes()
