"""SIP, SIPS, tel and urn URIs (RFC 3261 §19.1, §25.1; RFC 3966; RFC 5031).

:func:`parse_uri` turns URI text into a :class:`SipUri`, :class:`TelUri` or :class:`AbsoluteUri`
and raises :class:`~sip.errors.SipParseError` with the response a UAS sends: 416 for a scheme
nodrute does not handle, 400 for a malformed URI.

Escapes (RFC 3261 §19.1.2) are decoded on the way in and re-applied by ``to_str()``: ``user``,
``password``, parameter names/values and header names/values hold the *decoded* text, so
``sip:%61lice@x`` and ``sip:alice@x`` have the same ``user``. Undecodable escapes (bytes that are
not UTF-8) survive the round trip as surrogate escapes.

A ``;`` before the ``@`` is part of the user (user-params such as ``sip:113;kommune=0301@host``,
RFC 3261 §19.1.1, RFC 4475 §3.1.1.9) and stays in ``user`` verbatim; URI parameters come after the
host.
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from .errors import SipParseError

SUPPORTED_SCHEMES = frozenset({"sip", "sips", "tel", "urn"})

_ALPHANUM = string.ascii_letters + string.digits
_HEX = frozenset(string.hexdigits)
_SCHEME_CHARS = frozenset(_ALPHANUM + "+-.")
# RFC 3261 §25.1
_UNRESERVED = _ALPHANUM + "-_.!~*'()"
_USER_SAFE = _UNRESERVED + "&=+$,;?/"
_PASSWORD_SAFE = _UNRESERVED + "&=+$,"
_PARAM_SAFE = _UNRESERVED + "[]/:&+$"
_HEADER_SAFE = _UNRESERVED + "[]/?:+$"
_USER_CHARS = frozenset(_USER_SAFE + "%")
_PASSWORD_CHARS = frozenset(_PASSWORD_SAFE + "%")
_PARAM_CHARS = frozenset(_PARAM_SAFE + "%")
_HEADER_CHARS = frozenset(_HEADER_SAFE + "%")
_HOSTNAME_CHARS = frozenset(_ALPHANUM + "-._")
_IPV6_CHARS = frozenset(string.hexdigits + ":.")
# RFC 3966: digits, hex digits of local numbers, '*', '#', visual separators, and '+'.
_TEL_CHARS = frozenset(string.hexdigits + "*#+-.()")
_TEL_PARAM_CHARS = frozenset(_ALPHANUM + "-_.!~*'()[]/:&+$%")
# Opaque part of absolute URIs (urn): anything visible except delimiters of SIP headers.
_OPAQUE_FORBIDDEN = frozenset(' \t\r\n<>"\\^`{|}')


def _bad(what: str, text: str) -> SipParseError:
    # The reason phrase goes on the wire: name the part, never echo the peer's text.
    return SipParseError("Bad URI" if what == "uri" else f"Bad URI {what}",
                         detail=f"{what} in {text[:200]!r}")


def _decode(text: str, allowed: frozenset[str], what: str, whole: str) -> str:
    """Validate ``text`` against ``allowed`` (``%`` included) and percent-decode it."""
    if not allowed.issuperset(text):
        raise _bad(what, whole)
    if "%" not in text:
        return text
    i = text.find("%")
    while i >= 0:
        # escaped = "%" HEXDIG HEXDIG; a lone % is not an escape and not allowed here
        pair = text[i + 1:i + 3]
        if len(pair) != 2 or not _HEX.issuperset(pair):
            raise _bad(what, whole)
        i = text.find("%", i + 3)
    return unquote(text, errors="surrogateescape")


_SAFE_SETS: dict[str, frozenset[str]] = {
    safe: frozenset(safe) for safe in (_USER_SAFE, _PASSWORD_SAFE, _PARAM_SAFE, _HEADER_SAFE)}


def _encode(text: str, safe: str) -> str:
    """Percent-encode what ``safe`` does not allow (inverse of :func:`_decode`)."""
    if _SAFE_SETS[safe].issuperset(text):
        return text
    return quote(text, safe=safe, errors="surrogateescape")


@dataclass(slots=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI (RFC 3261 §19.1.1)."""

    scheme: str
    """``sip`` or ``sips`` (lower-case)."""
    host: str
    """Host, lower-cased; an IPv6 reference keeps its brackets: ``[2001:db8::1]``."""
    user: str | None = None
    """User part, percent-decoded, user-params (``;…`` before ``@``) included; ``None`` if none."""
    password: str | None = None
    """Password, percent-decoded (deprecated by RFC 3261 but legal)."""
    port: int | None = None
    """Port, ``None`` when absent."""
    params: dict[str, str | None] = field(default_factory=dict)
    """URI parameters, names lower-cased, values decoded; a flag parameter maps to ``None``."""
    headers: dict[str, str] = field(default_factory=dict)
    """Header components after ``?`` (decoded); not allowed in a Request-URI (§19.1.5)."""

    @property
    def secure(self) -> bool:
        """True for ``sips:`` (TLS on every hop, RFC 3261 §19.1)."""
        return self.scheme == "sips"

    @property
    def lr(self) -> bool:
        """True when the loose-routing flag ``;lr`` is present (RFC 3261 §19.1.1)."""
        return "lr" in self.params

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter lower-cased (``udp``, ``tcp``, ``tls``…), or ``None``."""
        value = self.params.get("transport")
        return value.lower() if value else None

    def host_port(self) -> str:
        """``host`` or ``host:port``, as in a Via sent-by."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def user_params(self) -> tuple[str | None, dict[str, str | None]]:
        """Split ``user`` at ``;`` into the user proper and its user-params.

        ``sip:113;kommune=0301@host`` → ``("113", {"kommune": "0301"})``. Names are lower-cased.
        Works on the decoded user, so an escaped ``%3B`` also splits.
        """
        if self.user is None or ";" not in self.user:
            return self.user, {}
        base, *rest = self.user.split(";")
        params: dict[str, str | None] = {}
        for part in rest:
            if part:
                name, sep, value = part.partition("=")
                params[name.strip().lower()] = value.strip() if sep else None
        return base, params

    def to_str(self) -> str:
        """Serialise, escaping whatever the grammar does not allow verbatim."""
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(_encode(self.user, _USER_SAFE))
            if self.password is not None:
                out.append(":")
                out.append(_encode(self.password, _PASSWORD_SAFE))
            out.append("@")
        out.append(self.host_port())
        for name, value in self.params.items():
            out.append(";")
            out.append(_encode(name, _PARAM_SAFE))
            if value is not None:
                out.append("=")
                out.append(_encode(value, _PARAM_SAFE))
        if self.headers:
            out.append("?")
            out.append("&".join(f"{_encode(n, _HEADER_SAFE)}={_encode(v, _HEADER_SAFE)}"
                                for n, v in self.headers.items()))
        return "".join(out)

    def __str__(self) -> str:
        return self.to_str()


