"""Dialog state and in-dialog request building (RFC 3261 §12, §13.2.2.4).

A :class:`Dialog` is plain data owned by one call leg: identified by (Call-ID, local tag, remote
tag), it keeps the route set, the remote target and both CSeq counters, builds the requests we
send inside it and screens the requests the peer sends. Sans-IO: it never sends anything; the
caller hands the built request to the transaction layer and asks :meth:`Dialog.next_hop` where
it goes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import SipParseError, SipUsageError
from .headers import NameAddr, parse_cseq, parse_name_addr_shared
from .message import Headers, Request, Response
from .uri import SipUri, parse_uri, parse_uri_shared

# Parameters that may not appear in a Request-URI (RFC 3261 §19.1.1 table): stripped when a
# strict-routing route becomes the Request-URI (§12.2.1.1).
_NOT_IN_REQUEST_URI = ("method", "ttl", "maddr", "lr")


@dataclass(slots=True)
class Dialog:
    """The state of one dialog as one of its two UAs (RFC 3261 §12.1)."""

    call_id: str
    """Call-ID shared by every message of the dialog."""
    local_tag: str
    """Our tag: From tag in requests we send, To tag in those we receive."""
    remote_tag: str
    """The peer's tag (``""`` for an RFC 2543 peer that sent none)."""
    local_uri: str
    """Our URI: the From URI of requests we send (§12.2.1.1)."""
    remote_uri: str
    """The peer's URI: the To URI of requests we send."""
    local_cseq: int
    """CSeq number of the last request we sent; the next one gets ``local_cseq + 1``."""
    remote_cseq: int | None
    """CSeq number of the last request the peer sent; ``None`` until it sends one (§12.1.2)."""
    remote_target: str
    """The peer's Contact URI: the Request-URI of our requests (unless strict routing)."""
    route_set: list[str] = field(default_factory=list)
    """Route header values for our requests, in the order they are sent (name-addr text)."""
    secure: bool = False
    """True when the dialog was set up over TLS with a SIPS Request-URI (§12.1.1)."""
    local_contact: str = ""
    """Our Contact header value, for target-refresh requests (re-INVITE, UPDATE)."""

    @property
    def key(self) -> tuple[str, str, str]:
        """Dialog id (Call-ID, local tag, remote tag), §12."""
        return (self.call_id, self.local_tag, self.remote_tag)

    # ----------------------------------------------------------------- constructors

    @classmethod
    def as_uas(cls, request: Request, local_tag: str, local_contact: str, *,
               over_tls: bool = False) -> Dialog:
        """The dialog a UAS creates when it answers ``request`` with 1xx/2xx (§12.1.1).

        The route set is the request's Record-Route values in order; the remote target its
        Contact URI. Raises a 400 :class:`SipParseError` when the request lacks what a
        dialog needs (a Contact with a SIP URI, §8.1.1.8; well-formed From/To/CSeq).
        """
        headers = request.headers
        from_ = parse_name_addr_shared(_required(headers, "From"), "From")
        to = parse_name_addr_shared(_required(headers, "To"), "To")
        cseq, _ = parse_cseq(_required(headers, "CSeq"))
        return cls(
            call_id=_required(headers, "Call-ID"),
            local_tag=local_tag,
            remote_tag=from_.tag or "",
            local_uri=to.uri,
            remote_uri=from_.uri,
            local_cseq=0,  # "empty" (§12.1.1): our first request is CSeq 1
            remote_cseq=cseq,
            remote_target=_contact_target(headers),
            route_set=_route_values(headers.get_all("Record-Route")),
            secure=over_tls and request.uri[:5].lower() == "sips:",
            local_contact=local_contact,
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response, *, over_tls: bool = False) -> Dialog:
        """The dialog a UAC creates from a 1xx (with To tag) or 2xx to ``request`` (§12.1.2).

        The route set is the response's Record-Route values reversed; the remote target the
        response's Contact URI.
        """
        headers = request.headers
        from_ = parse_name_addr_shared(_required(headers, "From"), "From")
        to = parse_name_addr_shared(_required(response.headers, "To"), "To")
        cseq, _ = parse_cseq(_required(headers, "CSeq"))
        if from_.tag is None:
            raise SipUsageError("as_uac: our request has no From tag")
        return cls(
            call_id=_required(headers, "Call-ID"),
            local_tag=from_.tag,
            remote_tag=to.tag or "",
            local_uri=from_.uri,
            remote_uri=parse_name_addr_shared(_required(headers, "To"), "To").uri,
            local_cseq=cseq,
            remote_cseq=None,
            # A 2xx without Contact is malformed, but the call is up: keep a target we can
            # send BYE to (the Request-URI) rather than lose the ability to hang up.
            remote_target=(_contact_target(response.headers)
                           if "Contact" in response.headers else request.uri),
            route_set=_route_values(reversed(response.headers.get_all("Record-Route"))),
            secure=over_tls and request.uri[:5].lower() == "sips:",
            local_contact=headers.get("Contact") or "",
        )

    # ------------------------------------------------------------ requests we send

    def create_request(self, method: str, *, via: str, max_forwards: int = 70,
                       extra: Iterable[tuple[str, str]] = (), body: bytes = b"",
                       content_type: str | None = None) -> Request:
        """A new in-dialog request with the next local CSeq (§12.2.1.1).

        ``via`` is the complete Via value (with a fresh branch). A target-refresh request
        (re-INVITE, UPDATE) needs our Contact: pass it in ``extra`` or add it to the result.
        ACK for a 2xx is :meth:`create_ack`; CANCEL is built from the INVITE by the transaction
        layer, never here.
        """
        if method in ("ACK", "CANCEL"):
            raise SipUsageError(f"create_request({method!r}): use create_ack / the INVITE")
        self.local_cseq += 1
        return self._build(method, self.local_cseq, via, max_forwards, extra, body,
                           content_type)

    def create_ack(self, invite_cseq: int, via: str, *, max_forwards: int = 70,
                   extra: Iterable[tuple[str, str]] = (), body: bytes = b"",
                   content_type: str | None = None) -> Request:
        """The ACK for a 2xx to the INVITE with CSeq ``invite_cseq`` (§13.2.2.4).

        Same CSeq number as the INVITE, method ACK; routed like any in-dialog request. Does not
        touch :attr:`local_cseq`.
        """
        return self._build("ACK", invite_cseq, via, max_forwards, extra, body, content_type)

    def _build(self, method: str, cseq: int, via: str, max_forwards: int,
               extra: Iterable[tuple[str, str]], body: bytes,
               content_type: str | None) -> Request:
        request_uri, routes = self._request_uri_and_routes()
        headers = Headers()
        headers.add("Via", via)
        headers.add("Max-Forwards", str(max_forwards))
        for route in routes:
            headers.add("Route", route)
        headers.add("From", f"<{self.local_uri}>;tag={self.local_tag}")
        to_tag = f";tag={self.remote_tag}" if self.remote_tag else ""
        headers.add("To", f"<{self.remote_uri}>{to_tag}")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        for name, value in extra:
            headers.add(name, value)
        if body and content_type is not None:
            headers.set("Content-Type", content_type)
        return Request(method, request_uri, headers, body)

    def _request_uri_and_routes(self) -> tuple[str, list[str]]:
        """Request-URI and Route values per §12.2.1.1 (loose or strict first hop)."""
        if not self.route_set:
            return self.remote_target, []
        first = parse_uri(NameAddr.parse(self.route_set[0], "Route").uri)
        if not isinstance(first, SipUri) or first.lr:
            return self.remote_target, list(self.route_set)
        # Strict router (RFC 2543): it gets the Request-URI; the remote target goes last.
        for name in _NOT_IN_REQUEST_URI:
            first.params.pop(name, None)
        first.headers.clear()
        return first.to_str(), [*self.route_set[1:], f"<{self.remote_target}>"]

    def next_hop(self) -> tuple[str, int | None, str]:
        """Where requests of this dialog go: (host, port or None, transport), RFC 3263 subset.

        From the first Route when there is a route set, else from the remote target. ``maddr``
        overrides the host; the transport is the ``transport`` parameter upper-cased, else TLS
        for a SIPS URI and UDP otherwise. The host keeps IPv6 brackets.
        """
        if self.route_set:
            text = parse_name_addr_shared(self.route_set[0], "Route").uri
        else:
            text = self.remote_target
        uri = parse_uri_shared(text)
        if not isinstance(uri, SipUri):
            raise SipParseError("Unsupported URI Scheme", 416, detail=f"next hop {text[:100]!r}")
        host = (uri.params.get("maddr") or uri.host).lower()
        transport = uri.transport
        default = "TLS" if uri.secure else "UDP"
        return host, uri.port, transport.upper() if transport else default

    # ------------------------------------------------------- requests we receive

    def accept_remote_request(self, request: Request) -> int | None:
        """Screen an in-dialog request from the peer (§12.2.2).

        Returns ``None`` when it may proceed (and records its CSeq), or 500 when its CSeq is
        lower than the last one seen (out of order). ACK and CANCEL carry the CSeq of the
        INVITE they belong to and are not screened.
        """
        if request.method in ("ACK", "CANCEL"):
            return None
        cseq, _ = parse_cseq(request.headers.get("CSeq") or "")
        if self.remote_cseq is not None and cseq < self.remote_cseq:
            return 500
        self.remote_cseq = cseq
        return None

    def update_remote_target(self, message: Request | Response) -> None:
        """Take the Contact of a target-refresh request or its 2xx as remote target (§12.2)."""
        if message.headers.get("Contact") is not None:
            self.remote_target = _contact_target(message.headers)


