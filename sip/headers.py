"""Structured views of the header values the core reads (RFC 3261 §20, §25.1 grammar).

Only the headers the transaction, dialog and routing layers need are parsed: Via, the name-addr
family (From, To, Contact, Route, Record-Route, P-Asserted-Identity), CSeq and Max-Forwards.
Everything else travels as text. Each parser raises :class:`~sip.errors.SipParseError` with a
400 and a reason naming the header, never another exception.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from .errors import SipParseError

_TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)

# Written unquoted in a parameter value (token, plus the ':' and '[]' of IPv6 addresses).
_PARAM_VALUE_CHARS = _TOKEN_CHARS | frozenset(":[]")

# RFC 3261 §8.1.1.7: every branch we create starts with the magic cookie.
BRANCH_MAGIC_COOKIE = "z9hG4bK"


def is_token(text: str) -> bool:
    """True if ``text`` is a non-empty RFC 3261 §25.1 ``token``."""
    return bool(text) and _TOKEN_CHARS.issuperset(text)


def _is_ascii_digits(text: str) -> bool:
    # str.isdigit() alone accepts "²" and other digits int() refuses: never hand those to int()
    return text.isascii() and text.isdigit()


def split_params(text: str, header: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` parameters (leading ``;`` optional), quoted values allowed.

    Names are lower-cased (parameter names are case-insensitive, RFC 3261 §7.3.1); values keep
    their case and have surrounding quotes removed. LWS around ``;`` and ``=`` is allowed
    (SEMI, EQUAL in §25.1); empty segments (``;;``) are skipped.
    """
    if '"' in text:
        return _split_params_quoted(text, header)
    params: dict[str, str | None] = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        name = name.strip(" \t")
        if not name:
            if eq:
                raise SipParseError(f"Bad parameter in {header}")
            continue
        if not is_token(name):
            raise SipParseError(f"Bad parameter in {header}")
        params[name.lower()] = value.strip(" \t") if eq else None
    return params


def _split_params_quoted(text: str, header: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t;":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] not in "=;":
            i += 1
        name = text[start:i].strip(" \t").lower()
        if not name or not is_token(name):
            raise SipParseError(f"Bad parameter in {header}")
        value: str | None = None
        if i < n and text[i] == "=":
            i += 1
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] == '"':
                end = _end_of_quoted(text, i, header)
                value = _unquote(text[i + 1:end])
                i = end + 1
                while i < n and text[i] in " \t":
                    i += 1
                if i < n and text[i] != ";":
                    raise SipParseError(f"Bad parameter in {header}")
            else:
                start = i
                while i < n and text[i] != ";":
                    i += 1
                value = text[start:i].strip(" \t")
        params[name] = value
    return params


def format_params(params: dict[str, str | None]) -> str:
    """Serialise parameters back to ``;name=value`` form (quoting values that need it)."""
    out = []
    for name, value in params.items():
        if value is None:
            out.append(f";{name}")
        elif _PARAM_VALUE_CHARS.issuperset(value):  # "" included, as before
            out.append(f";{name}={value}")
        else:
            out.append(f';{name}="{_quote(value)}"')
    return "".join(out)


def _end_of_quoted(text: str, start: int, header: str) -> int:
    """Index of the closing quote of the quoted-string opening at ``start``."""
    end = text.find('"', start + 1)
    backslash = text.find("\\", start + 1)
    if end >= 0 and (backslash < 0 or backslash > end):
        return end  # no quoted-pair before the closing quote: the common case
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i
        i += 1
    raise SipParseError(f"Unterminated quoted string in {header}")


def _unquote(inner: str) -> str:
    if "\\" not in inner:
        return inner
    out = []
    i = 0
    while i < len(inner):
        if inner[i] == "\\" and i + 1 < len(inner):
            out.append(inner[i + 1])
            i += 2
        else:
            out.append(inner[i])
            i += 1
    return "".join(out)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


