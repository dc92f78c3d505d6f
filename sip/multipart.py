"""Multipart message bodies (RFC 2046 §5.1, RFC 5621): splitting, and swapping the SDP part.

A SIP request may carry several bodies in one ``multipart/mixed`` body — typically the SDP offer
and a PIDF-LO location document (RFC 6442). A B2BUA that anchors media must replace the SDP with
its own and keep every other part byte for byte, so that ``Geolocation: <cid:…>`` still points
at its part. Pure functions on bytes; nothing here knows what the parts mean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SipParseError
from .headers import split_params
from .ids import new_tag

__all__ = [
    "MULTIPART_TYPES",
    "BodyPart",
    "media_type",
    "part_headers",
    "replace_sdp",
    "sdp_of",
    "split_multipart",
    "valid_boundary",
]

SDP_TYPE = "application/sdp"
MULTIPART_TYPES = frozenset({"multipart/mixed", "multipart/related"})
_MAX_PARTS = 16

# RFC 2046 §5.1.1: boundary := 0*69<bchars> bcharsnospace
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One encapsulated part: its raw bytes (headers included), headers, and content."""

    raw: bytes
    headers: dict[str, str]
    """MIME headers, names lower-cased, first occurrence wins."""
    content: bytes

    @property
    def content_type(self) -> str:
        """The part's media type, lower-cased, without parameters (text/plain by default)."""
        return self.headers.get("content-type", "text/plain").split(";", 1)[0].strip().lower()


def media_type(value: str | None) -> tuple[str, dict[str, str | None]]:
    """``type/subtype`` lower-cased and the parameters of a Content-Type value.

    Raises SipParseError for malformed parameters."""
    media, _, param_text = (value or "").partition(";")
    return media.strip().lower(), split_params(param_text, "Content-Type")


def valid_boundary(boundary: str) -> bool:
    return bool(_BOUNDARY.fullmatch(boundary))


def split_multipart(body: bytes, boundary: bytes, most: int) -> list[bytes]:
    """The first ``most`` encapsulated parts; preamble and epilogue dropped.

    A delimiter is CRLF "--" boundary, optional transport padding, CRLF; the close delimiter
    adds "--" (RFC 2046 §5.1.1). The CRLF before a delimiter belongs to it, not to the part.
    Bare LF line ends are accepted, and a missing close delimiter ends the last part at the end
    of the body.
    """
    delimiter = re.compile(rb"(?:\A|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    parts: list[bytes] = []
    start: int | None = None
    for match in delimiter.finditer(body):
        if start is not None:
            parts.append(body[start:match.start()])
        if match[1] or len(parts) >= most:  # close delimiter, or enough
            return parts
        start = match.end()
    if start is not None and start < len(body):
        parts.append(body[start:])
    return parts


def part_headers(raw: bytes) -> tuple[dict[str, str], bytes]:
    """A body part's MIME headers (names lower-cased, first wins) and its content."""
    if raw.startswith((b"\r\n", b"\n")):
        return {}, raw[raw.index(b"\n") + 1:]
    match = _BLANK_LINE.search(raw)
    head, data = (raw[:match.start()], raw[match.end():]) if match else (raw, b"")
    headers: dict[str, str] = {}
    name = ""
    for line in head.decode("utf-8", "replace").splitlines():
        if line[:1] in (" ", "\t") and name:  # folded continuation (RFC 5322 §2.2.3)
            headers[name] += " " + line.strip()
            continue
        key, colon, value = line.partition(":")
        name = key.strip().lower() if colon else ""
        if name and name not in headers:
            headers[name] = value.strip()
        elif name:
            name = ""  # a repeated header: keep the first, drop its continuation lines too
    return headers, data


def _parts(content_type: str | None, body: bytes) -> list[BodyPart] | None:
    """The parts of a one-level multipart body, or None when the body is not multipart."""
    try:
        media, params = media_type(content_type)
    except SipParseError:
        return None
    boundary = params.get("boundary")
    if media not in MULTIPART_TYPES or not boundary or not valid_boundary(boundary):
        return None
    parts = []
    for raw in split_multipart(body, boundary.encode("ascii"), _MAX_PARTS):
        headers, content = part_headers(raw)
        parts.append(BodyPart(raw, headers, content))
    return parts


def sdp_of(content_type: str | None, body: bytes) -> bytes | None:
    """The SDP of a request: the body itself, or the first ``application/sdp`` part of a
    multipart body; None when there is none."""
    if not body:
        return None
    try:
        media, _ = media_type(content_type)
    except SipParseError:
        return None
    if media == SDP_TYPE or (not media and body.startswith(b"v=0")):
        return body
    parts = _parts(content_type, body)
    if parts is None:
        return None
    return next((p.content for p in parts if p.content_type == SDP_TYPE), None)


def replace_sdp(content_type: str | None, body: bytes, sdp: bytes) -> tuple[str, bytes]:
    """``body`` with its SDP replaced by ``sdp``, every other part kept byte for byte.

    Returns the new Content-Type and body: plain ``application/sdp`` when the original was not
    multipart (or had nothing else in it), else a fresh ``multipart/mixed`` with a new boundary.
    """
    parts = _parts(content_type, body)
    others = [p for p in parts or () if p.content_type != SDP_TYPE]
    if not others:
        return SDP_TYPE, sdp
    boundary = f"nodrute-{new_tag()}"
    out = [f"--{boundary}\r\nContent-Type: {SDP_TYPE}\r\n\r\n".encode() + sdp]
    out += [f"\r\n--{boundary}\r\n".encode() + part.raw for part in others]
    out.append(f"\r\n--{boundary}--\r\n".encode())
    return f"multipart/mixed;boundary={boundary}", b"".join(out)
