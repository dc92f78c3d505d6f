"""The IVR flow state machine, sans-IO: ``now`` in, actions and the next deadline out.

The router feeds it what the media engine reports (``prompt_finished``, ``digit``) and its
timers (``on_timer`` once ``next_deadline()`` has passed), and carries out the returned
actions: ``PlayPrompt``/``StopPrompt`` on the caller's leg, ``RouteCall`` to start hunting.
After ``RouteCall`` the flow is ``done`` -- except an early-media flow, which routes first and
keeps playing until the router calls ``stop`` (centre answered, or the call ended).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import BranchStep, CollectStep, IvrFlow, PlayStep, RouteStep, TransferStep

__all__ = ["FlowAction", "FlowRunner", "PlayPrompt", "RouteCall", "StopPrompt"]

_MAX_JUMPS = 64


@dataclass(frozen=True, slots=True)
class PlayPrompt:
    """Play a prompt on the caller's leg (replacing what plays)."""

    name: str
    """Prompt name in the catalogue (language chosen by the router)."""
    repeat: bool = False
    """Loop until stopped."""


@dataclass(frozen=True, slots=True)
class StopPrompt:
    """Stop the prompt on the caller's leg now."""


@dataclass(frozen=True, slots=True)
class RouteCall:
    """Start routing the call."""

    service: str | None
    """Route as this service (transfer), or None: as dialled."""
    reason: str
    """Why: ``route``, ``transfer``, ``end_of_flow``, ``early_media``, ``max_total``…"""


FlowAction = PlayPrompt | StopPrompt | RouteCall


class FlowRunner:
    """One caller's run through an ``IvrFlow``."""

    def __init__(self, flow: IvrFlow) -> None:
        self.flow = flow
        self.done = False
        self.digits = ""
        """Digits of the last completed collection."""
        self._index = -1
        self._started_at = 0.0
        self._deadline: float | None = None
        self._playing: str | None = None
        self._pending_digits = ""
        self._collected = ""
        self._attempt = 0
        self._jumps = 0
        self._ids = {s.id: i for i, s in enumerate(flow.steps) if s.id is not None}

    # -- inputs ------------------------------------------------------------------------------

    def start(self, now: float) -> list[FlowAction]:
        self._started_at = now
        actions: list[FlowAction] = []
        if self.flow.early_media:
            actions.append(RouteCall(None, "early_media"))  # never wait for the prompt
        return actions + self._goto(0, now)

    def prompt_finished(self, now: float, name: str) -> list[FlowAction]:
        if self.done or name != self._playing:
            return []
        self._playing = None
        step = self._step()
        if isinstance(step, PlayStep):
            return self._goto(self._index + 1, now)
        if isinstance(step, CollectStep):
            self._deadline = now + step.timeout_s
        return []

    def digit(self, now: float, digit: str) -> list[FlowAction]:
        if self.done:
            return []
        step = self._step()
        if isinstance(step, PlayStep):
            if not step.interruptible:
                return []
            self._pending_digits += digit
            self._playing = None
            return [StopPrompt(), *self._goto(self._index + 1, now)]
        if isinstance(step, CollectStep):
            actions: list[FlowAction] = []
            if self._playing is not None:
                self._playing = None
                actions.append(StopPrompt())
            return actions + self._collect_digit(step, digit, now)
        return []

    def on_timer(self, now: float) -> list[FlowAction]:
        if self.done:
            return []
        if now - self._started_at >= self.flow.max_total_s:
            return self._finish(RouteCall(None, "max_total"), stop_prompt=True)
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        step = self._step()
        if not isinstance(step, CollectStep):
            return []
        if self._collected:
            return self._end_collect(now)
        if self._attempt < step.retries:
            self._attempt += 1
            return self._begin_collect(step, now)
        return self._end_collect(now)

    def stop(self) -> list[FlowAction]:
        """The router ends the flow (centre answered, caller gone): silence any prompt."""
        if self.done:
            return []
        return self._finish(None, stop_prompt=True)

    def next_deadline(self) -> float | None:
        if self.done:
            return None
        cap = self._started_at + self.flow.max_total_s
        if self.flow.early_media:
            return None  # ends by stop(); the centre leg bounds it
        return min(cap, self._deadline) if self._deadline is not None else cap

    # -- steps -------------------------------------------------------------------------------

    def _step(self) -> object:
        return self.flow.steps[self._index] if 0 <= self._index < len(self.flow.steps) else None

    def _goto(self, index: int, now: float) -> list[FlowAction]:
        self._jumps += 1
        if self._jumps > _MAX_JUMPS:  # a branch loop in the config must not hold the caller
            return self._finish(RouteCall(None, "loop_guard"), stop_prompt=True)
        self._index = index
        self._deadline = None
        if index >= len(self.flow.steps):
            if self.flow.early_media:
                return []  # prompts done; the call is already being routed
            return self._finish(RouteCall(None, "end_of_flow"))
        step = self.flow.steps[index]
        if isinstance(step, PlayStep):
            last = index == len(self.flow.steps) - 1
            repeat = self.flow.early_media and self.flow.repeat_last_prompt and last
            self._playing = step.prompt
            return [PlayPrompt(step.prompt, repeat)]
        if isinstance(step, CollectStep):
            self._attempt = 0
            return self._begin_collect(step, now)
        if isinstance(step, BranchStep):
            target = step.cases.get(self.digits, step.default)
            return self._goto(self._ids[target] if target else index + 1, now)
        if isinstance(step, TransferStep):
            return self._finish(RouteCall(step.service, "transfer"))
        assert isinstance(step, RouteStep)
        return self._finish(RouteCall(None, "route"))

    def _begin_collect(self, step: CollectStep, now: float) -> list[FlowAction]:
        self._collected = ""
        pending, self._pending_digits = self._pending_digits, ""
        actions: list[FlowAction] = []
        if step.prompt is not None and not pending:
            self._playing = step.prompt
            actions.append(PlayPrompt(step.prompt))
        else:
            self._deadline = now + step.timeout_s
        for digit in pending:
            actions += self._collect_digit(step, digit, now)
            if self.done or self._step() is not step:
                break
        return actions

    def _collect_digit(self, step: CollectStep, digit: str, now: float) -> list[FlowAction]:
        if step.terminator is not None and digit == step.terminator:
            return self._end_collect(now)
        self._collected += digit
        if len(self._collected) >= step.max_digits:
            return self._end_collect(now)
        self._deadline = now + step.timeout_s  # inter-digit timeout
        return []

    def _end_collect(self, now: float) -> list[FlowAction]:
        self.digits = self._collected
        return self._goto(self._index + 1, now)

    def _finish(self, route: RouteCall | None, stop_prompt: bool = False) -> list[FlowAction]:
        self.done = True
        self._deadline = None
        actions: list[FlowAction] = []
        if stop_prompt and self._playing is not None:
            actions.append(StopPrompt())
        self._playing = None
        if route is not None and not (self.flow.early_media and route.reason != "early_media"):
            actions.append(route)
        return actions
