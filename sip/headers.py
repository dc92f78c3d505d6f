"""Structured views of the header values the core reads (RFC 3261 §20, §25.1 grammar).

Only the headers the transaction, dialog and routing layers need are parsed: Via, the name-addr
family (From, To, Contact, Route, Record-Route, P-Asserted-Identity), CSeq and Max-Forwards.
Everything else travels as text. Each parser raises :class:`~sip.errors.SipParseError` with a
400 and a reason naming the header, never another exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import SipParseError

_TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)

# RFC 3261 §8.1.1.7: every branch we create starts with the magic cookie.
BRANCH_MAGIC_COOKIE = "z9hG4bK"


def is_token(text: str) -> bool:
    """True if ``text`` is a non-empty RFC 3261 §25.1 ``token``."""
    return bool(text) and all(c in _TOKEN_CHARS for c in text)


def split_params(text: str, header: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` parameters (leading ``;`` optional), quoted values allowed.

    Names are lower-cased (parameter names are case-insensitive, RFC 3261 §7.3.1); values keep
    their case and have surrounding quotes removed.
    """
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
        name = text[start:i].strip().lower()
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
            else:
                start = i
                while i < n and text[i] != ";":
                    i += 1
                value = text[start:i].strip()
        params[name] = value
    return params


def format_params(params: dict[str, str | None]) -> str:
    """Serialise parameters back to ``;name=value`` form (quoting values that need it)."""
    out = []
    for name, value in params.items():
        if value is None:
            out.append(f";{name}")
        elif value == "" or all(c in _TOKEN_CHARS or c in ":[]" for c in value):
            out.append(f";{name}={value}")
        else:
            out.append(f';{name}="{_quote(value)}"')
    return "".join(out)


def _end_of_quoted(text: str, start: int, header: str) -> int:
    """Index of the closing quote of the quoted-string opening at ``start``."""
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
        """Parse a single Via value (the parser has already split comma lists)."""
        proto, sep, rest = value.strip().partition(" ")
        # "SIP / 2.0 / UDP" with LWS around the slashes is legal (RFC 4475 §3.1.1.1)
        if not sep:
            raise SipParseError("Bad Via header")
        parts = [p.strip() for p in proto.split("/")]
        while len(parts) < 3 and rest:
            # LWS inside the protocol part: pull tokens until we have name/version/transport
            nxt, _, rest = rest.strip().partition(" ")
            if nxt.startswith("/"):
                parts.extend(p.strip() for p in nxt[1:].split("/"))
            elif parts[-1] == "":
                parts[-1] = nxt
            else:
                parts.extend(p.strip() for p in nxt.split("/"))
            parts = [p for p in parts if p != ""] + ([""] if nxt.endswith("/") else [])
        parts = [p for p in parts if p]
        if len(parts) != 3 or parts[0].upper() != "SIP" or not is_token(parts[2]):
            raise SipParseError("Bad Via header")
        sent_by, _, param_text = rest.strip().partition(";")
        host, port = split_host_port(sent_by.strip(), "Via")
        return cls(parts[2].upper(), host, port, split_params(param_text, "Via"))


def split_host_port(text: str, header: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` where host may be an IPv6 reference ``[…]``."""
    if not text:
        raise SipParseError(f"Missing host in {header}")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"Bad IPv6 reference in {header}")
        host, rest = text[: end + 1], text[end + 1:]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise SipParseError(f"Bad host in {header}")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.partition(":")
        if not sep:
            return _check_host(host, header), None
        host = _check_host(host, header)
    port_text = port_text.strip()
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SipParseError(f"Bad port in {header}")
    return host, int(port_text)


def _check_host(host: str, header: str) -> str:
    host = host.strip()
    if not host or any(c in host for c in " \t<>\"@;,"):
        raise SipParseError(f"Bad host in {header}")
    return host


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
        """Parse one value; ``header`` names it in errors."""
        text = value.strip()
        display: str | None = None
        if text.startswith('"'):
            end = _end_of_quoted(text, 0, header)
            display = _unquote(text[1:end])
            text = text[end + 1:].strip()
            if not text.startswith("<"):
                raise SipParseError(f"Bad {header} header")
        lt = text.find("<")
        if lt >= 0:
            if display is None:
                display = text[:lt].strip() or None
            gt = text.find(">", lt)
            if gt < 0:
                raise SipParseError(f"Bad {header} header")
            uri = text[lt + 1:gt].strip()
            param_text = text[gt + 1:]
        else:
            # addr-spec form: parameters after the URI belong to the header (§20.10)
            uri, _, param_text = text.partition(";")
            uri = uri.strip()
            if " " in uri or "," in uri or "?" in uri:
                raise SipParseError(f"Bad {header} header")
        if not uri or ":" not in uri:
            raise SipParseError(f"Bad URI in {header} header")
        return cls(uri, display, split_params(param_text, header))


def parse_cseq(value: str) -> tuple[int, str]:
    """Parse ``CSeq: 4711 INVITE`` → ``(4711, "INVITE")`` (RFC 3261 §20.16)."""
    number, _, method = value.strip().partition(" ")
    method = method.strip()
    if not number.isdigit() or len(number) > 10 or not is_token(method):
        raise SipParseError("Bad CSeq header")
    seq = int(number)
    if seq >= 2**31:  # §8.1.1.5: must be less than 2**31
        raise SipParseError("Bad CSeq header")
    return seq, method


def parse_max_forwards(value: str) -> int:
    """Parse Max-Forwards (RFC 3261 §20.22); 0–255 in practice."""
    text = value.strip()
    if not text.isdigit() or len(text) > 3:
        raise SipParseError("Bad Max-Forwards header")
    return int(text)
