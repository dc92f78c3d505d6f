"""Stateless error responses to requests that did not parse (RFC 3261 §8.2, §18.2.1).

A request the strict parser rejected still deserves its 400/505/416 so that the sender stops
retransmitting and a person reading a trace sees why. When the parser got as far as the header
section, :func:`sip.parser.make_error_response` answers from that partial message; when it did
not (a broken header line, say), this module reads the bytes leniently — only the headers a
response must echo (Via, From, To, Call-ID, CSeq). It gives up (returns ``None``) when even those
are missing, when the bytes are a response (§18.1.2: malformed responses are dropped), or when
the request is an ACK (never answered).
"""

from __future__ import annotations

from .errors import SipParseError
from .ids import new_tag
from .message import COMPACT_FORMS, Headers, Response
from .parser import make_error_response

_ECHOED = ("via", "from", "to", "call-id", "cseq")
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
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            continue  # folded continuation of a header we may not even need
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        if key in _ECHOED:
            found.setdefault(key, []).append(value.strip())
    if any(key not in found for key in _ECHOED):
        return None
    headers = Headers()
    for key in _ECHOED:
        for value in found[key]:
            if key == "to" and "tag=" not in value:
                value = f"{value};tag={new_tag()}"
            headers.add(key, value)
    for name, value in err.extra_headers:
        headers.add(name, value)
    return Response(err.status, err.reason, headers).to_bytes()