@dataclass(slots=True)
class TelUri:
    """A ``tel:`` URI (RFC 3966): ``tel:+47113`` or ``tel:113;phone-context=+47``."""

    number: str
    """The number as written, visual separators included (``+47-113``)."""
    params: dict[str, str | None] = field(default_factory=dict)
    """Parameters (``phone-context``, ``ext``, ``isub``…), names lower-cased."""

    scheme = "tel"

    @property
    def is_global(self) -> bool:
        """True for a global number (``+`` and E.164 digits)."""
        return self.number.startswith("+")

    @property
    def digits(self) -> str:
        """The number without visual separators (``-``, ``.``, ``(``, ``)``)."""
        return "".join(c for c in self.number if c not in "-.()")

    def to_str(self) -> str:
        """Serialise as ``tel:number;params``."""
        params = "".join(f";{n}" if v is None else f";{n}={v}" for n, v in self.params.items())
        return f"tel:{self.number}{params}"

    def __str__(self) -> str:
        return self.to_str()


@dataclass(slots=True)
class AbsoluteUri:
    """Any other supported URI kept opaque; today ``urn:`` (``urn:service:sos.ambulance``)."""

    scheme: str
    """Lower-case scheme, e.g. ``urn``."""
    value: str
    """Everything after ``scheme:``, verbatim."""

    def to_str(self) -> str:
        """Serialise as ``scheme:value``."""
        return f"{self.scheme}:{self.value}"

    def __str__(self) -> str:
        return self.to_str()


Uri = SipUri | TelUri | AbsoluteUri


