"""The IVR flow machine with a fake clock: every step kind, timeouts, retries, early media."""

import pytest
from pydantic import ValidationError

from ivr.config import (
    BranchStep,
    CollectStep,
    IvrFlow,
    IvrSettings,
    PlayStep,
    RouteStep,
    TransferStep,
    default_flows,
)
from ivr.flow import FlowRunner, PlayPrompt, RouteCall, StopPrompt

MENU = default_flows()["menu_116117"]


def test_greeting_then_route() -> None:
    runner = FlowRunner(default_flows()["greeting_116117"])
    assert runner.start(0.0) == [PlayPrompt("greeting_116117")]
    assert runner.digit(1.0, "1") == []  # not interruptible: the greeting plays on
    assert runner.prompt_finished(4.0, "other") == []
    assert runner.prompt_finished(4.0, "greeting_116117") == [RouteCall(None, "route")]
    assert runner.done and runner.next_deadline() is None


def test_early_media_routes_first_and_stops_when_told() -> None:
    runner = FlowRunner(default_flows()["early_113"])
    assert runner.start(0.0) == [RouteCall(None, "early_media"),
                                 PlayPrompt("please_wait_113", repeat=True)]
    assert runner.next_deadline() is None  # nothing in the flow can hold the centre leg
    assert runner.stop() == [StopPrompt()]
    assert runner.done and runner.stop() == []


def test_menu_press_1_transfers_to_113_interrupting_both_prompts() -> None:
    runner = FlowRunner(MENU)
    assert runner.start(0.0) == [PlayPrompt("greeting_116117")]
    # barge-in during the greeting: the digit is kept for the collect step
    assert runner.digit(1.0, "1") == [StopPrompt(), RouteCall("113", "transfer")]
    assert runner.digits == "1" and runner.done


def test_menu_digit_during_the_menu_prompt() -> None:
    runner = FlowRunner(MENU)
    runner.start(0.0)
    assert runner.prompt_finished(4.0, "greeting_116117") == [PlayPrompt("press1_for_113")]
    assert runner.next_deadline() == 60.0  # only the overall cap while the prompt plays
    assert runner.digit(5.0, "2") == [StopPrompt(), RouteCall(None, "route")]  # default branch


def test_menu_timeout_retries_once_then_routes_as_dialled() -> None:
    runner = FlowRunner(MENU)
    runner.start(0.0)
    runner.prompt_finished(4.0, "greeting_116117")
    assert runner.prompt_finished(7.0, "press1_for_113") == []
    assert runner.next_deadline() == 11.0
    assert runner.on_timer(10.9) == []
    assert runner.on_timer(11.0) == [PlayPrompt("press1_for_113")]  # the retry
    assert runner.prompt_finished(14.0, "press1_for_113") == []
    assert runner.on_timer(18.0) == [RouteCall(None, "route")]
    assert runner.digits == ""


def collect_flow(**collect: object) -> IvrFlow:
    return IvrFlow(steps=(
        CollectStep(**collect),  # type: ignore[arg-type]
        BranchStep(cases={"12": "twelve", "9": "nine"}),
        RouteStep(),
        TransferStep(id="twelve", service="113"),
        PlayStep(id="nine", prompt="all_busy"),
    ))


def test_collect_multiple_digits_with_inter_digit_timeout() -> None:
    runner = FlowRunner(collect_flow(max_digits=3, timeout_s=2, retries=0))
    assert runner.start(0.0) == []  # no prompt: the timer runs at once
    assert runner.next_deadline() == 2.0
    assert runner.digit(1.0, "1") == []
    assert runner.next_deadline() == 3.0  # restarted by the digit
    assert runner.digit(2.5, "2") == []
    assert runner.on_timer(4.5) == [RouteCall("113", "transfer")]
    assert runner.digits == "12"


def test_collect_ends_on_max_digits_or_terminator() -> None:
    runner = FlowRunner(collect_flow(max_digits=2, timeout_s=2))
    runner.start(0.0)
    runner.digit(0.1, "1")
    assert runner.digit(0.2, "2") == [RouteCall("113", "transfer")]
    runner = FlowRunner(collect_flow(max_digits=4, timeout_s=2))
    runner.start(0.0)
    runner.digit(0.1, "9")
    assert runner.digit(0.2, "#") == [PlayPrompt("all_busy")]  # branch "9" -> play
    assert runner.prompt_finished(2.0, "all_busy") == [RouteCall(None, "end_of_flow")]


def test_the_overall_cap_routes_a_caller_stuck_in_a_menu() -> None:
    flow = IvrFlow(max_total_s=10, steps=(
        CollectStep(id="again", timeout_s=3, retries=5),
        BranchStep(cases={}, default="again"),
    ))
    runner = FlowRunner(flow)
    runner.start(0.0)
    now = 0.0
    actions: list[object] = []
    while not runner.done:
        deadline = runner.next_deadline()
        assert deadline is not None
        now = deadline
        actions = list(runner.on_timer(now))
    assert actions == [RouteCall(None, "max_total")] and now == 10.0


def test_a_branch_loop_without_waiting_is_cut_by_the_guard() -> None:
    flow = IvrFlow(steps=(BranchStep(id="a", cases={}, default="b"),
                          BranchStep(id="b", cases={}, default="a")))
    assert FlowRunner(flow).start(0.0) == [RouteCall(None, "loop_guard")]


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="unknown step"):
        IvrFlow(steps=(BranchStep(cases={"1": "nowhere"}),))
    with pytest.raises(ValidationError, match="early_media"):
        IvrFlow(early_media=True, steps=(CollectStep(),))
    with pytest.raises(ValidationError, match="unique"):
        IvrFlow(steps=(RouteStep(id="x"), RouteStep(id="x")))
    with pytest.raises(ValidationError, match="unknown flow"):
        IvrSettings(services={"116117": "missing"})
    flow = IvrFlow.model_validate({"steps": [{"kind": "play", "prompt": "all_busy"},
                                             {"kind": "transfer", "service": "113"}]})
    assert isinstance(flow.steps[1], TransferStep)


def test_flow_and_language_selection_per_service_and_centre() -> None:
    settings = IvrSettings(centres={"lvs-bergen": "menu_116117"},
                           centre_languages={"lvs-bergen": "en"})
    assert settings.flow_for("113") == default_flows()["early_113"]
    assert settings.flow_for("116117", "lvs-oslo") == default_flows()["greeting_116117"]
    assert settings.flow_for("116117", "lvs-bergen") == MENU
    assert settings.language_for("lvs-bergen") == "en" and settings.language_for(None) == "nb"
    assert IvrSettings(enabled=False).flow_for("116117") is None
    assert IvrSettings(services={}).flow_for("113") is None
