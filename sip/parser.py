"""Bytes → :class:`~sip.message.Request` / :class:`~sip.message.Response` (RFC 3261 §7, §18.3).

:func:`parse_message` takes one UDP datagram or one message framed off a stream by
:class:`StreamFramer`, and either returns the message or raises
:class:`~sip.errors.SipParseError` carrying the response to send (400 with a reason naming the
problem, 505, 416, 513, 413). It never raises anything else, whatever the bytes.

The parser validates only what every layer relies on: framing, the start line, header-name
syntax, the mandatory headers and their uniqueness, CSeq, Content-Length and the Request-URI.
Everything else is left as text and parsed on demand by :mod:`sip.headers`;
:func:`validate_request` adds the checks a UAS makes before handing a request to its TU
(RFC 3261 §8.2), and :func:`check_max_forwards` / :func:`check_require` the ones whose verdict
depends on what we are (483, 420).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from .errors import SipParseError, SipUsageError
from .headers import Via, is_token, parse_cseq, parse_max_forwards, parse_name_addr_shared
from .ids import new_tag
from .message import Headers, Request, Response, canonical_name, make_response
from .uri import SipUri, parse_uri_shared


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Size limits applied before any work is spent on a message (hardening hooks).

    The status says which: 513 Message Too Large when the message as a whole is beyond what we
    process (RFC 3261 §21.5.14: its length, or a Via stack no real path builds), 413 Request
    Entity Too Large when only the body is (§21.4.11), 400 for header counts and line lengths
    no SIP element sends.
    """

    max_message_bytes: int = 65_535
    """Whole message, start line to end of body; over it → 513."""
    max_headers: int = 256
    """Header lines (after unfolding); over it → 400."""
    max_line_chars: int = 16_384
    """One header line after unfolding; over it → 400."""
    max_via: int = 70
    """Via values (one per hop; Max-Forwards starts at 70, §8.1.1.6); over it → 513."""
    max_body_bytes: int = 32_768
    """Body octets (SDP, multipart with a PIDF-LO: a few kB); over it → 413."""


DEFAULT_LIMITS = ParserLimits()

# Headers whose value is a comma-separated list (RFC 3261 §7.3.1): one Headers entry per element.
LIST_HEADERS = frozenset({
    "via", "route", "record-route", "contact", "allow", "supported", "require",
    "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
    "allow-events", "p-asserted-identity", "reason", "call-info", "alert-info", "error-info",
    "warning", "in-reply-to",
})

# At most one of each (RFC 3261 §7.3.1, RFC 4475 §3.3.8, §3.3.9).
_SINGLE = frozenset({"call-id", "cseq", "from", "to", "max-forwards", "content-length"})
# §8.1.1. Max-Forwards is not among them: RFC 2543 peers omit it (RFC 4475 §3.4.1), and
# check_max_forwards treats a missing one as "no limit".
_MANDATORY = ("Call-ID", "CSeq", "From", "To", "Via")

_VERSION = "SIP/2.0"
_VERSION_SYNTAX = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
_EMPTY_LINE = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(r"\r?\n")

# Raw header name as received → (key, canonical name). Seeded with the usual spellings; names
# met on the wire are added while the cache is small, so a flood of made-up names cannot grow it.
_NAME_CACHE: dict[str, tuple[str, str]] = {}
_NAME_CACHE_MAX = 4096
_NAME_CACHE_KEY_MAX = 64  # real names are under 30 characters; long made-up ones are not kept


def _classify_name(raw: str) -> tuple[str, str]:
    name = raw.rstrip(" \t")  # HCOLON = *( SP / HTAB ) ":" SWS
    if not is_token(name):
        raise SipParseError("Bad header name", detail=repr(raw[:100]))
    canon = canonical_name(name)
    entry = (canon.lower(), canon)
    if len(_NAME_CACHE) < _NAME_CACHE_MAX and len(raw) <= _NAME_CACHE_KEY_MAX:
        _NAME_CACHE[raw] = entry
    return entry


