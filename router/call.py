"""One emergency call as a back-to-back user agent (sans-IO).

The caller leg is a UAS dialog towards the carrier, the centre leg a UAC dialog towards the
destination the hunt is trying; nothing crosses from one to the other except through
:mod:`router.legs`. Every handler takes ``now`` and acts only through the transaction layer
handed in by the dispatcher, which queues what to send: the call never sleeps, never touches a
socket, and is driven in tests by feeding it messages with a fake clock.

States (the caller leg's view, RFC 3261 §13/§15 vocabulary; :mod:`router.call_state`)::

    ROUTING ─► CALLING ─► EARLY ─► ANSWERED ─► CONFIRMED ─► ENDED
                 │   ▲       │
                 │   └───────┘  next destination (router/hunt.py): the caller's leg stays
                 └──────────┴── every destination failed ─► [FAILING: prompt] ─► ENDED

Each attempt is a new INVITE client transaction with its own Call-ID and From tag (a separate
dialog towards that centre); an abandoned attempt is CANCELled (RFC 3261 §9.1) and an answer it
still sends is ACKed and released with BYE. The caller sees one call throughout.

Anchored media and the IVR live in :mod:`router.call_ivr`, requests inside the dialogs in
:mod:`router.in_dialog`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ivr.engine import MediaEngineError, MediaEvent
from municipality_map import Centre, RouteLookup, RoutingSnapshot, Service
from sip.dialog import Dialog
from sip.headers import parse_cseq, parse_name_addr_shared
from sip.ids import new_branch, new_call_id, new_tag
from sip.message import Request, Response, make_response
from sip.multipart import replace_sdp, sdp_of

from . import call_ivr, in_dialog, legs, logs
from .call_record import CallRecord, TerminatedReason
from .call_state import CallState, Leg
from .caller_location import CallerLocation, disagreement, gather_location
from .hunt import Attempt, AttemptEnd, DestinationLike, Hunt, HuntPolicy
from .media import SDP, CallMedia
from .release import MediaRelease
from .resolve import DialledService, LocationSource, choose_municipality

if TYPE_CHECKING:
    from .b2bua import B2bua
    from .config import NodruteSettings, TrunkSettings

__all__ = ["Call", "CallState", "Leg"]

_ATTEMPT_END_REASON: dict[AttemptEnd, TerminatedReason] = {
    AttemptEnd.NO_RESPONSE: TerminatedReason.CENTRE_TIMEOUT,
    AttemptEnd.TIMEOUT: TerminatedReason.CENTRE_TIMEOUT,
    AttemptEnd.RING_TIMEOUT: TerminatedReason.RING_TIMEOUT,
    AttemptEnd.TOTAL_TIMEOUT: TerminatedReason.RING_TIMEOUT,
    AttemptEnd.REJECTED: TerminatedReason.CENTRE_REJECTED,
    AttemptEnd.TRANSPORT_ERROR: TerminatedReason.TRANSPORT_ERROR,
}
"""How a call that never reached anyone ended, by how its last attempt ended."""


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
        """The centre the location routed to (the plan's first); attempts may reach others."""
        self.hunt: Hunt | None = None
        # The current attempt's centre leg (replaced on every attempt).
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
        self.abandoned: dict[str, Request] = {}
        """Client tx of attempts given up while still pending -> their INVITE (a late 2xx is
        ACKed and released with BYE)."""
        self.relays: dict[str, in_dialog.Relay] = {}
        """Client tx on one leg -> (leg it came from, server tx there, request) for relays."""
        self.deadline: float | None = None
        """The next instant the call must act: the attempt's timers, the hunt's total ring
        time, or the IVR's next timer."""
        self.media: CallMedia | None = None
        """Anchored media and the IVR (``[media] enabled``); None: SDP is relayed as is."""
        self.early_media_sent = False
        self.release: MediaRelease | None = None
        """``[media] mode = "release"``: hands the RTP to the endpoints after the answer."""
        self.attempts_dialled = 0
        self.location_source = LocationSource.DEFAULT
        self.location: CallerLocation | None = None
        self.record = CallRecord(
            call_id=self.caller_call_id,
            service=dialled.service.value,
            trunk=trunk.name,
            caller=_from_uri(invite),
            started_at=now,
            table_version=snapshot.version.label,
        )

    # ----------------------------------------------------------------- start: route

    @logs.in_call_context
    def start(self, now: float) -> None:
        """Answer 100 Trying, pick the centre, then the IVR or the first attempt."""
        self.host.layer.send_response(self.in_tx, make_response(self.invite, 100), now)
        centre = self._route(self.service, now)
        if centre is None:
            return
        self.centre = centre
        if self.host.media is not None and self.caller_sdp is not None:
            call_ivr.start_media(self, centre, now)
            return
        self.begin_hunt(centre, now)

    def _route(self, service: Service, now: float) -> Centre | None:
        """The centre for the caller's location and ``service`` (the default centre if none);
        None (caller answered 500) when not even the default centre exists."""
        location = self.location
        if location is None:  # gathered once: an IVR transfer re-routes with the same hints
            location = self.location = gather_location(
                self.invite, self.dialled, self.trunk.municipality_sources,
                self.trunk.municipality_header, self.host.locators,
            )
            self.record.location_evidence = location.evidence
            self.record.location_ambiguous = location.ambiguous

        def lookup(code: str) -> RouteLookup | None:
            return self.snapshot.lookup(code, service)

        choice = choose_municipality(location.hints, lookup)
        self.record.location_disagreement = disagreement(location, lookup)
        self.record.requested_municipality = choice.requested
        self.record.location_source = choice.source.value
        self.location_source = choice.source
        centre = self._centre_for(choice.lookup, service)
        if centre is None or not self.snapshot.plan_for(centre.centre_id):
            self.host.note_no_centre(service)
            self.fail_caller(500, "No centre configured", TerminatedReason.ERROR, now)
            return None
        self.record.centre_id = centre.centre_id
        self.record.municipality = choice.lookup.kommunenummer if choice.lookup else None
        if choice.lookup and choice.lookup.via_crosswalk:
            self.record.notes.append(
                f"old code {choice.requested} -> {choice.lookup.kommunenummer}")
        if choice.source is LocationSource.DEFAULT:
            self.host.note_default_route(service, choice.requested is not None)
        if logs.call_events_enabled():
            self.log_state(CallState.ROUTING, source=choice.source.value, trunk=self.trunk.name,
                           caller=logs.caller_for_log(self.invite, self.record.caller))
        return centre

    def _centre_for(self, lookup: RouteLookup | None, service: Service) -> Centre | None:
        if lookup is not None:
            return lookup.centre
        return self.snapshot.centre(self.host.settings.routing.default_centre(service))

    def transfer(self, service: Service, now: float) -> Centre | None:
        """The IVR moved the call to ``service`` (same municipality): its centre, or None."""
        self.record.notes.append(f"ivr transfer {self.service.value} -> {service.value}")
        logs.call_event("call.transfer", from_service=self.service.value, to_service=service.value)
        self.service = service
        self.record.service = service.value
        centre = self._route(service, now)
        if centre is not None:
            self.centre = centre
        return centre

    # ----------------------------------------------------------------- the hunt

    def begin_hunt(self, centre: Centre, now: float) -> None:
        """Walk ``centre``'s destination plan from its first URI."""
        policy = _hunt_policy(self.host.settings, self.service)
        found = self.snapshot.plan_for(centre.centre_id)
        plan: tuple[DestinationLike, ...] = found.destinations if found is not None else ()
        self.hunt = Hunt(plan, policy, self.host.destination_up, now)
        if self.record.hunt_started_at is None:
            self.record.hunt_started_at = now
        self._next_attempt(now)

    def _next_attempt(self, now: float) -> None:
        hunt = self.hunt
        assert hunt is not None
        previous = hunt.attempts[-1] if hunt.attempts else None
        attempt = hunt.next(now)
        if previous is not None:
            self.host.note_failover(self.service, previous,
                                    attempt.centre_id if attempt else None)
        if attempt is None:
            self._last_resort(now)
            return
        self._dial(attempt, now)

    def _dial(self, attempt: Attempt, now: float) -> None:
        host = self.host
        self.attempts_dialled += 1
        if self.attempts_dialled > 1:
            # A new dialog towards the next destination: nothing of the last one is reused.
            self.centre_call_id = new_call_id(host.via_host)
            self.centre_tag = new_tag()
        uri = attempt.uri
        dest_host, dest_port, transport = legs.uri_destination(uri)
        self.centre_dest = (dest_host, dest_port)
        self.centre_transport = transport
        incoming_mf = self.invite.headers.get("Max-Forwards")
        max_forwards = host.settings.sip.max_forwards
        if incoming_mf and incoming_mf.strip().isdigit():
            # Decrement across the B2BUA too: a routing loop through us must still die out.
            max_forwards = min(max_forwards, int(incoming_mf) - 1)
        route_note = (
            f"centre={attempt.centre_id};source={self.location_source.value};"
            f"requested={self.record.requested_municipality or '-'};"
            f"table={self.snapshot.version.label}"
        )
        if attempt.role != "primary" or self.attempts_dialled > 1:
            route_note += f";role={attempt.role};attempt={self.attempts_dialled}"
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
                offer = self.media.offer_centre()
            except MediaEngineError:
                self.fail_caller(503, "No media resources", TerminatedReason.ERROR, now)
                return
            # Our SDP in place of the caller's; a PIDF-LO part stays, byte for byte.
            content_type, invite.body = replace_sdp(
                self.invite.headers.get("Content-Type"), self.invite.body, offer)
            invite.headers.set("Content-Type", content_type)
        self.centre_invite = invite
        self.record.centre_id = attempt.centre_id
        self.record.centre_uri = uri
        self.record.centre_call_id = self.centre_call_id
        self.centre_tx = host.layer.send_request(invite, self.centre_dest, transport, now)
        host.bind_client_tx(self.centre_tx, self)
        host.bind_dialog(self.centre_call_id, self.centre_tag, self, Leg.CENTRE)
        if self.state is CallState.ROUTING:
            self.log_state(CallState.CALLING, uri=uri, role=attempt.role)
        else:
            logs.call_event("call.attempt", attempt=self.attempts_dialled, uri=uri,
                            role=attempt.role)
        self.arm(now)

    def _abandon(self, end: AttemptEnd, now: float, *, status: int | None = None,
                 cancel: bool = True) -> None:
        """Give up the current attempt (``cancel``: its transaction is still pending)."""
        assert self.hunt is not None
        attempt = self.hunt.end(end, now, status)
        if cancel and self.centre_tx is not None and self.centre_invite is not None:
            self.host.layer.send_cancel(self.centre_tx, now, reason=_cancel_reason(end))
            self.abandoned[self.centre_tx] = self.centre_invite
        self.host.unbind_dialog(self.centre_call_id, self.centre_tag)
        if self.media is not None:
            self.media.release_centre()
        self.centre_tx = None
        self.centre_invite = None
        self.centre_dialog = None
        if attempt is not None and (
                end in (AttemptEnd.NO_RESPONSE, AttemptEnd.TIMEOUT, AttemptEnd.TRANSPORT_ERROR)
                or status == 503):
            self.host.destination_failed(attempt.uri, f"{end.value} {status or ''}".strip(),
                                         now)

    def _fail_over(self, end: AttemptEnd, now: float, *, status: int | None = None,
                   cancel: bool = True) -> None:
        self._abandon(end, now, status=status, cancel=cancel)
        if end is AttemptEnd.TOTAL_TIMEOUT:
            self._last_resort(now)
        else:
            self._next_attempt(now)

    def _last_resort(self, now: float) -> None:
        """Every destination failed (or the total ring time is over): never silently."""
        hunt = self.hunt
        assert hunt is not None
        self.record.hunt_exhausted = True
        self.host.note_hunt_exhausted(self, now)
        if call_ivr.play_last_resort(self, now):
            return
        self.finish_last_resort(now)

    def finish_last_resort(self, now: float) -> None:
        """The final response after a failed hunt: what the last attempt says, with Reason."""
        hunt = self.hunt
        assert hunt is not None
        last = hunt.attempts[-1] if hunt.attempts else None
        status = 480
        if last is not None:
            if last.end is AttemptEnd.REJECTED and last.status is not None:
                status = legs.map_centre_final(last.status)
            elif last.end in (AttemptEnd.NO_RESPONSE, AttemptEnd.TIMEOUT):
                status = 408
            elif last.end is AttemptEnd.TRANSPORT_ERROR:
                status = 503
        reason = _ATTEMPT_END_REASON.get(last.end if last and last.end else AttemptEnd.REJECTED,
                                         TerminatedReason.CENTRE_REJECTED)
        self.fail_caller(status, hunt.exhausted_reason, reason, now)

    def arm(self, now: float) -> None:
        """Recompute the call's next deadline and hand it to the dispatcher."""
        state = self.state  # the two cases exclude each other: at most one deadline
        if (state is CallState.CALLING or state is CallState.EARLY) and self.hunt is not None:
            self.deadline = self.hunt.deadline()
        elif (state is CallState.ROUTING or state is CallState.FAILING) \
                and self.media is not None:
            self.deadline = self.media.ivr_deadline()
        else:
            self.deadline = None
        self.host.schedule(self)

    @logs.in_call_context
    def on_deadline(self, now: float) -> None:
        """A timer of this call is due: the IVR's, or the attempt's/hunt's."""
        if self.deadline is None or now < self.deadline:
            return
        self.deadline = None
        if self.state in (CallState.ROUTING, CallState.FAILING) and self.media is not None:
            call_ivr.after_ivr(self, self.media.on_ivr_timer(now), now)
            return
        if self.state in (CallState.CALLING, CallState.EARLY) and self.hunt is not None:
            why = self.hunt.expired(now)
            if why is None:
                self.arm(now)
            else:
                self._fail_over(why, now)

    # ----------------------------------------------------------------- centre leg responses

    @logs.in_call_context
    def on_response(self, tx: str, response: Response, retransmission: bool, now: float) -> None:
        """A response on one of our client transactions."""
        if self.release is not None and self.release.owns(tx):
            self.release.on_response(self, response, now)
            return
        relay = self.relays.pop(tx, None) if response.status >= 200 else self.relays.get(tx)
        if relay is not None:
            in_dialog.relay_response(self, relay, response, now)
            return
        if tx in self.abandoned:
            self._on_abandoned_response(tx, response, retransmission, now)
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
        if self.state not in (CallState.CALLING, CallState.EARLY):
            return
        attempt = self.hunt.current if self.hunt is not None else None
        if attempt is not None and attempt.provisional_at is None:
            attempt.provisional_at = now  # alive: now the ring timer runs (Hunt.provisional)
            self.host.destination_reachable(attempt.uri, now)
            self.arm(now)
        if response.status == 100:
            return
        if self.record.first_provisional_at is None:
            self.record.first_provisional_at = now
        if response.status == 180 and self.record.ringing_at is None:
            self.record.ringing_at = now
        if self.state is not CallState.EARLY:
            self.log_state(CallState.EARLY, status=response.status)
        out = legs.relay_response(
            self.invite, response, status=response.status, to_tag=self.caller_tag,
            contact=self.host.contact(self.caller_transport),
        )
        if self.media is not None:
            media = self.media
            if media.centre_sdp(_sdp(response)) and media.ivr is None:
                media.bridge()  # no IVR on this call: the caller hears the centre's early media
            if media.ivr is not None or media.bridged or self.early_media_sent:
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
                self._ack_and_bye_stray(self.centre_invite, response, now)
            return
        self.centre_dialog = Dialog.as_uac(self.centre_invite, response)
        if self.state not in (CallState.CALLING, CallState.EARLY):
            # The caller went away (CANCEL raced the answer): complete and release the centre.
            self.send_centre_ack(None, now)
            in_dialog.send_bye(self, Leg.CENTRE, legs.q850_reason(16, "Caller cancelled"), now)
            return
        if self.hunt is not None:
            self.hunt.end(AttemptEnd.ANSWERED, now, response.status)
            self.record.attempts = list(self.hunt.attempts)
        self.log_state(CallState.ANSWERED, status=response.status)
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
            self.media.centre_sdp(_sdp(response))
            self.media.bridge()  # the prompt stops at once, then leg-to-leg relay
            _with_body(out, self.media.caller_answer)  # the same answer as in the 183
            if self.host.settings.media.mode == "release":
                self.release = MediaRelease()
                self.release.centre_sdp = _sdp(response)
        self.caller_dialog = Dialog.as_uas(self.invite, self.caller_tag, contact)
        self.host.bind_dialog(self.caller_call_id, self.caller_tag, self, Leg.CALLER)
        self.host.layer.send_response(self.in_tx, out, now)
        if self.invite.body:
            self.send_centre_ack(None, now)
        else:
            self.centre_ack_pending = True  # RFC 3264 late offer: answer comes in the ACK

    def _on_centre_rejected(self, response: Response, now: float) -> None:
        self.record.centre_status = response.status
        if self.state not in (CallState.CALLING, CallState.EARLY):
            return
        if self.hunt is not None and self.hunt.fails_over(response.status):
            self._fail_over(AttemptEnd.REJECTED, now, status=response.status, cancel=False)
            return
        if self.hunt is not None:
            self.hunt.end(AttemptEnd.REJECTED, now, response.status)
        status = legs.map_centre_final(response.status)
        out = legs.relay_response(
            self.invite, response, status=status, to_tag=self.caller_tag, contact=None,
        )
        self.host.layer.send_response(self.in_tx, out, now)
        self.record.final_status = status
        self.end(TerminatedReason.CENTRE_REJECTED, now)

    def on_centre_released_early(self, now: float) -> None:
        """The centre sent BYE on its early dialog: it gave up before answering."""
        self._fail_over(AttemptEnd.REJECTED, now, status=480)

    def _on_abandoned_response(self, tx: str, response: Response, retransmission: bool,
                               now: float) -> None:
        invite = self.abandoned[tx]
        if response.status >= 200:
            del self.abandoned[tx]
        if 200 <= response.status < 300 and not retransmission:
            # The CANCEL crossed the centre's answer: complete that dialog, then release it.
            self._ack_and_bye_stray(invite, response, now)

    def send_centre_ack(self, caller_ack: Request | None, now: float) -> None:
        """ACK the centre's 2xx; with a late offer the caller's ACK carries the SDP answer."""
        assert self.centre_dialog is not None and self.centre_invite is not None
        cseq, _ = parse_cseq(self.centre_invite.headers.get("CSeq") or "1 INVITE")
        body = caller_ack.body if caller_ack is not None else b""
        content_type = caller_ack.headers.get("Content-Type") if caller_ack is not None else None
        ack = self.centre_dialog.create_ack(
            cseq, via=self.host.via(self.centre_transport, new_branch()), body=body,
            content_type=content_type if body else None,
        )
        next_hop = in_dialog.next_hop(self.centre_dialog)
        self.host.layer.send_ack(ack, next_hop, self.centre_transport, now)
        self.centre_ack_pending = False

    def _ack_and_bye_stray(self, invite: Request, response: Response, now: float) -> None:
        stray = Dialog.as_uac(invite, response)
        transport = legs.uri_destination(invite.uri)[2]
        dest = in_dialog.next_hop(stray)
        cseq, _ = parse_cseq(invite.headers.get("CSeq") or "1 INVITE")
        via = self.host.via(transport, new_branch())
        self.host.layer.send_ack(stray.create_ack(cseq, via=via), dest, transport, now)
        bye = stray.create_request("BYE", via=self.host.via(transport, new_branch()),
                                   extra=[("Reason", legs.q850_reason(31, "Answered late"))])
        self.host.layer.send_request(bye, dest, transport, now)

    # ----------------------------------------------------------------- failures on the centre leg

    @logs.in_call_context
    def on_timeout(self, tx: str, now: float) -> None:
        """Timer B/F fired on one of our client transactions."""
        self._on_client_failure(tx, 408, AttemptEnd.TIMEOUT, now)

    @logs.in_call_context
    def on_transport_failed(self, tx: str, now: float) -> None:
        self._on_client_failure(tx, 503, AttemptEnd.TRANSPORT_ERROR, now)

    def _on_client_failure(self, tx: str, status: int, end: AttemptEnd, now: float) -> None:
        if self.release is not None and self.release.owns(tx):
            self.release.on_failure(self, end.value)
            return
        relay = self.relays.pop(tx, None)
        if relay is not None:
            in_dialog.relay_failed(self, relay, status, now)
            return
        if self.abandoned.pop(tx, None) is not None:
            return
        if tx == self.centre_tx and self.state in (CallState.CALLING, CallState.EARLY):
            self._fail_over(end, now, cancel=False)

    def fail_caller(self, status: int, text: str, reason: TerminatedReason, now: float) -> None:
        """Final non-2xx to the caller, with Reason (RFC 3326), and end the call."""
        response = make_response(
            self.invite, status, to_tag=self.caller_tag,
            extra=[("Reason", legs.reason_value(status, text))],
        )
        self.host.layer.send_response(self.in_tx, response, now)
        self.record.final_status = status
        self.end(reason, now)

    # ----------------------------------------------------------------- caller leg

    @logs.in_call_context
    def on_cancel(self, cancel: Request, now: float) -> None:
        """The caller CANCELled its INVITE (RFC 3261 §9.2); the dispatcher answered the CANCEL.

        The centre's CANCEL carries the caller's Reason if it gave one (RFC 3326), so a centre
        can tell a caller who gave up from a call answered elsewhere.
        """
        if self.state not in (CallState.ROUTING, CallState.CALLING, CallState.EARLY,
                              CallState.FAILING):
            return  # already answered: the CANCEL has no effect (§9.2)
        self.host.layer.send_response(
            self.in_tx, make_response(self.invite, 487, to_tag=self.caller_tag), now,
        )
        self.record.final_status = 487
        if self.centre_tx is not None:
            reason = cancel.headers.get("Reason") or legs.q850_reason(16, "Caller hung up")
            self.host.layer.send_cancel(self.centre_tx, now, reason=reason)
            if self.centre_invite is not None:
                self.abandoned[self.centre_tx] = self.centre_invite
        if self.hunt is not None:
            self.hunt.end(AttemptEnd.CALLER_GONE, now)
        self.end(TerminatedReason.CALLER_CANCEL, now)

    @logs.in_call_context
    def on_ack(self, leg: Leg, ack: Request, now: float) -> None:
        """An ACK for a 2xx on one of our dialogs."""
        if leg is Leg.CALLER and self.state is CallState.ANSWERED:
            self.log_state(CallState.CONFIRMED)
            if self.centre_ack_pending:
                self.send_centre_ack(ack, now)
            if self.release is not None:
                self.release.start(self, now)

    @logs.in_call_context
    def on_ack_timeout(self, now: float) -> None:
        """The caller never ACKed our 2xx (§13.3.1.4): release both legs."""
        if self.state is CallState.ANSWERED:
            if self.centre_ack_pending:
                self.send_centre_ack(None, now)
            reason = legs.q850_reason(41, "No ACK from caller")
            in_dialog.send_bye(self, Leg.CENTRE, reason, now)
            in_dialog.send_bye(self, Leg.CALLER, reason, now)
            self.end(TerminatedReason.NO_ACK, now)

    @logs.in_call_context
    def on_request(self, leg: Leg, request: Request, tx: str, now: float) -> None:
        """An in-dialog request (BYE, re-INVITE, UPDATE, INFO, OPTIONS…) on one of our legs."""
        in_dialog.on_request(self, leg, request, tx, now)

    @logs.in_call_context
    def on_media_event(self, event: MediaEvent, now: float) -> None:
        """An engine event for one of this call's legs (prompt finished, DTMF, latched)."""
        call_ivr.on_media_event(self, event, now)

    # ----------------------------------------------------------------- helpers

    @property
    def caller_sdp(self) -> bytes | None:
        """The caller's SDP offer, from a plain or multipart body; None for a late offer."""
        return sdp_of(self.invite.headers.get("Content-Type"), self.invite.body)

    @property
    def media_anchored(self) -> bool:
        """RTP flows through the router (anchored, and not handed over by a release)."""
        return self.media is not None and not (self.release is not None
                                               and self.release.released)

    def dialog(self, leg: Leg) -> Dialog | None:
        return self.caller_dialog if leg is Leg.CALLER else self.centre_dialog

    def transport(self, leg: Leg) -> str:
        return self.caller_transport if leg is Leg.CALLER else self.centre_transport

    def log_state(self, state: CallState, **fields: object) -> None:
        """Enter ``state`` and log it (``call.state``, at ``[log] call_events``: router/logs.py)."""
        self.state = state
        if logs.call_events_enabled():  # off by default: skip the fields and the enum's value
            logs.call_event("call.state", state=state.value, **fields)

    def end(self, reason: TerminatedReason, now: float) -> None:
        """The call is over: record why, free its media, retire it (idempotent)."""
        if self.state is CallState.ENDED:
            return
        self.state = CallState.ENDED
        self.deadline = None
        self.record.end_reason = reason
        self.record.ended_at = now
        if self.hunt is not None:
            self.record.attempts = list(self.hunt.attempts)
        if self.media is not None:
            self.media.release()
            self.host.unbind_media(self.media.leg_ids)
        self.host.call_ended(self, now)


_policies: tuple[NodruteSettings | None, dict[Service, HuntPolicy]] = (None, {})
"""The hunt policies of the settings in force (frozen: one object per [re]load)."""


def _hunt_policy(settings: NodruteSettings, service: Service) -> HuntPolicy:
    """The ``[failover]``/``[routing]`` knobs of ``service``, built once per settings object."""
    global _policies
    known, by_service = _policies
    if known is not settings:
        by_service = {}
        _policies = (settings, by_service)
    policy = by_service.get(service)
    if policy is None:
        policy = by_service[service] = HuntPolicy(
            first_response_s=settings.failover.first_response_s,
            attempt_ring_s=settings.failover.attempt_ring_s(service),
            total_ring_s=settings.routing.ring_timeout_s(service),
            final_codes=frozenset(settings.failover.final_codes),
            passes=settings.failover.passes(service),
        )
    return policy


def _cancel_reason(end: AttemptEnd) -> str:
    """RFC 3326 Reason on the CANCEL of an abandoned attempt (Q.850 causes)."""
    if end is AttemptEnd.RING_TIMEOUT:
        return legs.q850_reason(19, "No answer")
    return legs.q850_reason(102, "Recovery on timer expiry")


def _sdp(message: Request | Response) -> bytes:
    """The SDP of a message (its body, or the SDP part of a multipart body); b"" if none."""
    return sdp_of(message.headers.get("Content-Type"), message.body) or b""


def _with_body(response: Response, sdp: bytes) -> None:
    """Put our SDP answer in a response relayed to the caller (anchored media)."""
    response.body = sdp
    response.headers.set("Content-Type", SDP)


def _from_uri(request: Request) -> str:
    try:
        return parse_name_addr_shared(request.headers.get("From") or "", "From").uri
    except Exception:  # a malformed From never stops a call; records keep the raw text
        return request.headers.get("From") or ""
