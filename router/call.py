"""One emergency call as a back-to-back user agent (sans-IO).

The caller leg is a UAS dialog towards the carrier, the centre leg a UAC dialog towards the
centre; nothing crosses from one to the other except through :mod:`router.legs`. Every handler
takes ``now`` and acts only through the transaction layer handed in by the dispatcher, which
queues what to send: the call never sleeps, never touches a socket, and is driven in tests by
feeding it messages with a fake clock.

States (the caller leg's view, RFC 3261 §13/§15 vocabulary)::

    ROUTING ─► CALLING ─► EARLY ─► ANSWERED ─► CONFIRMED ─► ENDED
                  └──────────┴──────────┴── CANCEL / error / timeout ──► ENDED
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from ivr.engine import MediaEngineError, MediaEvent
from ivr.flow import RouteCall
from municipality_map import Centre, RouteLookup, RoutingSnapshot, Service
from sip.dialog import Dialog
from sip.headers import parse_cseq, parse_name_addr_shared
from sip.ids import new_branch, new_call_id, new_tag
from sip.message import Request, Response, make_response

from . import legs
from .call_record import CallRecord, TerminatedReason
from .media import SDP, CallMedia, MediaRefused
from .resolve import DialledService, LocationSource, choose_municipality, municipality_hints

if TYPE_CHECKING:
    from .b2bua import B2bua
    from .config import TrunkSettings


class CallState(enum.Enum):
    """Where the call is, from the caller's point of view."""

    ROUTING = "routing"
    CALLING = "calling"
    """INVITE sent to the centre, nothing heard back beyond 100."""
    EARLY = "early"
    """The centre sent 18x; relayed to the caller."""
    ANSWERED = "answered"
    """2xx relayed to the caller, its ACK not yet received."""
    CONFIRMED = "confirmed"
    ENDED = "ended"


class Leg(enum.Enum):
    CALLER = "caller"
    CENTRE = "centre"


