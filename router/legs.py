"""How a message on one leg of a call becomes a message on the other.

A B2BUA terminates both dialogs, so nothing crosses from leg to leg unless it is named here
(drachtio's ``createB2BUA`` copies through explicit lists the same way). Routing-relevant headers
(Via, Route, Record-Route, Contact, Call-ID, CSeq, tags) are always our own on each leg.
"""

from __future__ import annotations

from collections.abc import Iterable

from sip.errors import SipParseError
from sip.headers import NameAddr, parse_name_addr_shared
from sip.message import Headers, Request, Response
from sip.uri import SipUri, parse_uri_shared

# Carried from the caller's INVITE to the centre: identity and privacy (RFC 3325, RFC 3323),
# location (RFC 6442), emergency context (Call-Info, RFC 7852), priority (RFC 4412), and the body.
REQUEST_PASS_THROUGH: tuple[str, ...] = (
    "P-Asserted-Identity", "Privacy", "Geolocation", "Geolocation-Routing", "Call-Info",
    "Reason", "User-Agent", "Priority", "Resource-Priority", "Subject",
    "Content-Type", "Content-Disposition", "Content-Encoding", "Content-Language",
    "MIME-Version",
)

# Carried from the centre's responses back to the caller.
RESPONSE_PASS_THROUGH: tuple[str, ...] = (
    "P-Asserted-Identity", "Privacy", "Call-Info", "Reason", "Warning", "Retry-After",
    "Content-Type", "Content-Disposition", "Content-Encoding", "Content-Language",
    "MIME-Version",
)

# In-dialog requests relayed between the legs (re-INVITE, UPDATE, INFO …): body and its framing.
IN_DIALOG_PASS_THROUGH: tuple[str, ...] = (
    "Content-Type", "Content-Disposition", "Content-Encoding", "Reason", "Event",
    "Info-Package",
)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO"


def copy_headers(source: Headers, names: Iterable[str], into: Headers) -> None:
    """Append every field of ``source`` whose name is in ``names``, keeping their order."""
    wanted = _wanted_keys(names) if isinstance(names, tuple) else {n.lower() for n in names}
    for name, value in source:
        if name.lower() in wanted:
            into.add(name, value)


_WANTED_KEYS: dict[tuple[str, ...], frozenset[str]] = {}


def _wanted_keys(names: tuple[str, ...]) -> frozenset[str]:
    # The allow-lists are module constants: lower-case each one once, not once per message.
    keys = _WANTED_KEYS.get(names)
    if keys is None:
        keys = _WANTED_KEYS[names] = frozenset(n.lower() for n in names)
    return keys


def uri_destination(uri_text: str) -> tuple[str, int, str]:
    """Where to send a request for ``uri_text``: (host, port, transport) per RFC 3263's
    no-DNS-SRV subset: explicit port or 5060 (5061 for TLS), ``transport`` parameter or
    UDP; a ``sips:`` URI is always reached over TLS (RFC 3261 §26.2.2)."""
    uri = parse_uri_shared(uri_text)
    if not isinstance(uri, SipUri):
        raise SipParseError("Centre URI is not a SIP URI", 416)
    transport = "TLS" if uri.scheme == "sips" else (uri.params.get("transport") or "udp").upper()
    default_port = 5061 if transport == "TLS" else 5060  # RFC 3263 §4.2
    host = uri.host[1:-1] if uri.host.startswith("[") else uri.host
    return host, uri.port or default_port, transport


def via_value(transport: str, host: str, port: int, branch: str) -> str:
    """Our Via for a new request; ``rport`` asks the peer to answer to our source port."""
    return f"SIP/2.0/{transport} {host}:{port};branch={branch};rport"


def contact_value(host: str, port: int, transport: str) -> str:
    """Our Contact on a leg: in-dialog requests come back to this node and transport."""
    suffix = "" if transport == "UDP" else f";transport={transport.lower()}"
    return f"<sip:nodrute@{host}:{port}{suffix}>"


def build_centre_invite(
    inbound: Request,
    *,
    centre_uri: str,
    via: str,
    contact: str,
    call_id: str,
    from_tag: str,
    max_forwards: int,
    user_agent: str,
    routing_headers: Iterable[tuple[str, str]],
) -> Request:
    """The INVITE to the centre for the caller's ``inbound`` INVITE.

    From keeps the caller's URI and display name (the centre must see who is calling) with our
    own tag; To is the centre; everything else is ours or on :data:`REQUEST_PASS_THROUGH`.
    """
    caller = parse_name_addr_shared(inbound.headers.get("From") or "", "From")
    headers = Headers()
    headers.add("Via", via)
    headers.add("Max-Forwards", str(max_forwards))
    headers.add("From", NameAddr(caller.uri, caller.display, {"tag": from_tag}).to_str())
    headers.add("To", f"<{centre_uri}>")
    headers.add("Call-ID", call_id)
    headers.add("CSeq", "1 INVITE")
    headers.add("Contact", contact)
    headers.add("Allow", ALLOW)
    for name, value in routing_headers:
        headers.add(name, value)
    copy_headers(inbound.headers, REQUEST_PASS_THROUGH, headers)
    if "User-Agent" not in headers:
        headers.add("User-Agent", user_agent)
    return Request("INVITE", centre_uri, headers, inbound.body)


def relay_response(
    request: Request,
    centre_response: Response,
    *,
    status: int,
    to_tag: str,
    contact: str | None,
) -> Response:
    """The caller-side response mirroring ``centre_response`` (status possibly mapped)."""
    headers = Headers()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in request.headers.get_all(name):
            if name == "To" and ";tag=" not in value:
                value = f"{value};tag={to_tag}"
            headers.add(name, value)
    if contact is not None:
        headers.add("Contact", contact)
        headers.add("Allow", ALLOW)
    copy_headers(centre_response.headers, RESPONSE_PASS_THROUGH, headers)
    if (status != centre_response.status or status >= 300) and "Reason" not in headers:
        # RFC 3326: tell the caller's side what the centre actually said.
        headers.add("Reason", reason_value(centre_response.status, centre_response.reason))
    reason = centre_response.reason if status == centre_response.status else ""
    return Response(status, reason, headers, centre_response.body)


def reason_value(sip_code: int, text: str) -> str:
    """An RFC 3326 Reason header value for a SIP status."""
    clean = text.replace('"', "'")
    return f'SIP;cause={sip_code};text="{clean}"'


def q850_reason(cause: int, text: str) -> str:
    """An RFC 3326 Reason header value with an ITU-T Q.850 cause (16 = normal clearing)."""
    return f'Q.850;cause={cause};text="{text}"'


def map_centre_final(status: int) -> int:
    """Which final status the caller gets when the centre rejects the call.

    Redirects are not followed (there is no second routing decision to be made by a carrier)
    and authentication challenges are the centre's business with us, not the caller's.
    """
    if 300 <= status < 400:
        return 480
    if status in (401, 407):
        return 503
    return status
