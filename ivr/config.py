"""IVR configuration: media settings and flows as data (pydantic-validated).

A flow is a list of steps run in order; ``branch`` jumps to a step ``id``. Steps:

* ``play``     a prompt to its end (``interruptible``: a digit stops it and is kept);
* ``collect``  digits (optional prompt first, ``timeout_s`` per digit, ``max_digits``,
               ``terminator``, ``retries`` replays of the prompt when nothing was pressed);
* ``branch``   on the digits last collected: ``cases`` digit string -> step id, else ``default``
               (a step id, or the next step when empty);
* ``transfer`` route as another service (e.g. 113) for the same municipality;
* ``route``    route as dialled.

Running off the end routes as dialled: a flow never strands a caller. An ``early_media`` flow
(113) is routed at once and only plays prompts while the centre rings; it may contain nothing
but ``play`` steps, so it can never delay the centre leg.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "BranchStep",
    "CollectStep",
    "IvrFlow",
    "IvrSettings",
    "MediaSettings",
    "PlayStep",
    "RouteStep",
    "Step",
    "TransferStep",
    "default_flows",
]


class _Step(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str | None = None
    """Label that ``branch`` steps can jump to."""


class PlayStep(_Step):
    kind: Literal["play"] = "play"
    prompt: str
    interruptible: bool = False
    """A digit stops the prompt; the digit goes to the next ``collect``."""


class CollectStep(_Step):
    kind: Literal["collect"] = "collect"
    prompt: str | None = None
    """Played before (and on each retry of) the collection; digits interrupt it."""
    max_digits: int = Field(1, ge=1, le=32)
    timeout_s: float = Field(5.0, gt=0, le=60)
    """Wait after the prompt and between digits."""
    retries: int = Field(1, ge=0, le=5)
    """Replays of the prompt when no digit was pressed before the timeout."""
    terminator: str | None = Field("#", pattern=r"^[0-9*#]$")


class BranchStep(_Step):
    kind: Literal["branch"] = "branch"
    cases: dict[str, str]
    """Collected digits -> step id."""
    default: str | None = None
    """Step id when no case matches; None: the next step."""


class TransferStep(_Step):
    kind: Literal["transfer"] = "transfer"
    service: Literal["113", "116117"]


class RouteStep(_Step):
    kind: Literal["route"] = "route"


Step = Annotated[PlayStep | CollectStep | BranchStep | TransferStep | RouteStep,
                 Field(discriminator="kind")]


class IvrFlow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    early_media: bool = False
    """Route at once and play the steps as early media while the centre rings (113)."""
    repeat_last_prompt: bool = False
    """Early media: loop the last prompt until the centre answers."""
    max_total_s: float = Field(60.0, gt=0, le=600)
    """Whatever happens, route once the flow has run this long."""
    steps: tuple[Step, ...]

    @model_validator(mode="after")
    def _check(self) -> IvrFlow:
        ids = [s.id for s in self.steps if s.id is not None]
        if len(ids) != len(set(ids)):
            raise ValueError("step ids must be unique")
        for step in self.steps:
            if isinstance(step, BranchStep):
                targets = [*step.cases.values(), *([step.default] if step.default else [])]
                unknown = sorted(set(targets) - set(ids))
                if unknown:
                    raise ValueError(f"branch to unknown step id(s) {', '.join(unknown)}")
        if self.early_media and any(not isinstance(s, PlayStep) for s in self.steps):
            raise ValueError("an early_media flow may only play prompts (it never delays "
                             "the centre leg)")
        return self


def default_flows() -> dict[str, IvrFlow]:
    """The shipped flows: 113 early media, 116117 greeting, and the press-1 menu example."""
    return {
        "early_113": IvrFlow(early_media=True, repeat_last_prompt=True,
                             steps=(PlayStep(prompt="please_wait_113"),)),
        "greeting_116117": IvrFlow(steps=(PlayStep(prompt="greeting_116117"), RouteStep())),
        "menu_116117": IvrFlow(steps=(
            PlayStep(prompt="greeting_116117", interruptible=True),
            CollectStep(prompt="press1_for_113", max_digits=1, timeout_s=4, retries=1),
            BranchStep(cases={"1": "life_threatening"}, default="routine"),
            TransferStep(id="life_threatening", service="113"),
            RouteStep(id="routine"),
        )),
    }


class MediaSettings(BaseModel):
    """Where and how the router handles RTP."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    """Anchor media on the router and run the IVR (the default); off: SDP is relayed end to
    end and callers hear no prompt (signalling-only benchmarks, a media plane elsewhere)."""
    address: str = "127.0.0.1"
    """Local address for RTP sockets and in SDP."""
    rtp_port_first: int = Field(20000, ge=1024, le=65534)
    rtp_port_last: int = Field(29999, ge=1025, le=65535)
    mode: Literal["anchor", "release"] = "anchor"
    """anchor: relay RTP leg to leg; release: re-INVITE the caller with the centre's SDP."""

    @model_validator(mode="after")
    def _check_range(self) -> MediaSettings:
        if self.rtp_port_last - self.rtp_port_first < 3:
            raise ValueError("the RTP port range must hold at least two port pairs")
        return self


class IvrSettings(BaseModel):
    """Flows and which service/centre uses which (prompts are chosen per flow and language)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    language: str = "nb"
    """Prompt language (``nb``/``en``), falling back to English for a missing prompt."""
    flows: dict[str, IvrFlow] = Field(default_factory=default_flows)
    services: dict[str, str] = Field(
        default_factory=lambda: {"113": "early_113", "116117": "greeting_116117"})
    """Service -> flow name; a service not listed has no IVR."""
    centres: dict[str, str] = Field(default_factory=dict)
    """Centre id -> flow name, overriding the service's flow for calls to that centre."""
    centre_languages: dict[str, str] = Field(default_factory=dict)
    """Centre id -> prompt language override."""

    @model_validator(mode="after")
    def _check_names(self) -> IvrSettings:
        unknown = sorted({*self.services.values(), *self.centres.values()} - set(self.flows))
        if unknown:
            raise ValueError(f"unknown flow name(s) {', '.join(unknown)}")
        return self

    def flow_for(self, service: str, centre_id: str | None = None) -> IvrFlow | None:
        """The flow for a call, or None when the call gets no IVR."""
        if not self.enabled:
            return None
        name = self.centres.get(centre_id or "") or self.services.get(service)
        return self.flows[name] if name else None

    def language_for(self, centre_id: str | None = None) -> str:
        return self.centre_languages.get(centre_id or "", self.language)
