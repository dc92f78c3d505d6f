"""Anchored media for one call (issue 5), used only when ``[media] enabled = true``.

The glue between a :class:`~router.call.Call` and the media plane: SDP offer/answer on both
legs, the caller's IVR session, bridging and release (the contract is ``ivr/README.md``).
Sans-IO like the call: the engine is the :class:`~ivr.engine.MediaEngine` interface the
dispatcher hands in (``AsyncioMediaEngine`` in the node, a fake in transcript tests); what it
reports comes back through :meth:`router.b2bua.B2bua.handle_media_event`, routed by leg id.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.config import IvrFlow, IvrSettings
from ivr.engine import LocalMedia, MediaEngine, MediaEngineError, MediaEvent
from ivr.flow import FlowRunner, RouteCall
from ivr.prompts import PromptCatalogue
from ivr.session import IvrSession
from sip.sdp import (
    PCMA,
    PCMU,
    NegotiatedAudio,
    OfferRejected,
    SdpError,
    SessionDescription,
    answer_offer,
    make_offer,
    negotiated_audio,
)

__all__ = ["CallMedia", "MediaContext", "MediaRefused"]

SDP = "application/sdp"


@dataclass(frozen=True, slots=True)
class MediaContext:
    """What the dispatcher hands to calls when media is anchored on the router."""

    engine: MediaEngine
    catalogue: PromptCatalogue
    ivr: IvrSettings


class MediaRefused(Exception):
    """The caller's media cannot be set up: answer the INVITE with ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class CallMedia:
    """One call's caller and centre media legs and its IVR session."""

    def __init__(self, context: MediaContext, call_key: str) -> None:
        self.context = context
        self.engine = context.engine
        self.caller_leg = f"{call_key}:caller"
        self.centre_leg = f"{call_key}:centre"
        self.caller_answer = b""
        """Our SDP answer to the caller: the body of the 183 **and** the 200 (RFC 3261 §13.2.1)."""
        self.caller_audio: NegotiatedAudio | None = None
        self.centre_offer: SessionDescription | None = None
        self.centre_remote_set = False
        self.bridged = False
        self.ivr: IvrSession | None = None
        self._legs: set[str] = set()
        self._local: dict[str, LocalMedia] = {}
        self._current_sdp: dict[str, bytes] = {}
        """Our SDP now in force on each leg (offer or answer), for a re-INVITE without one."""
        self._version = 0

    @property
    def leg_ids(self) -> tuple[str, str]:
        return self.caller_leg, self.centre_leg

    # -- caller leg ------------------------------------------------------------------------------

    def answer_caller(self, body: bytes) -> None:
        """Take the caller's offer, allocate its leg, keep our answer; raise MediaRefused."""
        try:
            offer = SessionDescription.parse(body)
        except SdpError as err:
            raise MediaRefused(400, f"Bad SDP: {err}") from None
        try:
            local = self.engine.allocate(self.caller_leg)
        except MediaEngineError:
            raise MediaRefused(503, "No media resources") from None
        self._legs.add(self.caller_leg)
        self._local[self.caller_leg] = local
        try:
            answer, audio = answer_offer(offer, local.address, local.port)
        except OfferRejected as err:
            raise MediaRefused(err.status, err.reason) from None
        except SdpError as err:
            raise MediaRefused(400, f"Bad SDP: {err}") from None
        self.engine.set_remote(self.caller_leg, audio)
        self.caller_audio = audio
        self.caller_answer = answer.serialise()
        self._current_sdp[self.caller_leg] = self.caller_answer

    def start_ivr(self, flow: IvrFlow, language: str, now: float) -> RouteCall | None:
        self.ivr = IvrSession(FlowRunner(flow), self.engine, self.context.catalogue,
                              self.caller_leg, language)
        return self.ivr.start(now)

    @property
    def ivr_running(self) -> bool:
        return self.ivr is not None and not self.ivr.done

    def ivr_deadline(self) -> float | None:
        return self.ivr.next_deadline() if self.ivr is not None else None

    def on_ivr_timer(self, now: float) -> RouteCall | None:
        return self.ivr.on_timer(now) if self.ivr is not None else None

    def on_event(self, event: MediaEvent, now: float) -> RouteCall | None:
        return self.ivr.on_media_event(event, now) if self.ivr is not None else None

    # -- centre leg ------------------------------------------------------------------------------

    def offer_centre(self) -> bytes:
        """A fresh centre leg and our offer for it (raise MediaEngineError when no port)."""
        assert self.caller_audio is not None
        self.release_centre()
        local = self.engine.allocate(self.centre_leg)
        self._legs.add(self.centre_leg)
        self._local[self.centre_leg] = local
        first = self.caller_audio.codec
        other = PCMU if first.same_format(PCMA) else PCMA
        # The caller's codec first: normally nothing is transcoded.
        self.centre_offer = make_offer(local.address, local.port, codecs=(first, other))
        self._current_sdp[self.centre_leg] = self.centre_offer.serialise()
        return self._current_sdp[self.centre_leg]

    # -- re-INVITE / UPDATE inside a dialog: answered here, the media stays anchored ------------

    def current_sdp(self, leg_id: str) -> bytes:
        return self._current_sdp.get(leg_id, b"")

    def answer_reoffer(self, leg_id: str, body: bytes) -> bytes:
        """A new offer on one leg (hold, codec change, new address): our answer, same port.

        It never reaches the other leg: the engine re-links the relay (RFC 3264 §8); raise
        MediaRefused (488/400) when the offer is unacceptable, leaving the old media as is."""
        local = self._local.get(leg_id)
        if local is None or leg_id not in self._legs:
            raise MediaRefused(488, "No media on this leg")
        try:
            answer, audio = answer_offer(SessionDescription.parse(body), local.address,
                                         local.port)
        except OfferRejected as err:
            raise MediaRefused(err.status, err.reason) from None
        except SdpError as err:
            raise MediaRefused(400, f"Bad SDP: {err}") from None
        self._version += 1
        answer.session_version = self._version  # RFC 3264 §8: a changed SDP, a new version
        self.engine.set_remote(leg_id, audio)
        self._current_sdp[leg_id] = answer.serialise()
        return self._current_sdp[leg_id]

    def centre_sdp(self, body: bytes) -> bool:
        """The centre's answer (in a 18x or the 2xx); False when it is unusable."""
        if not body or self.centre_offer is None or self.centre_leg not in self._legs:
            return False
        try:
            audio = negotiated_audio(self.centre_offer, SessionDescription.parse(body))
        except (SdpError, OfferRejected):
            return False
        self.engine.set_remote(self.centre_leg, audio)
        self.centre_remote_set = True
        return True

    def release_centre(self) -> None:
        if self.centre_leg in self._legs:
            self._legs.discard(self.centre_leg)
            self.bridged = False
            self.centre_remote_set = False
            self.engine.release(self.centre_leg)

    # -- bridge and release ----------------------------------------------------------------------

    def stop_ivr(self) -> None:
        if self.ivr is not None:
            self.ivr.stop()

    def bridge(self) -> None:
        """Centre answered: silence the prompt at once, then relay leg to leg."""
        self.stop_ivr()
        if not self.bridged and {self.caller_leg, self.centre_leg} <= self._legs:
            self.engine.bridge(self.caller_leg, self.centre_leg)
            self.bridged = True

    def release(self) -> None:
        """The call ended: stop the prompt and free both legs (idempotent)."""
        self.stop_ivr()
        for leg in (self.caller_leg, self.centre_leg):
            if leg in self._legs:
                self._legs.discard(leg)
                self.engine.release(leg)
        self.bridged = False