def parse_uri(text: str) -> Uri:
    """Parse a URI; 416 for a scheme other than sip, sips, tel, urn, 400 when malformed."""
    scheme, sep, rest = text.partition(":")
    if not sep or not scheme or not _SCHEME_CHARS.issuperset(scheme) \
            or not scheme[0].isalpha() or not scheme.isascii():
        raise _bad("uri", text)
    scheme = scheme.lower()
    if scheme == "sip" or scheme == "sips":
        return _parse_sip(scheme, rest, text)
    if scheme == "tel":
        return _parse_tel(rest, text)
    if scheme == "urn":
        if not rest or not rest.isprintable() or not _OPAQUE_FORBIDDEN.isdisjoint(rest):
            raise _bad("uri", text)
        return AbsoluteUri(scheme, rest)
    raise SipParseError("Unsupported URI Scheme", 416, detail=f"scheme {scheme!r}")


def parse_uri_shared(text: str) -> Uri:
    """:func:`parse_uri`, memoised: the *same* object for the same text. Do not mutate it.

    For readers only (validation, routing, next hop). A call parses the same few URIs — the
    Request-URI, each side's Contact, the centre's URI — about ten times across the layers;
    a hit costs a dict probe instead of a parse. Errors are not cached: a bad URI raises each
    time, as :func:`parse_uri` does. URIs over 512 characters are parsed afresh each time, so
    long unique ones cannot make the cache pin memory.
    """
    if len(text) > 512:
        return parse_uri(text)
    return _parse_uri_memo(text)


@functools.lru_cache(maxsize=1024)
def _parse_uri_memo(text: str) -> Uri:
    return parse_uri(text)


def _parse_sip(scheme: str, rest: str, whole: str) -> SipUri:
    # RFC 3261 §19.1.1: sip:user:password@host:port;uri-parameters?headers
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1:]
        raw_user, colon, raw_password = userinfo.partition(":")
        if not raw_user:
            raise _bad("user", whole)
        user = _decode(raw_user, _USER_CHARS, "user", whole)
        if colon:
            password = _decode(raw_password, _PASSWORD_CHARS, "password", whole)
    headers: dict[str, str] = {}
    rest, qmark, header_text = rest.partition("?")
    if qmark:
        headers = _parse_uri_headers(header_text, whole)
    hostport, semi, param_text = rest.partition(";")
    host, port = _split_hostport(hostport, whole)
    params: dict[str, str | None] = {}
    if semi:
        for part in param_text.split(";"):
            name, eq, value = part.partition("=")
            if not name:
                raise _bad("parameter", whole)
            key = _decode(name, _PARAM_CHARS, "parameter", whole).lower()
            params[key] = _decode(value, _PARAM_CHARS, "parameter", whole) if eq else None
    return SipUri(scheme, host, user, password, port, params, headers)


def _split_hostport(text: str, whole: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        inner = text[1:end]
        if end < 0 or not inner or ":" not in inner or not _IPV6_CHARS.issuperset(inner):
            raise _bad("host", whole)
        host, port_text = text[:end + 1], text[end + 1:]
        if not port_text:
            return host, None
        if port_text[0] != ":":
            raise _bad("host", whole)
        port_text = port_text[1:]
    else:
        host, colon, port_text = text.partition(":")
        if not host or not _HOSTNAME_CHARS.issuperset(host):
            raise _bad("host", whole)
        host = host.lower()
        if not colon:
            return host, None
    if not port_text.isdigit() or not port_text.isascii() or len(port_text) > 5 \
            or int(port_text) > 65535:
        raise _bad("port", whole)
    return host, int(port_text)


def _parse_uri_headers(text: str, whole: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for part in text.split("&"):
        name, eq, value = part.partition("=")
        if not name or not eq:
            raise _bad("header", whole)
        headers[_decode(name, _HEADER_CHARS, "header", whole)] = \
            _decode(value, _HEADER_CHARS, "header", whole)
    return headers


def _parse_tel(rest: str, whole: str) -> TelUri:
    number, semi, param_text = rest.partition(";")
    if not number or not _TEL_CHARS.issuperset(number) or "+" in number[1:] \
            or not any(c.isdigit() or c in "*#" for c in number):
        raise _bad("number", whole)
    params: dict[str, str | None] = {}
    if semi:
        for part in param_text.split(";"):
            name, eq, value = part.partition("=")
            if not name or not _TEL_PARAM_CHARS.issuperset(name) \
                    or not _TEL_PARAM_CHARS.issuperset(value):
                raise _bad("parameter", whole)
            params[name.lower()] = value if eq else None
    return TelUri(number, params)