class Call:
    """The B2BUA state machine for one inbound INVITE."""

    def __init__(
        self,
        host: B2bua,
        invite: Request,
        tx: str,
        transport: str,
        dialled: DialledService,
        trunk: TrunkSettings,
        snapshot: RoutingSnapshot,
        now: float,
    ) -> None:
        self.host = host
        self.invite = invite
        """The caller's INVITE (kept for building responses)."""
        self.in_tx = tx
        self.caller_transport = transport
        self.service = dialled.service
        self.dialled = dialled
        self.trunk = trunk
        self.snapshot = snapshot
        """The routing table this call was routed with; a table switch mid-call changes nothing."""
        self.state = CallState.ROUTING
        self.caller_tag = new_tag()
        """Our To tag towards the caller."""
        self.caller_call_id = invite.headers.get("Call-ID") or ""
        self.caller_dialog: Dialog | None = None
        self.centre: Centre | None = None
        self.centre_call_id = new_call_id(host.via_host)
        self.centre_tag = new_tag()
        """Our From tag towards the centre."""
        self.centre_invite: Request | None = None
        self.centre_tx: str | None = None
        self.centre_dest: tuple[str, int] = ("", 0)
        self.centre_transport = "UDP"
        self.centre_dialog: Dialog | None = None
        self.centre_ack_pending = False
        """Late offer: the centre's 2xx carried the offer, its ACK waits for the caller's answer."""
        self.relays: dict[str, tuple[Leg, str, Request]] = {}
        """Client tx on one leg -> (leg it came from, server tx there, request) for relays."""
        self.deadline: float | None = None
        """Ring timeout: give up on the centre if it has not answered by then (during an IVR
        before routing: the IVR's next timer)."""
        self.media: CallMedia | None = None
        """Anchored media and the IVR (``[media] enabled``); None: SDP is relayed as is."""
        self.location_source = LocationSource.DEFAULT
        self.record = CallRecord(
            call_id=self.caller_call_id,
            service=dialled.service.value,
            trunk=trunk.name,
            caller=_from_uri(invite),
            started_at=now,
            table_version=snapshot.version.label,
        )

    # ----------------------------------------------------------------- start: route and dial

    def start(self, now: float) -> None:
        """Answer 100 Trying, pick the centre, send the INVITE to it."""
        layer = self.host.layer
        layer.send_response(self.in_tx, make_response(self.invite, 100), now)
        hints = municipality_hints(
            self.invite, self.dialled, self.trunk.municipality_sources,
            self.trunk.municipality_header,
        )
        service = self.service
        choice = choose_municipality(hints, lambda code: self.snapshot.lookup(code, service))
        self.record.requested_municipality = choice.requested
        self.record.location_source = choice.source.value
        centre = self._centre_for(choice.lookup)
        if centre is None or not centre.uris:
            self.host.note_no_centre(service)
            self._fail_caller(500, "No centre configured", TerminatedReason.ERROR, now)
            return
        self.centre = centre
        self.record.centre_id = centre.centre_id
        self.record.municipality = choice.lookup.kommunenummer if choice.lookup else None
        if choice.lookup and choice.lookup.via_crosswalk:
            self.record.notes.append(
                f"old code {choice.requested} -> {choice.lookup.kommunenummer}")
        if choice.source is LocationSource.DEFAULT:
            self.host.note_default_route(service, choice.requested is not None)
        self.location_source = choice.source
        if self.host.media is not None and self.invite.body:
            self._start_media(centre, now)
            return
        self._dial(centre, centre.uris[0], choice.source, now)

    # ----------------------------------------------------------------- anchored media and IVR

    def _start_media(self, centre: Centre, now: float) -> None:
        """Answer the caller's offer with our SDP, then run the IVR flow or dial at once.

        A late-offer INVITE (no SDP) is not anchored: it keeps end-to-end SDP relay."""
        context = self.host.media
        assert context is not None
        media = CallMedia(context, self.caller_tag)
        self.media = media
        self.host.bind_media(media.leg_ids, self)
        try:
            media.answer_caller(self.invite.body)
        except MediaRefused as err:
            self.host.counters[f"rejected:media_{err.status}"] += 1
            self._fail_caller(err.status, err.reason, TerminatedReason.ERROR, now)
            return
        flow = context.ivr.flow_for(self.service.value, centre.centre_id)
        if flow is None:
            self._dial(centre, centre.uris[0], self.location_source, now)
            return
        language = context.ivr.language_for(centre.centre_id)
        if flow.early_media:
            # The centre leg first: an announcement never delays the INVITE to the centre.
            self._dial(centre, centre.uris[0], self.location_source, now)
            if self.state is CallState.ENDED:
                return
            self._send_early_media(now)
            media.start_ivr(flow, language, now)
            return
        self._send_early_media(now)
        self._after_ivr(media.start_ivr(flow, language, now), now)

    def _send_early_media(self, now: float) -> None:
        assert self.media is not None
        progress = make_response(self.invite, 183, to_tag=self.caller_tag,
                                 extra=[("Contact", self.host.contact(self.caller_transport)),
                                        ("Content-Type", SDP)])
        progress.body = self.media.caller_answer
        self.host.layer.send_response(self.in_tx, progress, now)
        if self.record.first_provisional_at is None:
            self.record.first_provisional_at = now

    def _after_ivr(self, route: RouteCall | None, now: float) -> None:
        """Act on what the IVR returned while the call is not yet routed."""
        if self.state is not CallState.ROUTING or self.media is None:
            return
        if route is None:
            self.deadline = self.media.ivr_deadline()
            self.host.schedule(self)
            return
        centre = self.centre
        if route.service is not None and route.service != self.service.value:
            # Transfer (e.g. "press 1 if life-threatening"): same municipality, other service.
            service = Service(route.service)
            self.record.notes.append(f"ivr transfer {self.service.value} -> {service.value}")
            self.service = service
            hints = municipality_hints(
                self.invite, self.dialled, self.trunk.municipality_sources,
                self.trunk.municipality_header,
            )
            choice = choose_municipality(hints, lambda code: self.snapshot.lookup(code, service))
            self.location_source = choice.source
            centre = self._centre_for(choice.lookup)
            if centre is None or not centre.uris:
                self.host.note_no_centre(service)
                self._fail_caller(500, "No centre configured", TerminatedReason.ERROR, now)
                return
            self.centre = centre
            self.record.centre_id = centre.centre_id
        assert centre is not None
        self._dial(centre, centre.uris[0], self.location_source, now)

    def on_media_event(self, event: MediaEvent, now: float) -> None:
        """An engine event for one of this call's legs (prompt finished, DTMF, latched)."""
        if self.media is None or self.state is CallState.ENDED:
            return
        route = self.media.on_event(event, now)
        if self.state is CallState.ROUTING:
            self._after_ivr(route, now)

    def _centre_for(self, lookup: RouteLookup | None) -> Centre | None:
        if lookup is not None:
            return lookup.centre
        return self.snapshot.centre(self.host.settings.routing.default_centre(self.service))

    def _dial(self, centre: Centre, uri: str, source: LocationSource, now: float) -> None:
        host = self.host
        dest_host, dest_port, transport = legs.uri_destination(uri)
        self.centre_dest = (dest_host, dest_port)
        self.centre_transport = transport
        incoming_mf = self.invite.headers.get("Max-Forwards")
        max_forwards = host.settings.sip.max_forwards
        if incoming_mf and incoming_mf.strip().isdigit():
            # Decrement across the B2BUA too: a routing loop through us must still die out.
            max_forwards = min(max_forwards, int(incoming_mf) - 1)
        route_note = (
            f"centre={centre.centre_id};source={source.value};"
            f"requested={self.record.requested_municipality or '-'};"
            f"table={self.snapshot.version.label}"
        )
        routing_headers = [("X-Nodrute-Route", route_note)]
        if self.record.municipality:
            routing_headers.insert(0, ("X-Kommunenummer", self.record.municipality))
        invite = legs.build_centre_invite(
            self.invite,
            centre_uri=uri,
            via=host.via(transport, new_branch()),
            contact=host.contact(transport),
            call_id=self.centre_call_id,
            from_tag=self.centre_tag,
            max_forwards=max_forwards,
            user_agent=host.settings.sip.user_agent,
            routing_headers=routing_headers,
        )
        if self.media is not None:
            try:
                invite.body = self.media.offer_centre()
            except MediaEngineError:
                self._fail_caller(503, "No media resources", TerminatedReason.ERROR, now)
                return
            invite.headers.set("Content-Type", SDP)
        self.centre_invite = invite
        self.record.centre_uri = uri
        self.record.centre_call_id = self.centre_call_id
        self.centre_tx = host.layer.send_request(invite, self.centre_dest, transport, now)
        host.bind_client_tx(self.centre_tx, self)
        host.bind_dialog(self.centre_call_id, self.centre_tag, self, Leg.CENTRE)
        self.state = CallState.CALLING
        self.deadline = now + host.settings.routing.ring_timeout_s(self.service)
        host.schedule(self)

    # ----------------------------------------------------------------- centre leg responses

    def on_response(self, tx: str, response: Response, retransmission: bool, now: float) -> None:
        """A response on one of our client transactions."""
        relay = self.relays.pop(tx, None) if response.status >= 200 else self.relays.get(tx)
        if relay is not None:
            self._relay_in_dialog_response(relay, response, now)
            return
        if tx != self.centre_tx or retransmission:
            return  # retransmitted 2xx: the layer re-sends our ACK itself
        status = response.status
        if status < 200:
            self._on_centre_provisional(response, now)
        elif status < 300:
            self._on_centre_answer(response, now)
        else:
            self._on_centre_rejected(response, now)

    def _on_centre_provisional(self, response: Response, now: float) -> None:
        if response.status == 100 or self.state not in (CallState.CALLING, CallState.EARLY):
            return
        if self.record.first_provisional_at is None:
            self.record.first_provisional_at = now
        if response.status == 180 and self.record.ringing_at is None:
            self.record.ringing_at = now
        self.state = CallState.EARLY
        out = legs.relay_response(
            self.invite, response, status=response.status, to_tag=self.caller_tag,
            contact=self.host.contact(self.caller_transport),
        )
        if self.media is not None:
            media = self.media
            if media.centre_sdp(response.body) and media.ivr is None:
                media.bridge()  # no IVR on this call: the caller hears the centre's early media
            if media.ivr is not None or media.bridged:
                _with_body(out, media.caller_answer)
            else:  # nothing to hear yet: a bare 180 lets the caller's phone ring back locally
                out.body = b""
                out.headers.remove("Content-Type")
        self.host.layer.send_response(self.in_tx, out, now)

    def _on_centre_answer(self, response: Response, now: float) -> None:
        assert self.centre_invite is not None
        to_tag = parse_name_addr_shared(response.headers.get("To") or "", "To").tag
        if self.centre_dialog is not None:
            if to_tag != self.centre_dialog.remote_tag:
                # A second 2xx from a fork we did not ask for: accept and release it (§13.2.2.4).
                self._ack_and_bye_stray(response, now)
            return
        self.centre_dialog = Dialog.as_uac(self.centre_invite, response)
        if self.state not in (CallState.CALLING, CallState.EARLY):
            # The caller went away (CANCEL raced the answer): complete and release the centre.
            self._send_centre_ack(None, now)
            self._send_bye(Leg.CENTRE, legs.q850_reason(16, "Caller cancelled"), now)
            return
        self.state = CallState.ANSWERED
        self.deadline = None
        self.record.answered_at = now
        self.record.centre_status = response.status
        self.record.final_status = response.status
        contact = self.host.contact(self.caller_transport)
        out = legs.relay_response(
            self.invite, response, status=response.status, to_tag=self.caller_tag,
            contact=contact,
        )
        if self.media is not None:
            self.media.centre_sdp(response.body)
            self.media.bridge()  # the prompt stops at once, then leg-to-leg relay
            _with_body(out, self.media.caller_answer)  # the same answer as in the 183
        self.caller_dialog = Dialog.as_uas(self.invite, self.caller_tag, contact)
        self.host.bind_dialog(self.caller_call_id, self.caller_tag, self, Leg.CALLER)
        self.host.layer.send_response(self.in_tx, out, now)
        if self.invite.body:
            self._send_centre_ack(None, now)
        else:
            self.centre_ack_pending = True  # RFC 3264 late offer: answer comes in the ACK

    def _on_centre_rejected(self, response: Response, now: float) -> None:
        self.record.centre_status = response.status
        if self.state in (CallState.CALLING, CallState.EARLY):
            status = legs.map_centre_final(response.status)
            out = legs.relay_response(
                self.invite, response, status=status, to_tag=self.caller_tag, contact=None,
            )
            self.host.layer.send_response(self.in_tx, out, now)
            self.record.final_status = status
            self._end(TerminatedReason.CENTRE_REJECTED, now)

    def _send_centre_ack(self, caller_ack: Request | None, now: float) -> None:
        """ACK the centre's 2xx; with a late offer the caller's ACK carries the SDP answer."""
        assert self.centre_dialog is not None and self.centre_invite is not None
        cseq, _ = parse_cseq(self.centre_invite.headers.get("CSeq") or "1 INVITE")
        body = caller_ack.body if caller_ack is not None else b""
        content_type = caller_ack.headers.get("Content-Type") if caller_ack is not None else None
        ack = self.centre_dialog.create_ack(
            cseq, via=self.host.via(self.centre_transport, new_branch()), body=body,
            content_type=content_type if body else None,
        )
        self.host.layer.send_ack(ack, self._centre_next_hop(), self.centre_transport, now)
        self.centre_ack_pending = False

    def _ack_and_bye_stray(self, response: Response, now: float) -> None:
        assert self.centre_invite is not None
        stray = Dialog.as_uac(self.centre_invite, response)
        cseq, _ = parse_cseq(self.centre_invite.headers.get("CSeq") or "1 INVITE")
        via = self.host.via(self.centre_transport, new_branch())
        self.host.layer.send_ack(stray.create_ack(cseq, via=via), self.centre_dest,
                                 self.centre_transport, now)
        bye = stray.create_request("BYE", via=self.host.via(self.centre_transport, new_branch()))
        self.host.layer.send_request(bye, self.centre_dest, self.centre_transport, now)

    # ----------------------------------------------------------------- failures on the centre leg

    def on_timeout(self, tx: str, now: float) -> None:
        """Timer B/F fired on one of our client transactions."""
        self._on_client_failure(tx, 408, "Centre did not respond", TerminatedReason.CENTRE_TIMEOUT,
                                now)

    def on_transport_failed(self, tx: str, now: float) -> None:
        self._on_client_failure(tx, 503, "Centre unreachable", TerminatedReason.TRANSPORT_ERROR,
                                now)

    def _on_client_failure(self, tx: str, status: int, text: str, reason: TerminatedReason,
                           now: float) -> None:
        relay = self.relays.pop(tx, None)
        if relay is not None:
            _, server_tx, request = relay
            self.host.layer.send_response(server_tx, make_response(request, status), now)
            return
        if tx == self.centre_tx and self.state in (CallState.CALLING, CallState.EARLY):
            self._fail_caller(status, text, reason, now)

    def on_deadline(self, now: float) -> None:
        """The ring timeout expired: cancel the centre, tell the caller."""
        if self.deadline is None or now < self.deadline:
            return
        self.deadline = None
        if self.state is CallState.ROUTING and self.media is not None:
            self._after_ivr(self.media.on_ivr_timer(now), now)
            return
        if self.state in (CallState.CALLING, CallState.EARLY) and self.centre_tx:
            self.host.layer.send_cancel(
                self.centre_tx, now, reason=legs.q850_reason(19, "No answer"))
            self._fail_caller(480, "Centre did not answer", TerminatedReason.RING_TIMEOUT, now)

    def _fail_caller(self, status: int, text: str, reason: TerminatedReason, now: float) -> None:
        response = make_response(
            self.invite, status, to_tag=self.caller_tag,
            extra=[("Reason", legs.reason_value(status, text))],
        )
        self.host.layer.send_response(self.in_tx, response, now)
        self.record.final_status = status
        self._end(reason, now)

    # ----------------------------------------------------------------- caller leg

    def on_cancel(self, cancel: Request, now: float) -> None:
        """The caller CANCELled its INVITE (RFC 3261 §9.2); the dispatcher answered the CANCEL.

        The centre's CANCEL carries the caller's Reason if it gave one (RFC 3326), so a centre
        can tell a caller who gave up from a call answered elsewhere.
        """
        if self.state not in (CallState.ROUTING, CallState.CALLING, CallState.EARLY):
            return  # already answered: the CANCEL has no effect (§9.2)
        self.host.layer.send_response(
            self.in_tx, make_response(self.invite, 487, to_tag=self.caller_tag), now,
        )
        self.record.final_status = 487
        if self.centre_tx is not None:
            reason = cancel.headers.get("Reason") or legs.q850_reason(16, "Caller hung up")
            self.host.layer.send_cancel(self.centre_tx, now, reason=reason)
        self._end(TerminatedReason.CALLER_CANCEL, now)

    def on_ack(self, leg: Leg, ack: Request, now: float) -> None:
        """An ACK for a 2xx on one of our dialogs."""
        if leg is Leg.CALLER and self.state is CallState.ANSWERED:
            self.state = CallState.CONFIRMED
            if self.centre_ack_pending:
                self._send_centre_ack(ack, now)

    def on_ack_timeout(self, now: float) -> None:
        """The caller never ACKed our 2xx (§13.3.1.4): release both legs."""
        if self.state is CallState.ANSWERED:
            if self.centre_ack_pending:
                self._send_centre_ack(None, now)
            reason = legs.q850_reason(41, "No ACK from caller")
            self._send_bye(Leg.CENTRE, reason, now)
            self._send_bye(Leg.CALLER, reason, now)
            self._end(TerminatedReason.NO_ACK, now)

    def on_request(self, leg: Leg, request: Request, tx: str, now: float) -> None:
        """An in-dialog request (BYE, re-INVITE, UPDATE, INFO, OPTIONS…) on one of our legs."""
        layer = self.host.layer
        dialog = self.caller_dialog if leg is Leg.CALLER else self.centre_dialog
        if request.method == "BYE":
            layer.send_response(tx, make_response(request, 200), now)
            if self.state is CallState.ENDED:
                return
            if dialog is not None:
                dialog.accept_remote_request(request)
            self._on_bye(leg, request, now)
            return
        if dialog is None or self.state is CallState.ENDED:
            layer.send_response(tx, make_response(request, 481), now)
            return
        rejected = dialog.accept_remote_request(request)
        if rejected is not None:
            layer.send_response(tx, make_response(request, rejected), now)
            return
        if request.method == "OPTIONS":
            layer.send_response(tx, make_response(request, 200, extra=[("Allow", legs.ALLOW)]),
                                now)
            return
        if self.media is not None and request.method in ("INVITE", "UPDATE"):
            self._answer_in_dialog_offer(leg, request, tx, now)
            return
        self._relay_in_dialog_request(leg, request, tx, now)

    def _answer_in_dialog_offer(self, leg: Leg, request: Request, tx: str, now: float) -> None:
        """Anchored media: a re-INVITE/UPDATE is answered on its own leg, never relayed (the
        other side keeps talking to the router). A re-INVITE without SDP gets our current SDP
        as the offer; the answer in its ACK changes nothing (same address, same codec)."""
        assert self.media is not None
        leg_id = self.media.caller_leg if leg is Leg.CALLER else self.media.centre_leg
        transport = self.caller_transport if leg is Leg.CALLER else self.centre_transport
        if request.body:
            try:
                sdp = self.media.answer_reoffer(leg_id, request.body)
            except MediaRefused as err:
                self.host.layer.send_response(tx, make_response(request, err.status, err.reason),
                                              now)
                return
        else:
            sdp = self.media.current_sdp(leg_id) if request.method == "INVITE" else b""
        ok = make_response(request, 200, body=sdp, extra=[
            ("Contact", self.host.contact(transport)), ("Allow", legs.ALLOW),
            *([("Content-Type", SDP)] if sdp else []),
        ])
        self.host.layer.send_response(tx, ok, now)

    def _on_bye(self, from_leg: Leg, request: Request, now: float) -> None:
        reason = request.headers.get("Reason") or legs.q850_reason(16, "Normal call clearing")
        if from_leg is Leg.CALLER:
            self._send_bye(Leg.CENTRE, reason, now)
            self._end(TerminatedReason.CALLER_BYE, now)
            return
        if self.state in (CallState.CALLING, CallState.EARLY):
            # BYE on the centre's early dialog: the centre gave up before answering.
            self._fail_caller(480, "Centre released the call", TerminatedReason.CENTRE_REJECTED,
                              now)
            return
        self._send_bye(Leg.CALLER, reason, now)
        self._end(TerminatedReason.CENTRE_BYE, now)

    def _send_bye(self, to_leg: Leg, reason: str, now: float) -> None:
        dialog = self.caller_dialog if to_leg is Leg.CALLER else self.centre_dialog
        if dialog is None:
            return
        transport = self.caller_transport if to_leg is Leg.CALLER else self.centre_transport
        bye = dialog.create_request(
            "BYE", via=self.host.via(transport, new_branch()), extra=[("Reason", reason)],
        )
        dest = self._next_hop(dialog, transport)
        tx = self.host.layer.send_request(bye, dest, transport, now)
        self.host.bind_client_tx(tx, self)

    def _relay_in_dialog_request(self, from_leg: Leg, request: Request, tx: str,
                                 now: float) -> None:
        to_leg = Leg.CENTRE if from_leg is Leg.CALLER else Leg.CALLER
        dialog = self.centre_dialog if to_leg is Leg.CENTRE else self.caller_dialog
        if dialog is None:
            self.host.layer.send_response(tx, make_response(request, 491), now)
            return
        transport = self.centre_transport if to_leg is Leg.CENTRE else self.caller_transport
        extra: list[tuple[str, str]] = []
        for name, value in request.headers:
            if name in legs.IN_DIALOG_PASS_THROUGH and name != "Content-Type":
                extra.append((name, value))
        out = dialog.create_request(
            request.method, via=self.host.via(transport, new_branch()), extra=extra,
            body=request.body, content_type=request.headers.get("Content-Type"),
        )
        if request.method in ("INVITE", "UPDATE"):
            out.headers.add("Contact", self.host.contact(transport))
        out_tx = self.host.layer.send_request(out, self._next_hop(dialog, transport), transport,
                                              now)
        self.host.bind_client_tx(out_tx, self)
        self.relays[out_tx] = (from_leg, tx, request)

    def _relay_in_dialog_response(self, relay: tuple[Leg, str, Request], response: Response,
                                  now: float) -> None:
        from_leg, server_tx, request = relay
        if response.status == 100:
            return
        contact = None
        if request.method in ("INVITE", "UPDATE") and response.status < 300:
            transport = self.caller_transport if from_leg is Leg.CALLER else self.centre_transport
            contact = self.host.contact(transport)
        tag = parse_name_addr_shared(request.headers.get("To") or "", "To").tag or self.caller_tag
        out = legs.relay_response(request, response, status=response.status, to_tag=tag,
                                  contact=contact)
        if request.method == "INVITE" and 200 <= response.status < 300:
            # re-INVITE answered on the far leg: ACK it there now; the near leg's ACK ends
            # at us (a B2BUA owns both dialogs, RFC 7092 §3.1).
            self._ack_relayed_reinvite(from_leg, response, now)
        self.host.layer.send_response(server_tx, out, now)

    def _ack_relayed_reinvite(self, from_leg: Leg, response: Response, now: float) -> None:
        far_leg = Leg.CENTRE if from_leg is Leg.CALLER else Leg.CALLER
        dialog = self.centre_dialog if far_leg is Leg.CENTRE else self.caller_dialog
        transport = self.centre_transport if far_leg is Leg.CENTRE else self.caller_transport
        if dialog is None:
            return
        cseq, _ = parse_cseq(response.headers.get("CSeq") or "1 INVITE")
        ack = dialog.create_ack(cseq, via=self.host.via(transport, new_branch()))
        self.host.layer.send_ack(ack, self._next_hop(dialog, transport), transport, now)

    # ----------------------------------------------------------------- helpers

    def _centre_next_hop(self) -> tuple[str, int]:
        if self.centre_dialog is None:
            return self.centre_dest
        return self._next_hop(self.centre_dialog, self.centre_transport)

    def _next_hop(self, dialog: Dialog, transport: str) -> tuple[str, int]:
        host, port, _ = dialog.next_hop()
        if host.startswith("["):
            host = host[1:-1]
        return host, port or 5060

    def _end(self, reason: TerminatedReason, now: float) -> None:
        if self.state is CallState.ENDED:
            return
        self.state = CallState.ENDED
        self.deadline = None
        self.record.end_reason = reason
        self.record.ended_at = now
        if self.media is not None:
            self.media.release()
            self.host.unbind_media(self.media.leg_ids)
        self.host.call_ended(self, now)


def _with_body(response: Response, sdp: bytes) -> None:
    """Put our SDP answer in a response relayed to the caller (anchored media)."""
    response.body = sdp
    response.headers.set("Content-Type", SDP)


def _from_uri(request: Request) -> str:
    try:
        return parse_name_addr_shared(request.headers.get("From") or "", "From").uri
    except Exception:  # a malformed From never stops a call; records keep the raw text
        return request.headers.get("From") or ""