for _name in ("Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Route",
              "Record-Route", "Content-Type", "Content-Length", "Allow", "Supported", "Require",
              "User-Agent", "Server", "Accept", "Expires", "P-Asserted-Identity", "Privacy",
              "Reason", "Event", "Subject", "Date", "Call-Info", "Geolocation"):
    for _spelling in (_name, _name.lower(), _name.upper()):
        _classify_name(_spelling)
for _short in "vftimlckseo":
    _classify_name(_short)
    _classify_name(_short.upper())


def peek_is_response(data: bytes) -> bool:
    """True when ``data`` starts like a status line (cheap; no validation)."""
    return data[:4].upper() == b"SIP/"


def is_keepalive(data: bytes) -> bool:
    """True for a datagram of CR/LF only (a keep-alive, RFC 5626 §3.5.1), not a message."""
    return not data.strip(b"\r\n")


def parse_message(data: bytes, *, stream: bool = False,
                  limits: ParserLimits = DEFAULT_LIMITS) -> Request | Response:
    """Parse one SIP message.

    ``stream=False`` (UDP, RFC 3261 §18.3): octets past Content-Length are ignored, a shorter
    body is a 400, and without Content-Length the body is the rest of the datagram.
    ``stream=True`` (a message cut by :class:`StreamFramer`): Content-Length is mandatory and
    must match the body exactly.
    """
    if len(data) > limits.max_message_bytes:
        raise SipParseError("Message Too Large", 513, detail=f"{len(data)} bytes")
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")  # CRLFs before the start line are ignored (§7.5)
    lines, body_start = _head_lines(data, stream, limits)
    items, singles, duplicate = _header_fields(lines)
    if len(items) > limits.max_headers:
        raise SipParseError("Too many header fields", detail=f"{len(items)} values")
    message = _start_line(lines[0], Headers._from_parsed(items))
    try:
        if duplicate is not None:  # §7.3.1; RFC 4475 §3.3.8, §3.3.9
            raise SipParseError(f"Multiple {duplicate} headers")
        if len(items) > limits.max_via and \
                sum(1 for key, _, _ in items if key == "via") > limits.max_via:
            raise SipParseError("Too many Via headers", 513, detail=f"over {limits.max_via}")
        _check_headers(message, singles, items)
        message.body = _body(data, body_start, singles.get("content-length"), stream, limits)
    except SipParseError as exc:
        exc.partial = message
        raise
    return message


def _head_lines(data: bytes, stream: bool, limits: ParserLimits) -> tuple[list[str], int]:
    """The start line and header lines (unfolded), and where the body starts."""
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        head_bytes, body_start = data[:end], end + 4
    else:
        match = _EMPTY_LINE.search(data)
        if match is not None:  # bare-LF line ends: tolerated (robustness)
            head_bytes, body_start = data[:match.start()], match.end()
        elif not stream and data.endswith(b"\n"):  # no empty line at all: no body
            head_bytes, body_start = data.rstrip(b"\r\n"), len(data)
        else:
            raise SipParseError("Missing empty line after headers")
    try:
        head = head_bytes.decode("utf-8")  # §7.3.1: header text is UTF-8
    except UnicodeDecodeError:
        # Old ISDN gateways send ISO-8859-1 display names. Read them as such rather than
        # refuse an emergency call over its caller's name; we re-send them as UTF-8.
        head = head_bytes.decode("latin-1")
    lines = head.split("\r\n")
    if head.count("\n") != len(lines) - 1 or head.count("\r") != len(lines) - 1:
        lines = _LINE_END.split(head)
        if "\r" in head.replace("\r\n", ""):
            raise SipParseError("Bad line ending")
    if "\n " in head or "\n\t" in head:
        lines = _unfold(lines)
    if len(lines) - 1 > limits.max_headers:
        raise SipParseError("Too many header fields", detail=f"{len(lines) - 1} lines")
    if len(head) > limits.max_line_chars and max(map(len, lines)) > limits.max_line_chars:
        raise SipParseError("Header line too long")
    return lines, body_start


