"""The anchored-media side of a call (sans-IO): answering the caller, IVR flows, last resort.

Only used with ``[media] enabled``. The caller's offer is answered by the router (183 with our
SDP), the service's flow runs on the caller's leg, and what the flow decides comes back here:
route as dialled, or transfer to another service for the same municipality. A 113 flow is early
media only: the centre's INVITE goes out first, the announcement never delays it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ivr.config import IvrFlow, PlayStep, RouteStep
from ivr.engine import MediaEvent
from ivr.flow import RouteCall
from municipality_map import Centre, Service
from sip.message import make_response

from . import logs
from .call_record import TerminatedReason
from .call_state import CallState
from .media import SDP, CallMedia, MediaRefused

if TYPE_CHECKING:
    from .call import Call

LAST_RESORT_PROMPT = "no_centre"


def start_media(call: Call, centre: Centre, now: float) -> None:
    """Answer the caller's offer with our SDP, then run the IVR flow or start the hunt.

    A late-offer INVITE (no SDP) is not anchored: it keeps end-to-end SDP relay."""
    context = call.host.media
    assert context is not None
    media = CallMedia(context, call.caller_tag)
    call.media = media
    call.host.bind_media(media.leg_ids, call)
    try:
        media.answer_caller(call.caller_sdp or b"")
    except MediaRefused as err:
        call.host.counters[f"rejected:media_{err.status}"] += 1
        call.fail_caller(err.status, err.reason, TerminatedReason.ERROR, now)
        return
    flow = context.ivr.flow_for(call.service.value, centre.centre_id)
    if flow is None:
        call.begin_hunt(centre, now)
        return
    language = context.ivr.language_for(centre.centre_id)
    logs.call_event("call.ivr", early_media=flow.early_media, language=language)
    if flow.early_media:
        # The centre leg first: an announcement never delays the INVITE to the centre.
        call.begin_hunt(centre, now)
        if call.state is CallState.ENDED:
            return
        send_early_media(call, now)
        media.start_ivr(flow, language, now)
        return
    send_early_media(call, now)
    after_ivr(call, media.start_ivr(flow, language, now), now)


def send_early_media(call: Call, now: float) -> None:
    """183 Session Progress with our answer: the caller hears what the router plays."""
    assert call.media is not None
    if call.early_media_sent:
        return
    progress = make_response(call.invite, 183, to_tag=call.caller_tag,
                             extra=[("Contact", call.host.contact(call.caller_transport)),
                                    ("Content-Type", SDP)])
    progress.body = call.media.caller_answer
    call.host.layer.send_response(call.in_tx, progress, now)
    call.early_media_sent = True
    if call.record.first_provisional_at is None:
        call.record.first_provisional_at = now


def after_ivr(call: Call, route: RouteCall | None, now: float) -> None:
    """Act on what the IVR returned while the call is not yet routed (or is failing)."""
    if call.media is None:
        return
    if call.state is CallState.FAILING:
        if route is None:
            call.arm(now)
        else:
            call.finish_last_resort(now)
        return
    if call.state is not CallState.ROUTING:
        return
    if route is None:
        call.arm(now)
        return
    centre = call.centre
    if route.service is not None and route.service != call.service.value:
        # Transfer (e.g. "press 1 if life-threatening"): same municipality, other service.
        centre = call.transfer(Service(route.service), now)
        if centre is None:
            return
    assert centre is not None
    call.begin_hunt(centre, now)


def play_last_resort(call: Call, now: float) -> bool:
    """Every destination failed: play the last-resort prompt before the final response.

    False when there is nothing to play it on (no anchored caller leg, prompt missing)."""
    media = call.media
    if media is None or media.caller_audio is None:
        return False
    context = media.context
    language = context.ivr.language_for(call.centre.centre_id if call.centre else None)
    try:
        context.catalogue.get(language, LAST_RESORT_PROMPT)
    except KeyError:
        return False
    media.release_centre()
    media.stop_ivr()
    send_early_media(call, now)
    flow = IvrFlow(max_total_s=30.0, steps=(PlayStep(prompt=LAST_RESORT_PROMPT), RouteStep()))
    call.log_state(CallState.FAILING, prompt=LAST_RESORT_PROMPT)
    after_ivr(call, media.start_ivr(flow, language, now), now)
    return True


def on_media_event(call: Call, event: MediaEvent, now: float) -> None:
    """An engine event for one of the call's legs (prompt finished, DTMF, latched)."""
    media = call.media
    if media is None or call.state is CallState.ENDED:
        return
    route = media.on_event(event, now)
    if call.state in (CallState.ROUTING, CallState.FAILING):
        after_ivr(call, route, now)
