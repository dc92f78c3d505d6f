"""The states of a call and the names of its two legs (shared by the call's modules)."""

from __future__ import annotations

import enum


class CallState(enum.Enum):
    """Where the call is, from the caller's point of view (RFC 3261 §13/§15 vocabulary)."""

    ROUTING = "routing"
    """Location resolved, no centre INVITE yet (an IVR flow may be running)."""
    CALLING = "calling"
    """INVITE sent to a destination, nothing relayed to the caller beyond 100."""
    EARLY = "early"
    """A centre sent 18x (relayed to the caller); the hunt may still move on."""
    ANSWERED = "answered"
    """2xx relayed to the caller, its ACK not yet received."""
    CONFIRMED = "confirmed"
    FAILING = "failing"
    """Every destination failed: the caller hears the last-resort prompt, then the final
    response (only with anchored media)."""
    ENDED = "ended"


class Leg(enum.Enum):
    CALLER = "caller"
    CENTRE = "centre"
