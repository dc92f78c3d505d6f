"""Requests inside an established call (sans-IO): BYE, re-INVITE, UPDATE, INFO, OPTIONS.

A B2BUA owns both dialogs (RFC 7092 §3.1): a request arriving on one leg is answered or relayed
as a new request on the other leg's dialog, its response relayed back. With anchored media a
re-INVITE/UPDATE never crosses: it is answered on its own leg (the other side keeps talking to
the router). Functions here act on a :class:`~router.call.Call` and send only through its
dispatcher's transaction layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sip.dialog import Dialog
from sip.headers import parse_cseq, parse_name_addr_shared
from sip.ids import new_branch
from sip.message import Request, Response, make_response

from . import legs
from .call_record import TerminatedReason
from .call_state import CallState, Leg
from .media import SDP, MediaRefused

if TYPE_CHECKING:
    from .call import Call

Relay = tuple[Leg, str, Request]
"""A relayed request's (leg it came from, server transaction there, the request)."""


def on_request(call: Call, leg: Leg, request: Request, tx: str, now: float) -> None:
    """An in-dialog request on one of the call's legs."""
    layer = call.host.layer
    dialog = call.dialog(leg)
    if request.method == "BYE":
        layer.send_response(tx, make_response(request, 200), now)
        if call.state is CallState.ENDED:
            return
        if dialog is not None:
            dialog.accept_remote_request(request)
        _on_bye(call, leg, request, now)
        return
    if dialog is None or call.state is CallState.ENDED:
        layer.send_response(tx, make_response(request, 481), now)
        return
    rejected = dialog.accept_remote_request(request)
    if rejected is not None:
        layer.send_response(tx, make_response(request, rejected), now)
        return
    if request.method == "OPTIONS":
        layer.send_response(tx, make_response(request, 200, extra=[("Allow", legs.ALLOW)]), now)
        return
    if call.media_anchored and request.method in ("INVITE", "UPDATE"):
        _answer_offer_here(call, leg, request, tx, now)
        return
    _relay_request(call, leg, request, tx, now)


def _answer_offer_here(call: Call, leg: Leg, request: Request, tx: str, now: float) -> None:
    """Anchored media: answer a re-INVITE/UPDATE on its own leg, same port, new version.

    A re-INVITE without SDP gets our current SDP as the offer; the answer in its ACK changes
    nothing (same address, same codec)."""
    media = call.media
    assert media is not None
    leg_id = media.caller_leg if leg is Leg.CALLER else media.centre_leg
    transport = call.transport(leg)
    if request.body:
        try:
            sdp = media.answer_reoffer(leg_id, request.body)
        except MediaRefused as err:
            call.host.layer.send_response(tx, make_response(request, err.status, err.reason), now)
            return
    else:
        sdp = media.current_sdp(leg_id) if request.method == "INVITE" else b""
    ok = make_response(request, 200, body=sdp, extra=[
        ("Contact", call.host.contact(transport)), ("Allow", legs.ALLOW),
        *([("Content-Type", SDP)] if sdp else []),
    ])
    call.host.layer.send_response(tx, ok, now)


def _on_bye(call: Call, from_leg: Leg, request: Request, now: float) -> None:
    reason = request.headers.get("Reason") or legs.q850_reason(16, "Normal call clearing")
    if from_leg is Leg.CALLER:
        send_bye(call, Leg.CENTRE, reason, now)
        call.end(TerminatedReason.CALLER_BYE, now)
        return
    if call.state in (CallState.CALLING, CallState.EARLY):
        # BYE on the centre's early dialog: that centre gave up before answering.
        call.on_centre_released_early(now)
        return
    send_bye(call, Leg.CALLER, reason, now)
    call.end(TerminatedReason.CENTRE_BYE, now)


def send_bye(call: Call, to_leg: Leg, reason: str, now: float) -> None:
    """End the dialog on ``to_leg`` (nothing to do if it was never established)."""
    dialog = call.dialog(to_leg)
    if dialog is None:
        return
    transport = call.transport(to_leg)
    bye = dialog.create_request(
        "BYE", via=call.host.via(transport, new_branch()), extra=[("Reason", reason)],
    )
    tx = call.host.layer.send_request(bye, next_hop(dialog), transport, now)
    call.host.bind_client_tx(tx, call)


def _relay_request(call: Call, from_leg: Leg, request: Request, tx: str, now: float) -> None:
    to_leg = Leg.CENTRE if from_leg is Leg.CALLER else Leg.CALLER
    dialog = call.dialog(to_leg)
    if dialog is None:
        call.host.layer.send_response(tx, make_response(request, 491), now)
        return
    transport = call.transport(to_leg)
    extra: list[tuple[str, str]] = []
    for name, value in request.headers:
        if name in legs.IN_DIALOG_PASS_THROUGH and name != "Content-Type":
            extra.append((name, value))
    out = dialog.create_request(
        request.method, via=call.host.via(transport, new_branch()), extra=extra,
        body=request.body, content_type=request.headers.get("Content-Type"),
    )
    if request.method in ("INVITE", "UPDATE"):
        out.headers.add("Contact", call.host.contact(transport))
    out_tx = call.host.layer.send_request(out, next_hop(dialog), transport, now)
    call.host.bind_client_tx(out_tx, call)
    call.relays[out_tx] = (from_leg, tx, request)


def relay_response(call: Call, relay: Relay, response: Response, now: float) -> None:
    """The far leg answered a relayed request: answer the near leg's transaction."""
    from_leg, server_tx, request = relay
    if response.status == 100:
        return
    contact = None
    if request.method in ("INVITE", "UPDATE") and response.status < 300:
        contact = call.host.contact(call.transport(from_leg))
    tag = parse_name_addr_shared(request.headers.get("To") or "", "To").tag or call.caller_tag
    out = legs.relay_response(request, response, status=response.status, to_tag=tag,
                              contact=contact)
    if request.method == "INVITE" and 200 <= response.status < 300:
        # re-INVITE answered on the far leg: ACK it there now; the near leg's ACK ends at us.
        _ack_far_leg(call, from_leg, response, now)
    call.host.layer.send_response(server_tx, out, now)


def relay_failed(call: Call, relay: Relay, status: int, now: float) -> None:
    """The far leg never answered a relayed request: answer the near leg ``status``."""
    _, server_tx, request = relay
    call.host.layer.send_response(server_tx, make_response(request, status), now)


def _ack_far_leg(call: Call, from_leg: Leg, response: Response, now: float) -> None:
    ack_2xx(call, Leg.CENTRE if from_leg is Leg.CALLER else Leg.CALLER, response, now)


def ack_2xx(call: Call, leg: Leg, response: Response, now: float) -> None:
    """ACK a 2xx to an INVITE we sent inside the dialog on ``leg`` (RFC 3261 §13.2.2.4)."""
    dialog = call.dialog(leg)
    if dialog is None:
        return
    transport = call.transport(leg)
    cseq, _ = parse_cseq(response.headers.get("CSeq") or "1 INVITE")
    ack = dialog.create_ack(cseq, via=call.host.via(transport, new_branch()))
    call.host.layer.send_ack(ack, next_hop(dialog), transport, now)


def next_hop(dialog: Dialog) -> tuple[str, int]:
    """Where a request on ``dialog`` goes: its route set's first hop or the remote target."""
    host, port, transport = dialog.next_hop()
    if host.startswith("["):
        host = host[1:-1]
    return host, port or (5061 if transport == "TLS" else 5060)  # RFC 3263 §4.2
