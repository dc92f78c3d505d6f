"""One caller's IVR: a ``FlowRunner`` carried out on a ``MediaEngine`` leg.

The router keeps one ``IvrSession`` per call that has a flow. It forwards the engine's events for
the caller's leg and its own timer, and acts on the ``RouteCall`` returned; prompts and digits
never reach the router's call state machine. No I/O of its own: the engine is injected.
"""

from __future__ import annotations

from .config import CollectStep, IvrSettings, PlayStep
from .engine import DtmfReceived, MediaEngine, MediaEvent, PromptFinished
from .flow import FlowAction, FlowRunner, PlayPrompt, RouteCall, StopPrompt
from .prompts import PromptCatalogue

__all__ = ["IvrSession", "missing_prompts"]


class IvrSession:
    """Drive ``runner`` on ``leg_id``; every method returns the RouteCall to act on, if any."""

    def __init__(self, runner: FlowRunner, engine: MediaEngine, catalogue: PromptCatalogue,
                 leg_id: str, language: str) -> None:
        self.runner = runner
        self.engine = engine
        self.catalogue = catalogue
        self.leg_id = leg_id
        self.language = language

    @property
    def done(self) -> bool:
        return self.runner.done

    def start(self, now: float) -> RouteCall | None:
        return self._apply(self.runner.start(now), now)

    def on_media_event(self, event: MediaEvent, now: float) -> RouteCall | None:
        """Feed an engine event; events of other legs are ignored."""
        if event.leg_id != self.leg_id:
            return None
        if isinstance(event, DtmfReceived):
            return self._apply(self.runner.digit(now, event.digit), now)
        if isinstance(event, PromptFinished):
            return self._apply(self.runner.prompt_finished(now, event.prompt), now)
        return None

    def on_timer(self, now: float) -> RouteCall | None:
        return self._apply(self.runner.on_timer(now), now)

    def next_deadline(self) -> float | None:
        return self.runner.next_deadline()

    def stop(self) -> None:
        """Centre answered or the call ended: silence the prompt now (before bridging)."""
        self._apply(self.runner.stop(), 0.0)

    def _apply(self, actions: list[FlowAction], now: float) -> RouteCall | None:
        route: RouteCall | None = None
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            if isinstance(action, RouteCall):
                route = route or action
            elif isinstance(action, StopPrompt):
                self.engine.stop(self.leg_id)
            elif isinstance(action, PlayPrompt):
                try:
                    prompt = self.catalogue.get(self.language, action.name)
                except KeyError:  # never dead air: a missing prompt counts as played
                    pending += self.runner.prompt_finished(now, action.name)
                    continue
                self.engine.play(self.leg_id, prompt, repeat=action.repeat)
        return route


def missing_prompts(settings: IvrSettings, catalogue: PromptCatalogue) -> list[str]:
    """Prompts the configured flows name that the catalogue lacks (check at start-up)."""
    languages = {settings.language, *settings.centre_languages.values()}
    missing = set()
    for flow in settings.flows.values():
        for step in flow.steps:
            name = step.prompt if isinstance(step, PlayStep | CollectStep) else None
            for language in languages:
                if name is not None and (language, name) not in catalogue \
                        and ("en", name) not in catalogue:
                    missing.add(f"{language}/{name}")
    return sorted(missing)
