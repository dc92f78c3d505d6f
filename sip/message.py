"""SIP requests, responses and their header list (RFC 3261 §7, §20).

Messages are plain mutable objects owned by one layer at a time. Header *values* are kept as the
strings received; structured views (Via, name-addr, CSeq) are parsed on demand by
:mod:`sip.headers`, because most headers of most messages are only ever copied, never read.

Header names are canonicalised on the way in: compact forms are expanded (``v`` → ``Via``,
RFC 3261 §7.3.3) and well-known names get their usual spelling, so lookups are by one spelling
and serialising never emits a compact form we were not asked to emit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .errors import SipParseError

SIP_VERSION = "SIP/2.0"

# RFC 3261 §7.3.3 and the IANA SIP header registry: compact form -> full name.
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_WELL_KNOWN = (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "Geolocation",
    "Geolocation-Routing", "Geolocation-Error", "Identity", "Identity-Info", "In-Reply-To",
    "Max-Forwards", "MIME-Version", "Min-Expires", "Organization", "P-Asserted-Identity",
    "P-Preferred-Identity", "Priority", "Privacy", "Proxy-Authenticate", "Proxy-Authorization",
    "Proxy-Require", "RAck", "Reason", "Record-Route", "Refer-To", "Referred-By",
    "Reject-Contact", "Reply-To", "Request-Disposition", "Require", "Resource-Priority",
    "Retry-After", "Route", "RSeq", "Server", "Session-Expires", "Subject", "Supported",
    "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
)

_CANONICAL: dict[str, str] = {name.lower(): name for name in _WELL_KNOWN}
_CANONICAL.update({short: full for short, full in COMPACT_FORMS.items()})


def canonical_name(name: str) -> str:
    """The one spelling nodrute uses for header ``name`` (compact forms expanded)."""
    return _CANONICAL.get(name.lower(), name)


# Name as a caller spells it -> (lookup key, canonical name). Every get/add/set on a message goes
# through here (a call makes ~150 such lookups), so the two str.lower() calls and the dict probe
# of canonical_name() are paid once per spelling instead of once per lookup. Names come from
# code (literals) or, via add(), from peers: the cache stops growing at _NAME_KEYS_MAX so a
# flood of made-up names cannot grow it.
_NAME_KEYS: dict[str, tuple[str, str]] = {}
_NAME_KEYS_MAX = 4096


def _name_key(name: str) -> tuple[str, str]:
    entry = _NAME_KEYS.get(name)
    if entry is None:
        canon = canonical_name(name)
        entry = (canon.lower(), canon)
        if len(_NAME_KEYS) < _NAME_KEYS_MAX:
            _NAME_KEYS[name] = entry
    return entry


class Headers:
    """An ordered, case-insensitive multimap of header fields.

    Each entry is one header *value*: a line ``Via: a, b`` is stored as two ``Via`` entries by the
    parser (RFC 3261 §7.3.1 makes the two forms equivalent), so ``get_all("Via")`` is the Via
    stack, top first. Order among fields of different names is kept as received.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        # (lower-case key, canonical name, value)
        self._items: list[tuple[str, str, str]] = []
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_parsed(cls, items: list[tuple[str, str, str]]) -> Headers:
        """Adopt ``(lower-case key, canonical name, value)`` triples already canonicalised.

        For :mod:`sip.parser` only: it has resolved each name once and must not pay for it
        again. ``key`` must be ``canonical_name(name).lower()``.
        """
        headers = cls.__new__(cls)
        headers._items = items
        return headers

    def add(self, name: str, value: str) -> None:
        """Append a field (after any fields of the same name)."""
        key, canon = _name_key(name)
        self._items.append((key, canon, value))

    def prepend(self, name: str, value: str) -> None:
        """Insert a field before the first one of the same name (e.g. a new top Via)."""
        key, canon = _name_key(name)
        for i, (k, _, _) in enumerate(self._items):
            if k == key:
                self._items.insert(i, (key, canon, value))
                return
        self._items.insert(0, (key, canon, value))

    def get(self, name: str, default: str | None = None) -> str | None:
        """Value of the first field named ``name``, or ``default``."""
        key = _name_key(name)[0]
        for k, _, v in self._items:
            if k == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Values of every field named ``name``, in order."""
        key = _name_key(name)[0]
        return [v for k, _, v in self._items if k == key]

    def set(self, name: str, value: str) -> None:
        """Replace every field named ``name`` by one field with ``value`` (kept in place)."""
        key, canon = _name_key(name)
        out: list[tuple[str, str, str]] = []
        placed = False
        for item in self._items:
            if item[0] == key:
                if not placed:
                    out.append((key, canon, value))
                    placed = True
            else:
                out.append(item)
        if not placed:
            out.append((key, canon, value))
        self._items = out

    def remove(self, name: str) -> None:
        """Remove every field named ``name``."""
        key = _name_key(name)[0]
        self._items = [item for item in self._items if item[0] != key]

    def replace_first(self, name: str, value: str) -> None:
        """Replace the value of the first field named ``name`` in place (append if none)."""
        key, canon = _name_key(name)
        items = self._items
        for i, (k, _, _) in enumerate(items):
            if k == key:
                items[i] = (key, canon, value)
                return
        items.append((key, canon, value))

    def pop_first(self, name: str) -> str | None:
        """Remove and return the first field named ``name`` (e.g. the top Via)."""
        key = _name_key(name)[0]
        for i, (k, _, v) in enumerate(self._items):
            if k == key:
                del self._items[i]
                return v
        return None

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _name_key(name)[0]
        return any(k == key for k, _, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, name, value in self._items:
            yield name, value

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> Headers:
        """A shallow copy (values are immutable strings)."""
        clone = Headers()
        clone._items = list(self._items)
        return clone

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and list(self) == list(other)


def _serialise_headers(headers: Headers, body: bytes, lines: list[str]) -> None:
    # Content-Length is always written from the actual body: where the first one stood (so a
    # parsed message re-serialises in its own order), else last.
    length = f"Content-Length: {len(body)}"
    for name, value in headers:
        if name == "Content-Length":
            if length:
                lines.append(length)
                length = ""
            continue
        lines.append(f"{name}: {value}")
    if length:
        lines.append(length)


class Request:
    """A SIP request (RFC 3261 §7.1). ``uri`` is the Request-URI as text."""

    __slots__ = ("body", "headers", "method", "uri")

    def __init__(self, method: str, uri: str, headers: Headers | None = None,
                 body: bytes = b"") -> None:
        self.method = method
        """Method token, case-sensitive (RFC 3261 §7.1): ``INVITE``, ``ACK``, …"""
        self.uri = uri
        """Request-URI exactly as it should appear on the start line."""
        self.headers = headers if headers is not None else Headers()
        """Header fields; Content-Length is recomputed when serialising."""
        self.body = body
        """Message body as bytes."""

    def to_bytes(self) -> bytes:
        """Serialise for the wire; Content-Length always matches the body."""
        lines = [f"{self.method} {self.uri} {SIP_VERSION}"]
        _serialise_headers(self.headers, self.body, lines)
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode("utf-8") + self.body

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} call-id={self.headers.get('Call-ID')}>"


class Response:
    """A SIP response (RFC 3261 §7.2)."""

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(self, status: int, reason: str = "", headers: Headers | None = None,
                 body: bytes = b"") -> None:
        self.status = status
        """Status code 100 to 699."""
        self.reason = reason or REASON_PHRASES.get(status, "")
        """Reason phrase (free text)."""
        self.headers = headers if headers is not None else Headers()
        """Header fields; Content-Length is recomputed when serialising."""
        self.body = body
        """Message body as bytes."""

    def to_bytes(self) -> bytes:
        """Serialise for the wire; Content-Length always matches the body."""
        lines = [f"{SIP_VERSION} {self.status} {self.reason}"]
        _serialise_headers(self.headers, self.body, lines)
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode("utf-8") + self.body

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} call-id={self.headers.get('Call-ID')}>"


Message = Request | Response

# RFC 3261 §21 plus the extensions nodrute emits.
REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

# Headers a response copies from the request it answers (RFC 3261 §8.2.6.2).
_COPIED_INTO_RESPONSE = frozenset({"Via", "From", "To", "Call-ID", "CSeq"})


def make_response(request: Request, status: int, reason: str = "", *,
                  to_tag: str | None = None, body: bytes = b"",
                  extra: Iterable[tuple[str, str]] = ()) -> Response:
    """Build a response to ``request`` per RFC 3261 §8.2.6.

    Via (all of them, in order), From, Call-ID and CSeq are copied; To is copied and gets
    ``to_tag`` appended when it has no tag yet (§8.2.6.2: a 100 Trying must not add one, so pass
    ``None`` there). Record-Route is copied for 2xx/1xx to dialog-creating requests
    (§12.1.1) — the caller decides via ``extra``; we never copy it implicitly.
    """
    # The request's entries are canonical already: copy the triples, no name lookups.
    items: list[tuple[str, str, str]] = []
    for entry in request.headers._items:
        if entry[1] in _COPIED_INTO_RESPONSE:
            if entry[1] == "To" and to_tag is not None:
                value = entry[2]
                if ";tag=" not in value.replace(" ", ""):
                    entry = (entry[0], entry[1], f"{value};tag={to_tag}")
            items.append(entry)
    headers = Headers._from_parsed(items)
    for name, value in extra:
        headers.add(name, value)
    return Response(status, reason, headers, body)


def require_single(headers: Headers, name: str) -> str:
    """The one value of a mandatory single-valued header, or a 400 naming it."""
    values = headers.get_all(name)
    if not values:
        raise SipParseError(f"Missing {name} header")
    if len(values) > 1 and name != "Via":
        raise SipParseError(f"Multiple {name} headers")
    return values[0]
