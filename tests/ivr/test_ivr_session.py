"""IvrSession: flow actions carried out on a (fake) media engine, engine events fed back."""

from __future__ import annotations

from ivr.config import IvrFlow, IvrSettings, PlayStep, RouteStep, default_flows
from ivr.engine import DtmfReceived, LocalMedia, MediaEngine, PromptFinished, RemoteLatched
from ivr.flow import FlowRunner, RouteCall
from ivr.prompts import Prompt, PromptCatalogue
from ivr.session import IvrSession, missing_prompts
from sip.sdp import NegotiatedAudio


class FakeEngine(MediaEngine):
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def allocate(self, leg_id: str) -> LocalMedia:
        return LocalMedia("127.0.0.1", 20000)

    def set_remote(self, leg_id: str, audio: NegotiatedAudio) -> None:
        self.calls.append(("set_remote", leg_id))

    def play(self, leg_id: str, prompt: Prompt, *, repeat: bool = False) -> None:
        self.calls.append(("play", leg_id, f"{prompt.language}/{prompt.name}", str(repeat)))

    def stop(self, leg_id: str) -> None:
        self.calls.append(("stop", leg_id))

    def bridge(self, leg_a: str, leg_b: str) -> None:
        self.calls.append(("bridge", leg_a, leg_b))

    def release(self, leg_id: str) -> None:
        self.calls.append(("release", leg_id))

    def close(self) -> None:
        pass


def catalogue(*keys: tuple[str, str]) -> PromptCatalogue:
    frame = (b"\xd5" * 160,)
    return PromptCatalogue(Prompt(lang, name, frame, frame) for lang, name in keys)


PROMPTS = catalogue(("nb", "greeting_116117"), ("nb", "press1_for_113"),
                    ("en", "press1_for_113"), ("en", "please_wait_113"))


def session(flow: str, engine: FakeEngine, prompts: PromptCatalogue = PROMPTS) -> IvrSession:
    return IvrSession(FlowRunner(default_flows()[flow]), engine, prompts, "c1:caller", "nb")


def test_menu_by_dtmf_drives_the_engine_and_returns_the_transfer() -> None:
    engine = FakeEngine()
    ivr = session("menu_116117", engine)
    assert ivr.start(0.0) is None
    assert engine.calls == [("play", "c1:caller", "nb/greeting_116117", "False")]
    assert ivr.on_media_event(PromptFinished("c1:caller", "greeting_116117"), 4.0) is None
    assert engine.calls[-1] == ("play", "c1:caller", "nb/press1_for_113", "False")
    assert ivr.on_media_event(DtmfReceived("other:caller", "1"), 5.0) is None  # not ours
    assert ivr.on_media_event(RemoteLatched("c1:caller", ("127.0.0.1", 1)), 5.0) is None
    assert ivr.on_media_event(DtmfReceived("c1:caller", "1"), 5.0) == RouteCall("113", "transfer")
    assert engine.calls[-1] == ("stop", "c1:caller") and ivr.done


def test_early_media_routes_at_start_in_the_fallback_language_and_stops_on_answer() -> None:
    engine = FakeEngine()
    ivr = session("early_113", engine)
    assert ivr.start(0.0) == RouteCall(None, "early_media")
    assert engine.calls == [("play", "c1:caller", "en/please_wait_113", "True")]
    ivr.stop()
    assert engine.calls[-1] == ("stop", "c1:caller")


def test_a_missing_prompt_is_skipped_rather_than_silence() -> None:
    engine = FakeEngine()
    ivr = IvrSession(FlowRunner(IvrFlow(steps=(PlayStep(prompt="nowhere"), RouteStep()))),
                     engine, PROMPTS, "c1:caller", "nb")
    assert ivr.start(0.0) == RouteCall(None, "route")
    assert engine.calls == []


def test_missing_prompts_are_listed_for_start_up_checks() -> None:
    assert missing_prompts(IvrSettings(), PROMPTS) == []
    assert missing_prompts(IvrSettings(), PromptCatalogue.load()) == []
    assert missing_prompts(IvrSettings(), catalogue(("nb", "greeting_116117"))) == [
        "nb/please_wait_113", "nb/press1_for_113"]