@dataclass(slots=True)
class Via:
    """One Via header value (RFC 3261 §20.42, §18.2.1; ``rport`` from RFC 3581)."""

    transport: str
    """Upper-case transport token: ``UDP``, ``TCP``, ``TLS``…"""
    host: str
    """sent-by host (IPv6 references keep their brackets)."""
    port: int | None
    """sent-by port, ``None`` when absent (then the transport's default applies)."""
    params: dict[str, str | None] = field(default_factory=dict)
    """Parameters, names lower-cased; ``rport`` with no value is ``None``."""

    @property
    def branch(self) -> str | None:
        """The branch parameter (transaction id with the magic cookie, §17.2.3)."""
        return self.params.get("branch")

    def to_str(self) -> str:
        """Serialise as a Via header value."""
        sent_by = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"SIP/2.0/{self.transport} {sent_by}{format_params(self.params)}"

    @classmethod
    def parse(cls, value: str) -> Via:
        """Parse a single Via value (the parser has already split comma lists).

        LWS is legal around the slashes of sent-protocol, around the colon of sent-by and around
        ``;`` and ``=`` of the parameters (RFC 3261 §25.1 SLASH, COLON, SEMI, EQUAL; RFC 4475
        §3.1.1.1), so ``SIP / 2.0 / UDP host ; branch = z9hG4bK1`` parses.
        """
        text = value.strip(" \t")
        proto, sep, rest = text.partition(" ")
        parts = proto.split("/")
        if len(parts) != 3 or "\t" in proto:
            match = _VIA_PROTOCOL.match(text)
            if match is None:
                raise SipParseError("Bad Via header", detail=value[:200])
            parts = [match[1], match[2], match[3]]
            rest = text[match.end():]
        elif not sep:
            raise SipParseError("Bad Via header", detail=value[:200])
        name, version, transport = parts
        # sent-protocol = protocol-name SLASH protocol-version SLASH transport (§20.42)
        if name.upper() != "SIP" or not is_token(version) or not is_token(transport):
            raise SipParseError("Bad Via header", detail=value[:200])
        sent_by, _, param_text = rest.partition(";")
        sent_by = sent_by.strip(" \t")
        if " " in sent_by or "\t" in sent_by:
            sent_by = _LWS_AROUND_COLON.sub(":", sent_by)
        host, port = split_host_port(sent_by, "Via")
        return cls(transport.upper(), host, port, split_params(param_text, "Via"))


_VIA_PROTOCOL = re.compile(r"([^ \t/]+)[ \t]*/[ \t]*([^ \t/]+)[ \t]*/[ \t]*([^ \t/;]+)[ \t]+")
_LWS_AROUND_COLON = re.compile(r"[ \t]*:[ \t]*")