def _header_fields(lines: list[str]) -> tuple[list[tuple[str, str, str]], dict[str, str],
                                              str | None]:
    """Header entries (key, canonical name, value), the single-valued ones by key, and the
    name of a single-valued header that appeared twice (reported once the message exists)."""
    items: list[tuple[str, str, str]] = []
    singles: dict[str, str] = {}
    duplicate: str | None = None
    cache = _NAME_CACHE
    for line in lines[1:]:
        raw, colon, value = line.partition(":")
        if not colon:
            raise SipParseError("Bad header line", detail=repr(line[:100]))
        entry = cache.get(raw)
        key, canon = entry if entry is not None else _classify_name(raw)
        value = value.strip(" \t")
        if key in LIST_HEADERS and "," in value:
            for element in split_list(value, canon):
                items.append((key, canon, element))
            continue
        if key in _SINGLE:
            if key in singles:
                duplicate = duplicate or canon
            else:
                singles[key] = value
        items.append((key, canon, value))
    return items, singles, duplicate


def _unfold(lines: list[str]) -> list[str]:
    """Join continuation lines (leading SP/HT) to the previous line with one SP (§7.3.1)."""
    groups: list[list[str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if len(groups) < 2:  # the start line cannot be folded
                raise SipParseError("Bad start line")
            groups[-1].append(line.strip(" \t"))
        else:
            groups.append([line])
    # joined once per header: linear even for a header folded thousands of times
    return [group[0] if len(group) == 1 else " ".join([group[0].rstrip(" \t"), *group[1:]])
            for group in groups]


def split_list(value: str, header: str) -> list[str]:
    """Split a list value at commas outside quoted strings and ``<…>`` (§7.3.1)."""
    if '"' not in value and "<" not in value:
        parts = value.split(",")
    else:
        parts = []
        start = 0
        quoted = angled = False
        i, n = 0, len(value)
        while i < n:
            c = value[i]
            if quoted:
                if c == "\\":
                    i += 1
                elif c == '"':
                    quoted = False
            elif c == '"':
                quoted = True
            elif c == "<":
                angled = True
            elif c == ">":
                angled = False
            elif c == "," and not angled:
                parts.append(value[start:i])
                start = i + 1
            i += 1
        if quoted or angled:
            raise SipParseError(f"Bad {header} header", detail="unbalanced quote or <")
        parts.append(value[start:])
    out = [part.strip(" \t") for part in parts]
    if "" in out:  # "a,,b" or a trailing comma: not in any list grammar (RFC 4475 §3.1.2.1)
        raise SipParseError(f"Bad {header} header", detail="empty list element")
    return out


def _start_line(line: str, headers: Headers) -> Request | Response:
    if line[:4].upper() == "SIP/":
        # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (§7.2)
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if len(code) != 3 or not code.isascii() or not code.isdigit() or not "1" <= code[0] <= "6":
            raise SipParseError("Bad status line", detail=repr(line[:100]))
        response = Response(int(code), reason, headers)
        response.reason = reason  # keep an empty reason empty (RFC 4475 §3.1.1.13)
        _check_version(version, response)
        return response
    # Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP each (§7.1,
    # RFC 4475 §3.1.2.8 to §3.1.2.10)
    parts = line.split(" ")
    if len(parts) != 3 or not is_token(parts[0]) or not parts[1]:
        raise SipParseError("Bad request line", detail=repr(line[:100]))
    request = Request(parts[0], parts[1], headers)
    _check_version(parts[2], request)
    return request


def _check_version(version: str, message: Request | Response) -> None:
    if version == _VERSION or version.upper() == _VERSION:
        return
    if _VERSION_SYNTAX.fullmatch(version):
        raise SipParseError("Version Not Supported", 505, detail=version, partial=message)
    raise SipParseError("Bad start line", detail=f"version {version[:20]!r}", partial=message)


def _check_headers(message: Request | Response, singles: dict[str, str],
                   items: list[tuple[str, str, str]]) -> None:
    for name in _MANDATORY:
        if name == "Via":
            for key, _, _ in items:
                if key == "via":
                    break
            else:
                raise SipParseError("Missing Via header")
        elif name.lower() not in singles:
            raise SipParseError(f"Missing {name} header")
    call_id = singles["call-id"]
    if not call_id or " " in call_id or "\t" in call_id:
        raise SipParseError("Bad Call-ID header")
    _, method = parse_cseq(singles["cseq"])
    if isinstance(message, Request):
        if method != message.method:  # §8.1.1.5; RFC 4475 §3.1.2.17, §3.1.2.18
            raise SipParseError("CSeq method mismatch")
        try:
            parse_uri_shared(message.uri)
        except SipParseError as exc:
            if exc.status != 400:
                raise
            raise SipParseError("Bad Request-URI", detail=exc.detail) from None


def _body(data: bytes, start: int, length_text: str | None, stream: bool,
          limits: ParserLimits) -> bytes:
    available = len(data) - start
    if length_text is None:
        if stream:  # §18.3: Content-Length is mandatory on stream transports
            raise SipParseError("Missing Content-Length header")
        length = available
    else:
        length = parse_content_length(length_text)
        if length > available or (stream and length != available):
            raise SipParseError("Content-Length mismatch",
                                detail=f"Content-Length {length}, {available} octets follow")
    if length > limits.max_body_bytes:  # §21.4.11 (a body that is there, not one only claimed)
        raise SipParseError("Request Entity Too Large", 413, detail=f"{length}-octet body")
    return data[start:start + length]


def parse_content_length(value: str) -> int:
    """Parse Content-Length (RFC 3261 §20.14): 1*DIGIT, nothing else (RFC 4475 §3.1.2.3)."""
    text = value.strip(" \t")
    if not text.isascii() or not text.isdigit() or len(text.lstrip("0")) > 10:
        raise SipParseError("Bad Content-Length header")
    return int(text)


# ------------------------------------------------------------------ UAS request validation


def validate_request(request: Request) -> None:
    """The checks a UAS makes before handing a request to its TU (RFC 3261 §8.2.1 to §8.2.3).

    :func:`parse_message` has checked the start line, mandatory headers, CSeq and the
    Request-URI scheme. This parses the structured headers every layer reads (Via, From, To,
    Contact, Route, Record-Route, Max-Forwards) and checks the body is typed. Raises
    :class:`SipParseError` (400, with ``partial`` set to ``request``). Does not check
    Max-Forwards 0 (:func:`check_max_forwards`) nor Require (:func:`check_require`), and
    deliberately ignores non-essential headers such as Date: an emergency call is not refused
    over a malformed time stamp (RFC 4475 §3.1.2.12 allows ignoring it).
    """
    try:
        _validate_request(request)
    except SipParseError as exc:
        exc.partial = request
        raise


def _validate_request(request: Request) -> None:
    uri = parse_uri_shared(request.uri)
    if isinstance(uri, SipUri) and uri.headers:  # §19.1.5; RFC 4475 §3.1.2.11
        raise SipParseError("Bad Request-URI", detail="headers in Request-URI")
    contacts: list[str] = []
    typed = False
    for name, value in request.headers:  # one pass; names are canonical
        if name in _NAME_ADDR_HEADERS:
            if name == "Contact":
                contacts.append(value)
                continue
            if name != "From" and name != "To" and "<" not in value:
                # route-param = name-addr: the URI is always in <> (§20.30, §20.34)
                raise SipParseError(f"Bad {name} header")
            parse_name_addr_shared(value, name)
        elif name == "Via":
            Via.parse(value)
        elif name == "Max-Forwards":
            parse_max_forwards(value)
        elif name == "Content-Type":
            typed = True
    for value in contacts:
        if value == "*":  # only in REGISTER, and alone (§10.2.2)
            if request.method != "REGISTER" or len(contacts) != 1:
                raise SipParseError("Bad Contact header")
            continue
        parse_name_addr_shared(value, "Contact")
    if not typed and request.body.strip(b"\r\n"):  # §7.4.1
        raise SipParseError("Missing Content-Type header")


_NAME_ADDR_HEADERS = frozenset({"From", "To", "Contact", "Route", "Record-Route"})


def check_max_forwards(request: Request) -> int | None:
    """Max-Forwards of ``request`` (``None`` if absent); 483 when it is 0 (§16.3 step 3).

    A B2BUA forwarding the call decrements it on the outbound leg; 0 means this hop is the last.
    A malformed value is a 400.
    """
    value = request.headers.get("Max-Forwards")
    if value is None:
        return None
    hops = parse_max_forwards(value)
    if hops == 0:
        raise SipParseError("Too Many Hops", 483, partial=request)
    return hops


def check_require(request: Request, supported: Iterable[str], *, proxy: bool = False) -> None:
    """420 Bad Extension when ``request`` requires an option tag not in ``supported``.

    The error's ``extra_headers`` carries the ``Unsupported`` header listing them (§8.2.2.3).
    ``proxy=True`` checks Proxy-Require too (§16.3 step 5). ACK and CANCEL are exempt (§8.2.2.3).
    Option tags compare case-insensitively (lenient: accepting is the safer mistake here).
    """
    if request.method in ("ACK", "CANCEL"):
        return
    known = {tag.lower() for tag in supported}
    names = ("Require", "Proxy-Require") if proxy else ("Require",)
    unsupported: list[str] = []
    for name in names:
        for value in request.headers.get_all(name):
            for tag in value.split(","):
                tag = tag.strip(" \t")
                if tag and tag.lower() not in known and tag not in unsupported:
                    unsupported.append(tag)
    if unsupported:
        raise SipParseError("Bad Extension", 420, detail=", ".join(unsupported),
                             extra_headers=[("Unsupported", tag) for tag in unsupported],
                             partial=request)


def make_error_response(error: SipParseError) -> Response | None:
    """The response a UAS sends for ``error``, or ``None`` when none can or may be sent.

    ``None`` when the message did not parse far enough to answer (no usable Via or no CSeq,
    §18.2.2, §17.1.3), was a response (dropped, §18.1.2), or was an ACK (never answered,
    §17.2.1). From, To and Call-ID are echoed when present: RFC 4475 §3.3.1 asks for a 400 to
    a request missing them, and the sender's transaction matches on Via and CSeq alone.
    """
    request = error.partial
    if not isinstance(request, Request) or request.method == "ACK":
        return None
    headers = request.headers
    top_via = headers.get("Via")
    if top_via is None or not headers.get("CSeq"):
        return None
    try:
        Via.parse(top_via)
    except SipParseError:
        return None
    return make_response(request, error.status, error.reason, to_tag=new_tag(),
                         extra=error.extra_headers)


# ------------------------------------------------------------------------- stream framing


_CRLF = b"\r\n"
_HEADER_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)",
                             re.IGNORECASE | re.MULTILINE)


