"""Graceful drain: a node told to stop finishes the calls it holds and takes no new ones.

On SIGTERM (or SIGINT) the dispatcher's drain gate closes (:meth:`B2bua.start_drain
<router.b2bua.B2bua.start_drain>`): every new out-of-dialog INVITE is answered ``503 Service
Unavailable`` with ``Retry-After`` (``[sip] drain_retry_after_s``) and a Reason (RFC 3326), so
the carrier's SBC tries another node (RFC 3261 §21.5.4: the client may retry elsewhere; a
Retry-After tells it when this node may be asked again). Out-of-dialog OPTIONS get the same 503:
an SBC that pings its nodes with OPTIONS marks this one down before a caller ever hits it (the
container HEALTHCHECK accepts a 503 for that reason: draining is alive, not broken). Everything
that belongs to a call in progress — ACK, CANCEL, BYE, re-INVITE, responses from centres — goes
on as before, and a call still hunting keeps hunting.

The node waits until the last call has ended, then a moment more (at most
:data:`LINGER_S`) for the requests those calls sent last (a BYE towards a centre) to be
answered, and exits. If ``[sip] drain_timeout_s`` runs out first, or a second SIGTERM/SIGINT
comes, the calls still up are released from here (:func:`release_call`): an answered call
gets BYE on both legs, an unanswered one 503 + Retry-After to the caller (its SBC can still
take the call elsewhere) and CANCEL towards the centre; each with a Reason, each counted.

:func:`release_call` and :class:`DrainState` are sans-IO like the rest of the call path;
:func:`drain_node` is the one coroutine ``router/app.py`` runs after the signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sip.message import make_response

from . import in_dialog, legs
from .call_record import TerminatedReason
from .call_state import CallState, Leg
from .hunt import AttemptEnd

if TYPE_CHECKING:
    from sip.transport import SipEndpoint

    from .b2bua import B2bua
    from .call import Call
    from .metrics import NodeMetrics

log = logging.getLogger("nodrute.drain")

HURRIED_LINGER_S = 0.5
"""The linger after a second SIGTERM."""
LINGER_S = 4.0
"""After the last call ended: how long to wait at most for the final responses to the
requests calls sent last (BYE/CANCEL towards a centre), so the node leaves no half-closed
dialog behind. Timer F would be 32 s; a centre that does not answer a BYE in 4 s is down."""

POLL_S = 0.1
"""How often the drain looks at the call count (off the call path; the gate itself is the
dispatcher's flag)."""

DRAINING_TEXT = "Node draining, try another node"
RELEASE_TIMEOUT_TEXT = "Node shutting down: drain timeout"
RELEASE_STOP_TEXT = "Node shutting down"


@dataclass(slots=True)
class DrainState:
    """The drain in progress (``B2bua.drain``; None while the node takes calls)."""

    started_at: float
    """Loop clock at the signal."""
    retry_after_s: int
    """Retry-After on every 503 the gate sends."""
    calls_at_start: int
    """Calls in progress when the drain began."""
    refused: int = 0
    """New INVITEs answered 503 since."""
    options_refused: int = 0
    """Out-of-dialog OPTIONS answered 503 since."""
    released: int = 0
    """Calls ended by the node itself (drain timeout or a second signal)."""

    def refusal_headers(self, text: str = DRAINING_TEXT) -> list[tuple[str, str]]:
        """Retry-After (RFC 3261 §20.33) and Reason (RFC 3326) for a 503 from this node."""
        return [("Retry-After", str(self.retry_after_s)), ("Reason", legs.reason_value(503, text))]


def release_call(call: Call, drain: DrainState, text: str, now: float) -> bool:
    """End ``call`` from the node's side; False if it had already ended.

    Answered: BYE to both legs (the centre's 2xx is ACKed first if its ACK was still waiting
    for the caller's). Not answered yet (routing, IVR, hunting, ringing, last-resort prompt):
    503 + Retry-After to the caller, so the carrier may still route it through another node, and
    CANCEL of the attempt in flight; a 2xx crossing that CANCEL is ACKed and released by the
    call as for any abandoned attempt.
    """
    if call.state is CallState.ENDED:
        return False
    if call.state in (CallState.ANSWERED, CallState.CONFIRMED):
        if call.centre_ack_pending:
            call.send_centre_ack(None, now)  # RFC 3261 §13.2.2.4: ACK every 2xx, then BYE
        reason = legs.reason_value(503, text)
        in_dialog.send_bye(call, Leg.CENTRE, reason, now)
        in_dialog.send_bye(call, Leg.CALLER, reason, now)
    else:
        if call.centre_tx is not None:
            call.host.layer.send_cancel(call.centre_tx, now, reason=legs.reason_value(503, text))
            if call.centre_invite is not None:
                call.abandoned[call.centre_tx] = call.centre_invite
        if call.hunt is not None:
            call.hunt.end(AttemptEnd.CALLER_GONE, now)
        response = make_response(call.invite, 503, to_tag=call.caller_tag,
                                 extra=drain.refusal_headers(text))
        call.host.layer.send_response(call.in_tx, response, now)
        call.record.final_status = 503
    call.record.notes.append(f"released by the node: {text}")
    drain.released += 1
    call.end(TerminatedReason.NODE_SHUTDOWN, now)
    return True


async def drain_node(b2bua: B2bua, endpoint: SipEndpoint, *, timeout_s: float,
                     retry_after_s: int, hurry: asyncio.Event,
                     metrics: NodeMetrics | None = None) -> DrainState:
    """Close the gate, wait for the calls to end (or ``timeout_s``, or ``hurry``), release
    what is left, linger for the last responses; returns the counts (also logged)."""
    now = endpoint.now()
    drain = b2bua.start_drain(now, retry_after_s)
    if metrics is not None:
        metrics.draining.set(1)
    log.warning("draining: %d calls in progress; new calls get 503 (Retry-After %d s); "
                "drain timeout %g s, a second SIGTERM stops at once",
                drain.calls_at_start, retry_after_s, timeout_s)
    deadline = now + timeout_s
    while b2bua.active_calls > 0 and not hurry.is_set():
        left = deadline - endpoint.now()
        if left <= 0:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hurry.wait(), min(POLL_S, left))
    if b2bua.active_calls > 0:
        text = RELEASE_STOP_TEXT if hurry.is_set() else RELEASE_TIMEOUT_TEXT
        log.error("%s: releasing %d calls still in progress", text, b2bua.active_calls)
        now = endpoint.now()
        b2bua.release_calls(text, now)
        endpoint.pump(now)
    # A second SIGTERM (before or during the linger) shortens it: the BYEs/CANCELs just sent
    # still get out and may be answered, but the node does not wait the full LINGER_S.
    linger_from = endpoint.now()
    while b2bua.requests_pending and endpoint.now() - linger_from < (
            HURRIED_LINGER_S if hurry.is_set() else LINGER_S):
        await asyncio.sleep(POLL_S)
    log.warning("drain done after %.1f s: %d calls were in progress, %d released by the node, "
                "%d new calls and %d OPTIONS refused with 503",
                endpoint.now() - drain.started_at, drain.calls_at_start, drain.released,
                drain.refused, drain.options_refused)
    return drain