def split_host_port(text: str, header: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` where host may be an IPv6 reference ``[…]`` (RFC 5118)."""
    if not text:
        raise SipParseError(f"Missing host in {header}")
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not _IPV6_CHARS.issuperset(text[1:end]) or ":" not in text[1:end]:
            raise SipParseError(f"Bad IPv6 reference in {header}")
        host, rest = text[: end + 1], text[end + 1:]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise SipParseError(f"Bad host in {header}")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.partition(":")
        if not host or not _HOST_CHARS.issuperset(host):
            raise SipParseError(f"Bad host in {header}")
        if not sep:
            return host, None
    if not _is_ascii_digits(port_text) or len(port_text) > 5 or int(port_text) > 65535:
        raise SipParseError(f"Bad port in {header}")
    return host, int(port_text)


_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")


@dataclass(slots=True)
class NameAddr:
    """A ``name-addr`` or ``addr-spec`` value with header parameters (RFC 3261 §20.10, §25.1).

    Used for From, To, Contact, Route, Record-Route and P-Asserted-Identity. ``uri`` is text;
    :func:`sip.uri.parse_uri` gives its structure.
    """

    uri: str
    """The URI inside ``<>`` (or the bare addr-spec)."""
    display: str | None = None
    """Display name without quotes, ``None`` when absent."""
    params: dict[str, str | None] = field(default_factory=dict)
    """Header parameters after the URI (``tag``, ``expires``…), names lower-cased."""

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (dialog identification, RFC 3261 §19.3)."""
        return self.params.get("tag")

    def to_str(self) -> str:
        """Serialise, always in name-addr form (safe whatever the URI holds)."""
        display = f'"{_quote(self.display)}" ' if self.display else ""
        return f"{display}<{self.uri}>{format_params(self.params)}"

    @classmethod
    def parse(cls, value: str, header: str = "From") -> NameAddr:
        """Parse one value; ``header`` names it in errors.

        Strict where RFC 4475 says a message is invalid and the value would be ambiguous: an
        unquoted display name with a comma or quote (§3.1.2.15: ``Bell, Alexander <…>`` reads
        as two list elements), LWS inside ``<>`` (§3.1.2.14), a URI with ``,``, ``?`` or ``;``
        outside ``<>`` (§3.1.2.13), unbalanced quotes (§3.1.2.6). Lenient on other non-token
        characters in an unquoted display name (``Ola (mobil)``, ``Ørjan``, sent by real
        gateways): refusing an emergency call over a caller's name helps no one.
        """
        text = value.strip(" \t")
        display: str | None = None
        if text.startswith('"'):
            end = _end_of_quoted(text, 0, header)
            display = _unquote(text[1:end])
            text = text[end + 1:].lstrip(" \t")
            if not text.startswith("<"):
                raise SipParseError(f"Bad {header} header")
        lt = text.find("<")
        if lt >= 0:
            if lt > 0:
                words = text[:lt].split()
                if any('"' in word or "," in word for word in words):
                    raise SipParseError(f"Bad display name in {header} header")
                display = " ".join(words) or None
            gt = text.find(">", lt)
            if gt < 0:
                raise SipParseError(f"Bad {header} header")
            uri = text[lt + 1:gt]
            param_text = text[gt + 1:].lstrip(" \t")
            if param_text and param_text[0] != ";":
                raise SipParseError(f"Bad {header} header")
        else:
            # addr-spec form: parameters after the URI belong to the header (§20.10)
            uri, _, param_text = text.partition(";")
            uri = uri.rstrip(" \t")
            if "," in uri or "?" in uri:
                raise SipParseError(f"Bad {header} header")
        if not uri or ":" not in uri or " " in uri or "\t" in uri:
            raise SipParseError(f"Bad URI in {header} header")
        return cls(uri, display, split_params(param_text, header))


MEMO_MAX_CHARS = 512
"""Values longer than this are parsed each time, never memoised: the caches below hold at most
their entry count of *short* strings, so a peer sending long unique values (a line may be 16 kB)
cannot make them pin hundreds of megabytes (found by fuzz/fuzz_parser.py)."""


def parse_name_addr_shared(value: str, header: str = "From") -> NameAddr:
    """:meth:`NameAddr.parse`, memoised: the *same* object for the same text. Do not mutate it.

    For readers only (tags, URIs, validation). Across validation, routing, the dialogs and the
    call record a call parses its From, To and Contact values ~15 times; a hit is a dict probe.
    Errors are not cached: a bad value raises every time, as :meth:`NameAddr.parse` does.
    Values over :data:`MEMO_MAX_CHARS` are parsed afresh each time.
    """
    if len(value) > MEMO_MAX_CHARS:
        return NameAddr.parse(value, header)
    return _parse_name_addr_memo(value, header)


@functools.lru_cache(maxsize=4096)
def _parse_name_addr_memo(value: str, header: str) -> NameAddr:
    return NameAddr.parse(value, header)


# Memoised: a pure function of the text, returning an immutable tuple, read about ten times per
# call by the parser, the transaction layer and the dialogs; "1 INVITE", "2 BYE" repeat a lot.
# Errors are not cached (a bad value raises every time).
def parse_cseq(value: str) -> tuple[int, str]:
    """Parse ``CSeq: 4711 INVITE`` → ``(4711, "INVITE")`` (RFC 3261 §20.16).

    Memoised for values up to :data:`MEMO_MAX_CHARS`.
    """
    if len(value) > MEMO_MAX_CHARS:
        return _parse_cseq(value)
    return _parse_cseq_memo(value)


@functools.lru_cache(maxsize=1024)
def _parse_cseq_memo(value: str) -> tuple[int, str]:
    return _parse_cseq(value)


def _parse_cseq(value: str) -> tuple[int, str]:
    """The parse behind :func:`parse_cseq`.

    The number must fit 32 bits unsigned (§20.16; RFC 4475 §3.1.2.4). Values we *send* start
    below 2**31 (§8.1.1.5), but a peer may legitimately have counted past it.
    """
    number, _, method = value.strip(" \t").replace("\t", " ").partition(" ")
    method = method.strip(" ")
    if not _is_ascii_digits(number) or len(number.lstrip("0")) > 10 or not is_token(method):
        raise SipParseError("Bad CSeq header")
    seq = int(number)
    if seq > 0xFFFFFFFF:
        raise SipParseError("Bad CSeq header")
    return seq, method


def parse_max_forwards(value: str) -> int:
    """Parse Max-Forwards (RFC 3261 §20.22), leading zeros allowed (RFC 4475 §3.1.1.1).

    Values above 255 are clamped to 255 (RFC 4475 §3.1.2.4 allows it); absurd lengths are a 400.
    """
    text = value.strip(" \t")
    if not _is_ascii_digits(text) or len(text.lstrip("0")) > 10:
        raise SipParseError("Bad Max-Forwards header")
    return min(int(text), 255)