def _partial(head: bytes) -> Request | Response | None:
    """The header section as a message, so a framing error can still be answered."""
    try:
        return parse_message(head + _HEADER_END)
    except SipParseError as exc:
        return exc.partial


class StreamFramer:
    """Cuts a TCP/TLS byte stream into SIP messages (RFC 3261 §18.3).

    ``feed(data)`` returns the complete messages now available, as bytes for
    :func:`parse_message` (``stream=True`` checks the length once more). CRLFs between messages
    are skipped (§7.5); a double CRLF there is an RFC 5626 §4.4.1 keep-alive ping: it sets
    :attr:`pong_needed`, and the transport answers with one CRLF and clears the flag.

    A framing error (missing or bad Content-Length, oversize message) is returned as a
    :class:`SipParseError` at the end of the list and leaves the framer :attr:`broken`: the
    stream has lost sync, so the transport must send the error's response if it can
    (:func:`make_error_response`) and then close the connection. Feeding a broken framer is a
    :class:`SipUsageError`.
    """

    def __init__(self, limits: ParserLimits = DEFAULT_LIMITS, *,
                 max_message_bytes: int | None = None) -> None:
        if max_message_bytes is not None:
            limits = replace(limits, max_message_bytes=max_message_bytes)
        self._buf = bytearray()
        self._scan_from = 0  # > 0 while inside a message: where to resume the search
        self._total = 0  # length of the current message once its header section is complete
        self._crlfs = 0  # CRLFs seen since the last message or ping
        self._limits = limits
        self.pong_needed = False
        """A keep-alive ping arrived: send one CRLF (the pong), then set this back to False."""
        self.pings_received = 0
        """Keep-alive pings seen on this connection (for metrics)."""
        self.broken = False
        """True after a framing error: close the connection."""

    @property
    def buffered(self) -> int:
        """Octets received and not yet returned as a message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | SipParseError]:
        """Add received octets; return the messages (and at most one framing error) completed."""
        if self.broken:
            raise SipUsageError("feed() on a StreamFramer after a framing error")
        self._buf += data
        out: list[bytes | SipParseError] = []
        while True:
            if not self._skip_crlfs():
                return out
            try:
                message = self._next_message()
            except SipParseError as exc:
                self.broken = True
                self._buf.clear()
                out.append(exc)
                return out
            if message is None:
                return out
            out.append(message)

    def _skip_crlfs(self) -> bool:
        """Drop CRLFs before a start line; False when the buffer holds nothing else yet."""
        buf = self._buf
        if self._scan_from:
            return True  # inside a message already
        i = 0
        n = len(buf)
        while i < n:
            if buf[i:i + 2] == _CRLF:
                i += 2
                self._crlfs += 1
                if self._crlfs == 2:
                    self.pings_received += 1
                    self.pong_needed = True
                    self._crlfs = 0
            elif buf[i] == 0x0A:  # a bare LF: tolerate, do not count
                i += 1
            elif buf[i] == 0x0D and i + 1 == n:
                break  # maybe the first half of a CRLF: wait for more
            else:
                break
        if i:
            del buf[:i]
        if not buf or buf == b"\r":
            return False
        self._crlfs = 0
        return True

    def _next_message(self) -> bytes | None:
        buf = self._buf
        if self._total:  # header section seen: waiting for the rest of the body
            return self._cut(self._total)
        limit = self._limits.max_message_bytes
        end = buf.find(_HEADER_END, max(0, self._scan_from - 3))
        if end < 0:
            self._scan_from = max(1, len(buf))
            if len(buf) > limit:
                raise SipParseError("Message Too Large", 513,
                                    detail="header section exceeds the message limit")
            return None
        head = bytes(buf[:end])
        lengths = _CONTENT_LENGTH.findall(head.replace(b"\r\n ", b" ").replace(b"\r\n\t", b" "))
        if not lengths:
            raise SipParseError("Missing Content-Length header",
                                detail="required on stream transports (RFC 3261 §18.3)",
                                partial=_partial(head))
        values = {value.strip(b" \t") for value in lengths}
        # RFC 4475 §3.1.2.3, §3.3.9: answer 400 (from the header section), then close
        if len(values) != 1:
            raise SipParseError("Multiple Content-Length headers", partial=_partial(head))
        try:
            length = parse_content_length(values.pop().decode("ascii"))
        except (UnicodeDecodeError, SipParseError):
            raise SipParseError("Bad Content-Length header", partial=_partial(head)) from None
        total = end + 4 + length
        if total > limit:
            raise SipParseError("Message Too Large", 513, detail=f"{total} octets",
                                partial=_partial(head))
        if length > self._limits.max_body_bytes:  # §21.4.11
            raise SipParseError("Request Entity Too Large", 413, detail=f"{length}-octet body",
                                partial=_partial(head))
        self._total = total
        self._scan_from = 1
        return self._cut(total)

    def _cut(self, total: int) -> bytes | None:
        buf = self._buf
        if len(buf) < total:
            return None
        message = bytes(buf[:total])
        del buf[:total]
        self._scan_from = self._total = 0
        return message