def _required(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise SipParseError(f"Missing {name} header")
    return value


def _contact_target(headers: Headers) -> str:
    """The URI of the single Contact, which must be a SIP/SIPS URI (§8.1.1.8, §12.1)."""
    contacts = headers.get_all("Contact")
    if not contacts:
        raise SipParseError("Missing Contact header")
    if len(contacts) > 1 or contacts[0] == "*":
        raise SipParseError("Bad Contact header", detail="a dialog needs exactly one Contact")
    uri = parse_name_addr_shared(contacts[0], "Contact").uri
    if not isinstance(parse_uri_shared(uri), SipUri):
        raise SipParseError("Bad Contact header", detail="not a SIP URI")
    return uri


def _route_values(values: Iterable[str]) -> list[str]:
    """Record-Route values as Route values, each checked to be a name-addr (§20.30)."""
    routes = []
    for value in values:
        parse_name_addr_shared(value, "Record-Route")
        routes.append(value)
    return routes


def request_dialog_key(request: Request) -> tuple[str, str, str] | None:
    """Dialog key (Call-ID, local tag, remote tag) a *received* request belongs to.

    Local tag = To tag, remote tag = From tag (§12.2.2). ``None`` when the To has no tag (a
    dialog-creating request) or the headers do not parse.
    """
    try:
        to_tag = parse_name_addr_shared(request.headers.get("To") or "", "To").tag
        from_tag = parse_name_addr_shared(request.headers.get("From") or "", "From").tag
    except SipParseError:
        return None
    if not to_tag:
        return None
    return (request.headers.get("Call-ID") or "", to_tag, from_tag or "")


def response_dialog_key(response: Response) -> tuple[str, str, str] | None:
    """Dialog key (Call-ID, local tag, remote tag) a *received* response belongs to.

    Local tag = From tag, remote tag = To tag. ``None`` without a To tag or on bad headers.
    """
    try:
        from_tag = parse_name_addr_shared(response.headers.get("From") or "", "From").tag
        to_tag = parse_name_addr_shared(response.headers.get("To") or "", "To").tag
    except SipParseError:
        return None
    if not to_tag or not from_tag:
        return None
    return (response.headers.get("Call-ID") or "", from_tag, to_tag)
