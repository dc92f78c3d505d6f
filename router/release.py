"""Media release (``[media] mode = "release"``): after the answer, take the router out of the RTP.

The call is answered anchored as always — the caller hears the prompt, then the centre, with no
gap — and once the caller's ACK confirms the dialog the router hands the media over
(third-party call control, RFC 3725 flow I in the B2BUA's two dialogs):

1. re-INVITE the **caller** with the centre's SDP as the offer (our origin line, version + 1,
   RFC 3264 §8) → the caller answers with its own SDP;
2. re-INVITE the **centre** with the caller's answer as the offer → the centre answers;
3. ACK both, free the router's two RTP legs; from then on in-dialog offers are relayed, not
   answered locally.

If the caller or the centre refuses (any non-2xx, a timeout, an unusable SDP), the call simply
stays anchored — it is never dropped for the sake of a release. States::

    ANCHORED ─► OFFERING_CALLER ─► OFFERING_CENTRE ─► RELEASED
                      └─────────────────┴──► ANCHORED (kept, logged)
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING

from sip.ids import new_branch
from sip.message import Response
from sip.sdp import SdpError, SessionDescription

from . import in_dialog, legs, logs
from .call_state import Leg
from .media import SDP

if TYPE_CHECKING:
    from .call import Call

log = logging.getLogger("nodrute.release")


class ReleaseState(enum.Enum):
    ANCHORED = "anchored"
    OFFERING_CALLER = "offering_caller"
    OFFERING_CENTRE = "offering_centre"
    RELEASED = "released"


class MediaRelease:
    """One call's hand-over of its media to the endpoints."""

    def __init__(self) -> None:
        self.state = ReleaseState.ANCHORED
        self.tx: str | None = None
        """The re-INVITE client transaction in progress."""
        self.centre_sdp = b""
        self.attempted = False

    def start(self, call: Call, now: float) -> None:
        """The caller ACKed the answer: offer it the centre's media (once per call)."""
        media = call.media
        if self.attempted or media is None or not self.centre_sdp:
            return
        self.attempted = True
        offer = _as_our_offer(self.centre_sdp, media.current_sdp(media.caller_leg))
        if offer is None:
            log.warning("release: centre SDP unusable, call %s stays anchored",
                        call.record.call_id)
            return
        self.state = ReleaseState.OFFERING_CALLER
        self.tx = _reinvite(call, Leg.CALLER, offer, now)

    def owns(self, tx: str) -> bool:
        return tx == self.tx

    def on_response(self, call: Call, response: Response, now: float) -> None:
        """A response to our re-INVITE on either leg."""
        if response.status < 200:
            return
        self.tx = None
        if response.status >= 300 or not response.body:
            self._stay_anchored(call, f"{response.status} to the re-INVITE")
            return
        leg = Leg.CALLER if self.state is ReleaseState.OFFERING_CALLER else Leg.CENTRE
        in_dialog.ack_2xx(call, leg, response, now)
        media = call.media
        if media is None:
            return
        if self.state is ReleaseState.OFFERING_CALLER:
            offer = _as_our_offer(response.body, media.current_sdp(media.centre_leg))
            if offer is None:
                self._stay_anchored(call, "caller's SDP unusable")  # caller now points at the
                return  # centre's media; the centre still at ours: relaying keeps both alive
            self.state = ReleaseState.OFFERING_CENTRE
            self.tx = _reinvite(call, Leg.CENTRE, offer, now)
            return
        self.state = ReleaseState.RELEASED
        media.release()  # RTP flows caller <-> centre directly now
        call.host.unbind_media(media.leg_ids)
        call.record.notes.append("media released")
        logs.call_event("call.media_released")

    def on_failure(self, call: Call, what: str) -> None:
        """Our re-INVITE timed out or could not be sent."""
        self.tx = None
        self._stay_anchored(call, what)

    def _stay_anchored(self, call: Call, why: str) -> None:
        log.warning("release: %s; call %s stays anchored", why, call.record.call_id)
        call.record.notes.append(f"media release failed: {why}")
        self.state = ReleaseState.ANCHORED

    @property
    def released(self) -> bool:
        return self.state is ReleaseState.RELEASED


def _as_our_offer(sdp: bytes, ours: bytes) -> bytes | None:
    """``sdp`` (the other side's) restated as a new offer of ours on a leg whose last SDP from
    us was ``ours``: same origin username and session id, version + 1 (RFC 3264 §8)."""
    try:
        offer = SessionDescription.parse(sdp)
        previous = SessionDescription.parse(ours)
    except SdpError:
        return None
    if not any(m.media == "audio" and m.port for m in offer.media):
        return None
    offer.origin_username = previous.origin_username
    offer.session_id = previous.session_id
    offer.session_version = previous.session_version + 1
    offer.origin_address = previous.origin_address
    return offer.serialise()


def _reinvite(call: Call, leg: Leg, offer: bytes, now: float) -> str | None:
    dialog = call.dialog(leg)
    if dialog is None:
        return None
    transport = call.transport(leg)
    request = dialog.create_request(
        "INVITE", via=call.host.via(transport, new_branch()), body=offer, content_type=SDP,
        extra=[("Contact", call.host.contact(transport)), ("Allow", legs.ALLOW)],
    )
    tx = call.host.layer.send_request(request, in_dialog.next_hop(dialog), transport, now)
    call.host.bind_client_tx(tx, call)
    return tx

